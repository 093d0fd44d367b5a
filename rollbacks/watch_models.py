"""The watch kept after a run succeeds (rollbacks.watch)."""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class WatchState(models.TextChoices):
    WATCHING = "watching", "Watching"
    PASSED = "passed", "Held"
    REGRESSED = "regressed", "Regressed"
    ENDED = "ended", "Ended early"


class RunWatch(models.Model):
    """The watch after a run succeeded (rollbacks.watch): its services' checks run again at
    the intervals of ROLLBACK_WATCH_SCHEDULE until `ends_at`; a failure marks it regressed."""

    run = models.OneToOneField("rollbacks.Run", on_delete=models.CASCADE, related_name="watch")
    state = models.CharField(max_length=20, choices=WatchState.choices, default=WatchState.WATCHING)
    started_at = models.DateTimeField(default=timezone.now)
    ends_at = models.DateTimeField()
    next_check_at = models.DateTimeField()
    rounds = models.PositiveIntegerField(default=0)
    last_checked_at = models.DateTimeField(null=True, blank=True)
    last_summary = models.CharField(max_length=500, blank=True)
    # A beat that has taken the round due (so two beats never run it twice).
    claimed_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["state", "next_check_at"])]

    def __str__(self) -> str:
        return f"watch of run {self.run_id}: {self.state}"
