"""Email subscribers of the public page and every message sent to them.

A subscriber confirms by the link in a first email (double opt-in) before anything else is
sent; `token` is in every link (confirm, manage, unsubscribe) and is the only thing that
proves the link's holder owns the address. No components: every component.

The token is not stored: it is an HMAC of the address and the subscription's creation instant
under the SECRET_KEY, and the row keeps only its SHA-256 (`token_digest`), by which a link is
looked up. A copy of the database alone therefore opens no subscriber's pages; rotating the
SECRET_KEY ends every link sent so far (subscribers then subscribe again).
"""

from __future__ import annotations

import hashlib
from typing import Any

from django.db import models
from django.utils import timezone
from django.utils.crypto import salted_hmac

TOKEN_SALT = "statuspage.subscriber.token"


def token_digest(token: str) -> str:
    """The SHA-256 of a subscriber's token, as stored and looked up."""
    return hashlib.sha256(token.encode()).hexdigest()


class Subscriber(models.Model):
    email = models.EmailField(unique=True, help_text="Stored in lower case")
    components = models.ManyToManyField(
        "statuspage.Component",
        blank=True,
        related_name="subscribers",
        help_text="None: every component",
    )
    token_digest = models.CharField(
        max_length=64, unique=True, editable=False, help_text="SHA-256 of the link's token"
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    confirmation_sent_at = models.DateTimeField(null=True, blank=True)
    confirmed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["email"]

    def __str__(self) -> str:
        return self.email

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.token_digest = token_digest(self.token)
        super().save(*args, **kwargs)

    @property
    def is_confirmed(self) -> bool:
        return self.confirmed_at is not None

    @property
    def token(self) -> str:
        """The token of this subscriber's links, derived (never stored)."""
        value = f"{self.email}\n{self.created_at.isoformat()}"
        return salted_hmac(TOKEN_SALT, value, algorithm="sha256").hexdigest()


class MessageKind(models.TextChoices):
    CONFIRMATION = "confirmation", "Confirmation"
    INCIDENT_UPDATE = "incident_update", "Incident update"
    MAINTENANCE_UPDATE = "maintenance_update", "Maintenance update"


class MessageState(models.TextChoices):
    PENDING = "pending", "Pending"
    SENT = "sent", "Sent"
    FAILED = "failed", "Failed"


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
        max_length=10, choices=MessageState.choices, default=MessageState.PENDING
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


class SubscriberFanout(models.Model):
    """That an incident update (`revision`) or a maintenance update has been fanned out to
    subscribers: the row is inserted once, so a second fan-out (a redelivered task, the hook's
    fallback, the sweep) finds it and does nothing. `counted_at` is set, by a conditional
    UPDATE, when the update's sending is counted on the incident's timeline: once."""

    revision = models.OneToOneField(
        "statuspage.Revision",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="subscriber_fanout",
    )
    maintenance_update = models.OneToOneField(
        "statuspage.MaintenanceUpdate",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="subscriber_fanout",
    )
    fanned_out_at = models.DateTimeField(default=timezone.now)
    counted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(revision__isnull=True)
                ^ models.Q(maintenance_update__isnull=True),
                name="subscriber_fanout_one_event",
            )
        ]

    def __str__(self) -> str:
        event = f"revision {self.revision_id}" if self.revision_id else "maintenance update"
        return f"Fan-out of {event}"
