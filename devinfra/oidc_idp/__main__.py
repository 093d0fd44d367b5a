"""Run the stand-in identity provider: `python -m devinfra.oidc_idp --help`."""

from __future__ import annotations

import argparse
import io
import os
import secrets
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path


def prepare(directory: Path, client_id: str, client_secret: str, redirect_uris: list[str]) -> None:
    """Create the tables, a signing key, the console's client and the directory's people."""
    import django

    django.setup()
    from django.contrib.auth.models import User
    from django.core.management import call_command
    from oidc_provider.models import Client, ResponseType, RSAKey

    from devinfra.oidc_idp.claims import directory as people

    call_command("migrate", verbosity=0)
    if not RSAKey.objects.exists():
        call_command("creatersakey", stdout=io.StringIO())
    client, _ = Client.objects.update_or_create(
        client_id=client_id,
        defaults={
            "name": "Backout",
            "client_type": "confidential",
            "client_secret": client_secret,
            "jwt_alg": "RS256",
            "require_consent": False,
            "reuse_consent": True,
        },
    )
    client.redirect_uris = redirect_uris
    client.save()
    client.response_types.set([ResponseType.objects.get(value="code")])
    os.environ["IDP_DIRECTORY"] = str(directory)
    for username, person in people().items():
        user, _ = User.objects.get_or_create(username=username)
        user.set_password(person["password"])
        user.email = person.get("email", "")
        user.save()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devinfra.oidc_idp", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--directory", type=Path, required=True, help="the people (JSON)")
    parser.add_argument("--client-id", required=True)
    parser.add_argument("--client-secret", required=True)
    parser.add_argument("--redirect-uri", action="append", required=True)
    parser.add_argument("--database", type=Path, help="SQLite file (default: a temporary one)")
    options = parser.parse_args(argv)
    database = options.database or Path(tempfile.mkdtemp(prefix="idp-")) / "idp.sqlite3"
    os.environ.update(
        DJANGO_SETTINGS_MODULE="devinfra.oidc_idp.settings",
        IDP_PORT=str(options.port),
        IDP_DATABASE=str(database),
        IDP_DIRECTORY=str(options.directory.resolve()),
        IDP_SECRET_KEY=secrets.token_urlsafe(32),
    )
    prepare(
        options.directory.resolve(),
        options.client_id,
        options.client_secret,
        options.redirect_uri,
    )
    from django.core.servers.basehttp import run
    from django.core.wsgi import get_wsgi_application

    print(f"identity provider on http://127.0.0.1:{options.port}/openid/", flush=True)
    run("127.0.0.1", options.port, get_wsgi_application(), threading=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
