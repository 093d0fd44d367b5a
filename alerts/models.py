from __future__ import annotations

from django.db import models
from django.utils import timezone

from incidents.models import Incident, Service


class AlertNotification(models.Model):
    """One webhook delivery from Alertmanager (or Grafana). Its body's digest makes a
    repeated delivery of the same notification a no-op."""

    digest = models.CharField(max_length=64, unique=True)
    receiver = models.CharField(max_length=200, blank=True)
    group_key = models.CharField(max_length=1000, blank=True)
    status = models.CharField(max_length=10)
    alert_count = models.PositiveIntegerField()
    received_at = models.DateTimeField(default=timezone.now)
    token_prefix = models.CharField(max_length=12, blank=True)

    def __str__(self) -> str:
        return f"{self.receiver} {self.status} ({self.alert_count})"


class AlertState(models.TextChoices):
    FIRING = "firing", "Firing"
    RESOLVED = "resolved", "Resolved"


class Alert(models.Model):
    """One alert (a label set, by fingerprint, from when it started firing), the service its
    labels name and the incident it opened or joined."""

    fingerprint = models.CharField(max_length=64)
    starts_at = models.DateTimeField()
    name = models.CharField(max_length=200)
    status = models.CharField(max_length=10, choices=AlertState.choices)
    ends_at = models.DateTimeField(null=True, blank=True)
    labels = models.JSONField(default=dict)
    annotations = models.JSONField(default=dict)
    generator_url = models.CharField(max_length=1000, blank=True)
    service = models.ForeignKey(
        Service, null=True, blank=True, on_delete=models.SET_NULL, related_name="alerts"
    )
    incident = models.ForeignKey(
        Incident, null=True, blank=True, on_delete=models.SET_NULL, related_name="alerts"
    )
    first_seen_at = models.DateTimeField(default=timezone.now)
    last_seen_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["fingerprint", "starts_at"], name="alert_unique_firing")
        ]
        indexes = [models.Index(fields=["fingerprint", "-starts_at"])]

    def __str__(self) -> str:
        return f"{self.name} {self.fingerprint} {self.status}"
