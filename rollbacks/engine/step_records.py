"""What a step records once it holds its claim, through the shared writes: that its apply
is done (`Applied`), and how it ended (`Ending`), each with its row's new values, its log
lines and its timeline entries. Steps of this process that record at the same moment share
one transaction (rollbacks.engine.shared_writes).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.utils import timezone

from executors.base import CheckResult
from incidents.models import TimelineEntry, TimelineKind
from incidents.timeline import announce_log_lines, timeline_append_all
from rollbacks.engine.backends import release_labels
from rollbacks.engine.entries import (
    ENGINE_ACTOR,
    check_json,
    checks_summary,
    describe_step,
    format_duration,
    step_payload,
)
from rollbacks.engine.shared_writes import Pending, SharedWrites, fenced
from rollbacks.models import StepLog, StepState


@dataclass(eq=False)
class Applied(Pending):
    """That a step's apply is done, on its way to the database."""

    detail: str
    facts: dict[str, Any]
    changed: bool

    def entry(self) -> TimelineEntry:
        """The "applied" (or "nothing to change") timeline entry."""
        step = self.execution.step
        what = f"Run #{step.run_id} {describe_step(step)}"
        return TimelineEntry(
            incident=self.execution.incident,
            kind=TimelineKind.STEP_OUTPUT,
            body=f"{what} applied: {self.detail}"
            if self.changed
            else f"{what}: nothing to change ({self.detail})",
            actor_label=ENGINE_ACTOR,
            payload=step_payload(step, phase="applied", changed=self.changed),
        )


@dataclass(eq=False)
class Ending(Pending):
    """A step's outcome on its way to the database."""

    state: str
    reason: str
    checks: list[CheckResult]
    reached: str | None
    retryable: bool
    detail: str
    settled: str
    extra_fields: dict[str, Any]
    asks_for_group: bool = field(default=False, kw_only=True)  # last of its group written

    def reached_pair(self) -> tuple[int, str] | None:
        """The (service id, live value) whose release label the row needs, if any."""
        step = self.execution.step
        if not self.reached or self.reached == step.to_artifact:
            return None
        return (step.service_id, self.reached)

    def fields(self, labels: Mapping[tuple[int, str], str]) -> dict[str, Any]:
        """The step row's new values (`labels`: release_labels of the reached values)."""
        step = self.execution.step
        fields: dict[str, Any] = {
            "state": self.state,
            "finished_at": timezone.now(),
            "heartbeat_at": None,
            "check_results": [check_json(result) for result in self.checks],
            **self.extra_fields,
        }
        if self.state == StepState.FAILED:
            fields["error"] = self.reason
            fields["error_retryable"] = self.retryable
        elif self.state == StepState.CANCELLED:
            fields["skip_reason"] = self.reason
        if self.reached is not None:
            pair = self.reached_pair()
            fields["reached_version"] = (
                labels[pair] if pair is not None else step.to_version if self.reached else ""
            )
        if self.detail:
            fields["apply_detail"] = self.detail
        return fields

    def entries(self) -> list[TimelineEntry]:
        """The timeline entries, once the step holds its new values."""
        step, incident = self.execution.step, self.execution.incident
        entries = []
        if self.checks:
            entries.append(
                TimelineEntry(
                    incident=incident,
                    kind=TimelineKind.CHECK_RESULT,
                    body=f"Run #{step.run_id} {describe_step(step)} checks: "
                    + checks_summary(self.checks),
                    actor_label=ENGINE_ACTOR,
                    payload=step_payload(step, checks=[check_json(r) for r in self.checks]),
                )
            )
        entries.append(
            TimelineEntry(
                incident=incident,
                kind=TimelineKind.STEP_FINISHED,
                body=f"Run #{step.run_id} {describe_step(step)} {self._outcome_text()}",
                actor_label=ENGINE_ACTOR,
                payload=step_payload(step, reason=self.reason, retryable=self.retryable),
            )
        )
        return entries

    def _outcome_text(self) -> str:
        """ "succeeded in 4.2 s, now at v1.2", "failed after 3.0 s: …", "cancelled: …"."""
        step = self.execution.step
        finished, started = step.finished_at, step.started_at
        took = format_duration(finished - started) if finished and started else "?"
        if self.state == StepState.SUCCEEDED:
            if self.detail:
                return f"succeeded in {took}: {self.detail}"
            reached_text = f", now at {step.reached_version}" if step.reached_version else ""
            settled_text = f" ({self.settled})" if self.settled else ""
            return f"succeeded in {took}{reached_text}{settled_text}"
        if self.state == StepState.FAILED:
            retry_text = " (retryable: retry the step)" if self.retryable else ""
            return f"failed after {took}: {self.reason}{retry_text}"
        return f"{self.state}: {self.reason}"


def _store_log_rows(pendings: Iterable[Pending], *, closing: bool) -> None:
    """Several steps' buffered log lines in one INSERT (in the caller's transaction): only
    writers made inside a transaction hand rows over; the others' go to the log flusher."""
    rows: list[StepLog] = []
    for pending in pendings:
        writer = pending.execution.log_writer
        if pending.log_rows is None:  # taken once: a transaction written again reuses them
            pending.log_rows = writer.closing_rows() if closing else writer.take_rows()
        if pending.log_rows:
            rows.extend(pending.log_rows)
            announce_log_lines(writer.incident_id, writer.step_id)
    StepLog.objects.bulk_create(rows)


def write_applied(applied: list[Applied]) -> None:
    """One transaction for several steps' applies."""
    now = timezone.now()
    with transaction.atomic():
        kept = fenced(
            applied,
            lambda item: {
                "applied_at": now,
                "apply_detail": item.detail,
                "apply_facts": _jsonable(item.facts),
            },
        )
        _store_log_rows(kept, closing=False)
        timeline_append_all(by_incident([item.entry() for item in kept]))


def write_endings(endings: list[Ending]) -> None:
    """One transaction for several steps' outcomes."""
    with transaction.atomic():
        labels = release_labels(pair for e in endings if (pair := e.reached_pair()) is not None)
        kept = fenced(endings, lambda ending: ending.fields(labels))
        _store_log_rows(kept, closing=True)
        timeline_append_all(by_incident([entry for e in kept for entry in e.entries()]))
        # Set before the commit, acted on after it (record returns once it is done).
        last_of_group = {(e.execution.step.run_id, e.execution.step.group): e for e in kept}
        for ending in last_of_group.values():
            ending.asks_for_group = True


def by_incident(entries: list[TimelineEntry]) -> list[TimelineEntry]:
    """Entries of several incidents in incident order: their commit takes each incident's
    commit-order lock in the order they were inserted (migration 0006), and two such
    transactions taking them in different orders would deadlock."""
    return sorted(entries, key=lambda entry: entry.incident_id)


def _jsonable(value: Any) -> Any:
    """`value` as JSON can store it: mappings and sequences kept, anything else as text."""
    if isinstance(value, Mapping):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


# This process's shared writes of applies and of outcomes.
applies = SharedWrites(write_applied)
finishes = SharedWrites(write_endings)
os.register_at_fork(after_in_child=applies.forget_parent)
os.register_at_fork(after_in_child=finishes.forget_parent)
