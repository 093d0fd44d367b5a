"""The public status page and the support lead's communications.

A `Component` is what customers see, fed by any number of `incidents.Service`s, and may sit
in a group (itself a `Component` with `is_group`, as Statuspage's JSON has it). Each incident
has one working `Draft` of its public text, edited under optimistic locking, and publishing it
appends an immutable `Revision`; the `PublicIncident` row is what the public page and its feeds
read. `Notice` and `Delivery` hold internal and customer messages and each attempt to send
them. `MessageTemplate` holds the default texts, editable in the admin.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from incidents.models import Incident, Service
from rollbacks.models import Run


class ComponentStatus(models.TextChoices):
    # Values and order as the Atlassian Statuspage API names them.
    OPERATIONAL = "operational", "Operational"
    DEGRADED_PERFORMANCE = "degraded_performance", "Degraded performance"
    PARTIAL_OUTAGE = "partial_outage", "Partial outage"
    MAJOR_OUTAGE = "major_outage", "Major outage"
    UNDER_MAINTENANCE = "under_maintenance", "Under maintenance"


class PublicStatus(models.TextChoices):
    INVESTIGATING = "investigating", "Investigating"
    IDENTIFIED = "identified", "Identified"
    MONITORING = "monitoring", "Monitoring"
    RESOLVED = "resolved", "Resolved"
    POSTMORTEM = "postmortem", "Postmortem"


class Impact(models.TextChoices):
    NONE = "none", "None"
    MINOR = "minor", "Minor"
    MAJOR = "major", "Major"
    CRITICAL = "critical", "Critical"


# Finished public incidents: they leave the "active" list and go to the history.
FINISHED_PUBLIC_STATUSES = frozenset({PublicStatus.RESOLVED, PublicStatus.POSTMORTEM})


class Component(models.Model):
    """Something customers recognise on the status page ("Checkout"), with its current state.

    Its name and description are public and its own, never an internal service's. It is fed
    by the services behind it (one component may stand for several services, a service may
    feed several components): their incidents suggest it as affected. A group
    (`is_group`) holds components and is fed by none; groups do not nest. `position`
    orders a component among its siblings (the page's top level, or its group).
    """

    name = models.CharField(max_length=100)
    description = models.CharField(max_length=300, blank=True)
    position = models.PositiveSmallIntegerField(default=0)
    is_group = models.BooleanField(
        default=False, help_text="A group of components (Statuspage's `group: true`)"
    )
    group = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="members",
        limit_choices_to={"is_group": True},
    )
    only_show_if_degraded = models.BooleanField(
        default=False, help_text="Listed on the public page only while not operational"
    )
    services = models.ManyToManyField(
        Service,
        blank=True,
        related_name="status_components",
        help_text="The console services behind this component; their incidents suggest it "
        "as affected",
    )
    status = models.CharField(
        max_length=30, choices=ComponentStatus.choices, default=ComponentStatus.OPERATIONAL
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["position", "name"]
        constraints = [
            # Among siblings: the top level (no group) counts as one set of siblings.
            models.UniqueConstraint(
                fields=["group", "name"], name="component_unique_name", nulls_distinct=False
            ),
            models.CheckConstraint(
                condition=models.Q(is_group=False) | models.Q(group__isnull=True),
                name="component_groups_do_not_nest",
            ),
            models.CheckConstraint(
                condition=~models.Q(group=models.F("pk")), name="component_not_own_group"
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        # The admin's check; the console's page goes through statuspage.components.
        if self.is_group and self.group_id is not None:
            raise ValidationError({"group": "A group cannot sit inside another group."})
        if (
            self.group_id is not None
            and not Component.objects.filter(pk=self.group_id, is_group=True).exists()
        ):
            raise ValidationError({"group": "Choose a group, not a component."})
        if not self.is_group and self.pk is not None and self.members.exists():
            raise ValidationError({"is_group": "This group still holds components."})


class PublicIncident(models.Model):
    """An incident as the public sees it: only what has been published, never a draft."""

    incident = models.OneToOneField(
        Incident, on_delete=models.PROTECT, related_name="public_incident"
    )
    name = models.CharField(max_length=200)
    status = models.CharField(max_length=20, choices=PublicStatus.choices)
    impact = models.CharField(max_length=10, choices=Impact.choices)
    components = models.ManyToManyField(Component, blank=True, related_name="public_incidents")
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now)
    monitoring_at = models.DateTimeField(null=True, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return self.name

    @property
    def is_active(self) -> bool:
        return self.status not in FINISHED_PUBLIC_STATUSES


class Draft(models.Model):
    """The support lead's working copy of an incident's public text.

    `version` rises by one on every save; a save carrying an older version is refused, so
    two people editing at once see each other's text instead of overwriting it.
    """

    incident = models.OneToOneField(Incident, on_delete=models.PROTECT, related_name="status_draft")
    name = models.CharField(max_length=200)
    status = models.CharField(
        max_length=20, choices=PublicStatus.choices, default=PublicStatus.INVESTIGATING
    )
    impact = models.CharField(max_length=10, choices=Impact.choices, default=Impact.MINOR)
    body = models.TextField(blank=True)
    component_statuses = models.JSONField(
        default=dict, blank=True, help_text='Component id → status, e.g. {"3": "major_outage"}'
    )
    version = models.PositiveIntegerField(default=1)
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    updated_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"Draft v{self.version} for incident #{self.incident_id}"


class Revision(models.Model):
    """One published state of an incident's public text. Never changed, never deleted."""

    public_incident = models.ForeignKey(
        PublicIncident, on_delete=models.PROTECT, related_name="revisions"
    )
    number = models.PositiveIntegerField()
    name = models.CharField(max_length=200)
    status = models.CharField(max_length=20, choices=PublicStatus.choices)
    impact = models.CharField(max_length=10, choices=Impact.choices)
    body = models.TextField(help_text="Markdown as published, raw HTML removed")
    body_html = models.TextField(help_text="The body rendered and sanitised")
    component_statuses = models.JSONField(default=dict, blank=True)
    published_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    published_at = models.DateTimeField(default=timezone.now)
    restored_from = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    notify_subscribers = models.BooleanField(
        default=False, help_text="Sent to the page's email subscribers when published"
    )

    class Meta:
        ordering = ["public_incident", "number"]
        constraints = [
            models.UniqueConstraint(
                fields=["public_incident", "number"], name="revision_unique_number"
            )
        ]
        indexes = [models.Index(fields=["-published_at"], name="revision_published")]

    def __str__(self) -> str:
        return f"Revision {self.number} of {self.public_incident}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk is not None and not kwargs.get("force_insert"):
            raise ValidationError("Published revisions are kept as they were published.")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> Any:
        raise ValidationError("Published revisions are kept as they were published.")


class TemplateKey(models.TextChoices):
    PUBLIC_INVESTIGATING = "public_investigating", "Public: investigating"
    PUBLIC_IDENTIFIED = "public_identified", "Public: identified"
    PUBLIC_MONITORING = "public_monitoring", "Public: monitoring"
    PUBLIC_RESOLVED = "public_resolved", "Public: resolved"
    ROLLBACK_STARTED = "rollback_started", "Internal: rollback started"
    ROLLBACK_PROGRESS = "rollback_progress", "Internal: rollback progress"
    ROLLBACK_FINISHED = "rollback_finished", "Internal: rollback finished"
    CUSTOMER_NOTICE = "customer_notice", "Customer notice"


class MessageTemplate(models.Model):
    """A default text with {placeholders} filled from the incident's facts (see docs)."""

    key = models.CharField(max_length=30, choices=TemplateKey.choices, unique=True)
    subject = models.CharField(max_length=200, blank=True)
    body = models.TextField()

    class Meta:
        ordering = ["key"]

    def __str__(self) -> str:
        return self.get_key_display()


class NoticeKind(models.TextChoices):
    ROLLBACK_STARTED = "rollback_started", "Rollback started"
    ROLLBACK_PROGRESS = "rollback_progress", "Rollback progress"
    ROLLBACK_FINISHED = "rollback_finished", "Rollback finished"
    CUSTOMER = "customer", "Customer notice"


class Notice(models.Model):
    """A message to colleagues or customers; each channel it goes to is a `Delivery`."""

    incident = models.ForeignKey(Incident, on_delete=models.PROTECT, related_name="notices")
    kind = models.CharField(max_length=30, choices=NoticeKind.choices)
    run = models.ForeignKey(
        Run, null=True, blank=True, on_delete=models.PROTECT, related_name="notices"
    )
    # Makes a notice once-only: "run:7:started", "run:7:progress:<epoch of the notice it
    # follows>", a uuid for customers.
    dedupe_key = models.CharField(max_length=100, unique=True)
    subject = models.CharField(max_length=200)
    body = models.TextField()
    recipients = models.JSONField(
        default=list, blank=True, help_text="Email addresses, for customer notices"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {self.subject}"


class Channel(models.TextChoices):
    SLACK = "slack", "Slack webhook"
    EMAIL = "email", "Email"
    PAGERDUTY = "pagerduty", "PagerDuty"


class DeliveryState(models.TextChoices):
    PENDING = "pending", "Pending"
    SENT = "sent", "Sent"
    FAILED = "failed", "Failed"


class Delivery(models.Model):
    """One notice on one channel, with every attempt counted and the last error kept.

    `failed` with `will_retry` means Celery will try again; without it the attempts are
    used up and a person must press retry. Nothing is dropped.
    """

    notice = models.ForeignKey(Notice, on_delete=models.CASCADE, related_name="deliveries")
    channel = models.CharField(max_length=10, choices=Channel.choices)
    state = models.CharField(
        max_length=10, choices=DeliveryState.choices, default=DeliveryState.PENDING
    )
    attempts = models.PositiveSmallIntegerField(default=0)
    will_retry = models.BooleanField(default=False)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    enqueued_at = models.DateTimeField(null=True, blank=True)
    attempted_at = models.DateTimeField(null=True, blank=True)
    # While an attempt is under way; another worker leaves the delivery alone until then.
    claimed_until = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    # Email: how many of the notice's recipients have been sent it (in order), so a retry
    # after a failed batch sends only to the rest.
    recipients_done = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["notice", "channel"]
        verbose_name_plural = "deliveries"
        constraints = [
            models.UniqueConstraint(fields=["notice", "channel"], name="delivery_unique_channel"),
            models.CheckConstraint(
                condition=~models.Q(state="sent") | models.Q(sent_at__isnull=False),
                name="delivery_sent_has_instant",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.notice} via {self.channel} ({self.state})"


class ComponentStatusChange(models.Model):
    """A component's state from `changed_at` until its next change: the uptime history.

    Written by `statuspage.status_changes.component_status_set` wherever a state changes (a
    publish, a maintenance window, a repair in the admin), with what changed it.
    """

    component = models.ForeignKey(
        Component, on_delete=models.CASCADE, related_name="status_changes"
    )
    status = models.CharField(max_length=30, choices=ComponentStatus.choices)
    changed_at = models.DateTimeField(default=timezone.now)
    public_incident = models.ForeignKey(
        PublicIncident,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="status_changes",
    )
    maintenance = models.ForeignKey(
        "statuspage.Maintenance",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="status_changes",
    )

    class Meta:
        ordering = ["component", "changed_at", "id"]
        indexes = [
            models.Index(fields=["component", "changed_at"], name="status_change_component_at")
        ]

    def __str__(self) -> str:
        return f"{self.component} {self.status} at {self.changed_at:%Y-%m-%d %H:%M}"


class UpdateTemplate(models.Model):
    """A named starting point for a public update, kept by the support lead: the public
    name, the body (with {placeholders} filled from the incident's facts), the public
    status, and the components it marks affected with `component_status` (blank: as the
    incident's severity suggests)."""

    name = models.CharField(max_length=100, unique=True)
    title = models.CharField(max_length=200)
    body = models.TextField()
    status = models.CharField(
        max_length=20, choices=PublicStatus.choices, default=PublicStatus.INVESTIGATING
    )
    components = models.ManyToManyField(Component, blank=True, related_name="update_templates")
    component_status = models.CharField(max_length=30, choices=ComponentStatus.choices, blank=True)
    position = models.PositiveSmallIntegerField(default=0)
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["position", "name"]

    def __str__(self) -> str:
        return self.name


from statuspage.maintenance_models import (  # noqa: E402, F401
    Maintenance,
    MaintenanceImpact,
    MaintenanceStatus,
    MaintenanceUpdate,
)
from statuspage.subscriber_models import (  # noqa: E402, F401
    MessageKind,
    MessageState,
    Subscriber,
    SubscriberFanout,
    SubscriberMessage,
)
