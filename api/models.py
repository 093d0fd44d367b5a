from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

# What a token may do; a write scope implies nothing else (ask for `read` too to read).
READ = "read"
RELEASES_WRITE = "releases:write"
INCIDENTS_WRITE = "incidents:write"
RUNS_WRITE = "runs:write"
ALERTS_WRITE = "alerts:write"
SERVICES_WRITE = "services:write"
STATUS_PAGE_WRITE = "statuspage:write"
SCOPES = {
    READ: "Read incidents, runs and releases",
    RELEASES_WRITE: "Register releases, mark them known-good",
    INCIDENTS_WRITE: "Open and update incidents, add notes",
    RUNS_WRITE: "Draft rollbacks",
    ALERTS_WRITE: "Send alerts (an Alertmanager or Grafana receiver)",
    SERVICES_WRITE: "Import services from platforms, set their automatic rollback and signals",
    STATUS_PAGE_WRITE: (
        "Manage the status page: components, maintenances, update templates, subscribers"
    ),
}


class ApiToken(models.Model):
    """A person's token for the JSON API (api.tokens). Only a digest of the secret is kept;
    the prefix (shown in lists) tells tokens apart. It acts as its owner, with the owner's
    roles, and only within its scopes."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=12, unique=True)
    digest = models.CharField(max_length=64, unique=True)
    scopes = models.JSONField(default=list)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def active(self) -> bool:
        now = timezone.now()
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)
