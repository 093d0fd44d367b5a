"""Services from what a platform runs, from a terminal (rollbacks.services.discovery):

    manage.py discover kubernetes --namespace shop [--selector tier=web]
    manage.py discover ecs --cluster storefront --import checkout --import cart
    manage.py discover route53 --zone example.com --import-all --as alice
    manage.py discover rds | static

Without --import/--import-all it lists the candidates: new, the same, or changed.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from django.core.management.base import BaseCommand, CommandError, CommandParser

from executors.discovery import SOURCES
from incidents.errors import DomainError
from incidents.management.lookups import add_actor_argument
from incidents.models import Environment
from rollbacks.services.discovery import NEW, SAME, discovery_import, discovery_scan


class Command(BaseCommand):
    help = "List what a platform runs beside the console's services; import what you name."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("source", choices=list(SOURCES))
        parser.add_argument("--namespace", default="")
        parser.add_argument("--selector", default="")
        parser.add_argument("--cluster", default="")
        parser.add_argument("--zone", default="")
        parser.add_argument("--environment", default=Environment.PRODUCTION)
        parser.add_argument("--import", dest="names", action="append", default=[])
        parser.add_argument("--import-all", action="store_true", help="every new or changed one")
        add_actor_argument(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        username = options["username"]
        # PostgreSQL text holds no NUL: such a name is no user's, and no query may carry it.
        actor = (
            None
            if "\x00" in username
            else User.objects.filter(username=username, is_active=True).first()
        )
        if actor is None:
            raise CommandError(f"No active console user {username!r}; pass --as.")
        params = {name: options[name] for name in ("namespace", "selector", "cluster", "zone")}
        source, environment = options["source"], options["environment"]
        try:
            rows = discovery_scan(
                source=source, params=params, environment=environment, actor=actor
            )
            for row in rows:
                self.stdout.write(
                    f"{row.state:<8} {row.candidate.name:<40} {row.candidate.description}"
                    f"  [{row.candidate.live[:60]}]"
                )
            names = options["names"]
            if options["import_all"]:
                names = [row.candidate.name for row in rows if row.state != SAME]
            if not names:
                new = sum(1 for row in rows if row.state == NEW)
                self.stdout.write(f"{len(rows)} found, {new} new; --import NAME to import.")
                return
            imported = discovery_import(
                source=source, params=params, environment=environment, names=names, actor=actor
            )
        except DomainError as error:
            raise CommandError(str(error)) from error
        self.stdout.write(
            f"Imported {len(imported)}: " + (", ".join(s.name for s in imported) or "none changed")
        )
