"""API tokens: made on the console's page or in a terminal, shown once, stored as a digest,
revoked, expired, rate limited; the OpenAPI document and its page; a call over real HTTP."""

from __future__ import annotations

import hashlib
import logging
from datetime import timedelta

import pytest
import requests
from django.core.management import CommandError, call_command
from django.test import Client
from django.utils import timezone

from api.models import ApiToken
from api.tokens import token_create
from incidents.models import TimelineKind
from tests.factories import UserFactory, incident_open

pytestmark = pytest.mark.django_db


def bearer(text: str) -> Client:
    return Client(HTTP_AUTHORIZATION=f"Bearer {text}")


def test_a_token_is_shown_once_and_kept_only_as_a_digest(client, roles):
    person = UserFactory(roles=["Viewer"])
    client.force_login(person)
    made = client.post(
        "/account/api-tokens/", {"name": "deploy 🚀 パイプライン", "scopes": ["read"], "days": 30}
    )
    assert made.status_code == 200
    text = made.content.decode().split('<code id="new-token">')[1].split("</code>")[0]
    token = ApiToken.objects.get(user=person)
    assert text.startswith(f"bko_{token.prefix}_") and len(text) > 40
    assert token.digest == hashlib.sha256(text.encode()).hexdigest()
    assert text not in str(list(ApiToken.objects.values()))
    assert token.expires_at and token.expires_at > timezone.now() + timedelta(days=29)
    listing = client.get("/account/api-tokens/").content.decode()
    assert text not in listing and f"bko_{token.prefix}_…" in listing
    incident = incident_open()
    assert bearer(text).get(f"/api/v1/incidents/{incident.pk}").status_code == 200


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"name": "x" * 101, "scopes": ["read"]}, "name"),
        ({"name": "ok", "scopes": []}, "scopes"),
        ({"name": "ok", "scopes": ["admin"]}, "scopes"),
        ({"name": "ok", "scopes": ["read"], "days": 367}, "days"),
        ({"name": "\x00", "scopes": ["read"]}, "name"),
    ],
)
def test_a_token_form_refuses_bad_input_and_makes_nothing(client, roles, data, field):
    client.force_login(UserFactory(roles=["Viewer"]))
    response = client.post("/account/api-tokens/", data)
    assert response.status_code == 400
    assert field in response.context["form"].errors
    assert not ApiToken.objects.exists()


