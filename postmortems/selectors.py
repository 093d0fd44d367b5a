"""Read-side queries: the facts of one post-mortem report, gathered once for the page and
every export, and the recovery figures across incidents for the metrics page."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from statistics import mean

from django.db.models import Count, Prefetch, Q, QuerySet
from django.utils import timezone

from incidents import selectors as incident_selectors
from incidents.models import (
    INCIDENT_INSTANTS,
    PHASE_TARGETS,
    BackendKind,
    Incident,
    Service,
    Severity,
    TimelineKind,
)
from postmortems.models import ActionItem, Postmortem, PostmortemState, TimelineFilter
from rollbacks.models import STEP_FINISHED_STATES, RunState, Step, StepState

PHASE_LABELS: dict[str, str] = {
    "time_to_detect": "Time to detect",
    "time_to_decide": "Time to decide",
    "time_to_rollback": "Time to roll back",
    "time_to_verify": "Time to verify",
    "total_recovery": "Total recovery",
}

INSTANT_LABELS: dict[str, str] = {
    "started_at": "Impact started",
    "detected_at": "Detected",
    "decided_at": "Decision made",
    "rollback_started_at": "Rollback started",
    "restored_at": "Service restored",
    "verified_at": "Recovery verified",
    "resolved_at": "Resolved",
}

_KIND_LABELS = dict(TimelineKind.choices)


def _between(start: datetime | None, end: datetime | None) -> timedelta | None:
    return None if start is None or end is None else end - start


@dataclass(frozen=True)
class TimelineRow:
    id: int
    at: datetime
    kind: str
    who: str
    body: str
    starred: bool

    @property
    def kind_label(self) -> str:
        return _KIND_LABELS.get(self.kind, self.kind)


@dataclass(frozen=True)
class PhaseMetric:
    name: str
    label: str
    value: timedelta | None
    target: timedelta

    @property
    def met(self) -> bool | None:
        return None if self.value is None else self.value <= self.target


@dataclass(frozen=True)
class StepTiming:
    """A step's instants and the spans between them."""

    position: int
    group: int
    service: str
    backend: str
    from_version: str
    target: str
    state: str
    attempts: int
    enqueued_at: datetime | None
    started_at: datetime | None
    applied_at: datetime | None
    finished_at: datetime | None
    error: str

    @property
    def queued(self) -> timedelta | None:
        """Enqueued until a worker claimed it."""
        return _between(self.enqueued_at, self.started_at)

    @property
    def applying(self) -> timedelta | None:
        """Claimed until the backend's change was applied."""
        return _between(self.started_at, self.applied_at)

    @property
    def settling(self) -> timedelta | None:
        """Applied until done: waiting for the rollout and running the checks."""
        return _between(self.applied_at, self.finished_at)

    @property
    def total(self) -> timedelta | None:
        return _between(self.started_at, self.finished_at)


@dataclass(frozen=True)
class RunReport:
    id: int
    state: str
    drill: bool
    dry_run: bool
    reason: str
    confirmed_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    failure_reason: str
    steps: list[StepTiming]

    @property
    def duration(self) -> timedelta | None:
        return _between(self.started_at, self.finished_at)

    @property
    def target(self) -> timedelta:
        return PHASE_TARGETS["time_to_rollback"]

    @property
    def met(self) -> bool | None:
        duration = self.duration
        return None if duration is None else duration <= self.target

    @property
    def state_label(self) -> str:
        return RunState(self.state).label


@dataclass(frozen=True)
class ActionItemRow:
    id: int
    title: str
    owner: str
    due_on: date | None
    done_at: datetime | None
    done_by: str
    ticket_url: str
    overdue: bool

    @property
    def done(self) -> bool:
        return self.done_at is not None


@dataclass(frozen=True)
class PostmortemReport:
    """Everything one post-mortem report says, read once; the page and the Markdown, PDF
    and JSON exports are renderings of it."""

    generated_at: datetime
    incident: Incident
    services: list[Service]
    postmortem: Postmortem | None
    instants: list[tuple[str, str, datetime | None]]
    metrics: list[PhaseMetric]
    timeline_filter: str
    timeline_total: int
    starred_total: int
    timeline: list[TimelineRow]
    action_items: list[ActionItemRow]
    runs: list[RunReport]

    @property
    def kind(self) -> str:
        """ "drill" when every run of the incident was a drill, else "postmortem"."""
        if self.runs and all(run.drill for run in self.runs):
            return "drill"
        return "postmortem"

    @property
    def title(self) -> str:
        heading = "Drill report" if self.kind == "drill" else "Post-mortem"
        return f"{heading}: #{self.incident.pk} {self.incident.title}"

    @property
    def state(self) -> str:
        return self.postmortem.state if self.postmortem else "not_started"

    @property
    def state_label(self) -> str:
        if self.postmortem is None:
            return "Not started"
        return PostmortemState(self.postmortem.state).label

    @property
    def duration(self) -> timedelta | None:
        """Impact start to resolution."""
        return _between(self.incident.started_at, self.incident.resolved_at)

    @property
    def open_action_items(self) -> int:
        return sum(1 for item in self.action_items if not item.done)


