"""poll_until: the grid its polls keep, with a clock that moves only when told."""

from __future__ import annotations

import pytest

from executors import base
from executors.base import DeadlineExceeded, poll_until


class FakeClock:
    """time.monotonic and time.sleep for poll_until: sleeping moves the clock, nothing
    else does unless a test says a call took time."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.now += seconds


@pytest.fixture
def clock(monkeypatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(base, "time", fake)
    return fake


def polls(clock: FakeClock, *, done_after: int, took: list[float] | None = None):
    """A condition that is done at its `done_after`-th call, noting when each call began;
    call n takes took[n] seconds."""
    began: list[float] = []

    def condition() -> tuple[bool, str]:
        began.append(round(clock.now - 1000.0, 6))
        if took and len(began) <= len(took):
            clock.now += took[len(began) - 1]
        return len(began) >= done_after, f"poll {len(began)}"

    return condition, began


def test_polls_keep_a_grid_from_the_change_whatever_came_between(clock) -> None:
    # The change was made 0.1 s before the wait began; each poll takes 0.03 s.
    condition, began = polls(clock, done_after=4, took=[0.03] * 4)

    poll_until(condition, deadline=1010.0, log=lambda _: None, interval=0.25, what="x", since=999.9)

    assert began == [0.0, 0.15, 0.4, 0.65]


def test_without_a_change_instant_the_grid_starts_at_the_first_poll(clock) -> None:
    condition, began = polls(clock, done_after=3, took=[0.05] * 3)

    poll_until(condition, deadline=1010.0, log=lambda _: None, interval=0.25, what="x")

    assert began == [0.0, 0.25, 0.5]


def test_a_poll_that_overruns_its_slot_is_followed_at_the_next_slot(clock) -> None:
    condition, began = polls(clock, done_after=3, took=[0.3, 0.01, 0.01])

    poll_until(condition, deadline=1010.0, log=lambda _: None, interval=0.25, what="x")

    assert began == [0.0, 0.5, 0.75]


def test_the_last_poll_is_at_the_deadline_then_the_wait_ends(clock) -> None:
    condition, began = polls(clock, done_after=100)

    with pytest.raises(DeadlineExceeded, match="last state: poll 4"):
        poll_until(condition, deadline=1000.6, log=lambda _: None, interval=0.25, what="x")

    assert began == [0.0, 0.25, 0.5, 0.6]
