"""Signing in: password guessing is paused per user name and per address (django-axes) on
the console's login and the admin's alike, with a page that says so and a staff unlock; and
Incident Commanders and staff give a TOTP code from an authenticator app (django-otp), set
up at their first sign-in, before any page is theirs."""

from __future__ import annotations

import time

import pytest
from asgiref.sync import sync_to_async
from axes.models import AccessAttempt
from django.core.management import call_command
from django.db import connections
from django.test import AsyncClient, Client
from django.urls import reverse
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice

from tests.factories import UserFactory, incident_open

pytestmark = pytest.mark.django_db
PASSWORD = "the-right-password"


def sign_in(client: Client, username: str, password: str, path: str = "/accounts/login/"):
    return client.post(path, {"username": username, "password": password})


def test_five_wrong_passwords_pause_that_user_even_with_the_right_one(roles, settings):
    settings.AXES_FAILURE_LIMIT = 5
    UserFactory(username="rosa", password=PASSWORD, roles=["Responder"])
    client = Client()
    for _ in range(4):
        assert sign_in(client, "rosa", "guess").status_code == 400
    locked = sign_in(client, "rosa", "guess")
    assert locked.status_code == 429
    assert "Too many failed sign-ins" in locked.content.decode()
    assert "After 5 failed attempts for rosa" in locked.content.decode()
    assert sign_in(client, "rosa", PASSWORD).status_code == 429  # even the right one

    call_command("axes_reset_username", "rosa", verbosity=0)  # a staff unlock
    assert sign_in(client, "rosa", PASSWORD).status_code == 302


def test_one_address_guessing_many_names_is_paused_too(roles, settings):
    settings.AXES_FAILURE_LIMIT = 5
    UserFactory(username="vera", password=PASSWORD, roles=["Viewer"])
    client = Client(REMOTE_ADDR="203.0.113.9")
    for number in range(5):
        sign_in(client, f"nobody{number}", "guess")
    assert sign_in(client, "vera", PASSWORD).status_code == 429
    elsewhere = Client(REMOTE_ADDR="198.51.100.7")
    assert sign_in(elsewhere, "vera", PASSWORD).status_code == 302


def test_behind_a_proxy_each_client_counts_under_its_own_address(roles, settings):
    settings.AXES_FAILURE_LIMIT = 3
    settings.SIGN_IN_PROXY_COUNT = 1
    UserFactory(username="vera", password=PASSWORD, roles=["Viewer"])
    # Both arrive from the load balancer; the client wrote a made-up entry of its own first.
    guesser = Client(REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR="198.51.100.1, 203.0.113.9")
    for number in range(3):
        sign_in(guesser, f"nobody{number}", "guess")
    assert AccessAttempt.objects.filter(ip_address="203.0.113.9").exists()
    assert not AccessAttempt.objects.filter(ip_address__in=["10.0.0.2", "198.51.100.1"]).exists()
    assert sign_in(guesser, "vera", PASSWORD).status_code == 429
    colleague = Client(REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR="198.51.100.7")
    assert sign_in(colleague, "vera", PASSWORD).status_code == 302


def test_without_a_proxy_count_the_forwarded_header_is_not_believed(roles, settings):
    settings.AXES_FAILURE_LIMIT = 2
    client = Client(REMOTE_ADDR="203.0.113.40")
    for number in range(2):
        client.defaults["HTTP_X_FORWARDED_FOR"] = f"198.51.100.{number}"
        sign_in(client, f"nobody{number}", "guess")
    assert set(AccessAttempt.objects.values_list("ip_address", flat=True)) == {"203.0.113.40"}


def test_signing_in_as_oneself_does_not_wipe_the_guesses_at_another_name(roles, settings):
    settings.AXES_FAILURE_LIMIT = 5
    UserFactory(username="rosa", password=PASSWORD, roles=["Responder"])
    UserFactory(username="mallory", password=PASSWORD, roles=["Viewer"])
    client = Client(REMOTE_ADDR="203.0.113.50")
    for _ in range(4):
        sign_in(client, "rosa", "guess")
    assert sign_in(Client(REMOTE_ADDR="203.0.113.50"), "mallory", PASSWORD).status_code == 302
    assert sign_in(client, "rosa", "guess").status_code == 429
    assert sign_in(Client(REMOTE_ADDR="198.51.100.8"), "rosa", PASSWORD).status_code == 429


