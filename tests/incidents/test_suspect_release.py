"""The release that was live when an open incident began is the suspect: the dashboard offers
no "Mark known-good" beside it (it links the incident instead) and the service refuses it;
an older good release, or a fix shipped during the incident, is not suspected."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from incidents import services
from incidents.errors import DomainError
from tests.factories import ReleaseFactory, ServiceFactory, UserFactory, incident_open

pytestmark = pytest.mark.django_db


@pytest.fixture
def world(roles):
    now = timezone.now()
    web = ServiceFactory(name="web")
    good = ReleaseFactory(service=web, version="v1", shipped_at=now - timedelta(days=2))
    bad = ReleaseFactory(service=web, version="v2", shipped_at=now - timedelta(hours=1))
    incident = incident_open(started_at=now - timedelta(minutes=30))
    incident.services.add(web)
    commander = UserFactory(roles=["Incident Commander"])
    return web, good, bad, incident, commander


def test_the_release_live_when_the_incident_began_cannot_be_marked_known_good(world):
    web, good, bad, incident, commander = world
    with pytest.raises(DomainError, match=f"suspected by open incident #{incident.pk}"):
        services.release_mark_known_good(release=bad, actor=commander)
    services.release_mark_known_good(release=good, actor=commander)  # older: fine

    fix = ReleaseFactory(service=web, version="v3", shipped_at=timezone.now())
    services.release_mark_known_good(release=fix, actor=commander)  # shipped during it: fine

    services.incident_change_status(
        incident=incident, to_status="resolved", actor=commander, reason="fixed"
    )
    services.release_mark_known_good(release=bad, actor=commander)  # once resolved


def test_the_dashboard_links_the_incident_instead_of_offering_the_button(client, world):
    web, good, bad, incident, commander = world
    client.force_login(commander)
    page = client.get(reverse("dashboard")).content.decode()
    assert f"suspect: incident #{incident.pk}" in page
    assert reverse("release_known_good", args=[bad.pk]) not in page

    refused = client.post(reverse("release_known_good", args=[bad.pk]), {"known_good": "1"})
    assert refused.status_code == 400
    assert "suspected by open incident" in refused.content.decode()
    bad.refresh_from_db()
    assert not bad.known_good