def _who(username: str | None, label: str) -> str:
    return username or label or "system"


def postmortem_report(incident_id: int, *, timeline: str | None = None) -> PostmortemReport:
    """Gather one incident's report in a constant number of queries.

    `timeline` is "all" or "starred"; by default the post-mortem's own choice (all before
    a post-mortem exists). Entries come in the incident room's order.
    """
    incident = Incident.objects.select_related("commander").get(pk=incident_id)
    services = list(incident.services.order_by("name"))
    postmortem = (
        Postmortem.objects.select_related("created_by", "published_by")
        .filter(incident=incident)
        .first()
    )
    chosen = timeline or (postmortem.timeline_filter if postmortem else TimelineFilter.ALL)
    if chosen not in TimelineFilter.values:
        raise ValueError(f"timeline must be one of {', '.join(TimelineFilter.values)}")
    starred: set[int] = set()
    if postmortem is not None:
        starred = set(postmortem.stars.values_list("entry_id", flat=True))
    entries = incident_selectors.incident_timeline(incident)
    rows = [
        TimelineRow(
            id=entry_id,
            at=at,
            kind=kind,
            who=_who(username, actor_label),
            body=body,
            starred=entry_id in starred,
        )
        for entry_id, at, kind, username, actor_label, body in entries.values_list(
            "id", "created_at", "kind", "actor__username", "actor_label", "body"
        )
    ]
    total = len(rows)
    if chosen == TimelineFilter.STARRED:
        rows = [row for row in rows if row.starred]
    action_items = []
    if postmortem is not None:
        today = timezone.localdate()
        for item in postmortem.action_items.select_related("owner", "done_by"):
            action_items.append(
                ActionItemRow(
                    id=item.pk,
                    title=item.title,
                    owner=item.owner.get_username() if item.owner else "",
                    due_on=item.due_on,
                    done_at=item.done_at,
                    done_by=item.done_by.get_username() if item.done_by else "",
                    ticket_url=item.ticket_url,
                    overdue=item.is_overdue(today),
                )
            )
    return PostmortemReport(
        generated_at=timezone.now(),
        incident=incident,
        services=services,
        postmortem=postmortem,
        instants=[
            (name, INSTANT_LABELS[name], getattr(incident, name)) for name in INCIDENT_INSTANTS
        ],
        metrics=[
            PhaseMetric(name, label, getattr(incident, name), PHASE_TARGETS[name])
            for name, label in PHASE_LABELS.items()
        ],
        timeline_filter=chosen,
        timeline_total=total,
        starred_total=len(starred),
        timeline=rows,
        action_items=action_items,
        runs=_run_reports(incident),
    )


def _run_reports(incident: Incident) -> list[RunReport]:
    """Runs that were started (drafts never ran), oldest first, with each step's timing."""
    steps = Step.objects.select_related("service").order_by("position")
    runs = (
        incident.runs.filter(started_at__isnull=False)
        .prefetch_related(Prefetch("steps", queryset=steps))
        .order_by("started_at", "id")
    )
    return [
        RunReport(
            id=run.pk,
            state=run.state,
            drill=run.drill,
            dry_run=run.dry_run,
            reason=run.reason,
            confirmed_at=run.confirmed_at,
            started_at=run.started_at,
            finished_at=run.finished_at,
            failure_reason=run.failure_reason,
            steps=[
                StepTiming(
                    position=step.position,
                    group=step.group,
                    service=step.service.name,
                    backend=step.backend,
                    from_version=step.from_version,
                    target=step.target_label,
                    state=step.state,
                    attempts=step.attempts,
                    enqueued_at=step.enqueued_at,
                    started_at=step.started_at,
                    applied_at=step.applied_at,
                    finished_at=step.finished_at,
                    error=step.error,
                )
                for step in run.steps.all()
            ],
        )
        for run in runs
    ]


# -- across incidents ----------------------------------------------------------------------


