"""Ticking "Known good" in the admin records who and when (it answered 500: the check
constraint wants an instant, and the instant was read-only), and is refused for a release
an open incident suspects."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from incidents.models import Release
from tests.factories import ServiceFactory, UserFactory, incident_open

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(client, roles):
    user = UserFactory(username="staff", roles=["Incident Commander"])
    user.is_staff = user.is_superuser = True
    user.save()
    client.force_login(user)
    return user


def form_data(release: Release, **changes) -> dict:
    data = {
        "service": release.service_id,
        "version": release.version,
        "artifact": release.artifact,
        "shipped_at_0": release.shipped_at.strftime("%Y-%m-%d"),
        "shipped_at_1": release.shipped_at.strftime("%H:%M:%S"),
        "notes": "",
        "known_good_reason": "",
        "backup": "{}",
        "backup_at_0": "",
        "backup_at_1": "",
    }
    data.update(changes)
    return {key: value for key, value in data.items() if value is not False}


def test_ticking_known_good_in_the_admin_records_who_and_when(client, staff):
    service = ServiceFactory()
    release = Release.objects.create(
        service=service, version="v1", artifact="a", shipped_at=timezone.now() - timedelta(days=1)
    )
    url = reverse("admin:incidents_release_change", args=[release.pk])
    response = client.post(url, form_data(release, known_good="on", known_good_reason="clean ✅"))
    assert response.status_code == 302, response.content[:2000]
    release.refresh_from_db()
    assert release.known_good and release.known_good_by == staff and release.known_good_at
    assert release.known_good_reason == "clean ✅"

    response = client.post(url, form_data(release, known_good=False))
    assert response.status_code == 302
    release.refresh_from_db()
    assert not release.known_good and release.known_good_at is None


def test_a_new_release_added_as_known_good_gets_its_instant(client, staff):
    service = ServiceFactory()
    draft = Release(service=service, version="v2", artifact="b", shipped_at=timezone.now())
    response = client.post(
        reverse("admin:incidents_release_add"), form_data(draft, known_good="on")
    )
    assert response.status_code == 302, response.content[:2000]
    assert Release.objects.get(version="v2").known_good_at is not None


def test_the_admin_refuses_known_good_for_a_suspect(client, staff):
    service = ServiceFactory()
    release = Release.objects.create(
        service=service, version="v1", artifact="a", shipped_at=timezone.now() - timedelta(hours=1)
    )
    incident = incident_open(services=[service])
    url = reverse("admin:incidents_release_change", args=[release.pk])
    response = client.post(url, form_data(release, known_good="on"))
    assert response.status_code == 200
    assert f"Open incident #{incident.pk} suspects this release" in response.content.decode()
    release.refresh_from_db()
    assert not release.known_good


def test_the_admin_refuses_a_new_release_as_known_good_when_it_would_be_the_suspect(client, staff):
    service = ServiceFactory()
    incident = incident_open(services=[service])
    draft = Release(
        service=service, version="v9", artifact="z", shipped_at=timezone.now() - timedelta(hours=1)
    )
    response = client.post(
        reverse("admin:incidents_release_add"), form_data(draft, known_good="on")
    )
    assert response.status_code == 200
    assert f"Open incident #{incident.pk} suspects this release" in response.content.decode()
    assert not Release.objects.filter(version="v9").exists()
