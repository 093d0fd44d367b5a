"""What the management commands share: the `--as` option, naming a service or a console user
from a terminal (a CommandError naming the option when there is none), and text safe to
print on one line."""

from __future__ import annotations

import getpass
import os
from argparse import ArgumentParser

from django.contrib.auth.models import User
from django.core.management.base import CommandError

from incidents.models import Service


def service_named(name: str, environment: str) -> Service:
    """The service `name` in `environment`, or a CommandError naming the argument."""
    service = None
    if "\x00" not in name:  # PostgreSQL text cannot hold NUL: no service is named so
        service = Service.objects.filter(name=name, environment=environment).first()
    if service is None:
        raise CommandError(f"service: no {environment} service named {name!r}.")
    return service


def console_user(username: str) -> User:
    """The active console user `username` (the `--as` option), or a CommandError."""
    user = None
    if "\x00" not in username:
        user = User.objects.filter(username=username, is_active=True).first()
    if user is None:
        raise CommandError(f"--as: no active console user named {username!r}.")
    return user


def shown(text: str) -> str:
    """`text` safe for one line of a terminal: control and format characters escaped."""
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in text)


def add_actor_argument(parser: ArgumentParser) -> None:
    """`--as USER`: who acts, $BACKOUT_USER or the login name by default (console_user)."""
    parser.add_argument(
        "--as",
        dest="username",
        default=os.environ.get("BACKOUT_USER") or getpass.getuser(),
        help="The console user acting (default: $BACKOUT_USER, else your login name)",
    )
