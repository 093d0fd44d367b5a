"""Releases from a terminal, through the same services as the console and the API.

manage.py release register checkout v2.4.1 registry.example.com/checkout:v2.4.1 --as alice
manage.py release known-good checkout v2.4.0 --reason "30 min clean" --as alice
manage.py release known-good checkout v2.4.1 --unmark --as alice
manage.py release list checkout
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from django.core.management.base import BaseCommand, CommandError, CommandParser

from incidents.errors import DomainError
from incidents.management.lookups import add_actor_argument
from incidents.models import Environment, Release, Service
from incidents.services import release_mark_known_good
from rollbacks.services.releases import release_register


class Command(BaseCommand):
    help = "Register releases, mark them known-good, list them."

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True)
        register = actions.add_parser("register", help="record a release and save its backup")
        register.add_argument("service")
        register.add_argument("version")
        register.add_argument("artifact")
        register.add_argument("--notes", default="")
        known_good = actions.add_parser("known-good", help="mark (or --unmark) a release")
        known_good.add_argument("service")
        known_good.add_argument("version")
        known_good.add_argument("--unmark", action="store_true")
        known_good.add_argument("--reason", default="")
        listing = actions.add_parser("list", help="a service's releases, newest first")
        listing.add_argument("service")
        for sub in (register, known_good, listing):
            sub.add_argument("--environment", default=Environment.PRODUCTION)
            add_actor_argument(sub)

    def handle(self, *args: Any, action: str, **options: Any) -> None:
        name = options.pop("service")
        service = Service.objects.filter(name=name, environment=options["environment"]).first()
        if service is None:
            raise CommandError(f"No {options['environment']} service named {name!r}.")
        try:
            getattr(self, f"do_{action.replace('-', '_')}")(service, **options)
        except DomainError as error:
            raise CommandError(str(error)) from error

    def actor(self, username: str) -> User:
        user = User.objects.filter(username=username, is_active=True).first()
        if user is None:
            raise CommandError(f"No active console user named {username!r}; pass --as USERNAME.")
        return user

    def do_register(self, service: Service, **options: Any) -> None:
        release, created, said = release_register(
            service=service,
            version=options["version"],
            artifact=options["artifact"],
            notes=options["notes"],
            actor=self.actor(options["username"]),
        )
        verb = "registered" if created else "already registered"
        self.stdout.write(f"{service.name} {release.version} {verb} (release {release.pk}); {said}")

    def do_known_good(self, service: Service, **options: Any) -> None:
        release = Release.objects.filter(service=service, version=options["version"]).first()
        if release is None:
            raise CommandError(f"{service.name} has no release {options['version']!r}.")
        marked = release_mark_known_good(
            release=release,
            actor=self.actor(options["username"]),
            known_good=not options["unmark"],
            reason=options["reason"],
        )
        state = "known-good" if marked.known_good else "not known-good"
        self.stdout.write(f"{service.name} {marked.version} is {state}.")

    def do_list(self, service: Service, **options: Any) -> None:
        for release in service.releases.order_by("-shipped_at", "-id")[:50]:
            good = "known-good" if release.known_good else "-"
            backup = ",".join(sorted(release.backup or {})) or "no backup"
            self.stdout.write(
                f"{release.version}\t{release.shipped_at:%Y-%m-%d %H:%M}\t{good}\t{backup}\t"
                f"{release.artifact}"
            )
