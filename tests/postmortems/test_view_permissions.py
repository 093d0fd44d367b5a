"""Every post-mortem view, walked by every role: anonymous → login, wrong role → 403,
right role → works."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from django.urls import reverse

from postmortems import services
from tests.factories import UserFactory
from tests.permissions import assert_reached_only_if_allowed, assert_sent_to_login
from tests.postmortems.builders import commander, resolved_incident

pytestmark = pytest.mark.django_db

ROLES = ["Viewer", "Responder", "Support Lead", "Approver", "Incident Commander"]
EVERYONE = set(ROLES)
EDITORS = {"Responder", "Incident Commander"}
COMMANDER = {"Incident Commander"}


class World:
    """A resolved incident whose post-mortem is written and in review, with one item."""

    def __init__(self, started: bool = True) -> None:
        owner = commander("owner")
        self.incident = resolved_incident(by=owner)
        self.entry = self.incident.timeline.filter(kind="note").order_by("id")[0]
        self.postmortem = None
        if started:
            self.postmortem = services.postmortem_start(incident=self.incident, actor=owner)
            services.postmortem_edit(
                postmortem=self.postmortem,
                actor=owner,
                values={"root_cause": "typo", "resolution": "rolled back"},
                base_revision=1,
            )
            self.item = services.action_item_add(
                postmortem=self.postmortem, actor=owner, title="Add a test"
            )


@dataclass
class Case:
    name: str
    allowed: set[str]
    request: Callable[[World], tuple[str, str, dict[str, Any]]]
    started: bool = True

    def __str__(self) -> str:
        return self.name


def _url(name: str, **extra: Any) -> Callable[[World], str]:
    return lambda w: reverse(name, kwargs={"incident_id": w.incident.pk, **extra})


CASES = [
    Case("postmortem_page", EVERYONE, lambda w: ("get", _url("postmortem")(w), {})),
    Case("postmortem_md", EVERYONE, lambda w: ("get", _url("postmortem_md")(w), {})),
    Case("postmortem_pdf", EVERYONE, lambda w: ("get", _url("postmortem_pdf")(w), {})),
    Case("postmortem_json", EVERYONE, lambda w: ("get", _url("postmortem_json")(w), {})),
    Case("postmortem_history", EVERYONE, lambda w: ("get", _url("postmortem_history")(w), {})),
    Case("recovery_metrics", EVERYONE, lambda w: ("get", reverse("recovery_metrics"), {})),
    Case("postmortem_list", EVERYONE, lambda w: ("get", reverse("postmortem_list"), {})),
    Case(
        "postmortem_start",
        EDITORS,
        lambda w: ("post", _url("postmortem_start")(w), {}),
        started=False,
    ),
    Case(
        "postmortem_edit",
        EDITORS,
        lambda w: (
            "post",
            _url("postmortem_edit")(w),
            {
                "summary": "s",
                "root_cause": "typo",
                "resolution": "rolled back",
                "revenue_currency": "EUR",
                "timeline_filter": "all",
                "base_revision": 2,
            },
        ),
    ),
    Case(
        "postmortem_state",
        EDITORS,
        lambda w: ("post", _url("postmortem_state")(w), {"to_state": "in_review"}),
    ),
    Case(
        "postmortem_publish",
        COMMANDER,
        lambda w: (
            "post",
            _url("postmortem_state")(w),
            {"to_state": "published", "confirm": "1"},
        ),
    ),
    Case(
        "postmortem_star",
        EDITORS,
        lambda w: ("post", _url("postmortem_star", entry_id=w.entry.pk)(w), {"starred": "1"}),
    ),
    Case(
        "action_item_create",
        EDITORS,
        lambda w: ("post", _url("action_item_create")(w), {"title": "Write the runbook"}),
    ),
    Case(
        "action_item_done",
        EDITORS,
        lambda w: ("post", _url("action_item_done", item_id=w.item.pk)(w), {"done": "1"}),
    ),
]


def _prepare(case: Case, client: Any, role: str | None) -> tuple[str, str, dict[str, Any]]:
    world = World(started=case.started)
    if case.name == "postmortem_publish":
        services.postmortem_change_state(
            postmortem=world.postmortem, actor=world.incident.commander, to_state="in_review"
        )
    if role is not None:
        client.force_login(UserFactory(roles=[role]))
    return case.request(world)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_anonymous_visitor_is_sent_to_login(client, roles, case):
    assert_sent_to_login(client, *_prepare(case, client, None))


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("case", CASES, ids=str)
def test_each_role_reaches_exactly_the_views_it_is_allowed(client, roles, case, role):
    method, url, data = _prepare(case, client, role)
    assert_reached_only_if_allowed(client, method, url, data, allowed=role in case.allowed)
