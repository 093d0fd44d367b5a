"""Single sign-on from a terminal (accounts.sso).

manage.py sso discover https://idp.example.com/realms/acme   # prints the OIDC_* lines
manage.py sso check                                          # reaches the provider
manage.py sso identities                                     # who signs in through it
manage.py sso unlink alice                                   # forget alice's identity
"""

from __future__ import annotations

import shlex
from typing import Any

import requests
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.checks import SSO_ENDPOINTS
from accounts.models import SsoIdentity

DISCOVERY_FIELDS = {
    "OIDC_OP_ISSUER": "issuer",
    "OIDC_OP_AUTHORIZATION_ENDPOINT": "authorization_endpoint",
    "OIDC_OP_TOKEN_ENDPOINT": "token_endpoint",
    "OIDC_OP_USER_ENDPOINT": "userinfo_endpoint",
    "OIDC_OP_JWKS_ENDPOINT": "jwks_uri",
}


def fetch_json(url: str) -> Any:
    try:
        response = requests.get(url, timeout=settings.OIDC_TIMEOUT)
        response.raise_for_status()
        return response.json()
    except (requests.RequestException, ValueError) as error:
        raise CommandError(f"{url}: {type(error).__name__}: {error}") from error


class Command(BaseCommand):
    help = "Set up and look after single sign-on (OpenID Connect)."

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True)
        discover = actions.add_parser("discover", help="print the settings for a provider")
        discover.add_argument("issuer", help="the provider's issuer URL")
        actions.add_parser("check", help="reach the configured provider's endpoints")
        actions.add_parser("identities", help="list the accounts linked to SSO identities")
        unlink = actions.add_parser("unlink", help="forget a user's SSO identities")
        unlink.add_argument("username")

    def handle(self, *args: Any, action: str, **options: Any) -> None:
        getattr(self, f"do_{action}")(**options)

    def do_discover(self, issuer: str, **options: Any) -> None:
        url = issuer.rstrip("/") + "/.well-known/openid-configuration"
        document = fetch_json(url)
        if not isinstance(document, dict):
            raise CommandError(f"{url} did not answer with a JSON object")
        missing = [field for field in DISCOVERY_FIELDS.values() if not document.get(field)]
        if missing:
            raise CommandError(f"{url} does not give {', '.join(missing)}")
        if document["issuer"].rstrip("/") != issuer.rstrip("/"):
            raise CommandError(f"{url} names another issuer: {document['issuer']}")
        algorithms = document.get("id_token_signing_alg_values_supported") or []
        self.stdout.write("# Add to .env; the client id and secret come from the provider.")
        for name, field in DISCOVERY_FIELDS.items():
            self.stdout.write(f"{name}={shlex.quote(str(document[field]))}")
        if "RS256" not in algorithms and algorithms:
            self.stdout.write(f"OIDC_RP_SIGN_ALGO={shlex.quote(str(algorithms[0]))}")

    def do_check(self, **options: Any) -> None:
        if not settings.SSO_ENABLED:
            raise CommandError("Single sign-on is off: OIDC_RP_CLIENT_ID is not set")
        keys = fetch_json(settings.OIDC_OP_JWKS_ENDPOINT)
        count = len(keys.get("keys", [])) if isinstance(keys, dict) else 0
        if not count:
            raise CommandError(f"{settings.OIDC_OP_JWKS_ENDPOINT} lists no signing keys")
        self.stdout.write(f"signing keys: {count} at {settings.OIDC_OP_JWKS_ENDPOINT}")
        for name in SSO_ENDPOINTS:
            self.stdout.write(f"{name}: {getattr(settings, name)}")
        role_map = settings.OIDC_ROLE_MAP or {}
        self.stdout.write(f"roles from the {settings.OIDC_ROLES_CLAIM!r} claim:")
        for value, roles in role_map.items():
            self.stdout.write(f"  {value} → {', '.join(roles)}")
        if not role_map:
            self.stdout.write("  (no OIDC_ROLE_MAP: roles are given in the console)")
        trust = "always" if settings.SSO_TRUSTS_PROVIDER_MFA else "when its amr claim says so"
        self.stdout.write(f"provider's second factor accepted: {trust}")

    def do_identities(self, **options: Any) -> None:
        rows = SsoIdentity.objects.select_related("user").order_by("user__username")
        for identity in rows:
            last = identity.last_sign_in_at.isoformat() if identity.last_sign_in_at else "never"
            roles = ", ".join(identity.user.groups.values_list("name", flat=True)) or "no role"
            self.stdout.write(
                f"{identity.user.get_username()}\t{identity.subject}\t{identity.issuer}\t"
                f"last {last}\t{roles}"
            )
        if not rows:
            self.stdout.write("No account signs in through SSO yet.")

    def do_unlink(self, username: str, **options: Any) -> None:
        deleted, _ = SsoIdentity.objects.filter(user__username=username).delete()
        if not deleted:
            raise CommandError(f"{username} has no SSO identity")
        self.stdout.write(f"Unlinked {deleted} identity of {username}.")
