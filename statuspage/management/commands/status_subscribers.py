"""The status page's email subscribers from a terminal, for the support lead's housekeeping,
through statuspage.subscriptions (the same role check as the API).

manage.py status_subscribers count
manage.py status_subscribers list [--confirmed | --unconfirmed] --as sam
manage.py status_subscribers remove ana@example.com --as sam     # or the subscriber's id

`count` shows numbers only; `list` and `remove` show addresses, so they need the Support
Lead's role (`--as`).
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from incidents.errors import DomainError
from incidents.management.lookups import add_actor_argument, console_user, shown
from statuspage import subscriptions
from statuspage.models import Subscriber


def subscriber_named(reference: str) -> Subscriber:
    """The subscriber `reference` names: an id, or an address (any case)."""
    found = None
    if reference.isascii() and reference.isdigit() and len(reference) <= 18:
        found = Subscriber.objects.filter(pk=int(reference)).first()
    else:
        try:
            address = subscriptions.email_clean(reference)
        except DomainError:
            address = ""
        found = Subscriber.objects.filter(email=address).first() if address else None
    if found is None:
        raise CommandError(f"subscriber: none is {shown(reference)!r}.")
    return found


class Command(BaseCommand):
    help = "Count, list and remove the status page's email subscribers."

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True)
        actions.add_parser("count", help="how many have confirmed, and how many not yet")
        listing = actions.add_parser("list", help="every subscriber and what it follows")
        which = listing.add_mutually_exclusive_group()
        which.add_argument("--confirmed", action="store_true", help="only confirmed ones")
        which.add_argument("--unconfirmed", action="store_true", help="only unconfirmed ones")
        remove = actions.add_parser("remove", help="delete a subscriber (an id or address)")
        remove.add_argument("subscriber")
        for sub in (listing, remove):
            add_actor_argument(sub)

    def handle(self, *args: Any, action: str, **options: Any) -> None:
        if action == "count":
            counts = subscriptions.subscriber_counts()
            self.stdout.write(
                f"{counts.confirmed} confirmed, {counts.unconfirmed} not confirmed, "
                f"{counts.total} in all"
            )
            return
        actor = console_user(options["username"])
        try:
            if action == "list":
                self._list(actor, options)
            else:
                found = subscriber_named(options["subscriber"])
                removed = subscriptions.subscriber_remove(subscriber_id=found.pk, actor=actor)
                self.stdout.write(f"Removed {shown(removed.email)} (id {removed.pk}).")
        except DomainError as error:
            raise CommandError(str(error)) from None

    def _list(self, actor: Any, options: dict[str, Any]) -> None:
        confirmed = True if options["confirmed"] else False if options["unconfirmed"] else None
        listed = subscriptions.subscriber_list(actor=actor, confirmed=confirmed)
        for subscriber in listed:
            names = ", ".join(shown(c.name) for c in subscriber.components.all())
            state = "confirmed" if subscriber.is_confirmed else "not confirmed"
            self.stdout.write(
                f"{subscriber.pk}\t{shown(subscriber.email)}\t{state}\t{names or 'every component'}"
            )
        if not listed:
            self.stdout.write("No subscribers.")
