"""The room's parts fetched on their own: the parts the live stream asks each viewer to
fetch again, and the timeline's polling."""

from __future__ import annotations

import pytest
from django.urls import reverse

from tests.factories import UserFactory, incident_open

pytestmark = pytest.mark.django_db


@pytest.fixture
def ic(client, roles):
    user = UserFactory(username="ic", roles=["Incident Commander"])
    client.force_login(user)
    return user


def test_unknown_room_part_answers_404(client, ic):
    incident = incident_open()
    response = client.get(reverse("incident_section", args=[incident.pk, "everything"]))
    assert response.status_code == 404


@pytest.mark.parametrize("after", ["²", "٣", "1e3", "-1"])
def test_timeline_poll_refuses_digits_that_are_not_ascii(client, ic, after):
    incident = incident_open()
    response = client.get(reverse("incident_timeline", args=[incident.pk]), {"after": after})
    assert response.status_code == 400


@pytest.mark.parametrize("section", ["headline", "checklists", "approvals"])
def test_each_room_part_renders_the_same_as_in_the_whole_room(client, ic, section):
    import re

    incident = incident_open()
    room = client.get(reverse("incident_room", args=[incident.pk])).content.decode()
    part = client.get(reverse("incident_section", args=[incident.pk, section])).content.decode()

    def without_tokens(html: str) -> str:
        return re.sub(r'value="[^"]*"', "", " ".join(html.split()))

    assert without_tokens(part).strip() in without_tokens(room)
