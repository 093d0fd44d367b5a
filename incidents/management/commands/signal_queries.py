"""The PromQL a service's signals are read with (incidents.decisions.readings), from a
terminal, through the service the service page's form calls (services.service_signals_set),
with its validation and role.

manage.py signal_queries show checkout
manage.py signal_queries set checkout --error-rate 'sum(rate(errors[5m])) * 100' --as alice
manage.py signal_queries set checkout --clear memory_percent --as alice

`set` changes only the signals it names and keeps the others; the page's form sends all of
them at once. An empty query clears its signal, as a blank field on the page does.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from incidents.decisions.readings import QUERY_MAX, SIGNALS
from incidents.errors import DomainError, PermissionDenied
from incidents.management.lookups import add_actor_argument, console_user, service_named, shown
from incidents.models import Environment, Service
from incidents.services import service_signals_set


def signal_named(text: str) -> str:
    """A signal as the options spell it (`p99-ms`) or as it is kept (`p99_ms`)."""
    return text.replace("-", "_")


class Command(BaseCommand):
    help = "Show or set the PromQL queries the decision helper reads for a service."

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True)
        show = actions.add_parser("show", help="each signal's query")
        show.add_argument("service")
        change = actions.add_parser("set", help="change the signals named, keep the others")
        change.add_argument("service")
        for key, label in SIGNALS.items():
            change.add_argument(
                f"--{key.replace('_', '-')}",
                dest=key,
                metavar="PROMQL",
                # argparse formats help with %: the labels' "(%)" must be doubled.
                help=f"{label.replace('%', '%%')}: at most {QUERY_MAX} characters",
            )
        change.add_argument(
            "--clear",
            action="append",
            default=[],
            type=signal_named,
            choices=list(SIGNALS),
            metavar="SIGNAL",
            help=f"Forget this signal's query; repeat it ({', '.join(SIGNALS)})",
        )
        add_actor_argument(change)
        for sub in (show, change):
            sub.add_argument(
                "--environment", default=Environment.PRODUCTION, choices=Environment.values
            )

    def handle(self, *args: Any, action: str, **options: Any) -> None:
        service = service_named(options["service"], options["environment"])
        if action == "show":
            self.write_queries(service)
            return
        changes = self.changes(options)
        actor = console_user(options["username"])
        stored = service.signal_queries if isinstance(service.signal_queries, dict) else {}
        # The page's form sends the known signals only; a stray key is dropped the same way.
        kept = {key: query for key, query in stored.items() if key in SIGNALS}
        try:
            saved = service_signals_set(service=service, queries={**kept, **changes}, actor=actor)
        except PermissionDenied as error:
            raise CommandError(f"--as {actor.username}: {error}") from error
        except DomainError as error:
            raise CommandError(str(error)) from error
        self.stdout.write(f"Saved the signal queries of {saved.name}.")
        self.write_queries(saved)

    def changes(self, options: dict[str, Any]) -> dict[str, str]:
        """The queries the options give, a cleared signal as an empty one."""
        changes = {key: options[key] for key in SIGNALS if options[key] is not None}
        for key in options["clear"]:
            if key in changes:
                raise CommandError(f"{key}: give a query or --clear it, not both.")
            changes[key] = ""
        if not changes:
            raise CommandError(
                "Nothing to set: give a signal's query (e.g. --error-rate) or --clear."
            )
        return changes

    def write_queries(self, service: Service) -> None:
        self.stdout.write(f"service: {service.name} ({service.environment})")
        queries = service.signal_queries if isinstance(service.signal_queries, dict) else {}
        for key in SIGNALS:
            query = queries.get(key)
            self.stdout.write(f"{key}: {shown(str(query)) if query else '(not set)'}")
