"""The incident domain: services and releases, incidents and their timeline, checklists,
approvals.

Models hold data, invariants and small derived figures. Every change of state goes through
`incidents.services`, which writes the matching timeline entry in the same transaction.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models
from django.utils import timezone


class Environment(models.TextChoices):
    PRODUCTION = "production", "Production"
    STAGING = "staging", "Staging"


class BackendKind(models.TextChoices):
    KUBERNETES = "kubernetes", "Kubernetes Deployment"
    ECS = "ecs", "AWS ECS service"
    STATIC_FRONTEND = "static_frontend", "Static frontend (S3 + CloudFront)"
    DATABASE = "database", "Database (RDS restore)"
    DNS = "dns", "DNS record (Route 53)"
    FEATURE_FLAG = "feature_flag", "Feature flag"
    COMMAND = "command", "Registered command"


slug_validator = RegexValidator(
    r"^[a-z0-9][a-z0-9-]*$",
    "Use lower-case letters, digits and hyphens, starting with a letter or digit.",
)


class Service(models.Model):
    """Something that can be rolled back, through one backend, in one environment."""

    name = models.CharField(max_length=80, validators=[slug_validator])
    environment = models.CharField(
        max_length=20, choices=Environment.choices, default=Environment.PRODUCTION
    )
    description = models.CharField(max_length=200, blank=True)
    backend = models.CharField(max_length=30, choices=BackendKind.choices)
    target_config = models.JSONField(
        default=dict, help_text="Backend target, e.g. {'namespace': 'shop', 'deployment': 'web'}"
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["environment", "name"]
        constraints = [
            models.UniqueConstraint(fields=["name", "environment"], name="service_unique_per_env")
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.environment})"

    def clean(self) -> None:
        from executors.base import ConfigError
        from executors.registry import backend_class

        if not isinstance(self.target_config, dict):
            raise ValidationError({"target_config": "Target config must be a JSON object."})
        try:
            backend_class(self.backend).validate_config(self.target_config)
        except KeyError:
            raise ValidationError({"backend": f"Unknown backend {self.backend!r}."}) from None
        except ConfigError as error:
            raise ValidationError({"target_config": str(error)}) from error


class Release(models.Model):
    """A version of a service and the artifact it points at."""

    service = models.ForeignKey(Service, on_delete=models.PROTECT, related_name="releases")
    version = models.CharField(max_length=100)
    artifact = models.CharField(
        max_length=500,
        help_text="Image, task-definition ARN, S3 prefix, snapshot or migration id, git SHA",
    )
    shipped_at = models.DateTimeField(default=timezone.now)
    notes = models.TextField(blank=True)
    known_good = models.BooleanField(default=False)
    known_good_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
    )
    known_good_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["service", "-shipped_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["service", "version"], name="release_unique_version"),
            models.CheckConstraint(
                condition=models.Q(known_good=False) | models.Q(known_good_at__isnull=False),
                name="release_known_good_has_instant",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.service.name} {self.version}"


class Severity(models.TextChoices):
    P0 = "P0", "P0 — service down, data loss or breach"
    P1 = "P1", "P1 — major feature broken or high error rate"
    P2 = "P2", "P2 — minor feature broken"
    P3 = "P3", "P3 — cosmetic"


class IncidentStatus(models.TextChoices):
    INVESTIGATING = "investigating", "Investigating"
    IDENTIFIED = "identified", "Identified"
    MITIGATING = "mitigating", "Mitigating"
    MONITORING = "monitoring", "Monitoring"
    RESOLVED = "resolved", "Resolved"


# Which status may follow which. Work moves forward; an incident can fall back when a fix
# does not hold, and a resolved incident can be reopened.
STATUS_TRANSITIONS: dict[str, frozenset[str]] = {
    IncidentStatus.INVESTIGATING: frozenset({"identified", "mitigating", "resolved"}),
    IncidentStatus.IDENTIFIED: frozenset({"investigating", "mitigating", "resolved"}),
    IncidentStatus.MITIGATING: frozenset({"identified", "monitoring"}),
    IncidentStatus.MONITORING: frozenset({"mitigating", "investigating", "resolved"}),
    IncidentStatus.RESOLVED: frozenset({"investigating"}),
}

# Per-phase targets from the runbooks.
PHASE_TARGETS: dict[str, timedelta] = {
    "time_to_detect": timedelta(minutes=5),
    "time_to_decide": timedelta(minutes=2),
    "time_to_rollback": timedelta(minutes=10),
    "time_to_verify": timedelta(minutes=5),
    "total_recovery": timedelta(minutes=15),
}

# Instants an incident records, in the order they normally happen.
INCIDENT_INSTANTS: tuple[str, ...] = (
    "started_at",
    "detected_at",
    "decided_at",
    "rollback_started_at",
    "restored_at",
    "verified_at",
    "resolved_at",
)


class Incident(models.Model):
    """A production problem being worked, with its key instants and recovery targets."""

    title = models.CharField(max_length=200)
    severity = models.CharField(max_length=2, choices=Severity.choices)
    status = models.CharField(
        max_length=20, choices=IncidentStatus.choices, default=IncidentStatus.INVESTIGATING
    )
    environment = models.CharField(
        max_length=20, choices=Environment.choices, default=Environment.PRODUCTION
    )
    commander = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="commanded_incidents",
    )
    services = models.ManyToManyField(Service, blank=True, related_name="incidents")
    summary = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    started_at = models.DateTimeField(help_text="When impact began")
    detected_at = models.DateTimeField(help_text="When someone or something noticed")
    decided_at = models.DateTimeField(null=True, blank=True)
    rollback_started_at = models.DateTimeField(null=True, blank=True)
    restored_at = models.DateTimeField(null=True, blank=True)
    verified_at = models.DateTimeField(null=True, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)

    rto = models.DurationField(default=timedelta(minutes=15), help_text="Recovery time objective")
    rpo = models.DurationField(default=timedelta(minutes=5), help_text="Recovery point objective")

    class Meta:
        ordering = ["-detected_at", "-id"]
        permissions = [
            ("command_incident", "Can command incidents: status, plans, instants"),
            ("approve_rollback", "Can approve or reject rollback requests"),
            ("add_note", "Can add notes to an incident timeline"),
            ("tick_checklist", "Can tick and untick checklist items"),
            ("edit_status_page", "Can edit and publish status-page text"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(detected_at__gte=models.F("started_at")),
                name="incident_detected_after_start",
            ),
            models.CheckConstraint(
                condition=models.Q(rto__gt=timedelta(0)) & models.Q(rpo__gte=timedelta(0)),
                name="incident_positive_targets",
            ),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.title}"

    @property
    def is_open(self) -> bool:
        return self.status != IncidentStatus.RESOLVED

    def allowed_next_statuses(self) -> list[str]:
        return [
            value for value in IncidentStatus.values if value in STATUS_TRANSITIONS[self.status]
        ]

    def _span(self, start: str, end: str) -> timedelta | None:
        began, ended = getattr(self, start), getattr(self, end)
        if began is None or ended is None:
            return None
        return ended - began  # type: ignore[no-any-return]

    @property
    def time_to_detect(self) -> timedelta | None:
        """MTTD for this incident: impact start to detection."""
        return self._span("started_at", "detected_at")

    @property
    def time_to_decide(self) -> timedelta | None:
        return self._span("detected_at", "decided_at")

    @property
    def time_to_rollback(self) -> timedelta | None:
        return self._span("rollback_started_at", "restored_at")

    @property
    def time_to_verify(self) -> timedelta | None:
        return self._span("restored_at", "verified_at")

    @property
    def total_recovery(self) -> timedelta | None:
        """Impact start to verified recovery."""
        return self._span("started_at", "verified_at")

    @property
    def time_to_restore(self) -> timedelta | None:
        """Detection to service restored: the span the RTO bounds."""
        return self._span("detected_at", "restored_at")

    @property
    def rto_met(self) -> bool | None:
        restore = self.time_to_restore
        return None if restore is None else restore <= self.rto

    def recovery_metrics(self) -> list[dict[str, Any]]:
        """Each phase with its duration (or None) and its target, for display and export."""
        labels = {
            "time_to_detect": "Time to detect",
            "time_to_decide": "Time to decide",
            "time_to_rollback": "Time to roll back",
            "time_to_verify": "Time to verify",
            "total_recovery": "Total recovery",
        }
        rows = []
        for name, label in labels.items():
            value = getattr(self, name)
            target = PHASE_TARGETS[name]
            rows.append(
                {
                    "name": name,
                    "label": label,
                    "value": value,
                    "target": target,
                    "met": None if value is None else value <= target,
                }
            )
        return rows


class TimelineKind(models.TextChoices):
    NOTE = "note", "Note"
    INCIDENT_OPENED = "incident_opened", "Incident opened"
    STATUS_CHANGE = "status_change", "Status change"
    SEVERITY_CHANGE = "severity_change", "Severity change"
    COMMANDER_CHANGE = "commander_change", "Commander change"
    INSTANT_RECORDED = "instant_recorded", "Instant recorded"
    CHECKLIST = "checklist", "Checklist"
    APPROVAL = "approval", "Approval"
    RUN = "run", "Run"
    STEP_STARTED = "step_started", "Step started"
    STEP_OUTPUT = "step_output", "Step output"
    STEP_FINISHED = "step_finished", "Step finished"
    CHECK_RESULT = "check_result", "Check result"
    COMMS_PUBLISHED = "comms_published", "Communication published"
    COMMS_SENT = "comms_sent", "Notice sent"
    REMINDER = "reminder", "Reminder"
    POSTMORTEM = "postmortem", "Post-mortem"
    DECISION = "decision", "Decision"
    ALERT_RECEIVED = "alert_received", "Alert received"
    RELEASE = "release", "Release"


class TimelineEntry(models.Model):
    """One fact in an incident's history. Append-only: the database rejects UPDATE and
    DELETE on this table (see migration 0002), and the model refuses them too."""

    incident = models.ForeignKey(Incident, on_delete=models.PROTECT, related_name="timeline")
    kind = models.CharField(max_length=30, choices=TimelineKind.choices)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
    )
    actor_label = models.CharField(
        max_length=100, blank=True, help_text="Who acted when no user did (automation, a worker)"
    )
    body = models.TextField()
    payload = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["id"]
        verbose_name_plural = "timeline entries"
        indexes = [models.Index(fields=["incident", "id"], name="timeline_incident_id")]

    def __str__(self) -> str:
        return f"{self.kind}: {self.body[:60]}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk is not None and not kwargs.get("force_insert"):
            raise ValidationError("Timeline entries are append-only and cannot be changed.")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> Any:
        raise ValidationError("Timeline entries are append-only and cannot be deleted.")

    @property
    def who(self) -> str:
        if self.actor_id is not None:
            return self.actor.get_username()  # type: ignore[union-attr]
        return self.actor_label or "system"


class TimelineOrder(models.Model):
    """The order in which timeline entries became visible, per incident.

    Entry ids come from a sequence when the row is inserted, so two transactions can commit
    their entries in the opposite order to their ids. A deferred trigger (migration 0006)
    gives each entry its `seq` while the committing transaction holds the incident's
    advisory lock, so for one incident `seq` follows commit order and a reader that has
    seen `seq` n will never later find a committed entry below it. The live stream replays
    and follows in `seq` order.
    """

    entry = models.OneToOneField(
        TimelineEntry, primary_key=True, on_delete=models.CASCADE, related_name="order"
    )
    incident = models.ForeignKey(Incident, on_delete=models.CASCADE, related_name="+")
    seq = models.BigIntegerField(unique=True)

    class Meta:
        indexes = [models.Index(fields=["incident", "seq"], name="timeline_order_incident_seq")]

    def __str__(self) -> str:
        return f"{self.seq}: entry {self.entry_id}"


class ChecklistKind(models.TextChoices):
    PRE_ROLLBACK = "pre_rollback", "Pre-rollback"
    POST_ROLLBACK = "post_rollback", "Post-rollback verification"
    POST_INCIDENT = "post_incident", "Post-incident actions"


class ChecklistTemplate(models.Model):
    """A reusable list, instantiated for every new incident when `auto_attach` is set."""

    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=20, choices=ChecklistKind.choices)
    auto_attach = models.BooleanField(default=True)
    position = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["position", "name"]

    def __str__(self) -> str:
        return self.name


class ChecklistTemplateItem(models.Model):
    template = models.ForeignKey(ChecklistTemplate, on_delete=models.CASCADE, related_name="items")
    position = models.PositiveSmallIntegerField(default=0)
    text = models.CharField(max_length=200)
    check_key = models.CharField(
        max_length=50,
        blank=True,
        help_text="Name of the verification check that ticks this item when it passes",
    )

    class Meta:
        ordering = ["position", "id"]

    def __str__(self) -> str:
        return self.text


class Checklist(models.Model):
    incident = models.ForeignKey(Incident, on_delete=models.PROTECT, related_name="checklists")
    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=20, choices=ChecklistKind.choices)
    position = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["position", "id"]

    def __str__(self) -> str:
        return f"{self.name} for incident #{self.incident_id}"


class ChecklistItem(models.Model):
    checklist = models.ForeignKey(Checklist, on_delete=models.PROTECT, related_name="items")
    position = models.PositiveSmallIntegerField(default=0)
    text = models.CharField(max_length=200)
    check_key = models.CharField(max_length=50, blank=True)
    done_at = models.DateTimeField(null=True, blank=True)
    done_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
    )
    done_automatically = models.BooleanField(default=False)

    class Meta:
        ordering = ["position", "id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(done_at__isnull=True, done_by__isnull=True)
                | models.Q(done_at__isnull=False),
                name="checklist_item_done_by_needs_done_at",
            )
        ]

    def __str__(self) -> str:
        return self.text

    @property
    def is_done(self) -> bool:
        return self.done_at is not None


class Scenario(models.TextChoices):
    ANY = "any", "Any rollback"
    DATA_CORRUPTION = "data_corruption", "Data corruption"
    SECURITY_BREACH = "security_breach", "Security breach"


class ApprovalPolicy(models.Model):
    """Which approver roles a rollback needs, by severity and scenario.

    `required_roles` names Django groups (e.g. "Engineering Lead", "CTO"); every one of
    them must be covered by an approval from someone in that group who is not the requester.
    """

    name = models.CharField(max_length=100, unique=True)
    severities = models.JSONField(
        default=list, blank=True, help_text="Severities this applies to; empty means all"
    )
    scenario = models.CharField(max_length=30, choices=Scenario.choices, default=Scenario.ANY)
    required_roles = models.JSONField(default=list)
    active = models.BooleanField(default=True)

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "approval policies"

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        if not isinstance(self.severities, list) or not set(self.severities) <= set(
            Severity.values
        ):
            raise ValidationError({"severities": f"Choose from {', '.join(Severity.values)}."})
        if not isinstance(self.required_roles, list) or not all(
            isinstance(role, str) and role for role in self.required_roles
        ):
            raise ValidationError({"required_roles": "A list of role (group) names."})
        if not self.required_roles:
            raise ValidationError({"required_roles": "Name at least one role."})

    def applies_to(self, *, severity: str, scenario: str) -> bool:
        severity_matches = not self.severities or severity in self.severities
        scenario_matches = self.scenario in (Scenario.ANY, scenario)
        return self.active and severity_matches and scenario_matches


class ApprovalRequestStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    APPROVED = "approved", "Approved"
    REJECTED = "rejected", "Rejected"
    WITHDRAWN = "withdrawn", "Withdrawn"


class ApprovalRequest(models.Model):
    """A request for the approvals a rollback needs, with the roles fixed at request time."""

    incident = models.ForeignKey(
        Incident, on_delete=models.PROTECT, related_name="approval_requests"
    )
    scenario = models.CharField(max_length=30, choices=Scenario.choices, default=Scenario.ANY)
    reason = models.TextField()
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    requested_at = models.DateTimeField(default=timezone.now)
    required_roles = models.JSONField(default=list)
    status = models.CharField(
        max_length=20, choices=ApprovalRequestStatus.choices, default=ApprovalRequestStatus.PENDING
    )
    decided_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-requested_at", "-id"]

    def __str__(self) -> str:
        return f"Approval request #{self.pk} for incident #{self.incident_id}"

    def covered_roles(self) -> set[str]:
        return {
            approval.role
            for approval in self.approvals.all()
            if approval.decision == ApprovalDecision.APPROVE
        }

    def missing_roles(self) -> list[str]:
        covered = self.covered_roles()
        return [role for role in self.required_roles if role not in covered]


class ApprovalDecision(models.TextChoices):
    APPROVE = "approve", "Approve"
    REJECT = "reject", "Reject"


class Approval(models.Model):
    """One approver's decision, given in one role."""

    request = models.ForeignKey(ApprovalRequest, on_delete=models.PROTECT, related_name="approvals")
    approver = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    role = models.CharField(max_length=100)
    decision = models.CharField(max_length=10, choices=ApprovalDecision.choices)
    comment = models.TextField(blank=True)
    decided_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["decided_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["request", "approver"], name="one_decision_per_approver"
            )
        ]

    def __str__(self) -> str:
        return f"{self.approver} {self.decision} as {self.role}"


