"""A service's automatic rollback policy from a terminal, through the service the service
page's form calls (rollbacks.automation.auto_rollback_set), with its validation and role.

manage.py auto_rollback show checkout
manage.py auto_rollback set checkout --enabled --severities P1,P2 --max-release-age-hours 6 \
    --no-start --as alice

`set` changes only the fields it is given and keeps the others as they are; the page's form
sends all of them at once. An Incident Commander sets it.
"""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from incidents.errors import DomainError, PermissionDenied
from incidents.management.lookups import add_actor_argument, console_user, service_named
from incidents.models import Environment, Service
from rollbacks.automation import auto_rollback_set, clean_policy


class Command(BaseCommand):
    help = "Show or set a service's automatic rollback policy."

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True)
        show = actions.add_parser("show", help="the policy as it is kept")
        show.add_argument("service")
        change = actions.add_parser("set", help="change the fields given, keep the others")
        change.add_argument("service")
        enabled = change.add_mutually_exclusive_group()
        enabled.add_argument(
            "--enabled",
            dest="enabled",
            action="store_const",
            const=True,
            default=None,
            help="Roll back automatically on alerts",
        )
        enabled.add_argument(
            "--disabled", dest="enabled", action="store_const", const=False, help="Do not"
        )
        change.add_argument(
            "--severities",
            metavar="P1,P2",
            help="The incident severities it acts on, separated by commas ('' for none)",
        )
        change.add_argument(
            "--max-release-age-hours",
            type=int,
            metavar="HOURS",
            help="Act only while the live release is younger than this (1 to 720)",
        )
        start = change.add_mutually_exclusive_group()
        start.add_argument(
            "--start",
            dest="start",
            action="store_const",
            const=True,
            default=None,
            help="Start the run when the incident's approval policy asks no approver",
        )
        start.add_argument(
            "--no-start",
            dest="start",
            action="store_const",
            const=False,
            help="Leave it approved for a person to start",
        )
        add_actor_argument(change)
        for sub in (show, change):
            sub.add_argument(
                "--environment", default=Environment.PRODUCTION, choices=Environment.values
            )

    def handle(self, *args: Any, action: str, **options: Any) -> None:
        service = service_named(options["service"], options["environment"])
        if action == "show":
            self.write_policy(service)
            return
        changes = self.changes(options)
        actor = console_user(options["username"])
        kept = service.auto_rollback if isinstance(service.auto_rollback, dict) else {}
        try:
            saved = auto_rollback_set(service=service, policy={**kept, **changes}, actor=actor)
        except PermissionDenied as error:
            raise CommandError(f"--as {actor.username}: {error}") from error
        except DomainError as error:
            raise CommandError(str(error)) from error
        self.stdout.write(f"Saved the automatic rollback policy of {saved.name}.")
        self.write_policy(saved)

    def changes(self, options: dict[str, Any]) -> dict[str, Any]:
        """The policy fields the options name, as the service page's form sends them."""
        changes: dict[str, Any] = {}
        for field in ("enabled", "max_release_age_hours", "start"):
            if options[field] is not None:
                changes[field] = options[field]
        if options["severities"] is not None:
            listed = [part.strip() for part in options["severities"].split(",")]
            changes["severities"] = [part for part in listed if part]
        if not changes:
            raise CommandError(
                "Nothing to set: give --enabled/--disabled, --severities, "
                "--max-release-age-hours or --start/--no-start."
            )
        return changes

    def write_policy(self, service: Service) -> None:
        self.stdout.write(f"service: {service.name} ({service.environment})")
        try:
            policy = clean_policy(service.auto_rollback or {})
        except ValueError as error:
            # The automation ignores such a policy (automation.auto_rollback_consider).
            # Escaped to ASCII: what the admin stored may hold terminal control characters.
            stored = json.dumps(service.auto_rollback)
            self.stdout.write(f"ignored: {error}; stored as {stored[:500]}")
            return
        self.stdout.write(f"enabled: {'yes' if policy['enabled'] else 'no'}")
        self.stdout.write(f"severities: {', '.join(policy['severities']) or 'none'}")
        self.stdout.write(f"max_release_age_hours: {policy['max_release_age_hours']}")
        self.stdout.write(f"start: {'yes' if policy['start'] else 'no'}")
