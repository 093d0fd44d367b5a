"""The protocol's guards, against the real provider over HTTP: a refusal nobody asked for,
an ID token for another client or with another nonce, a code replayed into another
session, PKCE, and where people land after signing in."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlencode, urlsplit

import jwt
import pytest
import requests
from django.contrib.auth.models import User
from django.core.exceptions import SuspiciousOperation
from django.urls import reverse
from mozilla_django_oidc.auth import OIDCAuthenticationBackend

from accounts.sso import SsoBackend
from devinfra.oidc_idp.launch import IdentityProvider
from tests.accounts.conftest import OtherClient
from tests.accounts.sso_client import (
    flash,
    query_of,
    sign_in_at_provider,
    sso_sign_in,
    start_sign_in,
)
from tests.asgi import free_port

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_refusal_nobody_asked_for_does_not_sign_anyone_out(sso_console):
    session, _ = sso_sign_in(sso_console, "alice")
    answer = session.get(
        f"{sso_console.url}/oidc/callback/", params={"error": "x", "state": "other"}, timeout=10
    )
    assert answer.url == f"{sso_console.url}/accounts/login/"
    still = session.get(f"{sso_console.url}/incidents/", allow_redirects=False, timeout=10)
    assert still.status_code == 200


# -- the protocol's own protections: audience, nonce, PKCE, where people land --------------


def id_token_for(provider: IdentityProvider, client: OtherClient, username: str, nonce: str) -> str:
    """An ID token the provider issues to `client` for `username`, with `nonce` in it."""
    session = requests.Session()
    authorization = f"{provider.issuer}/authorize?" + urlencode(
        {
            "client_id": client.client_id,
            "response_type": "code",
            "scope": "openid email profile groups",
            "redirect_uri": client.redirect_uri,
            "state": "state-of-the-other-app",
            "nonce": nonce,
        }
    )
    code = query_of(sign_in_at_provider(session, authorization, username))["code"]
    tokens = requests.post(
        f"{provider.issuer}/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": client.redirect_uri,
            "client_id": client.client_id,
            "client_secret": client.client_secret,
        },
        timeout=10,
    )
    assert tokens.status_code == 200, tokens.text
    return str(tokens.json()["id_token"])


class SubstitutingTokenEndpoint(ThreadingHTTPServer):
    """Between the console and the provider's token endpoint: passes the exchange on and
    answers with the provider's tokens, the ID token replaced by `id_token` once set."""

    def __init__(self, token_endpoint: str) -> None:
        self.id_token = ""
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                answer = requests.post(
                    token_endpoint,
                    data=body,
                    headers={"Content-Type": self.headers["Content-Type"]},
                    timeout=10,
                )
                tokens = answer.json()
                if answer.status_code == 200 and server.id_token:
                    tokens["id_token"] = server.id_token
                payload = json.dumps(tokens).encode()
                self.send_response(answer.status_code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        super().__init__(("127.0.0.1", free_port()), Handler)


@pytest.fixture
def substituting_token_endpoint(sso_settings) -> Iterator[SubstitutingTokenEndpoint]:
    server = SubstitutingTokenEndpoint(sso_settings.OIDC_OP_TOKEN_ENDPOINT)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    sso_settings.OIDC_OP_TOKEN_ENDPOINT = f"http://127.0.0.1:{server.server_address[1]}/token"
    yield server
    server.shutdown()
    server.server_close()


def test_an_id_token_issued_to_another_client_is_refused(
    sso_console, identity_provider, other_client, substituting_token_endpoint, caplog
):
    session = requests.Session()
    authorization = start_sign_in(sso_console, session)
    nonce = query_of(authorization)["nonce"]
    # Signed by the same provider, about the same person, unexpired, with this sign-in's
    # nonce: only its audience is another application's.
    foreign = id_token_for(identity_provider, other_client, "alice", nonce=nonce)
    claims = jwt.decode(foreign, options={"verify_signature": False})
    assert (claims["aud"], claims["nonce"], claims["iss"]) == (
        other_client.client_id,
        nonce,
        identity_provider.issuer,
    )
    substituting_token_endpoint.id_token = foreign

    response = session.get(sign_in_at_provider(session, authorization, "alice"), timeout=15)

    assert response.url == f"{sso_console.url}/accounts/login/"
    assert "could not be verified" in flash(response)
    assert "issued to another client" in caplog.text
    assert not User.objects.filter(username="alice").exists()


def test_an_id_token_carrying_another_nonce_than_the_sessions_is_refused(sso_console, caplog):
    session = requests.Session()
    authorization = start_sign_in(sso_console, session)
    # The authorization request reaches the provider with a nonce the session never made.
    tampered = (
        urlsplit(authorization)
        ._replace(query=urlencode({**query_of(authorization), "nonce": "chosen-by-someone-else"}))
        .geturl()
    )

    response = session.get(sign_in_at_provider(session, tampered, "alice"), timeout=15)

    assert response.url == f"{sso_console.url}/accounts/login/"
    assert "could not be verified" in flash(response)
    assert "Nonce verification failed" in caplog.text
    assert not User.objects.filter(username="alice").exists()


@pytest.mark.parametrize(
    ("pkce", "refused_by"),
    [
        (True, "HTTP 400"),  # the provider: the code's challenge wants the victim's verifier
        (False, "Nonce verification failed"),  # the console: the ID token's nonce
    ],
)
def test_a_code_replayed_into_another_session_is_refused(
    sso_console, sso_settings, caplog, pkce, refused_by
):
    sso_settings.OIDC_USE_PKCE = pkce
    victim, attacker = requests.Session(), requests.Session()
    victims_code = query_of(
        sign_in_at_provider(victim, start_sign_in(sso_console, victim), "alice")
    )["code"]
    attackers_state = query_of(start_sign_in(sso_console, attacker))["state"]

    response = attacker.get(
        f"{sso_console.url}/oidc/callback/",
        params={"code": victims_code, "state": attackers_state},
        timeout=15,
    )

    assert response.url == f"{sso_console.url}/accounts/login/"
    # The provider refusing the code says so, not "try again in a minute".
    said = "expired or was used already" if pkce else "could not be verified"
    assert said in flash(response)
    assert refused_by in caplog.text
    assert not User.objects.filter(username="alice").exists()
    still_out = attacker.get(f"{sso_console.url}/", allow_redirects=False, timeout=10)
    assert still_out.status_code == 302


def test_the_authorization_request_carries_an_s256_code_challenge(sso_console):
    request = query_of(start_sign_in(sso_console, requests.Session()))
    assert request["code_challenge_method"] == "S256"
    # base64url of a SHA-256 digest, without padding (RFC 7636 4.2)
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", request["code_challenge"])


def test_a_code_is_redeemed_only_with_the_code_verifier_of_its_session(
    sso_console, identity_provider
):
    session = requests.Session()
    authorization = start_sign_in(sso_console, session)
    callback = sign_in_at_provider(session, authorization, "alice")
    exchange = {
        "grant_type": "authorization_code",
        "code": query_of(callback)["code"],
        "redirect_uri": f"{sso_console.url}/oidc/callback/",
        "client_id": identity_provider.client_id,
        "client_secret": identity_provider.client_secret,  # even with the client's secret
    }
    for verifier in (
        {},
        {"code_verifier": "v" * 64},
        {"code_verifier": query_of(authorization)["code_challenge"]},  # "plain" would take it
    ):
        answer = requests.post(
            f"{identity_provider.issuer}/token", data=exchange | verifier, timeout=10
        )
        assert (answer.status_code, answer.json().get("error")) == (400, "invalid_grant")

    # The console's own exchange, with the verifier only its session holds, redeems it.
    response = session.get(callback, timeout=15)
    assert response.url == f"{sso_console.url}/incidents/"


@pytest.mark.parametrize(
    "unsafe", ["https://evil.example/", "//evil.example", "javascript:alert(1)", "/\\evil.example"]
)
def test_an_unsafe_next_is_not_followed_after_an_sso_sign_in(sso_console, unsafe):
    session = requests.Session()
    callback = sign_in_at_provider(session, start_sign_in(sso_console, session, unsafe), "alice")

    answer = session.get(callback, allow_redirects=False, timeout=15)

    assert answer.status_code == 302
    assert answer.headers["Location"] == reverse("dashboard")  # the console's default page
    landing = session.get(f"{sso_console.url}{answer.headers['Location']}", timeout=10)
    assert landing.status_code == 200 and landing.url == f"{sso_console.url}/"  # signed in


@pytest.mark.parametrize(
    ("audience", "party", "accepted"),
    [
        ("console", None, True),
        (["console"], "console", True),
        (["console", "analytics"], "console", True),
        (["console", "analytics"], None, False),  # several audiences name no party
        (["console", "analytics"], "analytics", False),  # issued to another party
        ("console", "analytics", False),
    ],
)
def test_an_id_token_for_several_audiences_must_be_issued_to_the_console(
    sso_settings, monkeypatch, audience, party, accepted
):
    """OpenID Connect Core 3.1.3.7, on the claims the library has verified the signature of
    (the provider never issues such tokens, so its signature check is taken as passed)."""
    sso_settings.OIDC_RP_CLIENT_ID = "console"
    sso_settings.OIDC_OP_ISSUER = "https://idp.example"
    claims = {"aud": audience, "iss": "https://idp.example", "sub": "42"}
    if party is not None:
        claims["azp"] = party
    monkeypatch.setattr(OIDCAuthenticationBackend, "verify_token", lambda *a, **k: dict(claims))
    if accepted:
        assert SsoBackend().verify_token("signed", nonce="n")["sub"] == "42"
    else:
        with pytest.raises(SuspiciousOperation, match="another client"):
            SsoBackend().verify_token("signed", nonce="n")
