"""`manage.py rollback --set` and `--show-options`: the terminal reaches every step option
through the same validation as the plan builder."""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from rollbacks.models import Run, RunState
from tests.rollbacks.engine_factories import IncidentFactory, KubeServiceFactory
from tests.rollbacks.engine_fixtures import NAMESPACE, live_image, seed_deployment

pytestmark = pytest.mark.django_db(transaction=True)
refused = pytest.mark.django_db


def rollback(*args: Any) -> str:
    out = StringIO()
    call_command("rollback", *[str(arg) for arg in args], stdout=out, stderr=StringIO())
    return out.getvalue()


def replicas(kube: Any, name: str) -> int:
    deployment = kube.get("deployments", NAMESPACE, name)
    assert deployment is not None
    return int(deployment["spec"]["replicas"])


def test_options_alone_scale_a_deployment_to_zero_and_back(commander, kube, kube_service):
    incident = IncidentFactory()
    common = ("web", "--incident", incident.pk, "--as", "ic", "--yes")

    output = rollback(*common, "--set", "operation=scale", "--set", "replicas=0")
    assert "replicas: 2 → 0" in output
    assert replicas(kube, "web") == 0

    rollback(*common, "--set", "operation=scale", "--set", "web:replicas=restore")
    assert replicas(kube, "web") == 2
    assert [run.state for run in Run.objects.order_by("pk")] == [RunState.SUCCEEDED] * 2


def test_undo_to_a_chosen_revision(commander, kube):
    seed_deployment(kube, "api", ["api:1", "api:2", "api:3"])
    KubeServiceFactory(name="api")
    rollback(
        "api", "--incident", IncidentFactory().pk, "--as", "ic", "--yes", "--set", "to_revision=1"
    )
    assert live_image(kube, "api") == "api:1"


def test_show_options_lists_the_rollout_history(commander, kube, kube_service):
    output = rollback("web", "--incident", IncidentFactory().pk, "--as", "ic", "--show-options")
    assert "operation (choice), default undo: Operation" in output
    assert "2: revision 2 (running) — registry.local/web:v2" in output
    assert "replicas (integer), required, when operation is scale" in output
    assert not Run.objects.exists()


@refused
@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--set", "to_revision=9"], r"web: to_revision: 9 is not available \(available: 2, 1\)"),
        (["--set", "operation=scale"], "web: replicas: is required when operation is scale"),
        (["--set", "colour=red"], "web: colour: unknown option"),
        (["--set", "replicas"], "expected KEY=VALUE or SERVICE:KEY=VALUE"),
        (["--set", "api:replicas=1"], "'api' is not a service of this plan"),
        (["--set", "operation=scale", "--set", "replicas=三"], "replicas: must be a whole number"),
        ([], "Give --to VERSION, --previous, or the step's options with --set"),
    ],
)
def test_bad_options_are_refused_and_nothing_is_drafted(
    commander, kube, kube_service, arguments, message
):
    with pytest.raises(CommandError, match=message):
        rollback("web", "--incident", IncidentFactory().pk, "--as", "ic", "--yes", *arguments)
    assert not Run.objects.exists()
