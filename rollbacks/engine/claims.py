"""Claiming steps: which worker executes a step, and fencing out any other.

A pending step of a running run is claimed with a conditional UPDATE (a second delivery
finds nothing to claim); a running step whose worker stopped beating is taken over. Either
way the claim gets a fresh token, and every later write to the step's row goes through
`Claim.update`, which writes only while the row still carries that token: a worker presumed
dead that comes back cannot overwrite its successor's record.
"""

from __future__ import annotations

import os
import re
import socket
import uuid
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import connection, transaction
from django.db.models import (
    Case,
    CharField,
    DateTimeField,
    ExpressionWrapper,
    F,
    Field,
    Q,
    Value,
    When,
)
from django.db.models.functions import MD5, Cast, Coalesce, Concat
from django.utils import timezone

from incidents.models import TimelineEntry, TimelineKind
from incidents.timeline import timeline_append, timeline_append_all
from rollbacks import conf
from rollbacks.engine.entries import ENGINE_ACTOR, describe_step, step_payload
from rollbacks.models import Run, RunState, Step, StepState


def worker_name() -> str:
    """Who is executing: host and process id."""
    return f"{socket.gethostname()}:{os.getpid()}"


class OwnershipLost(Exception):
    """Another worker took the step over; this one must stop writing."""


@dataclass(frozen=True)
class Claim:
    """A worker's hold on a running step: the step as claimed, and the token that fences
    its writes. `resumed` when taken over from a worker that stopped beating."""

    step: Step
    token: str
    resumed: bool
    apply_marked: bool = False  # the claim itself recorded apply_started_at

    def update(self, **fields: Any) -> None:
        """Write `fields` to the step's row, and onto `step`, while this claim holds it;
        raise OwnershipLost (writing nothing) once another worker has taken it over."""
        owned = Step.objects.filter(
            pk=self.step.pk, claim_token=self.token, state=StepState.RUNNING
        )
        if owned.update(**fields) != 1:
            raise OwnershipLost()
        for name, value in fields.items():
            setattr(self.step, name, value)


def update_claimed(updates: Sequence[tuple[Claim, Mapping[str, Any]]]) -> set[int]:
    """Claim.update for several steps at once, in the caller's transaction: each claim's
    fields are written to its step's row (and onto its `step`) while that claim holds it.
    Returns the ids of the steps written; a step another worker took over is left as it is.

    However many steps: one statement locks their rows in id order (as every transaction
    that locks several steps does, so none deadlock), and one UPDATE per distinct set of
    field names writes them. A statement per step cost a group's shared write more CPU, in
    the worker and in PostgreSQL, than everything else it writes; the lock is plain SQL, as
    building it with the ORM cost more CPU than PostgreSQL took to run it."""
    if not updates:
        return set()
    if not all(fields for _, fields in updates):
        raise ValueError("update_claimed: every claim needs a field to write")
    ids = sorted(claim.step.pk for claim, _ in updates)
    by_names: dict[tuple[str, ...], list[tuple[Claim, Mapping[str, Any]]]] = defaultdict(list)
    for claim, fields in updates:
        by_names[tuple(sorted(fields))].append((claim, fields))
    _lock_in_id_order(ids)
    written: set[int] = set()
    for names, same in by_names.items():
        written |= _update_fenced(names, same)
    for claim, fields in updates:
        if claim.step.pk in written:
            for name, value in fields.items():
                setattr(claim.step, name, value)
    return written


def _lock_in_id_order(ids: list[int]) -> None:
    """Lock the steps' rows of `ids`, in id order, until the transaction ends."""
    table, pk = connection.ops.quote_name(Step._meta.db_table), connection.ops.quote_name("id")
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {pk} FROM {table} WHERE {pk} = ANY(%s::bigint[]) "
            f"ORDER BY {pk} FOR NO KEY UPDATE",
            [ids],
        )
        cursor.fetchall()


