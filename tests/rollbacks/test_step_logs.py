"""StepLogWriter: when a step's progress lines reach the database."""

from __future__ import annotations

import time
from typing import Any

import pytest

from executors.base import poll_until
from rollbacks.engine import step_logs
from rollbacks.engine.step_logs import StepLogWriter
from rollbacks.models import Step, StepLog
from tests.rollbacks.engine_factories import RunFactory, StepFactory

pytestmark = pytest.mark.django_db


class ShiftedClock:
    """The time module, with monotonic() as far ahead as a test moves it."""

    def __init__(self) -> None:
        self.ahead = 0.0

    def monotonic(self) -> float:
        return time.monotonic() + self.ahead

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


@pytest.fixture
def clock(monkeypatch) -> ShiftedClock:
    shifted = ShiftedClock()
    monkeypatch.setattr(step_logs, "time", shifted)
    return shifted


def _writer() -> StepLogWriter:
    step = StepFactory(run=RunFactory(state="running"))
    return StepLogWriter(Step.objects.select_related("run").get(pk=step.pk), first=True)


def _stored(writer: StepLogWriter) -> list[str]:
    return list(
        StepLog.objects.filter(step_id=writer.step_id)
        .order_by("seq")
        .values_list("line", flat=True)
    )


def test_a_steps_first_line_waits_for_the_next_flush_however_late_it_comes(clock) -> None:
    writer = _writer()
    clock.ahead = 5.0  # the step reached its first line long after the writer was made

    writer("web: revision 2 → revision 1")

    assert _stored(writer) == []
    writer.flush()
    assert _stored(writer) == ["web: revision 2 → revision 1"]


def test_later_lines_are_stored_once_a_quarter_second_has_passed(clock) -> None:
    writer = _writer()
    writer("first")
    writer("second")
    assert _stored(writer) == []

    clock.ahead = 0.3
    writer("third")

    assert _stored(writer) == ["first", "second", "third"]


def test_a_wait_whose_progress_does_not_change_stores_its_lines_between_polls() -> None:
    writer = _writer()
    writer("already applied at 10:00:00; waiting for it to settle")
    seen_stored: list[list[str]] = []

    def condition() -> tuple[bool, str]:
        seen_stored.append(_stored(writer))
        return len(seen_stored) == 3, "web: 1 of 3 replicas updated"

    poll_until(condition, deadline=time.monotonic() + 5, log=writer, interval=0.3, what="web")

    assert seen_stored[0] == []  # nothing is written before the first poll
    assert seen_stored[2] == [
        "already applied at 10:00:00; waiting for it to settle",
        "web: 1 of 3 replicas updated",
    ]
