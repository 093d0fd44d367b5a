"""Playbooks: named, versioned procedures that draft a rollback plan.

A playbook's versions never change once saved: editing saves the next version, and a run
drafted from a playbook records the version and the parameters it was drafted with.
"""

from __future__ import annotations

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from django.utils import timezone

from rollbacks.models import Run

playbook_name_validator = RegexValidator(
    r"^[a-z0-9][a-z0-9-]{0,79}$",
    "Use lower-case letters, digits and hyphens, starting with a letter or digit.",
)


class Playbook(models.Model):
    name = models.CharField(max_length=80, unique=True, validators=[playbook_name_validator])
    built_in = models.BooleanField(default=False, help_text="Shipped with Backout")
    archived = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def current(self) -> PlaybookVersion | None:
        """The newest version."""
        return self.versions.order_by("-number").first()


class PlaybookVersion(models.Model):
    playbook = models.ForeignKey(Playbook, on_delete=models.PROTECT, related_name="versions")
    number = models.PositiveIntegerField()
    title = models.CharField(max_length=200)
    document = models.JSONField(help_text="The parsed YAML, as validated")
    source = models.TextField(help_text="The YAML as written")
    comment = models.CharField(max_length=500, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["playbook", "-number"]
        constraints = [
            models.UniqueConstraint(
                fields=["playbook", "number"], name="playbook_version_unique_number"
            )
        ]

    def __str__(self) -> str:
        return f"{self.playbook.name} v{self.number}"


class PlaybookRun(models.Model):
    """Which playbook version, with which parameters, a run was drafted from."""

    run = models.OneToOneField(Run, on_delete=models.PROTECT, related_name="playbook_run")
    version = models.ForeignKey(PlaybookVersion, on_delete=models.PROTECT, related_name="runs")
    parameters = models.JSONField(default=dict)

    def __str__(self) -> str:
        return f"run #{self.run_id} from {self.version}"
