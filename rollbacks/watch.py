"""The watch after a rollback: once a run has succeeded, the verification checks of the
services it rolled back run again at intervals for a while, as the runbooks' monitoring
windows ask (every minute for 15 minutes, then every 15 minutes until an hour:
ROLLBACK_WATCH_SCHEDULE, "60s@15m,15m@1h").

- It starts when a run succeeds (run_finished, after commit) and its services have checks;
  a dry run has nothing to watch.
- A Celery beat task (`rollbacks.tasks.watches_sweep`, every ROLLBACK_WATCH_SWEEP_SECONDS)
  runs the checks of each watch that is due, claiming one watch at a time, so two beats
  never run a round twice; a round that outlives its claim is not recorded, and one that
  raises does not stop the others.
- A watch ends early (on the timeline) when its incident is resolved or a later run of
  the incident starts on the same services.
- A round where a check fails (or cannot give an answer) marks the watch regressed: a
  timeline entry names the checks, and the incident's commander is e-mailed. A watch that
  reaches its end with every round passing is marked held. Both are on the timeline; the
  rounds in between only update the watch, so the timeline is not a tick per minute.
- The room's rollback panel shows the watch: its state, rounds, the next check and the end.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Sequence
from datetime import datetime, timedelta

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.utils import timezone

from executors.base import CheckStatus
from executors.checks import run_check
from executors.url_credentials import mask_url_credentials
from incidents.models import TimelineKind
from incidents.timeline import timeline_append
from rollbacks import conf
from rollbacks.models import Run, RunState, RunWatch, WatchState
from rollbacks.verification import planned_checks

logger = logging.getLogger(__name__)

ACTOR = "watch"
UNITS = {"s": 1, "m": 60, "h": 3600}
PHASE = re.compile(r"^\s*(\d+)([smh])\s*@\s*(\d+)([smh])\s*$")
# A claimed round not finished by then is taken again.
CLAIM = timedelta(minutes=5)


def schedule(text: str | None = None) -> list[tuple[int, int]]:
    """ROLLBACK_WATCH_SCHEDULE as (every seconds, until seconds after the start) phases."""
    phases: list[tuple[int, int]] = []
    for part in (text if text is not None else settings.ROLLBACK_WATCH_SCHEDULE).split(","):
        found = PHASE.match(part)
        if not found:
            raise ValueError(f"ROLLBACK_WATCH_SCHEDULE: {part!r} is not EVERY@UNTIL, e.g. 60s@15m")
        every = int(found[1]) * UNITS[found[2]]
        until = int(found[3]) * UNITS[found[4]]
        if every < 1 or (phases and until <= phases[-1][1]) or until < every:
            raise ValueError(f"ROLLBACK_WATCH_SCHEDULE: {part!r} does not follow on")
        phases.append((every, until))
    return phases


def describe(phases: Sequence[tuple[int, int]]) -> str:
    def span(seconds: int) -> str:
        return (
            f"{seconds // 3600} h"
            if seconds % 3600 == 0
            else (f"{seconds // 60} min" if seconds % 60 == 0 else f"{seconds} s")
        )

    return ", then ".join(f"every {span(every)} until {span(until)}" for every, until in phases)


def next_check(watch: RunWatch, after: datetime) -> datetime:
    since = (after - watch.started_at).total_seconds()
    for every, until in schedule():
        if since < until:
            return min(after + timedelta(seconds=every), watch.ends_at)
    return watch.ends_at


def watch_start(run_id: int, **kwargs: object) -> RunWatch | None:
    """A run_finished receiver: start watching a run that succeeded and has checks."""
    run = Run.objects.select_related("incident").filter(pk=run_id).first()
    if run is None or run.state != RunState.SUCCEEDED or run.dry_run:
        return None
    steps = list(run.steps.select_related("service"))
    if not planned_checks(run, steps):
        return None
    phases = schedule()
    now = timezone.now()
    with transaction.atomic():
        watch, created = RunWatch.objects.get_or_create(
            run=run,
            defaults={
                "started_at": now,
                "ends_at": now + timedelta(seconds=phases[-1][1]),
                "next_check_at": now + timedelta(seconds=phases[0][0]),
            },
        )
        if created:
            timeline_append(
                incident=run.incident,
                kind=TimelineKind.CHECK_RESULT,
                body=f"Watching run #{run.pk}: its checks run again {describe(phases)}.",
                actor_label=ACTOR,
                payload={"run": run.pk, "watch": "started", "ends_at": watch.ends_at.isoformat()},
            )
    return watch


def claim_next(now: datetime) -> tuple[int, datetime] | None:
    """Claim the watch most overdue for a round: (its id, the claim), or None. The claim is
    the instant it lapses; a round records its outcome only while its claim stands."""
    with transaction.atomic():
        watch = (
            RunWatch.objects.select_for_update(skip_locked=True)
            .filter(state=WatchState.WATCHING, next_check_at__lte=now)
            .exclude(claimed_until__gt=now)
            .order_by("next_check_at")
            .first()
        )
        if watch is None:
            return None
        claim = now + CLAIM
        RunWatch.objects.filter(pk=watch.pk).update(claimed_until=claim)
    return watch.pk, claim


def watch_end(watch: RunWatch, why: str) -> bool:
    """End a watch that is still watching, with `why` on the timeline; False if it was not."""
    with transaction.atomic():
        locked = (
            RunWatch.objects.select_for_update().select_related("run__incident").get(pk=watch.pk)
        )
        if locked.state != WatchState.WATCHING:
            return False
        locked.state, locked.claimed_until = WatchState.ENDED, None
        locked.last_summary = why[:500]
        locked.save(update_fields=["state", "claimed_until", "last_summary"])
        timeline_append(
            incident=locked.run.incident,
            kind=TimelineKind.CHECK_RESULT,
            body=f"Watch of run #{locked.run_id} ended after {locked.rounds} rounds: {why}"[:5000],
            actor_label=ACTOR,
            payload={"run": locked.run_id, "watch": "ended"},
        )
    return True


def watches_end_for(run_id: int, **kwargs: object) -> int:
    """A run_started receiver: a new run on the incident ends the watches of its earlier
    runs over the same services (what they watched is being changed again)."""
    run = Run.objects.filter(pk=run_id).first()
    if run is None:
        return 0
    services = run.steps.values("service")
    earlier = RunWatch.objects.filter(
        state=WatchState.WATCHING, run__incident=run.incident_id, run__steps__service__in=services
    ).exclude(run=run)
    return sum(
        watch_end(watch, f"run #{run.pk} started on the same services")
        for watch in earlier.distinct()
    )


def watch_round(watch_id: int, claim: datetime | None = None) -> str:
    """Run one round of a watch's checks and record it (while `claim`, if given, is still
    the watch's); return the watch's state."""
    watch = RunWatch.objects.select_related("run__incident").get(pk=watch_id)
    run = watch.run
    if not run.incident.is_open:
        watch_end(watch, "the incident was resolved")
        return str(WatchState.ENDED)
    steps = list(run.steps.select_related("service"))
    defaults, connections = conf.verification_defaults(), conf.connections()
    failed: list[str] = []
    for check in planned_checks(run, steps):
        try:
            result = run_check(
                check.spec,
                version=check.version or None,
                connections=connections,
                defaults=defaults,
            )
            status, message = result.status, result.detail
        except Exception as error:  # a check that cannot answer counts against the watch
            status, message = CheckStatus.INCONCLUSIVE, f"could not run: {error!r}"
        if status != CheckStatus.PASSED:
            failed.append(
                mask_url_credentials(f"{check.service} {check.name}: {status} ({message})")[:300]
            )
    now = timezone.now()
    with transaction.atomic():
        locked = RunWatch.objects.select_for_update().get(pk=watch_id)
        if locked.state != WatchState.WATCHING:
            return str(locked.state)
        if claim is not None and locked.claimed_until != claim:
            logger.warning("watch %s: round outlived its claim; not recorded", watch_id)
            return str(locked.state)
        locked.rounds += 1
        locked.last_checked_at = now
        locked.claimed_until = None
        locked.last_summary = ("; ".join(failed) or "every check passed")[:500]
        if failed:
            locked.state = WatchState.REGRESSED
            body = (
                f"Run #{run.pk} regressed during its watch (round {locked.rounds}): "
                + "; ".join(failed)
            )
            timeline_append(
                incident=run.incident,
                kind=TimelineKind.CHECK_RESULT,
                body=body[:5000],
                actor_label=ACTOR,
                payload={"run": run.pk, "watch": "regressed"},
            )
            transaction.on_commit(lambda: page_commander(run, body))
        elif now >= locked.ends_at:
            locked.state = WatchState.PASSED
            timeline_append(
                incident=run.incident,
                kind=TimelineKind.CHECK_RESULT,
                body=f"Run #{run.pk} held through its watch: {locked.rounds} rounds passed.",
                actor_label=ACTOR,
                payload={"run": run.pk, "watch": "held"},
            )
        else:
            locked.next_check_at = next_check(locked, now)
        locked.save()
    return str(locked.state)


def page_commander(run: Run, body: str) -> None:
    commander = run.incident.commander
    address = commander.email if commander is not None else ""
    if not address:
        logger.warning("run %s regressed; its incident's commander has no e-mail", run.pk)
        return
    try:
        send_mail(
            f"[Backout] Incident #{run.incident_id}: run #{run.pk} regressed",
            f"{body}\n\nThe incident: #{run.incident_id} {run.incident.title}",
            settings.COMMS_EMAIL_FROM or settings.DEFAULT_FROM_EMAIL,
            [address],
        )
    except Exception:
        logger.exception("paging the commander of incident %s failed", run.incident_id)


def watches_sweep(budget: float | None = None) -> list[str]:
    """Run the rounds that are due, most overdue first, one claim at a time, for up to
    `budget` seconds (the sweep interval: the next sweep goes on from there). A round that
    raises is logged and its watch tried again once its claim lapses; the rest go on."""
    limit = budget if budget is not None else float(settings.ROLLBACK_WATCH_SWEEP_SECONDS)
    started, states = time.monotonic(), []
    while time.monotonic() - started < limit:
        claimed = claim_next(timezone.now())
        if claimed is None:
            break
        watch_id, claim = claimed
        try:
            states.append(watch_round(watch_id, claim))
        except Exception:
            logger.exception("watch %s: the round failed", watch_id)
            states.append("error")
    return states
