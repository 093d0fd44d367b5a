"""Services and runs the verification tests build: a Kubernetes service `web` with checks,
and a confirmed run taking it back to v1, left for the test to execute."""

from __future__ import annotations

from typing import Any

import rollbacks.services
from incidents.models import Release, Service
from rollbacks.models import Run
from rollbacks.services import StepSpec
from tests.factories import post_rollback_checklist_add
from tests.rollbacks.engine_factories import IncidentFactory, KubeServiceFactory
from tests.rollbacks.engine_fixtures import seed_deployment


def web_service(kube: Any, checks: list[dict[str, Any]]) -> Service:
    """Service `web` (Deployment shop/web, live at v2, v1 before it) with `checks`."""
    seed_deployment(kube, "web", ["registry.local/web:v1", "registry.local/web:v2"])
    service = KubeServiceFactory(
        name="web", target_config={"namespace": "shop", "deployment": "web", "checks": checks}
    )
    for version in ("v1", "v2"):
        Release.objects.create(
            service=service, version=version, artifact=f"registry.local/web:{version}"
        )
    return service


def started_run(commander: Any, service: Service, *, checklist: bool = False, **kwargs: Any) -> Run:
    """A confirmed, running run taking `service` back to v1, not yet executed; with
    `checklist`, its incident has the default post-rollback checklist for checks to tick."""
    incident = IncidentFactory()
    if checklist:
        post_rollback_checklist_add(incident)
    run = rollbacks.services.run_create(
        incident=incident,
        steps=[StepSpec(service=service, release=service.releases.get(version="v1"))],
        actor=commander,
        **kwargs,
    )
    run = rollbacks.services.run_request_approval(run=run, actor=commander)
    return rollbacks.services.run_confirm_and_start(
        run=run, actor=commander, confirmation=run.expected_confirmation(), enqueue=False
    )
