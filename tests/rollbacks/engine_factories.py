"""factory_boy factories for rollback runs and steps (the engine's tests and the bench)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import factory
from django.utils import timezone

from incidents.models import Environment, Incident, IncidentStatus, Severity
from rollbacks.models import Run, RunState, Step, StepState
from tests.factories import ReleaseFactory, ServiceFactory, UserFactory, grant_roles

__all__ = [
    "CommanderFactory",
    "IncidentFactory",
    "KubeServiceFactory",
    "ReleaseFactory",
    "RunFactory",
    "StepFactory",
    "UserFactory",
]


class CommanderFactory(UserFactory):
    """A user holding the Incident Commander role."""

    username = factory.Sequence(lambda n: f"commander{n}")

    @factory.post_generation
    def roles(self, create: bool, extracted: Any, **kwargs: Any) -> None:
        if create:
            grant_roles(self, extracted or ["Incident Commander"])


class IncidentFactory(factory.django.DjangoModelFactory):
    """An open production incident, detected a minute ago (no checklists, no timeline)."""

    class Meta:
        model = Incident

    title = factory.Sequence(lambda n: f"Checkout errors #{n}")
    severity = Severity.P2
    status = IncidentStatus.INVESTIGATING
    environment = Environment.PRODUCTION
    started_at = factory.LazyFunction(lambda: timezone.now() - timedelta(minutes=5))
    detected_at = factory.LazyFunction(lambda: timezone.now() - timedelta(minutes=1))


class KubeServiceFactory(ServiceFactory):
    """A Kubernetes Deployment service: Deployment `name` in namespace `shop`."""

    name = factory.Sequence(lambda n: f"web{n}")
    backend = "kubernetes"
    target_config = factory.LazyAttribute(lambda s: {"namespace": "shop", "deployment": s.name})


class RunFactory(factory.django.DjangoModelFactory):
    """A run in any state; running states come confirmed and started."""

    class Meta:
        model = Run

    incident = factory.SubFactory(IncidentFactory)
    state = RunState.DRAFT
    created_by = factory.SubFactory(CommanderFactory)

    @classmethod
    def _create(cls, model_class: type[Run], *args: Any, **kwargs: Any) -> Run:
        if kwargs.get("state") in (
            RunState.RUNNING,
            RunState.PAUSED,
            RunState.SUCCEEDED,
            RunState.FAILED,
        ):
            now = timezone.now()
            kwargs.setdefault("confirmed_by", kwargs["created_by"])
            kwargs.setdefault("confirmation_text", "ROLLBACK")
            kwargs.setdefault("confirmed_at", now)
            kwargs.setdefault("started_at", now)
        if kwargs.get("state") in (RunState.SUCCEEDED, RunState.FAILED, RunState.CANCELLED):
            kwargs.setdefault("finished_at", timezone.now())
        return super()._create(model_class, *args, **kwargs)


class StepFactory(factory.django.DjangoModelFactory):
    """A pending step going back to the previous revision of a Kubernetes service."""

    class Meta:
        model = Step

    run = factory.SubFactory(RunFactory)
    position = factory.Sequence(lambda n: n + 1)
    group = 1
    service = factory.SubFactory(KubeServiceFactory)
    backend = factory.LazyAttribute(lambda step: step.service.backend)
    to_previous = True
    timeout_seconds = 30


def succeeded_run(health_url: str, incident: Incident | None = None) -> Run:
    """A run that rolled `web` (shop/web, with one health check at `health_url`) back to v1
    and succeeded: what a watch starts from."""
    service = KubeServiceFactory(
        target_config={
            "namespace": "shop",
            "deployment": "web",
            "checks": [{"kind": "http", "url": health_url}],
        }
    )
    run = RunFactory(incident=incident or IncidentFactory(), state=RunState.SUCCEEDED)
    now = timezone.now()
    StepFactory(
        run=run,
        service=service,
        state=StepState.SUCCEEDED,
        to_version="v1",
        attempts=1,
        enqueued_at=now,
        started_at=now,
        apply_started_at=now,
        applied_at=now,
        finished_at=now,
    )
    return run
