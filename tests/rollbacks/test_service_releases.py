"""A service's releases page and `manage.py release`: register a release with its backup,
mark any release known-good with a reason, all through the services the API uses."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse
from django.utils import timezone

from incidents.models import Release
from tests.factories import UserFactory, incident_open
from tests.rollbacks.engine_factories import KubeServiceFactory
from tests.rollbacks.engine_fixtures import seed_deployment

pytestmark = pytest.mark.django_db


@pytest.fixture
def web(kube, engine_settings):
    seed_deployment(kube, "web", ["registry.local/web:v1", "registry.local/web:v2"])
    service = KubeServiceFactory(name="web")
    Release.objects.create(
        service=service,
        version="v1",
        artifact="registry.local/web:v1",
        shipped_at=timezone.now() - timedelta(days=2),
    )
    return service


@pytest.fixture
def ic(client, roles):
    user = UserFactory(username="ic", roles=["Incident Commander"])
    client.force_login(user)
    return user


def test_a_commander_registers_a_release_and_its_backup_is_saved(client, ic, web):
    url = reverse("service_releases", args=[web.pk])
    response = client.post(url, {"version": "v3 🚀", "artifact": "registry.local/web:v3"})
    assert response.status_code == 302
    release = Release.objects.get(version="v3 🚀")
    assert release.backup["manifest"]["kind"] == "Deployment"
    page = client.get(url).content.decode()
    assert "v3 🚀" in page and "manifest" in page and "Register a release" in page
    assert "<title>web releases · Backout</title>" in page
    assert page.count("Signals for the decision helper") == 1


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"version": "v" * 101, "artifact": "a"}, "version"),
        ({"version": "v3", "artifact": "a" * 501}, "artifact"),
        ({"version": "v3", "artifact": "a\x00b"}, "artifact"),
        ({"version": "v1", "artifact": "registry.local/web:other"}, "__all__"),
    ],
)
def test_a_bad_release_is_refused_with_400_and_nothing_saved(client, ic, web, data, field):
    response = client.post(reverse("service_releases", args=[web.pk]), data)
    assert response.status_code == 400
    assert field in response.context["form"].errors
    assert Release.objects.filter(service=web).count() == 1


def test_a_viewer_reads_the_releases_but_cannot_register(client, roles, web):
    client.force_login(UserFactory(roles=["Viewer"]))
    url = reverse("service_releases", args=[web.pk])
    page = client.get(url)
    assert page.status_code == 200 and "Register a release" not in page.content.decode()
    assert client.post(url, {"version": "v3", "artifact": "x"}).status_code == 403
    assert Release.objects.count() == 1


def test_any_release_is_marked_known_good_with_a_reason_and_back(client, ic, web):
    v1 = Release.objects.get(version="v1")
    Release.objects.create(service=web, version="v2", artifact="registry.local/web:v2")
    back = reverse("service_releases", args=[web.pk])
    response = client.post(
        reverse("release_known_good", args=[v1.pk]),
        {"known_good": "1", "reason": "ran clean for a day, 無事", "next": back},
    )
    assert response.status_code == 302 and response["Location"] == back
    v1.refresh_from_db()
    assert v1.known_good and v1.known_good_reason == "ran clean for a day, 無事"
    elsewhere = client.post(
        reverse("release_known_good", args=[v1.pk]),
        {"known_good": "0", "next": "https://evil.example/"},
    )
    assert elsewhere["Location"] == reverse("dashboard")  # never off-site
    too_long = client.post(
        reverse("release_known_good", args=[v1.pk]), {"known_good": "1", "reason": "x" * 501}
    )
    assert too_long.status_code == 400


def test_the_terminal_registers_marks_and_lists(roles, web, capsys):
    UserFactory(username="alice", roles=["Incident Commander"])
    call_command("release", "register", "web", "v3", "registry.local/web:v3", "--as", "alice")
    assert "backup saved: manifest" in capsys.readouterr().out
    call_command("release", "known-good", "web", "v1", "--reason", "baked", "--as", "alice")
    assert Release.objects.get(version="v1").known_good_reason == "baked"
    assert "web v1 is known-good." in capsys.readouterr().out
    call_command("release", "list", "web")
    listed = capsys.readouterr().out.splitlines()
    assert listed[0].startswith("v3\t") and "manifest" in listed[0]
    with pytest.raises(CommandError, match="suspected"):
        incident_open(services=[web])
        call_command("release", "known-good", "web", "v1", "--as", "alice")
    with pytest.raises(CommandError, match="No production service"):
        call_command("release", "list", "nope")
