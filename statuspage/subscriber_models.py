"""Email subscribers of the public page and every message sent to them.

A subscriber confirms by the link in a first email (double opt-in) before anything else is
sent; `token` is in every link (confirm, manage, unsubscribe) and is the only thing that
proves the link's holder owns the address. No components: every component.
"""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class Subscriber(models.Model):
    email = models.EmailField(unique=True, help_text="Stored in lower case")
    components = models.ManyToManyField(
        "statuspage.Component",
        blank=True,
        related_name="subscribers",
        help_text="None: every component",
    )
    token = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    confirmation_sent_at = models.DateTimeField(null=True, blank=True)
    confirmed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["email"]

    def __str__(self) -> str:
        return self.email

    @property
    def is_confirmed(self) -> bool:
        return self.confirmed_at is not None


class MessageKind(models.TextChoices):
    CONFIRMATION = "confirmation", "Confirmation"
    INCIDENT_UPDATE = "incident_update", "Incident update"
    MAINTENANCE_UPDATE = "maintenance_update", "Maintenance update"


class SubscriberMessage(models.Model):
    """One email to one subscriber, with every attempt counted and the last error kept.
    Once only: one message per subscriber and revision (or maintenance update)."""

    subscriber = models.ForeignKey(Subscriber, on_delete=models.CASCADE, related_name="messages")
    kind = models.CharField(max_length=20, choices=MessageKind.choices)
    revision = models.ForeignKey(
        "statuspage.Revision",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="subscriber_messages",
    )
    maintenance_update = models.ForeignKey(
        "statuspage.MaintenanceUpdate",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="subscriber_messages",
    )
    state = models.CharField(
        max_length=10,
        choices=[("pending", "Pending"), ("sent", "Sent"), ("failed", "Failed")],
        default="pending",
    )
    attempts = models.PositiveSmallIntegerField(default=0)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    claimed_until = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["subscriber", "revision"], name="subscriber_message_once_per_revision"
            ),
            models.UniqueConstraint(
                fields=["subscriber", "maintenance_update"],
                name="subscriber_message_once_per_maintenance_update",
            ),
        ]
        indexes = [models.Index(fields=["state", "created_at"], name="subscriber_message_state")]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} to {self.subscriber} ({self.state})"
