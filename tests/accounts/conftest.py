"""The stand-in identity provider (devinfra.oidc_idp) in a process of its own, and the
console served over HTTP on the port the provider sends people back to."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import connections

from devinfra.oidc_idp.launch import IdentityProvider, start_identity_provider
from tests.asgi import AsgiServer, free_port

IDP_PASSWORD = "corporate-password-1"
ROLE_MAP = {
    "sre-oncall": ["Incident Commander", "On-call"],
    "support": ["Support Lead"],
    "dba": ["DBA"],
}


def person(username: str, groups: list[str], **more: Any) -> dict[str, Any]:
    return {
        "username": username,
        "password": IDP_PASSWORD,
        "email": f"{username}@corp.example",
        "name": f"{username.title()} Example",
        "groups": groups,
        **more,
    }


PEOPLE = [
    person("alice", ["sre-oncall", "engineering"], mfa=True),
    person("carol", ["sre-oncall"]),
    person("bob", ["support"]),
    person("dora", ["support"], email="dora@local.example"),
    person("mallory", [], email="admin@local.example", email_verified=False),
    person("erin", ["support"]),
    person("li", ["support"], preferred_username="李小龙", name="李 小龙"),
    person("long", [], preferred_username="x" * 149 + "é" * 60),
    person("taken", [], preferred_username="bob"),
]


@pytest.fixture(scope="module")
def console_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def identity_provider(
    console_port: int, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[IdentityProvider]:
    work_dir: Path = tmp_path_factory.mktemp("idp")
    provider = start_identity_provider(
        people=PEOPLE,
        redirect_uris=[f"http://127.0.0.1:{console_port}/oidc/callback/"],
        work_dir=work_dir,
        log_file=work_dir / "idp.log",
    )
    yield provider
    provider.stop()


@pytest.fixture
def sso_settings(settings: Any, identity_provider: IdentityProvider) -> Any:
    """Single sign-on on, through the stand-in provider, with a role map."""
    for name, value in identity_provider.console_settings().items():
        setattr(settings, name, value)
    settings.OIDC_OP_ISSUER = identity_provider.issuer
    settings.SSO_ENABLED = True
    settings.AUTHENTICATION_BACKENDS = [
        *settings.AUTHENTICATION_BACKENDS,
        "accounts.sso.SsoBackend",
    ]
    settings.OIDC_ROLE_MAP = ROLE_MAP
    settings.OIDC_TIMEOUT = 5
    settings.REQUIRE_TWO_FACTOR = True
    settings.SSO_TRUSTS_PROVIDER_MFA = False
    return settings


@pytest.fixture
def sso_console(sso_settings: Any, console_port: int, roles: dict) -> Iterator[AsgiServer]:
    """The console over HTTP on the port the provider redirects to (needs a transactional
    test: the server's threads read the database)."""
    database = connections.settings["default"]
    saved = database["CONN_MAX_AGE"]
    database["CONN_MAX_AGE"] = 0
    server = AsgiServer(port=console_port)
    server.start()
    yield server
    server.stop()
    database["CONN_MAX_AGE"] = saved