@dataclass(frozen=True)
class PhaseAverages:
    """Mean of each recovery phase over a group of incidents (None where no incident of the
    group has that phase), with how many incidents the group holds."""

    group: str
    incidents: int
    means: dict[str, timedelta | None]


@dataclass(frozen=True)
class TrendPoint:
    incident_id: int
    title: str
    severity: str
    detected_at: datetime
    total_recovery: timedelta


@dataclass
class RecoveryOverview:
    since: datetime | None
    environment: str
    incidents: int
    trend: list[TrendPoint]
    by_severity: list[PhaseAverages]
    by_service: list[PhaseAverages]
    # backend kind → step outcome → count, for rollbacks (not drills, not dry runs)
    rollbacks: dict[str, dict[str, int]] = field(default_factory=dict)
    rto_met: int = 0
    rto_missed: int = 0

    @property
    def not_restored(self) -> int:
        return self.incidents - self.rto_met - self.rto_missed

    @property
    def rollback_rows(self) -> list[tuple[str, dict[str, int]]]:
        """(backend label, outcome counts) for the page's table."""
        return [(BackendKind(kind).label, counts) for kind, counts in self.rollbacks.items()]


def _averages(group: str, incidents: Iterable[Incident]) -> PhaseAverages:
    chosen = list(incidents)
    means: dict[str, timedelta | None] = {}
    for phase in PHASE_LABELS:
        values = [
            span.total_seconds() for span in (getattr(i, phase) for i in chosen) if span is not None
        ]
        means[phase] = timedelta(seconds=mean(values)) if values else None
    return PhaseAverages(group=group, incidents=len(chosen), means=means)


OUTCOMES: tuple[str, ...] = (
    StepState.SUCCEEDED,
    StepState.FAILED,
    StepState.SKIPPED,
    StepState.CANCELLED,
)


def recovery_overview(*, since: datetime | None = None, environment: str = "") -> RecoveryOverview:
    """Recovery figures over the incidents detected since `since` (all when None), in one
    environment or all: the total-recovery trend, phase means by severity and by service,
    and finished rollback steps by backend and outcome. Four queries."""
    incidents_qs: QuerySet[Incident] = Incident.objects.prefetch_related("services").order_by(
        "detected_at", "id"
    )
    if since is not None:
        incidents_qs = incidents_qs.filter(detected_at__gte=since)
    if environment:
        incidents_qs = incidents_qs.filter(environment=environment)
    incidents = list(incidents_qs)

    trend = [
        TrendPoint(i.pk, i.title, i.severity, i.detected_at, i.total_recovery)
        for i in incidents
        if i.total_recovery is not None
    ]
    by_severity = [
        _averages(severity, [i for i in incidents if i.severity == severity])
        for severity in Severity.values
    ]
    per_service: dict[str, list[Incident]] = defaultdict(list)
    for incident in incidents:
        for service in incident.services.all():
            per_service[service.name].append(incident)
    by_service = [_averages(name, group) for name, group in sorted(per_service.items())]

    steps = Step.objects.filter(
        run__incident__in=incidents_qs.values("pk"),
        run__drill=False,
        run__dry_run=False,
        state__in=STEP_FINISHED_STATES,
    )
    rollbacks: dict[str, dict[str, int]] = {}
    for row in steps.values("backend", "state").annotate(count=Count("id")).order_by("backend"):
        rollbacks.setdefault(row["backend"], dict.fromkeys(OUTCOMES, 0))[row["state"]] = row[
            "count"
        ]
    met = [i.rto_met for i in incidents if i.rto_met is not None]
    return RecoveryOverview(
        since=since,
        environment=environment,
        incidents=len(incidents),
        trend=trend,
        by_severity=by_severity,
        by_service=by_service,
        rollbacks=dict(sorted(rollbacks.items(), key=lambda kv: BackendKind(kv[0]).label)),
        rto_met=sum(1 for value in met if value),
        rto_missed=sum(1 for value in met if not value),
    )


def action_items_open() -> QuerySet[ActionItem]:
    """Every action item not yet closed, overdue and soonest due first."""
    return (
        ActionItem.objects.filter(done_at__isnull=True)
        .select_related("owner", "postmortem__incident")
        .order_by("due_on", "created_at", "id")
    )


def postmortems_recent() -> QuerySet[Postmortem]:
    """Post-mortems with their incident and how many action items are still open."""
    return (
        Postmortem.objects.select_related("incident")
        .annotate(open_items=Count("action_items", filter=Q(action_items__done_at__isnull=True)))
        .order_by("-updated_at", "-id")
    )
