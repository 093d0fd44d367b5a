"""Marking a release known-good by hand while the service's checks fail for it needs a
typed reason, wherever it is marked: the service's page, the terminal, the API, the admin."""

from __future__ import annotations

import time

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from api.tokens import token_create
from incidents.errors import DomainError
from incidents.models import Release
from incidents.services import release_mark_known_good
from rollbacks import release_tracking
from tests.factories import UserFactory
from tests.rollbacks.engine_factories import KubeServiceFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def web(health_endpoint, settings, roles):
    settings.VERIFY_ALLOW_PRIVATE_ADDRESSES = True
    health_endpoint["status"] = 503
    url = f"http://127.0.0.1:{health_endpoint['port']}/healthz"
    service = KubeServiceFactory(
        name="web",
        target_config={
            "namespace": "shop",
            "deployment": "web",
            "checks": [{"kind": "http", "url": url}],
        },
    )
    service.health = health_endpoint
    return service


@pytest.fixture
def release(web):
    return Release.objects.create(service=web, version="v2", artifact="registry.local/web:v2")


@pytest.fixture
def commander():
    return UserFactory(username="ic", roles=["Incident Commander"])


def test_without_a_reason_failing_checks_refuse_the_mark(release, commander):
    with pytest.raises(DomainError, match="type a reason"):
        release_mark_known_good(release=release, actor=commander)
    release.refresh_from_db()
    assert not release.known_good


def test_checks_that_answer_slowly_refuse_within_the_time_a_person_waits(
    release, commander, monkeypatch
):
    # Three checks of 60 s each against an endpoint that takes 5 s to answer: together
    # they get the by-hand budget, not three minutes.
    monkeypatch.setattr(release_tracking, "BY_HAND_CHECKS_SECONDS", 1.0)
    release.service.health["status"] = 200
    release.service.health["delay"] = 5.0
    url = release.service.health["url"]
    release.service.target_config["checks"] = [
        {"kind": "http", "url": url, "timeout": 60, "name": f"health {n}"} for n in range(3)
    ]
    release.service.save()
    started = time.monotonic()
    with pytest.raises(DomainError, match="type a reason"):
        release_mark_known_good(release=release, actor=commander)
    assert time.monotonic() - started < 4
    release.refresh_from_db()
    assert not release.known_good


def test_with_a_typed_reason_the_mark_is_made_and_the_reason_kept(release, commander):
    why = "Checks page a retired host; v2 ran clean for a week — 確認済み ✅"
    release_mark_known_good(release=release, actor=commander, reason=why)
    release.refresh_from_db()
    assert release.known_good and release.known_good_reason == why


def test_passing_checks_ask_no_reason_and_unmarking_never_does(release, commander, web):
    web.health["status"] = 200
    release_mark_known_good(release=release, actor=commander)
    web.health["status"] = 503
    release_mark_known_good(release=release, actor=commander, known_good=False)
    release.refresh_from_db()
    assert not release.known_good


def test_the_services_page_answers_400_with_the_reason(client, release, commander):
    client.force_login(commander)
    response = client.post(reverse("release_known_good", args=[release.pk]), {"known_good": "1"})
    assert response.status_code == 400 and "type a reason" in response.content.decode()


def test_the_terminal_refuses_with_a_command_error(release, commander):
    with pytest.raises(CommandError, match="type a reason"):
        call_command("release", "known-good", "web", "v2", "--as", "ic")


def test_the_api_refuses_with_a_400(release, commander, client):
    _, text = token_create(user=commander, name="ci", scopes=["releases:write"])
    response = client.put(
        f"/api/v1/releases/{release.pk}/known-good",
        {"known_good": True, "reason": ""},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {text}",
    )
    assert response.status_code == 400, response.content
    assert "type a reason" in response.content.decode()


def test_the_admin_names_the_reason_field(client, release):
    staff = UserFactory(username="housekeeper", is_staff=True, is_superuser=True)
    client.force_login(staff)
    data = {
        "service": release.service_id,
        "version": release.version,
        "artifact": release.artifact,
        "shipped_at_0": release.shipped_at.strftime("%Y-%m-%d"),
        "shipped_at_1": release.shipped_at.strftime("%H:%M:%S"),
        "known_good": "on",
        "known_good_reason": "",
        "backup": "{}",
    }
    response = client.post(reverse("admin:incidents_release_change", args=[release.pk]), data)
    assert response.status_code == 200 and "type a reason" in response.content.decode()
    release.refresh_from_db()
    assert not release.known_good
