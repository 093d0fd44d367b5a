"""Scheduled maintenances from a terminal, through the services and the forms the console's
maintenance pages use (statuspage.maintenances, statuspage.maintenance_forms), with their
checks and role.

manage.py status_maintenance list
manage.py status_maintenance schedule "Database upgrade" --start "2026-12-05 02:00" \\
    --end "2026-12-05 03:00" --component "Order history" --body "We upgrade…" --as sam
manage.py status_maintenance show 4
manage.py status_maintenance update 4 --status in_progress --body "Started." --as sam
manage.py status_maintenance edit 4 --end "2026-12-05 04:00" --as sam
manage.py status_maintenance cancel 4 --reason "Moved to next week." --as sam
manage.py status_maintenance demo        # the demo's maintenance (what bin/demo runs)

Times without an offset are in the console's time zone (TIME_ZONE); ISO 8601 with an
offset is taken as given. A component is named by its id or its name.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from incidents.errors import DomainError, PermissionDenied
from incidents.management.lookups import add_actor_argument, console_user, shown
from statuspage import maintenance_selectors, maintenances
from statuspage.maintenance_forms import (
    UPDATE_STATUSES,
    MaintenanceForm,
    MaintenanceUpdateForm,
    zone_name,
)
from statuspage.management.lookups import component_named
from statuspage.models import Maintenance, MaintenanceImpact

# `list` shows the active and upcoming ones and this many of the latest completed.
PAST_LISTED = 10

OPTION_FOR = {
    "name": "name",
    "scheduled_for": "--start",
    "scheduled_until": "--end",
    "components": "--component",
    "impact": "--impact",
    "body": "--body",
    "status": "--status",
    "reason": "--reason",
}


def maintenance_named(reference: str) -> Maintenance:
    """The maintenance whose id `reference` is, or a CommandError."""
    found = None
    if reference.isascii() and reference.isdigit() and len(reference) <= 18:
        found = Maintenance.objects.filter(pk=int(reference)).first()
    if found is None:
        raise CommandError(f"maintenance: none has the id {shown(reference)!r}.")
    return found


def checked(form: Any) -> dict[str, Any]:
    """The form's cleaned data, or a CommandError naming each refused option."""
    if form.is_valid():
        return dict(form.cleaned_data)
    parts = [
        f"{OPTION_FOR.get(field, field)}: {' '.join(str(m) for m in errors)}"
        for field, errors in form.errors.items()
    ]
    raise CommandError(" ".join(parts))


def local(moment: Any) -> str:
    return f"{timezone.localtime(moment):%Y-%m-%d %H:%M %Z}"