# -- Rollback runs and steps ---------------------------------------------------------------
#
# A run is a rollback plan and its execution in one record: its steps are the plan, and the
# run's state says how far it got. Steps with the same `group` run concurrently; groups run
# in ascending order, and a failed step stops every later group. The engine
# (incidents.engine) executes steps; incidents.rollbacks holds the commander's operations.


class RunState(models.TextChoices):
    DRAFT = "draft", "Draft"
    AWAITING_APPROVAL = "awaiting_approval", "Awaiting approval"
    APPROVED = "approved", "Approved"
    RUNNING = "running", "Running"
    PAUSED = "paused", "Paused"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


RUN_FINISHED_STATES = frozenset({RunState.SUCCEEDED, RunState.FAILED, RunState.CANCELLED})

# Which run state may follow which. A failed run reopens (failed → running) only when the
# commander retries or skips the step that failed it.
RUN_TRANSITIONS: dict[str, frozenset[str]] = {
    RunState.DRAFT: frozenset({"awaiting_approval", "approved", "running", "cancelled"}),
    RunState.AWAITING_APPROVAL: frozenset({"approved", "draft", "running", "cancelled"}),
    RunState.APPROVED: frozenset({"running", "draft", "cancelled"}),
    RunState.RUNNING: frozenset({"paused", "succeeded", "failed", "cancelled"}),
    RunState.PAUSED: frozenset({"running", "cancelled"}),
    RunState.SUCCEEDED: frozenset(),
    RunState.FAILED: frozenset({"running"}),
    RunState.CANCELLED: frozenset(),
}

