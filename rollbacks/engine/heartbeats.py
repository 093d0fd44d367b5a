"""Heartbeats: how a worker shows that the steps it is running are alive.

A running step whose heartbeat stops moving for ROLLBACK_STALE_AFTER_SECONDS is handed to
another delivery by the recovery sweep (rollbacks.engine.recovery), which takes its claim
over (rollbacks.engine.claims).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from datetime import datetime, timedelta

from django.db import connections, transaction
from django.utils import timezone

from rollbacks import conf
from rollbacks.engine.dispatch import HARD_LIMIT_MARGIN_SECONDS
from rollbacks.models import Step, StepState

logger = logging.getLogger(__name__)


class Heartbeats:
    """One thread per process marks every step this process is running as alive.

    A step still running when Celery's hard time limit would have stopped it (its deadline
    plus the margin) stops beating: a step thread that hangs is not interrupted by the time
    limits of the task that started it, so the recovery sweep takes the step over instead,
    fences the hung thread out, and ends it past its deadline."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._claims: dict[str, tuple[int, datetime | None]] = {}
        self._thread: threading.Thread | None = None
        self._pid = 0

    def register(self, token: str, step_id: int, deadline: datetime | None = None) -> None:
        """Beat for the step claimed with `token` until unregistered (or past `deadline`
        and the hard time limit's margin); starts this process's beating thread if needed."""
        with self._lock:
            self._claims[token] = (step_id, deadline)
            if self._thread is None or not self._thread.is_alive() or self._pid != os.getpid():
                self._pid = os.getpid()
                self._thread = threading.Thread(
                    target=self._beat, name="rollback-heartbeat", daemon=True
                )
                self._thread.start()

    def unregister(self, token: str) -> None:
        """Stop beating for the step claimed with `token`."""
        with self._lock:
            self._claims.pop(token, None)

    def _beat(self) -> None:
        try:
            while True:
                time.sleep(conf.heartbeat_seconds())
                tokens = self._alive_tokens()
                if not tokens:
                    continue
                try:
                    _mark_alive(tokens)
                except Exception:  # the next beat tries again; a stale step is recovered
                    logger.warning("heartbeat for running steps failed", exc_info=True)
                finally:
                    # Beats are seconds apart: holding a connection between them would only
                    # keep a database busy (and undroppable) for nothing.
                    connections.close_all()
        finally:
            connections.close_all()

    def _alive_tokens(self) -> list[str]:
        """The claims to beat for: those not yet past their deadline and the margin."""
        cutoff = timezone.now() - timedelta(seconds=HARD_LIMIT_MARGIN_SECONDS)
        with self._lock:
            return [
                token
                for token, (_, deadline) in self._claims.items()
                if deadline is None or deadline > cutoff
            ]


def _mark_alive(tokens: list[str]) -> None:
    """Move the heartbeat of the running steps claimed with `tokens`."""
    with transaction.atomic():  # rows locked in id order, as claims do
        beating = Step.objects.filter(claim_token__in=tokens, state=StepState.RUNNING)
        locked = beating.order_by("pk").select_for_update(no_key=True)
        ids = list(locked.values_list("pk", flat=True))
        Step.objects.filter(pk__in=ids).update(heartbeat_at=timezone.now())


# This process's heartbeats: every step execution registers its claim here.
heartbeats = Heartbeats()
