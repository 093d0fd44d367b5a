"""The incident domain: services and releases, incidents and their timeline, and checklists.

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
    TERRAFORM_STATE = "terraform_state", "Terraform state (S3 backend)"
    S3_VERSIONS = "s3_versions", "S3 object versions"
    SECRET_SWITCH = "secret_switch", "Secret or parameter switch (Secrets Manager, SSM)"
    ECS_RESTART = "ecs_restart", "ECS force new deployment"
    PG_RESTORE = "pg_restore", "PostgreSQL restore from a dump"
    GIT_REVERT = "git_revert", "git revert"
    EDGE_FUNCTIONS = "edge_functions", "CloudFront function associations (Lambda@Edge)"
    VERCEL = "vercel", "Vercel deployment"
    GITHUB_ACTIONS = "github_actions", "GitHub Actions workflow"
    DOCKER_SWARM = "docker_swarm", "Docker Swarm service"
    DOPPLER = "doppler", "Doppler secret"


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
        default=dict,
        help_text='Backend target (JSON), e.g. {"namespace": "shop", "deployment": "web"}',
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    signal_queries = models.JSONField(
        default=dict,
        blank=True,
        help_text="PromQL per signal the decision helper reads: error_rate (%), p99_ms, "
        "p99_baseline_ms, pods_failing, pods_total, memory_percent",
    )
    auto_rollback = models.JSONField(
        default=dict,
        blank=True,
        help_text='Automatic rollback policy: {"enabled": true, "severities": ["P1", "P2"], '
        '"max_release_age_hours": 6, "start": false} (rollbacks.automation)',
    )
    known_good_bake_minutes = models.PositiveIntegerField(
        default=30,
        help_text="A release live this long, its checks passing and no open incident "
        "suspecting it, becomes known-good by itself; 0: only by hand",
    )

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
    known_good_reason = models.CharField(
        max_length=500, blank=True, help_text="Why it was marked (or unmarked) known-good"
    )
    backup = models.JSONField(
        default=dict,
        blank=True,
        help_text="What was saved before this release so that it can be undone (a Deployment "
        'manifest, a DNS record set), by kind: {"manifest": {...}, "record_sets": [...]}',
    )
    backup_at = models.DateTimeField(null=True, blank=True)

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
