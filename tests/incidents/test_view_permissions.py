"""Every view, walked by every role: anonymous → login, wrong role → 403, right role → works."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from django.urls import reverse
from django.utils import timezone

import rollbacks.services
from rollbacks.approvals import approval_request_open, approval_withdraw
from rollbacks.models import Run, RunState, StepState
from statuspage.models import Component
from tests.factories import ReleaseFactory, ServiceFactory, UserFactory, incident_open
from tests.permissions import assert_reached_only_if_allowed, assert_sent_to_login

pytestmark = pytest.mark.django_db

ROLES = ["Viewer", "Responder", "Support Lead", "Approver", "Incident Commander"]
EVERYONE = set(ROLES)
COMMANDER = {"Incident Commander"}
SUPPORT = {"Support Lead"}


@dataclass
class Case:
    name: str
    allowed: set[str]
    request: Callable[[Any], tuple[str, str, dict[str, Any]]]  # (method, url, data)
    run_state: str = ""  # puts the world's run (and its step) in this state first

    def __str__(self) -> str:
        return self.name


def _incident_url(name: str, **extra: Any) -> Callable[[Any], str]:
    return lambda world: reverse(name, kwargs={"incident_id": world.incident.pk, **extra})


def _run_url(name: str, **extra: Any) -> Callable[[Any], str]:
    return lambda world: reverse(
        name, kwargs={"incident_id": world.incident.pk, "run_id": world.run.pk, **extra}
    )


class World:
    """One incident with a pending approval request opened by another commander."""

    def __init__(self, acting_user: Any) -> None:
        requester: Any = UserFactory(username="requester", roles=["Incident Commander"])
        self.user = acting_user
        self.requester = requester
        self.incident = incident_open(severity="P1", commander=None)
        self.item = self.incident.checklists.get(kind="pre_rollback").items.first()
        self.approval_request = approval_request_open(
            incident=self.incident, requested_by=requester, scenario="any", reason="bad release"
        )
        self.release = ReleaseFactory()
        # A feature flag in the test Redis: a real backend that answers at once.
        self.flag = ServiceFactory(
            name="new-checkout",
            backend="feature_flag",
            target_config={"store": "redis", "flag": "new-checkout", "key_prefix": "test:flags:"},
        )
        self.flag_off = ReleaseFactory(service=self.flag, version="off", artifact="off")
        self.incident.services.add(self.flag)
        self.run = rollbacks.services.run_create(
            incident=self.incident,
            steps=[rollbacks.services.StepSpec(service=self.flag, release=self.flag_off)],
            actor=requester,
            dry_run=True,
        )
        self.step = self.run.steps.get()

    def put_run_in(self, state: str) -> None:
        """Start the run (without a worker) and move it on to `state`."""
        rollbacks.services.run_confirm_and_start(
            run=self.run, actor=self.requester, confirmation="new-checkout", enqueue=False
        )
        if state == RunState.PAUSED:
            rollbacks.services.run_pause(run=self.run, actor=self.requester)
        if state == RunState.FAILED:
            # As the engine leaves a run whose only step failed.
            now = timezone.now()
            self.run.steps.update(
                state=StepState.FAILED, started_at=now, finished_at=now, error="flag store down"
            )
            Run.objects.filter(pk=self.run.pk).update(
                state=RunState.FAILED, finished_at=now, failure_reason="step 1 failed"
            )


CASES = [
    Case("dashboard", EVERYONE, lambda w: ("get", reverse("dashboard"), {})),
    Case("two_factor", EVERYONE, lambda w: ("get", reverse("two_factor"), {})),
    Case("two_factor_cancel", EVERYONE, lambda w: ("post", reverse("two_factor_cancel"), {})),
    Case("service_discover", COMMANDER, lambda w: ("get", reverse("service_discover"), {})),
    Case(
        "service_releases",
        EVERYONE,
        lambda w: ("get", reverse("service_releases", args=[w.release.service_id]), {}),
    ),
    # A token acts with its owner's roles, so anyone signed in may hold one.
    Case("api_tokens", EVERYONE, lambda w: ("get", reverse("api_tokens"), {})),
    Case(
        "api_token_create",
        EVERYONE,
        lambda w: ("post", reverse("api_tokens"), {"name": "ci", "scopes": ["read"]}),
    ),
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
    Case("incident_runs", EVERYONE, lambda w: ("get", _incident_url("incident_runs")(w), {})),
    Case(
        "incident_section",
        EVERYONE,
        lambda w: ("get", _incident_url("incident_section", section="approvals")(w), {}),
    ),
    Case(
        "incident_versions", COMMANDER, lambda w: ("get", _incident_url("incident_versions")(w), {})
    ),
    Case(
        "step_log",
        EVERYONE,
        lambda w: ("get", _run_url("step_log", step_id=w.step.pk)(w), {}),
    ),
    Case(
        "run_create",
        COMMANDER,
        lambda w: (
            "post",
            _incident_url("run_create")(w),
            {"scenario": "any", f"target_{w.flag.pk}": str(w.flag_off.pk)},
        ),
    ),
    Case("run_dry_run", COMMANDER, lambda w: ("post", _run_url("run_dry_run")(w), {})),
    Case(
        "run_approval",
        COMMANDER,
        lambda w: ("post", _run_url("run_approval")(w), {}),
    ),
    Case(
        "run_start",
        COMMANDER,
        lambda w: ("post", _run_url("run_start")(w), {"confirmation": "new-checkout"}),
    ),
    Case(
        "run_pause",
        COMMANDER,
        lambda w: ("post", _run_url("run_pause")(w), {}),
        run_state=RunState.RUNNING,
    ),
    Case(
        "run_resume",
        COMMANDER,
        lambda w: ("post", _run_url("run_resume")(w), {}),
        run_state=RunState.PAUSED,
    ),
    Case("run_cancel", COMMANDER, lambda w: ("post", _run_url("run_cancel")(w), {})),
    Case(
        "step_retry",
        COMMANDER,
        lambda w: ("post", _run_url("step_retry", step_id=w.step.pk)(w), {}),
        run_state=RunState.FAILED,
    ),
    Case(
        "step_skip",
        COMMANDER,
        lambda w: ("post", _run_url("step_skip", step_id=w.step.pk)(w), {"reason": "flag gone"}),
    ),
    Case("status_components", SUPPORT, lambda w: ("get", reverse("status_components"), {})),
    Case(
        "status_component_create",
        SUPPORT,
        lambda w: ("post", reverse("status_component_create"), {"name": "Search"}),
    ),
    Case(
        "status_component_edit",
        SUPPORT,
        lambda w: (
            "post",
            reverse("status_component_edit", args=[_status_component().pk]),
            {"name": "Search and browse"},
        ),
    ),
    Case(
        "status_component_move",
        SUPPORT,
        lambda w: (
            "post",
            reverse("status_component_move", args=[_status_component().pk]),
            {"direction": "down"},
        ),
    ),
    Case(
        "status_component_delete",
        SUPPORT,
        lambda w: ("post", reverse("status_component_delete", args=[_status_component().pk]), {}),
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


def _status_component() -> Component:
    return Component.objects.create(name="Search", position=1)


def _prepare(case: Case, client: Any, role: str | None) -> tuple[str, str, dict[str, Any]]:
    # The approval request above is pending; a second request needs it withdrawn first.
    user = UserFactory(roles=[role, "On-call"]) if role else None
    world = World(user)
    if case.run_state:
        world.put_run_in(case.run_state)
    if case.name in ("approval_request_create", "run_approval"):
        approval_withdraw(request=world.approval_request, actor=world.approval_request.requested_by)
    if user is not None:
        client.force_login(user)
    return case.request(world)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_anonymous_visitor_is_sent_to_login(client, roles, case):
    assert_sent_to_login(client, *_prepare(case, client, None))


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("case", CASES, ids=str)
def test_each_role_reaches_exactly_the_views_it_is_allowed(client, roles, case, role):
    method, url, data = _prepare(case, client, role)
    assert_reached_only_if_allowed(client, method, url, data, allowed=role in case.allowed)


@pytest.mark.parametrize("name", ["healthz", "readyz"])
def test_health_endpoints_need_no_login(client, name):
    response = client.get(reverse(name))
    assert response.status_code == 200


@pytest.mark.parametrize("name", ["healthz", "readyz"])
def test_probes_over_plain_http_are_answered_even_when_https_is_enforced(client, settings, name):
    settings.SECURE_SSL_REDIRECT = True
    assert client.get(reverse(name)).status_code == 200
    assert client.get(reverse("dashboard")).status_code == 301  # everything else moves to https


def test_the_api_answers_tokens_not_the_login_page(client):
    # Its operations answer 401 without a token; its description is public.
    assert client.get("/api/v1/runs/1").status_code == 401
    assert client.get("/api/v1/openapi.json").status_code == 200


@pytest.mark.parametrize("name", ["oidc_authentication_init", "oidc_authentication_callback"])
def test_single_sign_on_is_open_to_signed_out_visitors(client, settings, name):
    # The two ends of a sign-in cannot ask for one; unconfigured, they do not exist.
    settings.SSO_ENABLED = False
    assert client.get(reverse(name)).status_code == 404
