"""`manage.py rollback`: the terminal emergency path, through the same services and record."""

from __future__ import annotations

import builtins
from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from incidents.models import Severity, TimelineEntry, TimelineKind
from rollbacks.models import ApprovalPolicy, Run, RunState, StepState
from tests.rollbacks.engine_factories import IncidentFactory, KubeServiceFactory
from tests.rollbacks.engine_fixtures import live_image, patches_to, seed_deployment

pytestmark = pytest.mark.django_db(transaction=True)
# Refusals end before any step runs: no need to commit what the test creates.
refused = pytest.mark.django_db


def rollback(*args: Any) -> str:
    out = StringIO()
    call_command("rollback", *[str(arg) for arg in args], stdout=out, stderr=StringIO())
    return out.getvalue()


@pytest.fixture
def typed(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """What the operator will type at the prompt, in order."""
    answers: list[str] = []
    monkeypatch.setattr(builtins, "input", lambda prompt="": answers.pop(0))
    return answers


def test_rolls_back_a_service_to_a_release_and_records_it_on_the_incident(
    commander, kube, kube_service
):
    incident = IncidentFactory()

    output = rollback("web", "--to", "v1", "--incident", incident.pk, "--as", "ic", "--yes")

    assert "registry.local/web:v2 → registry.local/web:v1" in output  # the plan
    assert "Rollback succeeded" in output
    assert live_image(kube, "web") == "registry.local/web:v1"
    run = Run.objects.get(incident=incident)
    assert run.state == RunState.SUCCEEDED and run.confirmation_text == "web"
    finished = TimelineEntry.objects.get(incident=incident, kind=TimelineKind.STEP_FINISHED)
    assert finished.body in output  # the timeline is what the terminal printed


def test_asks_for_the_service_name_and_changes_nothing_on_a_mismatch(
    commander, kube, kube_service, typed
):
    incident = IncidentFactory()
    typed.append("yes")

    with pytest.raises(CommandError, match="did not match; nothing was changed"):
        rollback("web", "--previous", "--incident", incident.pk, "--as", "ic")

    assert live_image(kube, "web") == "registry.local/web:v2"
    run = Run.objects.get(incident=incident)
    assert run.state == RunState.CANCELLED


def test_the_typed_service_name_starts_the_rollback(commander, kube, kube_service, typed):
    typed.append("web")

    rollback("web", "--previous", "--incident", IncidentFactory().pk, "--as", "ic")

    assert live_image(kube, "web") == "registry.local/web:v1"


def test_a_dry_run_prints_the_plan_and_changes_nothing(commander, kube, kube_service):
    patches = patches_to(kube, "web")

    output = rollback(
        "web", "--previous", "--incident", IncidentFactory().pk, "--as", "ic", "--dry-run"
    )

    assert "Dry run complete: nothing was changed" in output
    assert "image: registry.local/web:v2 → registry.local/web:v1" in output
    assert live_image(kube, "web") == "registry.local/web:v2"
    assert patches_to(kube, "web") == patches


def test_a_namespace_rolls_back_every_deployment_service_in_it_in_parallel(commander, kube):
    for name in ("api", "cart", "web"):
        seed_deployment(kube, name, [f"{name}:1", f"{name}:2"])
        KubeServiceFactory(name=name)
    KubeServiceFactory(name="elsewhere", target_config={"namespace": "ops", "deployment": "x"})
    incident = IncidentFactory()

    output = rollback(
        "--namespace", "shop", "--previous", "--incident", incident.pk, "--as", "ic", "--yes"
    )

    assert "Rollback succeeded" in output
    assert [live_image(kube, name) for name in ("api", "cart", "web")] == [
        "api:1",
        "cart:1",
        "web:1",
    ]
    run = Run.objects.get(incident=incident)
    assert set(run.steps.values_list("group", flat=True)) == {1}
    assert run.steps.filter(state=StepState.SUCCEEDED).count() == 3
    assert run.confirmation_text == "ROLLBACK"


def test_a_failed_rollback_exits_with_an_error_and_the_reason(commander, kube):
    KubeServiceFactory(name="gone")  # its Deployment does not exist

    with pytest.raises(CommandError, match=r"Run #\d+ failed: step 1 \(gone\) failed"):
        rollback("gone", "--previous", "--incident", IncidentFactory().pk, "--as", "ic", "--yes")


@refused
@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["nope", "--previous"], r"No production service named 'nope' \(known: web\)"),
        (["web", "--to", "v9"], r"web has no release 'v9' \(recent: "),
        (["--namespace", "void", "--previous"], "No production Kubernetes service in namespace"),
        (["web", "--previous", "--as", "nobody"], "No active console user named 'nobody'"),
        (["--previous"], "Name a SERVICE or give --namespace"),
    ],
)
def test_clear_errors_for_bad_arguments(commander, kube, kube_service, arguments, message):
    incident = IncidentFactory()
    extra = [] if "--as" in arguments else ["--as", "ic"]
    with pytest.raises(CommandError, match=message):
        rollback(*arguments, "--incident", incident.pk, *extra, "--yes")
    assert not Run.objects.exists()


@refused
def test_an_unknown_incident_is_refused(commander, kube_service):
    with pytest.raises(CommandError, match="There is no incident #999"):
        rollback("web", "--previous", "--incident", 999, "--as", "ic", "--yes")


@refused
def test_someone_without_the_commander_role_is_refused(kube, kube_service):
    from tests.rollbacks.engine_factories import UserFactory

    UserFactory(username="viewer", roles=["Viewer"])
    with pytest.raises(CommandError, match="do not have the role"):
        rollback("web", "--previous", "--incident", IncidentFactory().pk, "--as", "viewer", "--yes")


@refused
def test_approval_that_does_not_arrive_in_time_cancels_the_run(commander, kube, kube_service):
    ApprovalPolicy.objects.update_or_create(
        name="Major incidents need on-call and an engineering lead",
        defaults={"severities": ["P0", "P1"], "required_roles": ["On-call", "Engineering Lead"]},
    )
    incident = IncidentFactory(severity=Severity.P1)

    with pytest.raises(CommandError, match="No approval within 0.2 s; the run was cancelled"):
        rollback(
            "web",
            "--previous",
            "--incident",
            incident.pk,
            "--as",
            "ic",
            "--yes",
            "--approval-timeout",
            "0.2",
        )

    assert Run.objects.get(incident=incident).state == RunState.CANCELLED
    assert live_image(kube, "web") == "registry.local/web:v2"
