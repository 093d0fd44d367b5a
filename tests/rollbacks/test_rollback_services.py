"""The commander's operations on rollback runs: drafting, dry run, approval, the typed
confirmation, and the run and step state machines."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

import rollbacks.services
from incidents.errors import DomainError, PermissionDenied
from incidents.models import Release, Severity, TimelineEntry, TimelineKind
from rollbacks.approvals import approval_decide
from rollbacks.models import ApprovalPolicy, Run, RunState, StepState
from rollbacks.services import StepSpec
from tests.rollbacks.engine_factories import (
    IncidentFactory,
    KubeServiceFactory,
    RunFactory,
    StepFactory,
    UserFactory,
)
from tests.rollbacks.engine_fixtures import live_image, patches_to, seed_deployment

pytestmark = pytest.mark.django_db
# Tests that execute steps commit what they create: steps run on their own connections.
executes = pytest.mark.django_db(transaction=True)


def _draft(commander: Any, service: Any, **kwargs: Any) -> Run:
    incident = kwargs.pop("incident", None) or IncidentFactory()
    release = Release.objects.get(service=service, version="v1")
    return rollbacks.services.run_create(
        incident=incident,
        steps=[StepSpec(service=service, release=release)],
        actor=commander,
        reason="v2 breaks checkout",
        **kwargs,
    )


def _kinds(run: Run) -> list[str]:
    return list(TimelineEntry.objects.filter(incident=run.incident).values_list("kind", flat=True))


def test_drafting_records_the_live_version_and_the_target(commander, kube_service):
    run = _draft(commander, kube_service)

    step = run.steps.get()
    assert run.state == RunState.DRAFT
    assert (step.from_version, step.to_version, step.to_artifact) == (
        "v2",
        "v1",
        "registry.local/web:v1",
    )
    entry = TimelineEntry.objects.get(incident=run.incident, kind=TimelineKind.RUN)
    assert "web v2 → v1" in entry.body
    assert entry.payload["run"] == run.pk


def test_drafting_needs_the_commander_role(kube_service):
    responder = UserFactory(roles=["Responder"])
    with pytest.raises(PermissionDenied):
        _draft(responder, kube_service)


def test_steps_without_a_group_run_one_after_another_and_groups_can_be_shared(commander, kube):
    services = [KubeServiceFactory(name=name) for name in ("a", "b", "c", "d")]
    run = rollbacks.services.run_create(
        incident=IncidentFactory(),
        steps=[
            StepSpec(service=services[0], previous=True),
            StepSpec(service=services[1], previous=True, group=2),
            StepSpec(service=services[2], previous=True, group=2),
            StepSpec(service=services[3], previous=True),
        ],
        actor=commander,
    )

    assert list(run.steps.values_list("position", "group")) == [(1, 1), (2, 2), (3, 2), (4, 3)]


def test_unreadable_live_version_is_left_blank_and_said_why(commander, kube):
    service = KubeServiceFactory(name="ghost")  # no such Deployment in the stand-in

    run = rollbacks.services.run_create(
        incident=IncidentFactory(),
        steps=[StepSpec(service=service, previous=True)],
        actor=commander,
    )

    assert run.steps.get().from_version == ""
    entry = TimelineEntry.objects.get(incident=run.incident, kind=TimelineKind.RUN)
    assert "live version of ghost unknown" in entry.body
    assert "404" in entry.payload["unknown_live_versions"]["ghost"]


def test_a_release_of_another_service_is_refused(commander, kube_service):
    other = KubeServiceFactory(name="api")
    release = Release.objects.get(service=kube_service, version="v1")
    with pytest.raises(DomainError, match="not a release of api"):
        rollbacks.services.run_create(
            incident=IncidentFactory(),
            steps=[StepSpec(service=other, release=release)],
            actor=commander,
        )


def test_a_service_of_another_environment_needs_a_drill(commander, kube_service):
    incident = IncidentFactory(environment="staging")
    with pytest.raises(DomainError, match="draft a drill"):
        _draft(commander, kube_service, incident=incident)
    assert _draft(commander, kube_service, incident=incident, drill=True).drill


def test_dry_run_shows_the_changes_and_changes_nothing(commander, kube, kube_service):
    run = _draft(commander, kube_service)
    patches_before = patches_to(kube, "web")

    previews = rollbacks.services.run_dry_run(run=run, actor=commander)

    (preview,) = previews
    assert preview.error == ""
    assert any(
        change.before == "registry.local/web:v2" and change.after == "registry.local/web:v1"
        for change in preview.changes
    )
    assert live_image(kube, "web") == "registry.local/web:v2"
    assert patches_to(kube, "web") == patches_before
    step = run.steps.get()
    assert step.planned_changes[0]["after"] == "registry.local/web:v1"
    assert step.state == StepState.PENDING
    entry = TimelineEntry.objects.filter(incident=run.incident, kind=TimelineKind.RUN).last()
    assert "nothing was changed" in entry.body


def test_without_a_matching_policy_the_run_is_approved_at_once(commander, kube_service):
    run = _draft(commander, kube_service)

    run = rollbacks.services.run_request_approval(run=run, actor=commander)

    assert run.state == RunState.APPROVED
    assert run.approval_request.status == "approved"


def _major_incident_policy() -> None:
    # The default policy from migration 0003 (gone after a transactional test's flush).
    ApprovalPolicy.objects.update_or_create(
        name="Major incidents need on-call and an engineering lead",
        defaults={"severities": ["P0", "P1"], "required_roles": ["On-call", "Engineering Lead"]},
    )


def test_the_run_waits_for_approvers_and_is_approved_by_their_decisions(
    commander, approver, kube_service
):
    _major_incident_policy()
    second = UserFactory(username="oncall", roles=["Approver", "On-call"])
    run = _draft(commander, kube_service, incident=IncidentFactory(severity=Severity.P1))

    run = rollbacks.services.run_request_approval(run=run, actor=commander)
    assert run.state == RunState.AWAITING_APPROVAL
    with pytest.raises(DomainError, match="not approved yet"):
        rollbacks.services.run_confirm_and_start(run=run, actor=commander, confirmation="web")

    approval_decide(request=run.approval_request, approver=second, decision="approve")
    run.refresh_from_db()
    assert run.state == RunState.AWAITING_APPROVAL
    approval_decide(request=run.approval_request, approver=approver, decision="approve")
    run.refresh_from_db()
    assert run.state == RunState.APPROVED
    assert "has every approval" in TimelineEntry.objects.filter(kind=TimelineKind.RUN).last().body


def test_a_rejected_request_sends_the_run_back_to_draft(commander, approver, kube_service):
    _major_incident_policy()
    run = _draft(commander, kube_service, incident=IncidentFactory(severity=Severity.P0))
    run = rollbacks.services.run_request_approval(run=run, actor=commander)

    approval_decide(request=run.approval_request, approver=approver, decision="reject")

    run.refresh_from_db()
    assert run.state == RunState.DRAFT
    with pytest.raises(DomainError, match="Request approval first"):
        rollbacks.services.run_confirm_and_start(run=run, actor=commander, confirmation="web")


def test_a_draft_cannot_start(commander, kube_service):
    run = _draft(commander, kube_service)
    with pytest.raises(DomainError, match="Request approval first"):
        rollbacks.services.run_confirm_and_start(run=run, actor=commander, confirmation="web")


def test_the_typed_confirmation_must_be_the_service_name(commander, kube, kube_service):
    run = rollbacks.services.run_request_approval(
        run=_draft(commander, kube_service), actor=commander
    )

    with pytest.raises(DomainError, match="Type web exactly"):
        rollbacks.services.run_confirm_and_start(run=run, actor=commander, confirmation="Web")
    with pytest.raises(DomainError, match="Type web exactly"):
        rollbacks.services.run_confirm_and_start(run=run, actor=commander, confirmation="ROLLBACK")

    run.refresh_from_db()
    assert run.state == RunState.APPROVED
    assert live_image(kube, "web") == "registry.local/web:v2"


def test_several_services_are_confirmed_with_the_word_rollback(commander, kube):
    services = [KubeServiceFactory(name=name) for name in ("a", "b")]
    run = rollbacks.services.run_create(
        incident=IncidentFactory(),
        steps=[StepSpec(service=service, previous=True) for service in services],
        actor=commander,
    )
    assert run.expected_confirmation() == "ROLLBACK"


def test_confirming_reads_the_approval_request_and_the_steps_once(commander, kube):
    run = rollbacks.services.run_create(
        incident=IncidentFactory(),
        steps=[StepSpec(service=KubeServiceFactory(name=name), previous=True) for name in "ab"],
        actor=commander,
    )
    run = rollbacks.services.run_request_approval(run=run, actor=commander)

    with CaptureQueriesContext(connection) as queries:
        rollbacks.services.run_confirm_and_start(
            run=run, actor=commander, confirmation="ROLLBACK", enqueue=False
        )

    reads = [query["sql"] for query in queries.captured_queries]
    assert sum(sql.startswith('SELECT "incidents_approvalrequest"."id"') for sql in reads) == 1
    assert sum(sql.startswith('SELECT "incidents_step"."id"') for sql in reads) == 1
    run.refresh_from_db()
    assert run.state == RunState.RUNNING


def test_a_severity_raised_after_approval_needs_the_new_approvers(commander, kube_service):
    run = rollbacks.services.run_request_approval(
        run=_draft(commander, kube_service), actor=commander
    )
    _major_incident_policy()
    run.incident.severity = Severity.P1
    run.incident.save()

    with pytest.raises(DomainError, match="also needs approval from On-call, Engineering Lead"):
        rollbacks.services.run_confirm_and_start(run=run, actor=commander, confirmation="web")


@executes
def test_a_confirmed_run_executes_and_records_every_step_on_the_timeline(
    commander, kube, kube_service
):
    run = rollbacks.services.run_request_approval(
        run=_draft(commander, kube_service), actor=commander
    )

    rollbacks.services.run_confirm_and_start(run=run, actor=commander, confirmation="web")

    run.refresh_from_db()
    step = run.steps.get()
    assert run.state == RunState.SUCCEEDED, run.failure_reason
    assert (run.confirmation_text, run.confirmed_by) == ("web", commander)
    assert step.state == StepState.SUCCEEDED
    assert step.applied_at is not None and step.attempts == 1
    assert step.reached_version == "v1"
    assert live_image(kube, "web") == "registry.local/web:v1"
    kinds = _kinds(run)
    assert kinds.count(TimelineKind.STEP_STARTED) == 1
    assert kinds.count(TimelineKind.STEP_FINISHED) == 1
    assert kinds.count(TimelineKind.CHECK_RESULT) == 1
    assert len(step.check_results) >= 3
    checks = TimelineEntry.objects.get(incident=run.incident, kind=TimelineKind.CHECK_RESULT)
    assert f"{len(step.check_results)} passed (rollout complete, " in checks.body
    assert kinds[-1] == TimelineKind.RUN or TimelineKind.INSTANT_RECORDED in kinds[-2:]
    run.incident.refresh_from_db()
    assert run.incident.rollback_started_at is not None
    assert run.incident.restored_at is not None
    assert step.log_lines.exists()


@executes
def test_a_dry_run_run_needs_no_approval_and_changes_nothing(commander, kube, kube_service):
    run = _draft(commander, kube_service, dry_run=True)
    patches_before = patches_to(kube, "web")

    rollbacks.services.run_confirm_and_start(run=run, actor=commander, confirmation="web")

    run.refresh_from_db()
    step = run.steps.get()
    assert run.state == RunState.SUCCEEDED
    assert step.applied_at is None
    assert step.apply_detail.startswith("dry run:")
    assert live_image(kube, "web") == "registry.local/web:v2"
    assert patches_to(kube, "web") == patches_before
    run.incident.refresh_from_db()
    assert run.incident.restored_at is None


@pytest.mark.parametrize(
    ("state", "operation"),
    [
        (RunState.DRAFT, "pause"),
        (RunState.APPROVED, "resume"),
        (RunState.RUNNING, "resume"),
        (RunState.SUCCEEDED, "cancel"),
        (RunState.CANCELLED, "pause"),
    ],
)
def test_the_run_state_machine_refuses_impossible_moves(commander, kube, state, operation):
    run = RunFactory(state=state)
    StepFactory(run=run)
    action = {
        "pause": rollbacks.services.run_pause,
        "resume": rollbacks.services.run_resume,
        "cancel": rollbacks.services.run_cancel,
    }[operation]
    with pytest.raises(DomainError):
        action(run=run, actor=commander)
    run.refresh_from_db()
    assert run.state == state


def test_cancelling_a_waiting_run_withdraws_its_approval_request(commander, kube_service):
    _major_incident_policy()
    run = _draft(commander, kube_service, incident=IncidentFactory(severity=Severity.P1))
    run = rollbacks.services.run_request_approval(run=run, actor=commander)

    rollbacks.services.run_cancel(run=run, actor=commander, reason="a flag fixed it")

    run.refresh_from_db()
    assert run.state == RunState.CANCELLED
    assert run.approval_request.status == "withdrawn"
    assert run.steps.get().state == StepState.CANCELLED
    assert "a flag fixed it" in run.steps.get().skip_reason


def test_a_pending_step_can_be_skipped_before_the_start_with_a_reason(commander, kube_service):
    run = _draft(commander, kube_service)
    step = run.steps.get()

    with pytest.raises(DomainError, match="Say why"):
        rollbacks.services.step_skip(step=step, actor=commander, reason=" ")
    rollbacks.services.step_skip(step=step, actor=commander, reason="already rolled back by hand")

    step.refresh_from_db()
    assert step.state == StepState.SKIPPED
    assert step.skip_reason == "already rolled back by hand"


def test_only_failed_steps_can_be_retried(commander, kube_service):
    run = _draft(commander, kube_service)
    with pytest.raises(DomainError, match="Only a failed step"):
        rollbacks.services.step_retry(step=run.steps.get(), actor=commander)


@executes
def test_two_services_and_an_unrelated_deployment(commander, kube):
    # Only the Deployments the plan names move.
    seed_deployment(kube, "api", ["api:1", "api:2"])
    seed_deployment(kube, "web", ["web:1", "web:2"])
    seed_deployment(kube, "other", ["other:1", "other:2"])
    services = [KubeServiceFactory(name=name) for name in ("api", "web")]
    run = rollbacks.services.run_create(
        incident=IncidentFactory(),
        steps=[StepSpec(service=service, previous=True) for service in services],
        actor=commander,
    )
    run = rollbacks.services.run_request_approval(run=run, actor=commander)
    rollbacks.services.run_confirm_and_start(run=run, actor=commander, confirmation="ROLLBACK")

    run.refresh_from_db()
    assert run.state == RunState.SUCCEEDED
    assert [live_image(kube, name) for name in ("api", "web", "other")] == [
        "api:1",
        "web:1",
        "other:2",
    ]
