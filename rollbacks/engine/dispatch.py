"""How the engine hands out work: the Dispatcher interface, and the dispatcher that
collects work for `run_inline` (rollbacks.engine.inline).

The engine decides what is due inside a transaction and tells a dispatcher, which acts
after the commit. The Celery dispatcher, which sends the work as task messages, lives
beside the tasks it sends (rollbacks.tasks).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Protocol

from django.db import transaction

from rollbacks.models import Step


class Dispatcher(Protocol):
    """Hands out work. Called inside the transaction that decided it; acts after commit."""

    def start_steps(self, steps: Iterable[Step]) -> None: ...

    def advance_run(self, run_id: int) -> None: ...

    def verify_run(self, run_id: int, round_id: str) -> None: ...


# Celery's soft limit sits this far beyond a step's own timeout (checks and retries run
# after the deadline the backend's wait honours); the hard limit a little further still.
# A step still running past its hard limit's margin stops beating (rollbacks.engine.heartbeats).
SOFT_LIMIT_MARGIN_SECONDS = 120
HARD_LIMIT_MARGIN_SECONDS = 180


class InlineDispatcher:
    """Collects work for `run_inline` after commit (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._steps: list[int] = []
        self._advance = False
        self._verifications: list[tuple[int, str]] = []

    def start_steps(self, steps: Iterable[Step]) -> None:
        ids = [step.pk for step in steps]

        def collect() -> None:
            with self._lock:
                self._steps.extend(ids)

        transaction.on_commit(collect)

    def advance_run(self, run_id: int) -> None:
        def flag() -> None:
            with self._lock:
                self._advance = True

        transaction.on_commit(flag)

    def verify_run(self, run_id: int, round_id: str) -> None:
        def collect() -> None:
            with self._lock:
                self._verifications.append((run_id, round_id))

        transaction.on_commit(collect)

    def take_verifications(self) -> list[tuple[int, str]]:
        """The verification rounds handed out since the last call."""
        with self._lock:
            taken, self._verifications = self._verifications, []
        return taken

    def take_steps(self) -> list[int]:
        """The ids of the steps handed out since the last call."""
        with self._lock:
            taken, self._steps = self._steps, []
        return taken

    def take_advance(self) -> bool:
        """Whether the run was asked to advance since the last call."""
        with self._lock:
            wanted, self._advance = self._advance, False
        return wanted
