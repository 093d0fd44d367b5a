"""A full run as people make it: the commander and the approvers, each signed in to the
console through Django's test client, press the same buttons as in the browser (draft with
step options, preview, ask for approval, approve, type the confirmation and start), and a
real Celery worker does the rest."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from html import unescape
from typing import Any

from django.contrib.auth.models import Group
from django.test import Client
from django.urls import reverse

from incidents.models import Incident, Service, TimelineEntry, TimelineKind
from rollbacks.models import ApprovalRequest, ApprovalRequestStatus, Run, RunState, StepState
from tests.rollbacks.engine_factories import UserFactory
from tests.rollbacks.engine_fixtures import wait_for

_ALERT = re.compile(r'role="alert"[^>]*>(.*?)</', re.S)


def page_error(response: Any) -> str:
    """The error the room shows, or the start of the page when it shows none."""
    text = response.content.decode(errors="replace")
    found = _ALERT.search(text)
    return unescape(found.group(1).strip()) if found else text[:600]


def plan_form(service: Service, target: str, options: Mapping[str, str]) -> dict[str, str]:
    return {
        "scenario": "any",
        "reason": f"Roll {service.name} back",
        "parallel": "on",
        f"target_{service.pk}": target,
        **{f"opt-{service.pk}-{name}": value for name, value in options.items()},
    }


class Console:
    """The commander's client, and an approver per role, created as a policy asks for them."""

    def __init__(self, commander: Any) -> None:
        self.commander = Client()
        self.commander.force_login(commander)
        self.approvers: dict[str, Client] = {}

    def post(
        self, client: Client, name: str, args: Sequence[int | str], data: Mapping[str, Any]
    ) -> None:
        response = client.post(reverse(name, args=list(args)), data)
        assert response.status_code == 302, f"{name}: {response.status_code} {page_error(response)}"

    def draft(
        self, incident: Incident, service: Service, target: str, options: Mapping[str, str]
    ) -> Run:
        """The plan builder's form for one service: `target` is "previous", "options" or a
        release id; `options` the step options by name."""
        self.post(self.commander, "run_create", [incident.pk], plan_form(service, target, options))
        run = Run.objects.filter(incident=incident).latest("pk")
        assert run.state == RunState.DRAFT
        return run

    def draft_playbook(
        self, incident: Incident, name: str, version: int, parameters: Mapping[str, Any]
    ) -> Run:
        """The room's playbook card: `parameters` by name (a list for several services)."""
        data = {
            "version": version,
            "scenario": "any",
            **{f"param_{key}": v for key, v in parameters.items()},
        }
        self.post(self.commander, "incident_playbook_draft", [incident.pk, name], data)
        run = Run.objects.filter(incident=incident).latest("pk")
        assert run.state == RunState.DRAFT
        return run

    def draft_refused(
        self, incident: Incident, service: Service, target: str, options: Mapping[str, str]
    ) -> str:
        """Submit the plan builder's form expecting a 400; the error the room shows."""
        url = reverse("run_create", args=[incident.pk])
        response = self.commander.post(url, plan_form(service, target, options))
        assert response.status_code == 400, response.status_code
        return page_error(response)

    def dry_run(self, run: Run) -> str:
        """Preview the run; the room's text afterwards, which shows each change."""
        self.post(self.commander, "run_dry_run", [run.incident_id, run.pk], {})
        page = self.commander.get(reverse("incident_room", args=[run.incident_id]))
        return unescape(re.sub(r"<[^>]+>", " ", page.content.decode()))

    def request_approval(self, run: Run) -> ApprovalRequest | None:
        self.post(
            self.commander, "run_approval", [run.incident_id, run.pk], {"reason": "bad release"}
        )
        run.refresh_from_db()
        return run.approval_request

    def approver(self, role: str) -> Client:
        """A signed-in approver holding `role` (made on first use)."""
        if role not in self.approvers:
            Group.objects.get_or_create(name=role)
            person = UserFactory(username=f"approver-{role.lower().replace(' ', '-')}")
            person.groups.add(Group.objects.get(name="Approver"), Group.objects.get(name=role))
            client = Client()
            client.force_login(person)
            self.approvers[role] = client
        return self.approvers[role]

    def approve(self, run: Run) -> None:
        """Every role the run's request still needs approves it, each through the console."""
        request = run.approval_request
        assert request is not None
        for role in request.missing_roles():
            self.post(
                self.approver(role),
                "approval_decide",
                [run.incident_id, request.pk],
                {"decision": "approve", "role": role, "comment": "go"},
            )
        request.refresh_from_db()
        assert request.status == ApprovalRequestStatus.APPROVED

    def start(self, run: Run) -> None:
        run.refresh_from_db()
        confirmation = {"confirmation": run.expected_confirmation()}
        self.post(self.commander, "run_start", [run.incident_id, run.pk], confirmation)

    def approve_and_run(self, run: Run, timeout: float = 60) -> Run:
        """Ask for approval, approve as every role the request needs, type the confirmation
        and start; the run once the worker has finished it."""
        self.request_approval(run)
        self.approve(run)
        self.start(run)
        return self.finish(run, timeout)

    def finish(self, run: Run, timeout: float = 60) -> Run:
        wait_for(lambda: Run.objects.get(pk=run.pk).is_finished, timeout, "the run to finish")
        run.refresh_from_db()
        return run


def assert_recorded(
    run: Run, *, step_checks: Sequence[str], secrets: Sequence[str] = ()
) -> list[TimelineEntry]:
    """The run succeeded with its one step applied once, each of `step_checks` passed, the
    verification round passed, and the timeline says so in order, naming none of `secrets`
    (nor does the step's log); returns the entries."""
    step = run.steps.get()
    assert run.state == RunState.SUCCEEDED, run.failure_reason
    assert step.state == StepState.SUCCEEDED and step.attempts == 1, step.error
    passed = {result["name"] for result in step.check_results if result["status"] == "passed"}
    assert set(step_checks) <= passed, step.check_results
    entries = list(TimelineEntry.objects.filter(incident_id=run.incident_id).order_by("id"))
    kinds = [entry.kind for entry in entries]
    assert kinds.count(TimelineKind.STEP_STARTED) == kinds.count(TimelineKind.STEP_FINISHED) == 1
    verified = [
        entry
        for entry in entries
        if entry.kind == TimelineKind.CHECK_RESULT and entry.payload.get("phase") == "verification"
    ]
    assert verified and all(entry.payload.get("outcome") == "passed" for entry in verified), [
        entry.body for entry in verified
    ]
    assert kinds.index(TimelineKind.STEP_STARTED) < kinds.index(TimelineKind.STEP_FINISHED)
    assert entries.index(verified[0]) > kinds.index(TimelineKind.STEP_FINISHED)
    assert any(entry.kind == TimelineKind.RUN and "succeeded" in entry.body for entry in entries), [
        entry.body for entry in entries
    ]
    recorded = json.dumps(
        [[entry.body, entry.payload] for entry in entries]
        + [step.check_results, step.error, step.apply_detail, step.apply_facts],
        default=str,
    ) + "\n".join(line.line for line in step.log_lines.all())
    leaked = [secret for secret in secrets if secret in recorded]
    assert not leaked, f"on the timeline or in the step's log: {leaked}"
    return entries
