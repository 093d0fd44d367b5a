import os
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from incidents.demo import DEMO_PEOPLE, demo_load


class Command(BaseCommand):
    help = (
        "Load demo people (one per role, with fresh printed passwords), services with "
        "releases, and a live incident. Safe to run again."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--infra",
            type=Path,
            default=os.environ.get("DEMO_INFRA_FILE") or None,
            help="State file written by `python -m devinfra.demo` (default: $DEMO_INFRA_FILE)",
        )
        parser.add_argument(
            "--password", help="Give every demo user this password instead of random ones"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        infra: Path | None = options["infra"]
        if infra is not None and not infra.is_file():
            raise CommandError(f"No demo infrastructure state file at {infra}")
        loaded = demo_load(infra_file=infra, password=options["password"])
        self.stdout.write(self.style.SUCCESS("Demo data loaded."))
        self.stdout.write(f"Services: {', '.join(s.name for s in loaded.services)}")
        self.stdout.write(f"Live incident: #{loaded.incident.pk} {loaded.incident.title}")
        self.stdout.write("\nDemo users (passwords are new each time this runs):")
        width = max(len(p.username) for p in DEMO_PEOPLE)
        for person in DEMO_PEOPLE:
            roles = ", ".join(person.roles)
            self.stdout.write(
                f"  {person.username:<{width}}  {loaded.passwords[person.username]:<14} "
                f"{roles} — {person.does}"
            )
        self.stdout.write(f"  {'admin':<{width}}  {loaded.admin_password:<14} superuser (/admin/)")
