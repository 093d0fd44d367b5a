"""API tokens from a terminal, through the same functions as the console's page.

    manage.py api_token create --user deploy-bot --name "deploy pipeline" \\
        --scope releases:write --scope read [--days 90]     # prints the token once
    manage.py api_token list [--user deploy-bot]
    manage.py api_token revoke <prefix>
"""

from __future__ import annotations

import os
from typing import Any

from django.contrib.auth.models import User
from django.core.management.base import BaseCommand, CommandError, CommandParser

from api import tokens
from api.models import SCOPES, ApiToken
from incidents.errors import DomainError


class Command(BaseCommand):
    help = "Make, list and revoke API tokens."

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True)
        create = actions.add_parser("create", help="make a token and print it once")
        create.add_argument("--user", required=True)
        create.add_argument("--name", required=True)
        create.add_argument("--scope", action="append", required=True, choices=list(SCOPES))
        create.add_argument("--days", type=int)
        create.add_argument(
            "--text-from-env",
            metavar="VARIABLE",
            help="adopt the token text in this environment variable (a receiver was given it)",
        )
        create.add_argument(
            "--replace", action="store_true", help="revoke the user's live tokens of this name"
        )
        listing = actions.add_parser("list", help="list tokens (never their text)")
        listing.add_argument("--user")
        revoke = actions.add_parser("revoke", help="revoke a token by its prefix")
        revoke.add_argument("prefix")

    def handle(self, *args: Any, action: str, **options: Any) -> None:
        getattr(self, f"do_{action}")(**options)

    def do_create(
        self, user: str, name: str, scope: list[str], days: int | None, **options: Any
    ) -> None:
        owner = User.objects.filter(username=user).first()
        if owner is None:
            raise CommandError(f"No user {user!r}.")
        given = None
        if options.get("text_from_env"):
            given = os.environ.get(options["text_from_env"], "")
            if not given:
                raise CommandError(f"${options['text_from_env']} is empty.")
        try:
            token, text = tokens.token_create(
                user=owner,
                name=name,
                scopes=scope,
                days=days,
                text=given,
                replace=options.get("replace", False),
            )
        except DomainError as error:
            raise CommandError(str(error)) from error
        scopes = ", ".join(token.scopes)
        if given is not None:  # its holder has the text already: never print it
            self.stdout.write(f"Token {token.prefix} for {user} ({scopes}) adopted.")
            return
        self.stderr.write(f"Token {token.prefix} for {user} ({scopes}); it is not shown again:")
        self.stdout.write(text)

    def do_list(self, user: str | None = None, **_: Any) -> None:
        found = ApiToken.objects.select_related("user").order_by("user__username", "-created_at")
        if user:
            found = found.filter(user__username=user)
        for token in found:
            state = "active" if token.active else "revoked" if token.revoked_at else "expired"
            last = token.last_used_at.isoformat() if token.last_used_at else "never used"
            self.stdout.write(
                f"{token.prefix}\t{token.user.get_username()}\t{token.name}\t"
                f"{','.join(token.scopes)}\t{state}\t{last}"
            )

    def do_revoke(self, prefix: str, **_: Any) -> None:
        token = ApiToken.objects.filter(prefix=prefix).first()
        if token is None:
            raise CommandError(f"No token with prefix {prefix!r}.")
        # The terminal is the operator's: revoking acts as staff would.
        tokens.token_revoke(token=token, actor=token.user)
        self.stdout.write(f"Revoked {token.prefix} ({token.name}) of {token.user.get_username()}.")