def test_revoked_expired_and_deactivated_tokens_answer_401(client, roles):
    incident = incident_open()
    person = UserFactory(roles=["Viewer"])
    client.force_login(person)
    token, text = token_create(user=person, name="ci", scopes=["read"])
    assert bearer(text).get(f"/api/v1/incidents/{incident.pk}").status_code == 200

    other = UserFactory(roles=["Viewer"])
    Client().force_login(other)
    stranger = Client()
    stranger.force_login(other)
    assert stranger.post(f"/account/api-tokens/{token.pk}/revoke").status_code == 404
    assert client.post(f"/account/api-tokens/{token.pk}/revoke").status_code == 302
    refused = bearer(text).get(f"/api/v1/incidents/{incident.pk}")
    assert refused.status_code == 401 and refused["WWW-Authenticate"].startswith("Bearer")

    old, old_text = token_create(user=person, name="old", scopes=["read"], days=1)
    ApiToken.objects.filter(pk=old.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert bearer(old_text).get(f"/api/v1/incidents/{incident.pk}").status_code == 401

    _, live_text = token_create(user=person, name="live", scopes=["read"])
    person.is_active = False
    person.save()
    assert bearer(live_text).get(f"/api/v1/incidents/{incident.pk}").status_code == 401


@pytest.mark.parametrize(
    "header",
    ["", "Bearer", "Bearer ", "Token bko_x", "Bearer bko_" + "a" * 300, "Bearer 結帳\x00"],
)
def test_a_missing_or_malformed_token_is_401_and_never_logged(roles, settings, caplog, header):
    settings.DEBUG = True
    incident = incident_open()
    caplog.set_level(logging.DEBUG)
    response = Client(HTTP_AUTHORIZATION=header).get(f"/api/v1/incidents/{incident.pk}")
    assert response.status_code == 401
    assert "bko_x" not in caplog.text and "aaaaaaaa" not in caplog.text


def test_a_token_over_its_rate_is_told_when_to_come_back(roles, settings):
    settings.API_RATE = "3/m"
    person = UserFactory(roles=["Viewer"])
    _, text = token_create(user=person, name="busy", scopes=["read"])
    incident = incident_open()
    answers = [bearer(text).get(f"/api/v1/incidents/{incident.pk}") for _ in range(4)]
    assert [answer.status_code for answer in answers] == [200, 200, 200, 429]
    assert int(answers[-1]["Retry-After"]) >= 1
    _, fresh = token_create(user=person, name="other", scopes=["read"])
    assert bearer(fresh).get(f"/api/v1/incidents/{incident.pk}").status_code == 200


def test_a_person_holds_at_most_so_many_tokens(roles):
    person = UserFactory(roles=["Viewer"])
    for number in range(25):
        token_create(user=person, name=f"t{number}", scopes=["read"])
    with pytest.raises(Exception, match="the most allowed"):
        token_create(user=person, name="one more", scopes=["read"])


def test_the_terminal_makes_lists_and_revokes_tokens(roles, capsys):
    UserFactory(username="deploy-bot", roles=["Incident Commander"])
    call_command(
        "api_token",
        "create",
        "--user",
        "deploy-bot",
        "--name",
        "pipeline",
        "--scope",
        "releases:write",
        "--scope",
        "read",
    )
    text = capsys.readouterr().out.strip()
    token = ApiToken.objects.get()
    assert text.startswith(f"bko_{token.prefix}_") and token.scopes == ["read", "releases:write"]
    call_command("api_token", "list")
    assert (
        f"{token.prefix}\tdeploy-bot\tpipeline\tread,releases:write\tactive"
        in capsys.readouterr().out
    )
    call_command("api_token", "revoke", token.prefix)
    token.refresh_from_db()
    assert token.revoked_at is not None


def test_the_openapi_document_and_its_page_describe_every_operation(client):
    document = client.get("/api/v1/openapi.json")
    assert document.status_code == 200
    spec = document.json()
    assert spec["info"]["title"] == "Backout API"
    for path in (
        "/api/v1/incidents",
        "/api/v1/incidents/{incident_id}/notes",
        "/api/v1/services/{service}/releases",
        "/api/v1/releases/{release_id}/known-good",
        "/api/v1/incidents/{incident_id}/rollbacks",
        "/api/v1/runs/{run_id}",
    ):
        assert path in spec["paths"], path
    assert any(s.get("scheme") == "bearer" for s in spec["components"]["securitySchemes"].values())
    page = client.get("/api/v1/docs")
    assert page.status_code == 200 and b"swagger" in page.content.lower()


@pytest.mark.django_db(transaction=True)
def test_a_note_over_real_http_lands_on_the_timeline_with_the_owner(asgi_server, roles):
    person = UserFactory(username="ci-bot", roles=["Responder"])
    _, text = token_create(user=person, name="ci", scopes=["incidents:write"])
    incident = incident_open()
    response = requests.post(
        f"{asgi_server.url}/api/v1/incidents/{incident.pk}/notes",
        json={"body": "deploy v2.4.1 finished ✅"},
        headers={"Authorization": f"Bearer {text}"},
        timeout=10,
    )
    assert response.status_code == 201, response.text
    note = incident.timeline.get(kind=TimelineKind.NOTE)
    assert note.actor == person and note.body == "deploy v2.4.1 finished ✅"


def test_a_token_made_elsewhere_is_adopted_without_being_printed(roles, capsys, monkeypatch):
    UserFactory(username="alertmanager", roles=["Incident Commander"])
    text = "bko_0123abcd_" + "s" * 40
    monkeypatch.setenv("RECEIVER_TOKEN", text)
    for _ in range(2):  # the demo adopts a new one at each start: the old one is revoked
        call_command(
            "api_token",
            "create",
            "--user",
            "alertmanager",
            "--name",
            "receiver",
            "--scope",
            "alerts:write",
            "--text-from-env",
            "RECEIVER_TOKEN",
            "--replace",
        )
        monkeypatch.setenv("RECEIVER_TOKEN", text := "bko_4567cdef_" + "t" * 40)
    out = capsys.readouterr()
    assert "bko_0123abcd_s" not in out.out + out.err and "bko_4567" not in out.out + out.err
    assert out.out.count("adopted") == 2
    assert ApiToken.objects.filter(revoked_at__isnull=True).get().prefix == "4567cdef"
    with pytest.raises(CommandError, match="reads bko_"):
        monkeypatch.setenv("RECEIVER_TOKEN", "not-a-token")
        call_command(
            "api_token",
            "create",
            "--user",
            "alertmanager",
            "--name",
            "receiver",
            "--scope",
            "alerts:write",
            "--text-from-env",
            "RECEIVER_TOKEN",
        )


def test_calls_go_through_uncounted_while_the_rate_counter_is_down(roles, settings, caplog):
    incident = incident_open()
    _, text = token_create(user=UserFactory(roles=["Viewer"]), name="ci", scopes=["read"])
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",  # nothing listens there
        }
    }
    response = bearer(text).get(f"/api/v1/incidents/{incident.pk}")
    assert response.status_code == 200
    assert "API rate not counted" in caplog.text


@pytest.mark.parametrize(
    ("role", "scope"),
    [
        ("Viewer", "alerts:write"),
        ("Viewer", "incidents:write"),
        ("Responder", "runs:write"),
        ("Responder", "releases:write"),
    ],
)
def test_a_token_never_holds_a_scope_its_owner_could_not_use(client, roles, role, scope):
    person = UserFactory(roles=[role])
    client.force_login(person)
    response = client.post("/account/api-tokens/", {"name": "ci", "scopes": [scope]})
    assert response.status_code == 400 and "do not allow" in response.content.decode()
    assert not ApiToken.objects.exists()


def test_an_alert_from_a_token_whose_owner_lost_the_role_is_refused(roles):
    from django.contrib.auth.models import Group

    person = UserFactory(roles=["Incident Commander"])
    _, text = token_create(user=person, name="am", scopes=["alerts:write"])
    person.groups.remove(Group.objects.get(name="Incident Commander"))
    body = {"version": "4", "status": "firing", "alerts": []}
    response = bearer(text).post(
        "/api/v1/alerts/alertmanager", body, content_type="application/json"
    )
    assert response.status_code == 403


def test_the_admin_cannot_bring_a_revoked_token_back(client, roles):
    owner = UserFactory(roles=["Incident Commander"])
    token, text = token_create(user=owner, name="pipeline", scopes=["read"])
    ApiToken.objects.filter(pk=token.pk).update(revoked_at=timezone.now())
    staff = UserFactory(username="housekeeper", is_staff=True, is_superuser=True)
    client.force_login(staff)
    url = f"/admin/api/apitoken/{token.pk}/change/"
    page = client.get(url).content.decode()
    assert 'name="revoked_at' not in page and 'name="expires_at' not in page
    client.post(url, {"name": "pipeline", "revoked_at_0": "", "revoked_at_1": ""})
    token.refresh_from_db()
    assert token.revoked_at is not None
    assert bearer(text).get("/api/v1/incidents/1").status_code == 401