class Command(BaseCommand):
    help = "List, schedule, show, update, edit and cancel scheduled maintenances."

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True)
        actions.add_parser("list", help="active, upcoming and the latest past maintenances")
        actions.add_parser("demo", help="schedule the demo's maintenance (once)")
        show = actions.add_parser("show", help="a maintenance and its updates")
        show.add_argument("maintenance", help="its id")
        schedule = actions.add_parser("schedule", help="schedule a maintenance")
        schedule.add_argument("name")
        edit = actions.add_parser("edit", help="change a scheduled one; what is not given stays")
        edit.add_argument("maintenance", help="its id")
        edit.add_argument("--name")
        edit.add_argument("--no-components", action="store_true", help="cover no component")
        for sub in (schedule, edit):
            sub.add_argument("--start", help=f"YYYY-MM-DD HH:MM ({zone_name()}) or ISO 8601")
            sub.add_argument("--end", help=f"YYYY-MM-DD HH:MM ({zone_name()}) or ISO 8601")
            sub.add_argument(
                "--component", action="append", default=[], help="a component; repeat it"
            )
            sub.add_argument("--impact", choices=MaintenanceImpact.values)
            sub.add_argument("--auto-start", dest="auto_start", action="store_true", default=None)
            sub.add_argument("--no-auto-start", dest="auto_start", action="store_false")
            sub.add_argument(
                "--auto-complete", dest="auto_complete", action="store_true", default=None
            )
            sub.add_argument("--no-auto-complete", dest="auto_complete", action="store_false")
        update = actions.add_parser("update", help="post an update (moving it forward)")
        update.add_argument("maintenance", help="its id")
        update.add_argument("--status", required=True, choices=[s for s, _ in UPDATE_STATUSES])
        cancel = actions.add_parser("cancel", help="call off a scheduled maintenance")
        cancel.add_argument("maintenance", help="its id")
        cancel.add_argument("--reason", default="")
        for sub in (schedule, update):
            sub.add_argument("--body", required=True, help="the update's Markdown")
        for sub in (schedule, update, cancel):
            sub.add_argument("--notify", action="store_true", help="notify subscribers")
        for sub in (schedule, edit, update, cancel):
            add_actor_argument(sub)

    def handle(self, *args: Any, action: str, **options: Any) -> None:
        if action == "list":
            self.write_list()
            return
        if action == "demo":
            created = maintenances.maintenance_demo_schedule()
            self.stdout.write(
                f"Scheduled {shown(created.name)} (id {created.pk})."
                if created
                else "The demo's maintenance is already scheduled (or has no component)."
            )
            return
        if action == "show":
            self.write_one(maintenance_named(options["maintenance"]))
            return
        actor = console_user(options["username"])
        try:
            getattr(self, f"do_{action}")(actor, **options)
        except PermissionDenied as error:
            raise CommandError(f"--as {actor.username}: {error}") from error
        except DomainError as error:
            raise CommandError(str(error)) from error

    def component_ids(self, references: list[str]) -> list[int]:
        return [component_named(reference).pk for reference in references]

    def do_schedule(self, actor: Any, **options: Any) -> None:
        data = checked(
            MaintenanceForm(
                {
                    "name": options["name"],
                    "scheduled_for": options["start"] or "",
                    "scheduled_until": options["end"] or "",
                    "components": self.component_ids(options["component"]),
                    "impact": options["impact"] or MaintenanceImpact.MAINTENANCE,
                    "auto_start": options["auto_start"] is not False,
                    "auto_complete": options["auto_complete"] is not False,
                    "body": options["body"],
                    "notify_subscribers": options["notify"],
                }
            )
        )
        created = maintenances.maintenance_schedule(
            actor=actor,
            name=data["name"],
            scheduled_for=data["scheduled_for"],
            scheduled_until=data["scheduled_until"],
            body=data["body"],
            component_ids=data["components"],
            impact=data["impact"],
            auto_start=data["auto_start"],
            auto_complete=data["auto_complete"],
            notify_subscribers=data["notify_subscribers"],
        )
        self.stdout.write(f"Scheduled {shown(created.name)} (id {created.pk}).")

    def do_edit(self, actor: Any, **options: Any) -> None:
        maintenance = maintenance_named(options["maintenance"])
        if options["no_components"] and options["component"]:
            raise CommandError("--component: give components or --no-components, not both.")
        current = MaintenanceForm.initial_for(maintenance)
        components = current["components"]
        if options["component"] or options["no_components"]:
            components = self.component_ids(options["component"])
        given = {
            "name": options["name"],
            "scheduled_for": options["start"],
            "scheduled_until": options["end"],
            "impact": options["impact"],
            "auto_start": options["auto_start"],
            "auto_complete": options["auto_complete"],
        }
        data = checked(
            MaintenanceForm(
                {
                    **current,
                    **{key: value for key, value in given.items() if value is not None},
                    "components": components,
                },
                with_body=False,
            )
        )
        saved = maintenances.maintenance_edit(
            actor=actor,
            maintenance=maintenance,
            name=data["name"],
            scheduled_for=data["scheduled_for"],
            scheduled_until=data["scheduled_until"],
            component_ids=data["components"],
            impact=data["impact"],
            auto_start=data["auto_start"],
            auto_complete=data["auto_complete"],
        )
        self.stdout.write(f"Saved {shown(saved.name)} (id {saved.pk}).")

    def do_update(self, actor: Any, **options: Any) -> None:
        maintenance = maintenance_named(options["maintenance"])
        data = checked(
            MaintenanceUpdateForm(
                {
                    "status": options["status"],
                    "body": options["body"],
                    "notify_subscribers": options["notify"],
                }
            )
        )
        update = maintenances.maintenance_update_post(
            actor=actor,
            maintenance=maintenance,
            status=data["status"],
            body=data["body"],
            notify_subscribers=data["notify_subscribers"],
        )
        self.stdout.write(f"Published ({update.status}) on {shown(maintenance.name)}.")

    def do_cancel(self, actor: Any, **options: Any) -> None:
        maintenance = maintenance_named(options["maintenance"])
        maintenances.maintenance_cancel(
            actor=actor,
            maintenance=maintenance,
            reason=options["reason"],
            notify_subscribers=options["notify"],
        )
        self.stdout.write(f"Cancelled {shown(maintenance.name)}.")

    def write_list(self) -> None:
        listed = maintenance_selectors.shown()
        past = maintenance_selectors.past(PAST_LISTED)
        if not listed and not past:
            self.stdout.write("No maintenances.")
        for maintenance in [*listed, *past]:
            self.stdout.write(
                f"{maintenance.pk:>4}  {maintenance.status:<11} {local(maintenance.scheduled_for)}"
                f" → {local(maintenance.scheduled_until)}  {shown(maintenance.name)}"
            )

    def write_one(self, maintenance: Maintenance) -> None:
        self.stdout.write(f"{shown(maintenance.name)} (id {maintenance.pk})")
        self.stdout.write(
            f"  {maintenance.status}, impact {maintenance.impact}, "
            f"{local(maintenance.scheduled_for)} → {local(maintenance.scheduled_until)}"
        )
        names = ", ".join(shown(c.name) for c in maintenance.components.all()) or "none"
        self.stdout.write(f"  components: {names}")
        self.stdout.write(
            f"  starts automatically: {'yes' if maintenance.auto_start else 'no'}; "
            f"completes automatically: {'yes' if maintenance.auto_complete else 'no'}"
        )
        for update in maintenance.updates.order_by("published_at", "id"):
            who = update.published_by.get_username() if update.published_by else "automatic"
            self.stdout.write(f"  - {local(update.published_at)} {update.status} ({who})")
            for line in update.body.splitlines():
                self.stdout.write(f"      {shown(line)}")