def test_the_admin_login_is_guarded_the_same_and_staff_unlock_in_the_admin(roles, settings):
    settings.AXES_FAILURE_LIMIT = 3
    UserFactory(username="ops", password=PASSWORD, is_staff=True, is_superuser=True)
    UserFactory(username="sam", password=PASSWORD, is_staff=True)
    client = Client(REMOTE_ADDR="203.0.113.20")
    for _ in range(3):
        sign_in(client, "sam", "guess", "/admin/login/")
    assert sign_in(client, "sam", PASSWORD, "/admin/login/").status_code == 429

    admin = Client(REMOTE_ADDR="198.51.100.30")
    assert sign_in(admin, "ops", PASSWORD, "/admin/login/").status_code == 302
    attempts = admin.get("/admin/axes/accessattempt/")
    assert attempts.status_code == 200 and "sam" in attempts.content.decode()

    ids = [
        str(pk) for pk in AccessAttempt.objects.filter(username="sam").values_list("pk", flat=True)
    ]
    admin.post(
        "/admin/axes/accessattempt/",
        {"action": "delete_selected", "_selected_action": ids, "post": "yes"},
    )
    assert not AccessAttempt.objects.filter(username="sam").exists()
    assert sign_in(client, "sam", PASSWORD, "/admin/login/").status_code == 302


def code_for(device: TOTPDevice) -> str:
    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    totp.time = time.time()
    return f"{totp.token():06d}"


@pytest.fixture
def two_factor(settings) -> None:
    settings.REQUIRE_TWO_FACTOR = True


def test_a_commander_sets_up_an_app_at_first_sign_in_then_gives_codes(roles, two_factor):
    UserFactory(username="ic", password=PASSWORD, roles=["Incident Commander"])
    incident = incident_open()
    room = reverse("incident_room", args=[incident.pk])
    client = Client()
    assert sign_in(client, "ic", PASSWORD).status_code == 302

    held = client.get(room)
    assert held.status_code == 302 and held["Location"].startswith("/accounts/two-factor/")
    setup_page = client.get(held["Location"])
    assert "no-store" in setup_page["Cache-Control"]  # it carries the device's key
    setup = setup_page.content.decode()
    assert "Set up your authenticator app" in setup and "<svg" in setup
    device = TOTPDevice.objects.get(user__username="ic", confirmed=False)
    wrong = client.post("/accounts/two-factor/", {"token": "000000", "next": room})
    assert wrong.status_code == 400 and "That code is not right" in wrong.content.decode()
    device.refresh_from_db()
    device.throttling_failure_count = 0  # the test does not wait out django-otp's pause
    device.throttling_failure_timestamp = None
    device.save()

    confirmed = client.post("/accounts/two-factor/", {"token": code_for(device), "next": room})
    assert confirmed.status_code == 302 and confirmed["Location"] == room
    assert client.get(room).status_code == 200
    assert TOTPDevice.objects.get(user__username="ic").confirmed

    again = Client()
    sign_in(again, "ic", PASSWORD)
    asked = again.get(again.get(room)["Location"]).content.decode()
    assert "Code from your authenticator app" in asked and "<svg" not in asked


def test_htmx_fetches_are_told_where_to_go_and_the_admin_waits_too(roles, two_factor):
    UserFactory(username="ops", password=PASSWORD, is_staff=True, is_superuser=True)
    client = Client()
    sign_in(client, "ops", PASSWORD)
    fetched = client.get("/incidents/", headers={"HX-Request": "true"})
    assert fetched.status_code == 403 and fetched["HX-Redirect"].startswith("/accounts/two-factor/")
    assert client.get("/admin/").status_code == 302


@pytest.mark.parametrize("roles_held", [["Approver", "DBA"], ["Support Lead"]])
def test_approvers_and_support_leads_give_a_code_too(roles, two_factor, roles_held):
    UserFactory(username="ann", password=PASSWORD, roles=roles_held)
    client = Client()
    sign_in(client, "ann", PASSWORD)
    held = client.get("/incidents/")
    assert held.status_code == 302 and held["Location"].startswith("/accounts/two-factor/")


@pytest.mark.parametrize("role", ["Responder", "Viewer"])
def test_people_who_cannot_change_production_sign_in_with_a_password(roles, two_factor, role):
    UserFactory(username="rosa", password=PASSWORD, roles=[role])
    client = Client()
    sign_in(client, "rosa", PASSWORD)
    assert client.get("/incidents/").status_code == 200


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_the_async_stack_holds_the_session_back_too(roles, two_factor):
    commander = await sync_to_async(UserFactory)(
        username="ic", password=PASSWORD, roles=["Incident Commander"]
    )
    client = AsyncClient()
    try:
        await client.aforce_login(commander)
        held = await client.get("/incidents/")
    finally:  # the connection the request's sync parts opened, on the executor's thread
        await sync_to_async(connections.close_all)()
    assert held.status_code == 302 and held["Location"].startswith("/accounts/two-factor/")
