"""The watches kept after successful runs (rollbacks.watch), from a terminal: what the room's
rollback panel shows of each, its state, rounds, last result, next check and end.

manage.py watch list                    # the watches still watching, next due first
manage.py watch list --all --incident 3 # every watch of incident #3, newest first
manage.py watch show 12                 # the watch of run #12

The room offers no action on a watch (a watch starts when a run succeeds and ends on its own
schedule, held or regressed), so neither does this command.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db.models import QuerySet
from django.utils import timezone

from incidents.management.lookups import shown
from rollbacks.models import Run, RunWatch, WatchState

LISTED = 50


def run_number(text: str) -> int:
    """A run's id as the timeline writes it (`#12`) or bare (`12`)."""
    return int(text.removeprefix("#"))


def span(seconds: float) -> str:
    seconds = int(abs(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min"
    hours, minutes = divmod(seconds // 60, 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


def moment(at: datetime, now: datetime) -> str:
    """`at` in the console's time zone, and how far it is from now."""
    away = (at - now).total_seconds()
    relative = f"in {span(away)}" if away >= 0 else f"{span(away)} ago"
    return f"{timezone.localtime(at):%Y-%m-%d %H:%M:%S} ({relative})"


class Command(BaseCommand):
    help = "List the watches kept after successful runs, or show one run's watch."

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True)
        listing = actions.add_parser("list", help="watches, one a line")
        listing.add_argument(
            "--all",
            action="store_true",
            help=f"Finished watches too (held, regressed), newest first, at most {LISTED}",
        )
        listing.add_argument("--incident", type=int, metavar="ID", help="Only this incident's")
        show = actions.add_parser("show", help="one run's watch")
        show.add_argument("run", type=run_number, help="The run's id (12 or #12)")

    def handle(self, *args: Any, action: str, **options: Any) -> None:
        if action == "show":
            self.show_watch(options["run"])
        else:
            self.list_watches(every=options["all"], incident_id=options["incident"])

    def watches(self) -> QuerySet[RunWatch]:
        return RunWatch.objects.select_related("run__incident").prefetch_related(
            "run__steps__service"
        )

    def list_watches(self, *, every: bool, incident_id: int | None) -> None:
        watches = self.watches()
        if incident_id is not None:
            watches = watches.filter(run__incident_id=incident_id)
        if every:
            watches = watches.order_by("-started_at", "-id")
        else:
            watches = watches.filter(state=WatchState.WATCHING).order_by("next_check_at", "id")
        found = list(watches[:LISTED])
        if not found:
            self.stdout.write("No watch is running." if not every else "No watch.")
            return
        now = timezone.now()
        for watch in found:
            watching = watch.state == WatchState.WATCHING
            next_check = f"next {moment(watch.next_check_at, now)}" if watching else "-"
            self.stdout.write(
                f"run #{watch.run_id}\tincident #{watch.run.incident_id}\t"
                f"{watch.get_state_display().lower()}\t{watch.rounds} rounds\t{next_check}\t"
                f"ends {moment(watch.ends_at, now)}\t{self.services(watch.run)}"
            )

    def show_watch(self, run_id: int) -> None:
        watch = self.watches().filter(run_id=run_id).first()
        if watch is None:
            if not Run.objects.filter(pk=run_id).exists():
                raise CommandError(f"run: there is no run #{run_id}.")
            raise CommandError(
                f"run: run #{run_id} has no watch; a run is watched once it succeeds, "
                "if it was no dry run and its services have checks."
            )
        now, run = timezone.now(), watch.run
        self.stdout.write(f"run: #{run.pk} ({self.services(run)})")
        self.stdout.write(f"incident: #{run.incident_id} {shown(run.incident.title)}")
        self.stdout.write(f"state: {watch.get_state_display().lower()}")
        self.stdout.write(f"started: {moment(watch.started_at, now)}")
        self.stdout.write(f"rounds: {watch.rounds}")
        if watch.last_checked_at is not None:
            self.stdout.write(
                f"last check: {moment(watch.last_checked_at, now)}: {shown(watch.last_summary)}"
            )
        if watch.state == WatchState.WATCHING:
            self.stdout.write(f"next check: {moment(watch.next_check_at, now)}")
        self.stdout.write(f"ends: {moment(watch.ends_at, now)}")

    def services(self, run: Run) -> str:
        names = dict.fromkeys(step.service.name for step in run.steps.all())
        return ", ".join(names) or "no services"
