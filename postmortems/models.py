"""Post-mortems: the written account of an incident, kept beside the record it came from.

The facts (severity, instants, timeline, runs) stay on the incident and are read from it
whenever the report is shown or exported; a post-mortem adds what only people can write
(impact, root cause, resolution, prevention, lessons), which timeline entries matter most
(stars, kept here because timeline entries are never updated), the action items, and a
revision for every change.
"""

from __future__ import annotations

from datetime import date

from django.conf import settings
from django.db import models
from django.utils import timezone

from incidents.models import Incident, TimelineEntry


class PostmortemState(models.TextChoices):
    DRAFT = "draft", "Draft"
    IN_REVIEW = "in_review", "In review"
    PUBLISHED = "published", "Published"


# Which state may follow which. A published post-mortem goes back to draft only when the
# commander reopens it; that is recorded like every other change.
STATE_TRANSITIONS: dict[str, frozenset[str]] = {
    PostmortemState.DRAFT: frozenset({"in_review"}),
    PostmortemState.IN_REVIEW: frozenset({"draft", "published"}),
    PostmortemState.PUBLISHED: frozenset({"draft"}),
}


class TimelineFilter(models.TextChoices):
    ALL = "all", "Every entry"
    STARRED = "starred", "Starred entries only"


# The narrative fields people edit, in the order the report shows them.
NARRATIVE_FIELDS: tuple[str, ...] = (
    "summary",
    "users_affected",
    "failed_requests",
    "data_loss",
    "revenue_impact",
    "revenue_currency",
    "root_cause",
    "resolution",
    "prevention",
    "lessons_learned",
    "timeline_filter",
)


class Postmortem(models.Model):
    """One incident's post-mortem: draft → in review → published."""

    incident = models.OneToOneField(Incident, on_delete=models.PROTECT, related_name="postmortem")
    state = models.CharField(
        max_length=20, choices=PostmortemState.choices, default=PostmortemState.DRAFT
    )

    summary = models.TextField(blank=True)
    users_affected = models.PositiveIntegerField(null=True, blank=True)
    failed_requests = models.PositiveBigIntegerField(null=True, blank=True)
    data_loss = models.TextField(
        blank=True, help_text="What data was lost or damaged, and how far back; or “none”"
    )
    revenue_impact = models.DecimalField(max_digits=14, decimal_places=2, null=True, blank=True)
    revenue_currency = models.CharField(max_length=3, default="USD")
    root_cause = models.TextField(blank=True)
    resolution = models.TextField(blank=True)
    prevention = models.TextField(blank=True)
    lessons_learned = models.TextField(blank=True)
    timeline_filter = models.CharField(
        max_length=10,
        choices=TimelineFilter.choices,
        default=TimelineFilter.ALL,
        help_text="What the report's timeline shows by default",
    )

    revision = models.PositiveIntegerField(default=0, help_text="Number of the latest revision")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now)
    published_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    published_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=~models.Q(state="published") | models.Q(published_at__isnull=False),
                name="postmortem_published_has_instant",
            ),
            models.CheckConstraint(
                condition=models.Q(revenue_impact__isnull=True) | models.Q(revenue_impact__gte=0),
                name="postmortem_revenue_not_negative",
            ),
        ]

    def __str__(self) -> str:
        return f"Post-mortem of incident #{self.incident_id} ({self.state})"

    def can_become(self, state: str) -> bool:
        return state in STATE_TRANSITIONS[self.state]


class TimelineStar(models.Model):
    """A timeline entry the post-mortem marks as key. Stars live here, not on the entry,
    because timeline entries are append-only."""

    postmortem = models.ForeignKey(Postmortem, on_delete=models.CASCADE, related_name="stars")
    entry = models.ForeignKey(TimelineEntry, on_delete=models.PROTECT, related_name="+")
    starred_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    starred_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["entry_id"]
        constraints = [
            models.UniqueConstraint(fields=["postmortem", "entry"], name="one_star_per_entry")
        ]

    def __str__(self) -> str:
        return f"Star on entry {self.entry_id}"


class ActionItem(models.Model):
    """Follow-up work a post-mortem asks for, tracked until someone closes it."""

    postmortem = models.ForeignKey(
        Postmortem, on_delete=models.PROTECT, related_name="action_items"
    )
    title = models.CharField(max_length=300)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    due_on = models.DateField(null=True, blank=True)
    ticket_url = models.URLField(blank=True, help_text="Where the work is tracked, if elsewhere")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    done_at = models.DateTimeField(null=True, blank=True)
    done_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(done_by__isnull=True) | models.Q(done_at__isnull=False),
                name="action_item_done_by_needs_done_at",
            )
        ]

    def __str__(self) -> str:
        return self.title

    @property
    def is_done(self) -> bool:
        return self.done_at is not None

    def is_overdue(self, today: date | None = None) -> bool:
        day = today or timezone.localdate()
        return self.done_at is None and self.due_on is not None and self.due_on < day


class RevisionAction(models.TextChoices):
    STARTED = "started", "Started"
    EDITED = "edited", "Edited"
    STATE = "state", "State changed"
    STARRED = "starred", "Entry starred"
    UNSTARRED = "unstarred", "Entry unstarred"
    ACTION_ADDED = "action_added", "Action item added"
    ACTION_DONE = "action_done", "Action item closed"
    ACTION_REOPENED = "action_reopened", "Action item reopened"


class PostmortemRevision(models.Model):
    """One saved change: who, when, what kind, and each changed field's before and after."""

    postmortem = models.ForeignKey(Postmortem, on_delete=models.CASCADE, related_name="revisions")
    number = models.PositiveIntegerField()
    action = models.CharField(max_length=20, choices=RevisionAction.choices)
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.PROTECT, related_name="+"
    )
    at = models.DateTimeField(default=timezone.now)
    changes = models.JSONField(default=dict, blank=True, help_text='{"field": [before, after]}')
    note = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["-number"]
        constraints = [
            models.UniqueConstraint(
                fields=["postmortem", "number"], name="postmortem_revision_number_unique"
            )
        ]

    def __str__(self) -> str:
        return f"Revision {self.number} of post-mortem #{self.postmortem_id}"
