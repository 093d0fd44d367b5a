"""The recovery clock and the recovery figures.

The recovery clock measures the time since the incident was detected against its RTO;
`recovery_phases` is the incident's recovery metrics with the phase under way ticking.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from django.conf import settings
from django.utils import timezone

from incidents.models import Incident

ClockState = Literal["within", "close", "over"]


@dataclass(frozen=True)
class RecoveryClock:
    """Time since detection (or since the incident was opened) against the RTO."""

    since: datetime
    since_label: str  # "detection" or "opening"
    stopped_at: datetime | None  # when the clock stopped: service restored, or resolved
    stopped_label: str
    now: datetime
    elapsed: timedelta
    rto: timedelta
    close_after: timedelta
    state: ClockState

    @property
    def remaining(self) -> timedelta:
        """Time left before the RTO; negative once over it."""
        return self.rto - self.elapsed

    @property
    def overrun(self) -> timedelta:
        return -self.remaining

    @property
    def running(self) -> bool:
        return self.stopped_at is None

    @property
    def state_label(self) -> str:
        return CLOCK_STATE_LABELS[self.state]


CLOCK_STATE_LABELS: dict[ClockState, str] = {
    "within": "within RTO",
    "close": "close to RTO",
    "over": "over RTO",
}


def clock_state(elapsed: timedelta, rto: timedelta, close_after: timedelta) -> ClockState:
    """Over once past the RTO (exactly the RTO still meets it), close from `close_after`."""
    if elapsed > rto:
        return "over"
    if elapsed >= close_after:
        return "close"
    return "within"


def recovery_clock(incident: Incident, *, now: datetime | None = None) -> RecoveryClock:
    """The clock for `incident` at `now`. It runs from the detected instant (the opening
    instant when none was recorded) until service is restored, or the incident resolved."""
    now = now or timezone.now()
    if incident.detected_at is not None:
        since, since_label = incident.detected_at, "detection"
    else:
        since, since_label = incident.created_at, "opening"
    if incident.restored_at is not None:
        stopped_at, stopped_label = incident.restored_at, "service restored"
    elif incident.resolved_at is not None:
        stopped_at, stopped_label = incident.resolved_at, "resolved"
    else:
        stopped_at, stopped_label = None, ""
    elapsed = max((stopped_at or now) - since, timedelta(0))
    share = float(settings.RECOVERY_CLOCK_CLOSE_SHARE)
    close_after = incident.rto * share
    return RecoveryClock(
        since=since,
        since_label=since_label,
        stopped_at=stopped_at,
        stopped_label=stopped_label,
        now=now,
        elapsed=elapsed,
        rto=incident.rto,
        close_after=close_after,
        state=clock_state(elapsed, incident.rto, close_after),
    )


# Where each recovery phase starts, so the phase under way can tick in the page.
_PHASE_STARTS = {
    "time_to_detect": "started_at",
    "time_to_decide": "detected_at",
    "time_to_rollback": "rollback_started_at",
    "time_to_verify": "restored_at",
    "total_recovery": "started_at",
}


def recovery_phases(incident: Incident, *, now: datetime | None = None) -> list[dict[str, Any]]:
    """The incident's recovery metrics with their targets; a phase that has begun but not
    ended carries `running_since` and its `running` duration so far."""
    now = now or timezone.now()
    rows = []
    for row in incident.recovery_metrics():
        began = getattr(incident, _PHASE_STARTS[row["name"]])
        running = row["value"] is None and began is not None and incident.is_open
        rows.append(
            row
            | {
                "running_since": began if running else None,
                "running": max(now - began, timedelta(0)) if running else None,
            }
        )
    return rows
