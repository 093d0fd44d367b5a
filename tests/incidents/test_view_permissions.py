"""Every view, walked by every role: anonymous → login, wrong role → 403, right role → works."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from django.urls import reverse
from django.utils import timezone

from incidents import services
from tests.factories import ReleaseFactory, UserFactory, incident_open

pytestmark = pytest.mark.django_db

ROLES = ["Viewer", "Responder", "Support Lead", "Approver", "Incident Commander"]
EVERYONE = set(ROLES)
COMMANDER = {"Incident Commander"}


@dataclass
class Case:
    name: str
    allowed: set[str]
    request: Callable[[Any], tuple[str, str, dict[str, Any]]]  # (method, url, data)

    def __str__(self) -> str:
        return self.name


def _incident_url(name: str, **extra: Any) -> Callable[[Any], str]:
    return lambda world: reverse(name, kwargs={"incident_id": world.incident.pk, **extra})


class World:
    """One incident with a pending approval request opened by another commander."""

    def __init__(self, acting_user: Any) -> None:
        requester: Any = UserFactory(username="requester", roles=["Incident Commander"])
        self.user = acting_user
        self.incident = incident_open(severity="P1", commander=None)
        self.item = self.incident.checklists.get(kind="pre_rollback").items.first()
        self.approval_request = services.approval_request_open(
            incident=self.incident, requested_by=requester, scenario="any", reason="bad release"
        )
        self.release = ReleaseFactory()


CASES = [
    Case("dashboard", EVERYONE, lambda w: ("get", reverse("dashboard"), {})),
    Case("incident_list", EVERYONE, lambda w: ("get", reverse("incident_list"), {})),
    Case("incident_create_form", COMMANDER, lambda w: ("get", reverse("incident_create"), {})),
    Case(
        "incident_create",
        COMMANDER,
        lambda w: (
            "post",
            reverse("incident_create"),
            {
                "title": "Payments failing",
                "severity": "P1",
                "environment": "production",
                "rto_minutes": 15,
                "rpo_minutes": 5,
            },
        ),
    ),
    Case("incident_room", EVERYONE, lambda w: ("get", _incident_url("incident_room")(w), {})),
    Case(
        "incident_timeline",
        EVERYONE,
        lambda w: ("get", _incident_url("incident_timeline")(w) + "?after=0", {}),
    ),
    Case(
        "incident_status",
        COMMANDER,
        lambda w: ("post", _incident_url("incident_status")(w), {"to_status": "identified"}),
    ),
    Case(
        "incident_severity",
        COMMANDER,
        lambda w: ("post", _incident_url("incident_severity")(w), {"severity": "P0"}),
    ),
    Case(
        "incident_commander",
        COMMANDER,
        lambda w: (
            "post",
            _incident_url("incident_commander")(w),
            {"commander": w.user.pk if w.user else 0},
        ),
    ),
    Case(
        "incident_instant",
        COMMANDER,
        lambda w: (
            "post",
            _incident_url("incident_instant")(w),
            {"instant": "decided_at", "at": timezone.now().strftime("%Y-%m-%dT%H:%M:%S")},
        ),
    ),
    Case(
        "note_create",
        EVERYONE - {"Viewer"},
        lambda w: ("post", _incident_url("note_create")(w), {"body": "watching error rate"}),
    ),
    Case(
        "checklist_item_toggle",
        {"Responder", "Incident Commander"},
        lambda w: (
            "post",
            _incident_url("checklist_item_toggle", item_id=w.item.pk)(w),
            {"done": "1"},
        ),
    ),
    Case(
        "approval_request_create",
        COMMANDER,
        lambda w: (
            "post",
            _incident_url("approval_request_create")(w),
            {"scenario": "data_corruption", "reason": "orders table damaged"},
        ),
    ),
    Case(
        "approval_decide",
        {"Approver"},
        lambda w: (
            "post",
            _incident_url("approval_decide", request_id=w.approval_request.pk)(w),
            {"decision": "approve"},
        ),
    ),
    Case(
        "approval_withdraw",
        COMMANDER,
        lambda w: (
            "post",
            _incident_url("approval_withdraw", request_id=w.approval_request.pk)(w),
            {},
        ),
    ),
    Case(
        "release_known_good",
        COMMANDER,
        lambda w: (
            "post",
            reverse("release_known_good", args=[w.release.pk]),
            {"known_good": "1"},
        ),
    ),
]


def _prepare(case: Case, client: Any, role: str | None) -> tuple[str, str, dict[str, Any]]:
    # The approval request above is pending; a second request needs it withdrawn first.
    user = UserFactory(roles=[role, "On-call"]) if role else None
    world = World(user)
    if case.name == "approval_request_create":
        services.approval_withdraw(
            request=world.approval_request, actor=world.approval_request.requested_by
        )
    if user is not None:
        client.force_login(user)
    return case.request(world)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_anonymous_visitor_is_sent_to_login(client, roles, case):
    method, url, data = _prepare(case, client, None)
    response = getattr(client, method)(url, data)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("case", CASES, ids=str)
def test_each_role_reaches_exactly_the_views_it_is_allowed(client, roles, case, role):
    method, url, data = _prepare(case, client, role)
    response = getattr(client, method)(url, data)
    if role in case.allowed:
        assert response.status_code in (200, 302), response.content[:500]
    else:
        assert response.status_code == 403


@pytest.mark.parametrize("name", ["healthz", "readyz"])
def test_health_endpoints_need_no_login(client, name):
    response = client.get(reverse(name))
    assert response.status_code == 200