# The word typed to start a run touching several services (one service: its name).
CONFIRMATION_WORD = "ROLLBACK"


class Run(models.Model):
    """A rollback plan for an incident and its execution: ordered steps in parallel groups,
    the approval it needs, the typed confirmation that started it, and its timings."""

    incident = models.ForeignKey(Incident, on_delete=models.PROTECT, related_name="runs")
    state = models.CharField(max_length=20, choices=RunState.choices, default=RunState.DRAFT)
    reason = models.TextField(blank=True, help_text="Why this rollback is needed")
    scenario = models.CharField(max_length=30, choices=Scenario.choices, default=Scenario.ANY)
    dry_run = models.BooleanField(
        default=False, help_text="Plan every step and time it, but change nothing"
    )
    drill = models.BooleanField(
        default=False, help_text="A rehearsal: timed, but not counted in the incident's metrics"
    )
    approval_request = models.OneToOneField(
        ApprovalRequest, null=True, blank=True, on_delete=models.PROTECT, related_name="run"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    planned_at = models.DateTimeField(null=True, blank=True, help_text="Last dry run")

    confirmation_text = models.CharField(max_length=200, blank=True)
    confirmed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    confirmed_at = models.DateTimeField(null=True, blank=True)

    started_at = models.DateTimeField(null=True, blank=True)
    paused_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    failure_reason = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(confirmed_at__isnull=True)
                | (models.Q(confirmed_by__isnull=False) & ~models.Q(confirmation_text="")),
                name="run_confirmation_complete",
            ),
            models.CheckConstraint(
                condition=~models.Q(state__in=["running", "paused", "succeeded", "failed"])
                | models.Q(started_at__isnull=False, confirmed_at__isnull=False),
                name="run_started_only_when_confirmed",
            ),
            models.CheckConstraint(
                condition=~models.Q(state__in=["succeeded", "failed", "cancelled"])
                | models.Q(finished_at__isnull=False),
                name="run_finished_has_instant",
            ),
        ]

    def __str__(self) -> str:
        return f"Run #{self.pk} for incident #{self.incident_id} ({self.state})"

    @property
    def is_finished(self) -> bool:
        return self.state in RUN_FINISHED_STATES

    def can_become(self, state: str) -> bool:
        return state in RUN_TRANSITIONS[self.state]

    @property
    def duration(self) -> timedelta | None:
        if self.started_at is None:
            return None
        end = self.finished_at or timezone.now()
        return end - self.started_at  # type: ignore[no-any-return]

    def expected_confirmation(self) -> str:
        """What the commander must type to start: the service's name when the run touches
        one service, else CONFIRMATION_WORD."""
        names = {step.service.name for step in self.steps.select_related("service")}
        return names.pop() if len(names) == 1 else CONFIRMATION_WORD


