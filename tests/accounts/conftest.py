"""The stand-in identity provider (devinfra.oidc_idp) in a process of its own, and the
console served over HTTP on the port the provider sends people back to."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
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
def identity_provider_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The provider's directory file and database."""
    return tmp_path_factory.mktemp("idp")


@pytest.fixture(scope="module")
def identity_provider(console_port: int, identity_provider_dir: Path) -> Iterator[IdentityProvider]:
    provider = start_identity_provider(
        people=PEOPLE,
        redirect_uris=[f"http://127.0.0.1:{console_port}/oidc/callback/"],
        work_dir=identity_provider_dir,
        log_file=identity_provider_dir / "idp.log",
    )
    yield provider
    provider.stop()


@dataclass(frozen=True)
class OtherClient:
    """Another application registered at the same provider, for the same people."""

    client_id: str
    client_secret: str
    redirect_uri: str


@pytest.fixture(scope="module")
def other_client(identity_provider: IdentityProvider, identity_provider_dir: Path) -> OtherClient:
    """A second client at the running provider, registered the way the provider registers
    the console's (devinfra.oidc_idp's prepare) in its own database."""
    other = OtherClient("other-app", "other-app-secret", "http://other-app.example/callback/")
    registration = (
        "import sys; from pathlib import Path; from devinfra.oidc_idp.__main__ import prepare; "
        "prepare(Path(sys.argv[1]), sys.argv[2], sys.argv[3], [sys.argv[4]])"
    )
    subprocess.run(
        [sys.executable, "-c", registration, str(identity_provider_dir / "idp-directory.json")]
        + [other.client_id, other.client_secret, other.redirect_uri],
        env={
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "devinfra.oidc_idp.settings",
            "IDP_DATABASE": str(identity_provider_dir / "idp.sqlite3"),
            "IDP_PORT": str(identity_provider.server.port),
        },
        cwd=Path(__file__).resolve().parents[2],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return other


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
