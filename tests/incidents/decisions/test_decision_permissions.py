"""The decision helper's views, walked by every role: anonymous → login, wrong role → 403,
right role → works."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from django.urls import reverse

from incidents.models import TimelineEntry, TimelineKind
from tests.factories import UserFactory, incident_open

pytestmark = pytest.mark.django_db

ROLES = ["Viewer", "Responder", "Support Lead", "Approver", "Incident Commander"]
EVERYONE = set(ROLES)
COMMANDER = {"Incident Commander"}
SIGNALS = {"error_rate": "4", "error_trend": "steady", "memory_percent": "60"}


@dataclass
class Case:
    name: str
    allowed: set[str]
    method: str
    url_name: str
    data: dict[str, Any]
    writes: bool = False

    def __str__(self) -> str:
        return self.name

    def request(self, client: Any, incident_id: int) -> Any:
        call: Callable[..., Any] = getattr(client, self.method)
        return call(reverse(self.url_name, args=[incident_id]), self.data)


CASES = [
    Case("decision_record", COMMANDER, "post", "incident_decision", SIGNALS, writes=True),
    Case("decision_preview", COMMANDER, "post", "incident_decision_preview", SIGNALS),
    Case("recovery_panel", EVERYONE, "get", "incident_recovery", {}),
]


def _decisions() -> int:
    return TimelineEntry.objects.filter(kind=TimelineKind.DECISION).count()


@pytest.mark.parametrize("case", CASES, ids=str)
def test_anonymous_visitor_is_sent_to_login(client, roles, case):
    incident = incident_open()
    response = case.request(client, incident.pk)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))
    assert _decisions() == 0


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("case", CASES, ids=str)
def test_each_role_reaches_exactly_the_decision_views_it_is_allowed(client, roles, case, role):
    incident = incident_open()
    client.force_login(UserFactory(roles=[role]))
    response = case.request(client, incident.pk)
    if role in case.allowed:
        assert response.status_code in (200, 302), response.content[:500]
        assert _decisions() == (1 if case.writes else 0)
    else:
        assert response.status_code == 403
        assert _decisions() == 0


@pytest.mark.parametrize("case", CASES[:2], ids=str)
def test_decision_endpoints_refuse_get(client, roles, case):
    incident = incident_open()
    client.force_login(UserFactory(roles=["Incident Commander"]))
    response = client.get(reverse(case.url_name, args=[incident.pk]))
    assert response.status_code == 405