class StepState(models.TextChoices):
    PENDING = "pending", "Pending"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    SKIPPED = "skipped", "Skipped"
    CANCELLED = "cancelled", "Cancelled"


STEP_FINISHED_STATES = frozenset(
    {StepState.SUCCEEDED, StepState.FAILED, StepState.SKIPPED, StepState.CANCELLED}
)


class Step(models.Model):
    """One rollback action: a service taken from one version to another by its backend.

    `applied_at` is written once the backend's apply has returned and before the step is
    marked done: a task delivered again after a crash sees it and goes straight to waiting
    instead of applying twice. `apply_started_at` without `applied_at` means an apply may
    have happened; backends that cannot repeat an apply safely are told so.
    """

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="steps")
    position = models.PositiveSmallIntegerField(help_text="Order in the plan, from 1")
    group = models.PositiveSmallIntegerField(
        default=1, help_text="Steps of one group run together; groups run in ascending order"
    )
    service = models.ForeignKey(Service, on_delete=models.PROTECT, related_name="+")
    backend = models.CharField(max_length=30, choices=BackendKind.choices)
    release = models.ForeignKey(
        Release, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    from_version = models.CharField(max_length=500, blank=True, help_text="Live when planned")
    to_version = models.CharField(max_length=200, blank=True)
    to_artifact = models.CharField(max_length=500, blank=True)
    to_previous = models.BooleanField(default=False, help_text="Back to the previous revision")
    params = models.JSONField(default=dict, blank=True, help_text='e.g. {"operation": "undo"}')
    timeout_seconds = models.PositiveIntegerField(default=600)

    state = models.CharField(max_length=20, choices=StepState.choices, default=StepState.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    enqueued_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    deadline = models.DateTimeField(null=True, blank=True)
    apply_started_at = models.DateTimeField(null=True, blank=True)
    applied_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    claim_token = models.CharField(max_length=32, blank=True)
    worker = models.CharField(max_length=200, blank=True)

    plan_summary = models.TextField(blank=True)
    planned_changes = models.JSONField(default=list, blank=True)
    apply_detail = models.TextField(blank=True)
    apply_facts = models.JSONField(default=dict, blank=True)
    reached_version = models.CharField(max_length=500, blank=True)
    check_results = models.JSONField(default=list, blank=True)
    error = models.TextField(blank=True)
    error_retryable = models.BooleanField(default=False)
    skip_reason = models.TextField(blank=True, help_text="Why the step was skipped or cancelled")
    blocked_by = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The failed step that stopped this one",
    )

    class Meta:
        ordering = ["run", "position"]
        constraints = [
            models.UniqueConstraint(fields=["run", "position"], name="step_unique_position"),
            models.CheckConstraint(
                condition=models.Q(timeout_seconds__gte=1, timeout_seconds__lte=3600),
                name="step_timeout_range",
            ),
            models.CheckConstraint(
                condition=models.Q(applied_at__isnull=True)
                | models.Q(apply_started_at__isnull=False),
                name="step_applied_after_apply_started",
            ),
            models.CheckConstraint(
                condition=~models.Q(state__in=["succeeded", "failed", "skipped", "cancelled"])
                | models.Q(finished_at__isnull=False),
                name="step_finished_has_instant",
            ),
            models.CheckConstraint(
                condition=~models.Q(state="running")
                | (
                    models.Q(started_at__isnull=False, deadline__isnull=False)
                    & ~models.Q(claim_token="")
                ),
                name="step_running_is_claimed",
            ),
        ]
        indexes = [models.Index(fields=["state", "heartbeat_at"], name="step_state_heartbeat")]

    def __str__(self) -> str:
        return f"Step {self.position} of run #{self.run_id}: {self.service.name} ({self.state})"

    @property
    def is_finished(self) -> bool:
        return self.state in STEP_FINISHED_STATES

    @property
    def target_label(self) -> str:
        """The target as people say it: a release, "previous revision", or the operation."""
        if self.to_version:
            return self.to_version
        if self.to_previous:
            return "previous revision"
        return str(self.params.get("operation") or self.params.get("state") or "as configured")

    @property
    def duration(self) -> timedelta | None:
        if self.started_at is None:
            return None
        end = self.finished_at or timezone.now()
        return end - self.started_at  # type: ignore[no-any-return]


class StepLog(models.Model):
    """One progress line of a step, in order; a step keeps a bounded number of lines."""

    step = models.ForeignKey(Step, on_delete=models.CASCADE, related_name="log_lines")
    seq = models.PositiveIntegerField()
    at = models.DateTimeField(default=timezone.now)
    line = models.TextField()

    class Meta:
        ordering = ["step", "seq"]
        constraints = [models.UniqueConstraint(fields=["step", "seq"], name="steplog_unique_seq")]

    def __str__(self) -> str:
        return f"{self.seq}: {self.line[:60]}"