def _column(name: str) -> tuple[Field[Any, Any], str, str]:
    """The step's field `name`, its column, and the column's type without a length."""
    found = Step._meta.get_field(name)
    kind = found.db_type(connection) if isinstance(found, Field) else None
    if not isinstance(found, Field) or found.column is None or kind is None:
        raise ValueError(f"update_claimed: {name} is not a column of the step")
    return found, found.column, re.sub(r"\(.*\)$", "", kind)


def _update_fenced(
    names: tuple[str, ...], updates: list[tuple[Claim, Mapping[str, Any]]]
) -> set[int]:
    """One UPDATE … FROM (VALUES …) writing `names` of each claimed row it still holds."""
    quote = connection.ops.quote_name
    columns = [_column(name) for name in names]
    # Each value is cast to its column's type without a length: a value too long for its
    # column fails the statement, as an UPDATE of the column itself would.
    row = "(%s::bigint, %s::text" + "".join(f", %s::{kind}" for _, _, kind in columns) + ")"
    params: list[Any] = []
    for claim, values in updates:
        params += [claim.step.pk, claim.token]
        params += [
            field.get_db_prep_save(values[field.name], connection) for field, _, _ in columns
        ]
    aliases = ", ".join(f"c{number}" for number in range(len(columns)))
    assignments = ", ".join(
        f"{quote(column)} = v.c{number}" for number, (_, column, _) in enumerate(columns)
    )
    table = quote(Step._meta.db_table)
    sql = (
        f"UPDATE {table} AS s SET {assignments} "
        f"FROM (VALUES {', '.join([row] * len(updates))}) AS v(step_id, token, {aliases}) "
        f"WHERE s.{quote('id')} = v.step_id AND s.{quote('claim_token')} = v.token "
        f"AND s.{quote('state')} = %s RETURNING s.{quote('id')}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, StepState.RUNNING])
        return {step_id for (step_id,) in cursor.fetchall()}


def claim_step(step_id: int, worker: str) -> Claim | None:
    """Claim a pending step of a running run, or take over a running step whose worker
    stopped beating; None when there is nothing to claim (already done, or alive)."""
    claims = claim_pending([step_id], worker)
    return claims[0] if claims else take_over(step_id, worker)


def claim_pending(step_ids: Iterable[int], worker: str, *, mark_apply: bool = False) -> list[Claim]:
    """Claim every step of `step_ids` that is pending in a running run, in one transaction
    that also writes each claimed step's "started" entry. Steps already claimed, finished,
    or pending in a paused or ended run are left as they are.

    `mark_apply` also records `apply_started_at` for the steps that will apply (not yet
    applied nor begun, not a dry run, deadline ahead), for a caller that hands them to
    threads at once: the threads then reach the infrastructure without a database write
    first. A worker dying between this commit and a thread's apply leaves the step
    looking as if an apply may have begun, the cautious reading (see StepExecution)."""
    now = timezone.now()
    with transaction.atomic():
        claimable = _lock_claimable(step_ids)
        if not claimable:
            return []
        claimed = [step_id for step_id, _ in claimable]
        applying = [step_id for step_id, dry_run in claimable if not dry_run] if mark_apply else []
        _mark_running(claimed, worker, now, applying=applying)
        steps = _load_claimed(claimed)
        timeline_append_all([_started_entry(step, worker) for step in steps])
    return [
        Claim(
            step,
            step.claim_token,
            resumed=False,
            apply_marked=mark_apply and step.apply_started_at == now and step.applied_at is None,
        )
        for step in steps
    ]


def _lock_claimable(step_ids: Iterable[int]) -> list[tuple[int, bool]]:
    """Lock the steps of `step_ids` that are pending in a running run (the steps' rows
    only); return their ids, each with whether its run is a dry run."""
    # Locked in id order, so two deliveries of overlapping batches cannot deadlock.
    # When they race, FOR NO KEY UPDATE waits for the first to commit and re-checks
    # `state = pending` on the row it committed: the second finds nothing to claim.
    return list(
        Step.objects.select_for_update(no_key=True, of=("self",))
        .filter(pk__in=list(step_ids), state=StepState.PENDING, run__state=RunState.RUNNING)
        .order_by("pk")
        .values_list("pk", "run__dry_run")
    )


def _mark_running(step_ids: list[int], worker: str, now: datetime, *, applying: list[int]) -> None:
    """Mark the locked steps running: a new attempt, its deadline, its claim token; and
    record the apply's start for those of `applying` that will apply (not yet applied nor
    begun, their deadline ahead), in the same UPDATE."""
    batch = uuid.uuid4().hex
    deadline = Coalesce(
        F("deadline"),
        ExpressionWrapper(
            Value(now) + F("timeout_seconds") * Value(timedelta(seconds=1)),
            output_field=DateTimeField(),
        ),
    )
    will_apply = Q(pk__in=applying, applied_at__isnull=True, apply_started_at__isnull=True) & (
        Q(deadline__isnull=True) | Q(deadline__gt=now)
    )
    Step.objects.filter(pk__in=step_ids).update(
        state=StepState.RUNNING,
        attempts=F("attempts") + 1,
        started_at=Coalesce(F("started_at"), Value(now)),
        # Automatic retries keep the deadline the first attempt set.
        deadline=deadline,
        apply_started_at=Case(When(will_apply, then=Value(now)), default=F("apply_started_at")),
        heartbeat_at=now,
        # One token per step: the batch's random part, told apart by the step's id.
        claim_token=MD5(Concat(Value(batch), Cast("id", output_field=CharField()))),
        worker=worker,
        error="",
        error_retryable=False,
    )


def _load_claimed(step_ids: list[int]) -> list[Step]:
    """The claimed steps as they are now, with their service, run and incident."""
    steps = list(
        Step.objects.select_related("service").filter(pk__in=step_ids).order_by("group", "position")
    )
    # A batch's steps share their run and incident: one copy of each, not one per step.
    runs = Run.objects.select_related("incident").in_bulk({step.run_id for step in steps})
    for step in steps:
        step.run = runs[step.run_id]
    return steps


def _started_entry(step: Step, worker: str) -> TimelineEntry:
    return TimelineEntry(
        incident=step.run.incident,
        kind=TimelineKind.STEP_STARTED,
        body=f"Run #{step.run_id} {describe_step(step)} started: "
        f"{step.from_version or '?'} → {step.target_label}"
        + (f" (attempt {step.attempts})" if step.attempts > 1 else ""),
        actor_label=ENGINE_ACTOR,
        payload=step_payload(step, worker=worker),
    )


def take_over(step_id: int, worker: str) -> Claim | None:
    """Claim a running step whose worker stopped beating; None when it is alive, done or
    gone."""
    token = uuid.uuid4().hex
    now = timezone.now()
    previous_worker = (
        Step.objects.filter(pk=step_id, state=StepState.RUNNING)
        .values_list("worker", flat=True)
        .first()
    )
    if previous_worker is None:
        return None  # finished, pending in a paused run, or gone
    cutoff = now - timedelta(seconds=conf.stale_after_seconds())
    with transaction.atomic():
        taken = Step.objects.filter(
            pk=step_id, state=StepState.RUNNING, heartbeat_at__lt=cutoff
        ).update(heartbeat_at=now, claim_token=token, worker=worker)
        if taken != 1:
            return None
        step = Step.objects.select_related("run", "run__incident", "service").get(pk=step_id)
        timeline_append(
            incident=step.run.incident,
            kind=TimelineKind.STEP_OUTPUT,
            body=f"Run #{step.run_id} {describe_step(step)} taken over by {worker}: "
            f"{previous_worker or 'its worker'} stopped responding"
            + (" after applying; waiting for the change to settle" if step.applied_at else ""),
            actor_label=ENGINE_ACTOR,
            payload=step_payload(step, worker=worker, previous_worker=previous_worker),
        )
        return Claim(step, token, resumed=True)
