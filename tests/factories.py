"""factory_boy factories for the incident domain."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import factory
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.utils import timezone

from incidents import services
from incidents.models import (
    Checklist,
    ChecklistItem,
    Environment,
    Incident,
    Release,
    Service,
    Severity,
)
from incidents.roles import ensure_roles


class UserFactory(factory.django.DjangoModelFactory):
    """A user; `roles=["Incident Commander", "On-call"]` puts them in those groups."""

    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"person{n}")
    email = factory.LazyAttribute(lambda user: f"{user.username}@example.com")
    password = factory.django.Password("correct-horse-battery")

    @factory.post_generation
    def roles(self, create: bool, extracted: Any, **kwargs: Any) -> None:
        if create and extracted:
            grant_roles(self, extracted)


def grant_roles(user: Any, names: list[str]) -> None:
    """Put `user` in the named role and capacity groups."""
    groups = ensure_roles()
    user.groups.add(*(groups.get(name) or Group.objects.get(name=name) for name in names))


class ServiceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Service

    name = factory.Sequence(lambda n: f"service-{n}")
    environment = Environment.PRODUCTION
    backend = "kubernetes"
    target_config = factory.LazyAttribute(lambda s: {"namespace": "shop", "deployment": s.name})


class ReleaseFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Release

    service = factory.SubFactory(ServiceFactory)
    version = factory.Sequence(lambda n: f"v1.{n}.0")
    artifact = factory.LazyAttribute(lambda r: f"registry.local/{r.service.name}:{r.version}")
    shipped_at = factory.LazyFunction(timezone.now)


def incident_open(**overrides: Any) -> Incident:
    """Open an incident through the domain service, so checklists and timeline exist."""
    now = timezone.now()
    fields: dict[str, Any] = {
        "title": "Checkout errors after v1.5.0",
        "severity": Severity.P2,
        "environment": Environment.PRODUCTION,
        "opened_by": None,
        "started_at": now - timedelta(minutes=4),
        "detected_at": now - timedelta(minutes=1),
    }
    fields.update(overrides)
    return services.incident_open(**fields)


def ensure_default_records() -> None:
    """The default checklists, approval policies, built-in playbooks, status page texts and
    update templates the migrations load, again: a transactional test empties every table
    when it ends."""
    from importlib import import_module

    from django.apps import apps

    class LiveModels:
        """The migration's function, fed today's models: approval policies have moved from
        incidents to rollbacks since that migration was written."""

        @staticmethod
        def get_model(app_label: str, model_name: str) -> Any:
            if app_label == "incidents" and model_name == "ApprovalPolicy":
                app_label = "rollbacks"
            return apps.get_model(app_label, model_name)

    defaults = import_module("incidents.migrations.0003_default_checklists_and_policies")
    defaults.add_defaults(LiveModels, None)
    import_module("rollbacks.migrations.0003_policies_follow_steps").add_dba_policy(apps, None)
    # The built-in playbooks, version 1 and then the database recovery's version 2.
    import_module("playbooks.migrations.0002_builtin_playbooks").add_builtins(apps, None)
    import_module("playbooks.migrations.0003_database_recovery_ecs_writers").add_version(apps, None)
    # The status page's default texts, the public ones as update templates.
    import_module("statuspage.migrations.0002_default_texts").add_texts(apps, None)
    import_module("statuspage.migrations.0007_update_templates_from_defaults").templates_from_texts(
        apps, None
    )


def post_rollback_checklist_add(incident: Incident) -> Checklist:
    """The default "After rolling back" checklist, as migration 0003 defines it, added to
    `incident` (the engine's IncidentFactory makes incidents without checklists)."""
    from importlib import import_module

    defaults = import_module("incidents.migrations.0003_default_checklists_and_policies")
    name, kind, position, items = next(c for c in defaults.CHECKLISTS if c[1] == "post_rollback")
    checklist = Checklist.objects.create(incident=incident, name=name, kind=kind, position=position)
    for index, (text, key) in enumerate(items):
        ChecklistItem.objects.create(checklist=checklist, position=index, text=text, check_key=key)
    return checklist
