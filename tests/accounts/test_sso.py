"""Single sign-on (accounts.sso) through a real OpenID Connect provider in a second process
(devinfra.oidc_idp, django-oidc-provider): the code flow with PKCE end to end over HTTP,
roles from the `groups` claim, the second factor, linking, and every way it can fail
answering the sign-in page with a reason, never a 500; then what the protocol itself guards
(the ID token's audience and nonce, the PKCE verifier, where people land afterwards)."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests
from axes.models import AccessAttempt
from django.contrib.auth.models import Group, User
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from accounts.models import SsoIdentity
from tests.accounts.sso_client import (
    flash,
    sso_sign_in,
)
from tests.asgi import free_port
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db(transaction=True)


def groups_of(username: str) -> set[str]:
    return set(User.objects.get(username=username).groups.values_list("name", flat=True))


def test_a_commander_signs_in_with_roles_from_the_groups_claim(sso_console, identity_provider):
    session, response = sso_sign_in(sso_console, "alice")

    assert response.status_code == 200
    assert response.url == f"{sso_console.url}/incidents/"  # back where they were going
    alice = User.objects.get(username="alice")
    assert groups_of("alice") == {"Incident Commander", "On-call"}  # "engineering": no role
    assert not alice.has_usable_password()  # no password kept here
    assert (alice.email, alice.first_name, alice.last_name) == (
        "alice@corp.example",
        "Alice",
        "Example",
    )
    identity = SsoIdentity.objects.get(user=alice)
    assert identity.issuer == identity_provider.issuer and identity.subject
    # The provider said a second factor was used (amr: mfa): no TOTP here.
    assert "two-factor" not in response.url
    assert session.get(f"{sso_console.url}/", timeout=10).status_code == 200


def test_without_a_second_factor_at_the_provider_a_commander_is_asked_for_totp(sso_console):
    session, response = sso_sign_in(sso_console, "carol")
    assert groups_of("carol") == {"Incident Commander", "On-call"}
    assert response.url.startswith(f"{sso_console.url}/accounts/two-factor/")
    assert "authenticator app" in response.text
    held = session.get(f"{sso_console.url}/incidents/", allow_redirects=False, timeout=10)
    assert held.status_code == 302 and "/accounts/two-factor/" in held.headers["Location"]


def test_a_provider_trusted_to_ask_a_second_factor_skips_totp(sso_console, sso_settings):
    sso_settings.SSO_TRUSTS_PROVIDER_MFA = True
    _, response = sso_sign_in(sso_console, "carol")
    assert response.url == f"{sso_console.url}/incidents/"


def test_roles_follow_the_provider_and_unmapped_groups_stay(sso_console):
    # A local account the provider's verified e-mail links to.
    UserFactory(
        username="bob", email="bob@corp.example", roles=["Incident Commander", "Security Lead"]
    )

    sso_sign_in(sso_console, "bob")

    # The map names Incident Commander, so the provider decides it: taken away. Security
    # Lead is not in the map: a local decision, kept.
    assert groups_of("bob") == {"Support Lead", "Security Lead"}


def test_a_second_sign_in_finds_the_same_account_by_subject(sso_console):
    sso_sign_in(sso_console, "erin")
    erin = User.objects.get(username="erin")
    erin.email = "changed@elsewhere.example"
    erin.groups.add(Group.objects.get(name="Incident Commander"))  # granted by hand
    erin.save()

    sso_sign_in(sso_console, "erin")

    assert User.objects.filter(username__startswith="erin").count() == 1
    assert groups_of("erin") == {"Support Lead"}  # the map's word wins at each sign-in
    identity = SsoIdentity.objects.get(user__username="erin")
    assert identity.last_sign_in_at and identity.last_sign_in_at > identity.created_at


def test_a_verified_email_links_an_existing_account(sso_console):
    dora = UserFactory(username="dora.local", email="dora@local.example", roles=["Viewer"])
    sso_sign_in(sso_console, "dora")
    assert SsoIdentity.objects.get().user == dora
    assert dora.has_usable_password()  # the local password stays theirs
    assert groups_of("dora.local") == {"Viewer", "Support Lead"}


def test_an_unverified_email_never_takes_over_an_account(sso_console):
    admin = UserFactory(username="admin", email="admin@local.example", roles=["Viewer"])
    admin.is_staff = True
    admin.save()
    sso_sign_in(sso_console, "mallory")
    identity = SsoIdentity.objects.get()
    assert identity.user != admin and identity.user.username == "mallory"
    assert not identity.user.is_staff


def test_user_names_from_any_script_and_length_are_made_unique(sso_console):
    UserFactory(username="bob")
    sso_sign_in(sso_console, "li")
    sso_sign_in(sso_console, "long")
    sso_sign_in(sso_console, "taken")

    assert User.objects.filter(username="李小龙", first_name="李", last_name="小龙").exists()
    long_name = SsoIdentity.objects.get(user__username__startswith="xxx").user.username
    assert len(long_name) <= 150 and long_name.startswith("x" * 140)
    assert User.objects.filter(username="bob-2").exists()  # "bob" was taken


def test_a_deactivated_account_is_refused_with_a_reason(sso_console):
    sso_sign_in(sso_console, "erin")
    User.objects.filter(username="erin").update(is_active=False)
    session, response = sso_sign_in(sso_console, "erin")
    assert response.url == f"{sso_console.url}/accounts/login/"
    assert "deactivated" in flash(response)
    assert session.get(f"{sso_console.url}/", allow_redirects=False, timeout=10).status_code == 302


def test_another_issuer_in_the_id_token_is_refused(sso_console, sso_settings):
    sso_settings.OIDC_OP_ISSUER = "https://idp.other.example"
    _, response = sso_sign_in(sso_console, "alice")
    assert response.url == f"{sso_console.url}/accounts/login/"
    assert "could not be verified" in flash(response)
    assert not User.objects.filter(username="alice").exists()


@pytest.mark.parametrize(
    "error",
    ["access_denied", "<script>alert(1)</script>", "interaction_required\x00\x1b[31m", "e" * 5000],
)
def test_a_refusal_from_the_provider_is_shown_escaped_on_the_sign_in_page(sso_console, error):
    response = requests.get(
        f"{sso_console.url}/oidc/callback/", params={"error": error, "state": "x"}, timeout=10
    )
    assert response.status_code == 200 and response.url == f"{sso_console.url}/accounts/login/"
    assert "refused the sign-in" in flash(response)
    assert "<script>alert" not in response.text and "\x00" not in response.text
    assert len(flash(response)) < 200


def test_a_forged_or_replayed_callback_is_refused_without_a_500(sso_console):
    session = requests.Session()
    session.get(f"{sso_console.url}/oidc/authenticate/", timeout=10)  # a state in the session
    for query in ({"code": "forged", "state": "unknown"}, {"code": "x"}, {"state": "y"}):
        response = session.get(f"{sso_console.url}/oidc/callback/", params=query, timeout=10)
        assert response.status_code == 200
        assert response.url == f"{sso_console.url}/accounts/login/"
        assert flash(response)


class BrokenProvider(ThreadingHTTPServer):
    """A token endpoint that fails the way providers do: a status code, or silence."""

    def __init__(self) -> None:
        self.status, self.delay = 503, 0.0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                time.sleep(server.delay)
                self.send_response(server.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Retry-After", "30")
                self.end_headers()
                self.wfile.write(b'{"error": "temporarily_unavailable"}')

            def log_message(self, *args: Any) -> None:
                pass

        super().__init__(("127.0.0.1", free_port()), Handler)


@pytest.fixture
def broken_provider() -> Iterator[BrokenProvider]:
    server = BrokenProvider()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("failure", ["429", "500", "timeout", "refused"])
def test_a_failing_provider_sends_people_back_with_a_reason(
    sso_console, sso_settings, broken_provider, failure
):
    port = broken_provider.server_address[1]
    sso_settings.OIDC_OP_TOKEN_ENDPOINT = f"http://127.0.0.1:{port}/token"
    sso_settings.OIDC_TIMEOUT = 0.5
    if failure == "timeout":
        broken_provider.delay = 2.0
    elif failure == "refused":
        sso_settings.OIDC_OP_TOKEN_ENDPOINT = f"http://127.0.0.1:{free_port()}/token"
    else:
        broken_provider.status = int(failure)

    started = time.monotonic()
    _, response = sso_sign_in(sso_console, "alice")

    assert response.status_code == 200 and response.url == f"{sso_console.url}/accounts/login/"
    assert "did not answer as expected" in flash(response)
    assert time.monotonic() - started < 10
    assert not User.objects.filter(username="alice").exists()


def test_an_address_locked_for_password_guessing_cannot_use_sso_either(sso_console, sso_settings):
    sso_settings.AXES_FAILURE_LIMIT = 2
    guesser = Client(REMOTE_ADDR="127.0.0.1")  # the address the browser below comes from
    for number in range(2):
        guesser.post("/accounts/login/", {"username": f"guess{number}", "password": "x"})
    assert AccessAttempt.objects.filter(ip_address="127.0.0.1").exists()
    _, response = sso_sign_in(sso_console, "bob")
    # The provider let bob in, but the console pauses that address: the lockout page.
    assert response.status_code == 429 and "Too many failed sign-ins" in response.text
    assert not User.objects.filter(username="bob").exists()


def test_the_sign_in_page_offers_sso_only_when_it_is_configured(client, sso_settings):
    page = client.get("/accounts/login/?next=/incidents/7")
    assert "Sign in with SSO" in page.content.decode()
    assert "/oidc/authenticate/?next=/incidents/7" in page.content.decode()

    sso_settings.SSO_ENABLED = False
    assert "Sign in with SSO" not in client.get("/accounts/login/").content.decode()
    assert client.get("/oidc/authenticate/").status_code == 404
    assert client.get("/oidc/callback/?code=x&state=y").status_code == 404


def test_the_terminal_discovers_checks_lists_and_unlinks(sso_console, identity_provider, capsys):
    call_command("sso", "discover", identity_provider.issuer)
    printed = capsys.readouterr().out
    for name, value in identity_provider.console_settings().items():
        if name.startswith("OIDC_OP_"):
            assert f"{name}={value}" in printed
    assert f"OIDC_OP_ISSUER={identity_provider.issuer}" in printed

    call_command("sso", "check")
    assert "signing keys: 1" in capsys.readouterr().out

    sso_sign_in(sso_console, "bob")
    call_command("sso", "identities")
    listed = capsys.readouterr().out
    assert "bob" in listed and "Support Lead" in listed

    call_command("sso", "unlink", "bob")
    assert not SsoIdentity.objects.exists()


def test_last_sign_in_is_recorded_in_order(sso_console):
    before = timezone.now()
    sso_sign_in(sso_console, "bob")
    identity = SsoIdentity.objects.get()
    assert identity.last_sign_in_at is not None and identity.last_sign_in_at >= before


def test_a_password_sign_in_does_not_inherit_the_providers_second_factor(sso_console):
    UserFactory(username="alice", email="alice@corp.example", password="local-password-1")
    session, response = sso_sign_in(sso_console, "alice")
    assert response.url == f"{sso_console.url}/incidents/"  # amr: mfa, no TOTP asked

    login_page = session.get(f"{sso_console.url}/accounts/login/", timeout=10)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login_page.text)
    assert token
    again = session.post(
        f"{sso_console.url}/accounts/login/",
        data={
            "csrfmiddlewaretoken": token[1],
            "username": "alice",
            "password": "local-password-1",
            "next": "/incidents/",
        },
        headers={"Referer": f"{sso_console.url}/accounts/login/"},
        timeout=10,
    )
    # Signed in again with the local password: this console's own second factor is asked.
    assert again.url.startswith(f"{sso_console.url}/accounts/two-factor/")


def test_a_password_sign_in_carrying_a_code_never_reaches_the_provider(sso_console):
    # The library's backend reads code and state from any request; ours only from the
    # callback. A wrong password with ?code= is a plain refusal, not a 500.
    UserFactory(username="rosa", password="right-password-1")
    client = Client()
    response = client.post(
        "/accounts/login/?code=forged&state=forged", {"username": "rosa", "password": "wrong"}
    )
    assert response.status_code == 400
    assert (
        client.post(
            "/accounts/login/?code=forged&state=forged",
            {"username": "rosa", "password": "right-password-1"},
        ).status_code
        == 302
    )


def test_a_staff_account_is_never_linked_by_email(sso_console):
    staff = UserFactory(username="root", email="alice@corp.example", roles=["Viewer"])
    staff.is_staff = True
    staff.save()
    sso_sign_in(sso_console, "alice")
    identity = SsoIdentity.objects.get()
    assert identity.user != staff and identity.user.username == "alice"


def test_an_account_already_tied_to_an_identity_is_not_linked_again(sso_console):
    owner = UserFactory(username="dora.local", email="dora@local.example", roles=["Viewer"])
    SsoIdentity.objects.create(user=owner, issuer="https://idp.example", subject="old-dora")
    sso_sign_in(sso_console, "dora")
    assert SsoIdentity.objects.filter(user=owner).count() == 1
    assert User.objects.filter(username="dora").exists()


def test_a_missing_groups_claim_leaves_the_roles_as_they_are(sso_settings):
    from accounts.sso import SsoBackend

    person = UserFactory(username="ivy", roles=["Incident Commander"])
    SsoBackend().refresh(person, {"sub": "ivy", "email": "ivy@corp.example"})
    assert groups_of("ivy") == {"Incident Commander"}
    SsoBackend().refresh(person, {"sub": "ivy", "groups": []})
    assert groups_of("ivy") == set()  # present and empty: the provider took them away
