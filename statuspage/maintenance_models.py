"""Scheduled maintenances: planned work announced on the status page, with its window, the
components it puts under maintenance and its published updates (Statuspage's scheduled
incidents)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone


class MaintenanceStatus(models.TextChoices):
    # Values as Statuspage names a scheduled incident's states.
    SCHEDULED = "scheduled", "Scheduled"
    IN_PROGRESS = "in_progress", "In progress"
    VERIFYING = "verifying", "Verifying"
    COMPLETED = "completed", "Completed"


class MaintenanceImpact(models.TextChoices):
    MAINTENANCE = "maintenance", "Maintenance"
    NONE = "none", "None"
    MINOR = "minor", "Minor"
    MAJOR = "major", "Major"
    CRITICAL = "critical", "Critical"


class Maintenance(models.Model):
    """Planned work from `scheduled_for` to `scheduled_until`.

    While it is in progress or verifying, its components are under maintenance; the states
    they had before are kept in `previous_statuses` (component id → status) and put back when
    it completes. `auto_start` / `auto_complete` let the beat move it at the window's edges
    (Statuspage's `scheduled_auto_in_progress` / `scheduled_auto_completed`).
    """

    name = models.CharField(max_length=200)
    status = models.CharField(
        max_length=20, choices=MaintenanceStatus.choices, default=MaintenanceStatus.SCHEDULED
    )
    impact = models.CharField(
        max_length=12, choices=MaintenanceImpact.choices, default=MaintenanceImpact.MAINTENANCE
    )
    scheduled_for = models.DateTimeField()
    scheduled_until = models.DateTimeField()
    components = models.ManyToManyField(
        "statuspage.Component", blank=True, related_name="maintenances"
    )
    auto_start = models.BooleanField(default=True)
    auto_complete = models.BooleanField(default=True)
    previous_statuses = models.JSONField(default=dict, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-scheduled_for", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(scheduled_until__gt=models.F("scheduled_for")),
                name="maintenance_ends_after_it_starts",
            )
        ]
        indexes = [
            models.Index(fields=["status", "scheduled_for"], name="maintenance_status_start")
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def is_active(self) -> bool:
        return self.status in (MaintenanceStatus.IN_PROGRESS, MaintenanceStatus.VERIFYING)


class MaintenanceUpdate(models.Model):
    """One published update of a maintenance. Never changed, never deleted."""

    maintenance = models.ForeignKey(Maintenance, on_delete=models.PROTECT, related_name="updates")
    status = models.CharField(max_length=20, choices=MaintenanceStatus.choices)
    body = models.TextField(help_text="Markdown as published, raw HTML removed")
    body_html = models.TextField(help_text="The body rendered and sanitised")
    notify_subscribers = models.BooleanField(default=False)
    published_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    published_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["maintenance", "published_at", "id"]

    def __str__(self) -> str:
        return f"{self.maintenance}: {self.status} at {self.published_at:%Y-%m-%d %H:%M}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk is not None and not kwargs.get("force_insert"):
            raise ValidationError("Published updates are kept as they were published.")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> Any:
        raise ValidationError("Published updates are kept as they were published.")
