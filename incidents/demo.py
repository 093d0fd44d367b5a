"""Demo data: people in every role, services with releases, and a live incident.

Services come from the demo infrastructure's state file (see devinfra.demo) when one is
named, so that rolling them back reaches the moto server and the Kubernetes stand-in.
Loading is idempotent: running it again refreshes what exists and adds what is missing.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from incidents import services
from incidents.models import Incident, IncidentStatus, Release, Service
from incidents.roles import ensure_roles

DEMO_INCIDENT_TITLE = "Checkout failing for card payments after the v2.4.0 release"
# Services the live incident names (those of the demo infrastructure); others stay healthy.
DEMO_INCIDENT_SERVICES = ("checkout", "storefront-web")


@dataclass(frozen=True)
class DemoPerson:
    username: str
    roles: tuple[str, ...]
    does: str


DEMO_PEOPLE = [
    DemoPerson("commander", ("Incident Commander", "On-call"), "runs incidents and rollbacks"),
    DemoPerson("lead", ("Approver", "Engineering Lead"), "approves P0/P1 rollbacks"),
    DemoPerson("oncall", ("Approver", "On-call"), "approves as the on-call engineer"),
    DemoPerson("cto", ("Approver", "CTO", "Security Lead"), "approves data and security cases"),
    DemoPerson("dba", ("Approver", "DBA"), "approves database restores"),
    DemoPerson("support", ("Support Lead",), "edits the status page"),
    DemoPerson("responder", ("Responder",), "follows, notes, ticks checklists"),
    DemoPerson("viewer", ("Viewer",), "reads only"),
    DemoPerson(
        "alertmanager",
        ("Incident Commander",),
        "the demo Alertmanager's account: alerts open incidents (its API token)",
    ),
]

# Used when no demo infrastructure runs: the console still shows a realistic picture.
FALLBACK_SERVICES: list[dict[str, Any]] = [
    {
        "name": "checkout",
        "environment": "production",
        "backend": "kubernetes",
        "description": "Checkout API Deployment",
        "target_config": {"namespace": "payments", "deployment": "checkout"},
        "releases": [
            {
                "version": "v2.3.1",
                "artifact": "registry.local/checkout:v2.3.1",
                "shipped_hours_ago": 50,
                "known_good": True,
            },
            {
                "version": "v2.4.0",
                "artifact": "registry.local/checkout:v2.4.0",
                "shipped_hours_ago": 1,
                "known_good": False,
            },
        ],
    },
]


@dataclass
class DemoLoaded:
    passwords: dict[str, str]
    services: list[Service]
    incident: Incident
    admin_password: str


def _services_from(infra_file: Path | None) -> list[dict[str, Any]]:
    if infra_file is None:
        return FALLBACK_SERVICES
    return list(json.loads(infra_file.read_text())["services"])


def _load_service(definition: dict[str, Any]) -> Service:
    service, _ = Service.objects.update_or_create(
        name=definition["name"],
        environment=definition.get("environment", "production"),
        defaults={
            "backend": definition["backend"],
            "description": definition.get("description", ""),
            "target_config": definition["target_config"],
            # The demo's services sit at bad releases on purpose, most of them with no checks
            # to catch it: release tracking must not bake them into known-good, except where
            # the demo infrastructure gives a bake time (a service with an error-rate check).
            "known_good_bake_minutes": definition.get("known_good_bake_minutes", 0),
            "signal_queries": definition.get("signal_queries", {}),
            "auto_rollback": definition.get("auto_rollback", {}),
        },
    )
    service.full_clean()
    now = timezone.now()
    for spec in definition.get("releases", []):
        release, _ = Release.objects.update_or_create(
            service=service,
            version=spec["version"],
            defaults={
                "artifact": spec["artifact"],
                "shipped_at": now - timedelta(hours=spec.get("shipped_hours_ago", 0)),
                "notes": spec.get("notes", ""),
                "backup": spec.get("backup") or {},
                "backup_at": (now - timedelta(hours=spec.get("shipped_hours_ago", 0)))
                if spec.get("backup")
                else None,
            },
        )
        if spec.get("known_good") and not release.known_good:
            services.release_mark_known_good(release=release, actor=None)
    return service


def _person(person: DemoPerson, password: str, groups: dict[str, Any]) -> Any:
    User = get_user_model()
    user, _ = User.objects.get_or_create(
        username=person.username, defaults={"email": f"{person.username}@backout.example"}
    )
    user.set_password(password)
    user.save()
    user.groups.set([groups[name] for name in person.roles])
    return user


@transaction.atomic
def demo_load(*, infra_file: Path | None = None, password: str | None = None) -> DemoLoaded:
    """Load or refresh the demo; returns the passwords it set."""
    groups = ensure_roles()
    passwords = {p.username: password or secrets.token_urlsafe(9) for p in DEMO_PEOPLE}
    people = {p.username: _person(p, passwords[p.username], groups) for p in DEMO_PEOPLE}

    User = get_user_model()
    admin_password = password or secrets.token_urlsafe(9)
    admin, _ = User.objects.get_or_create(username="admin")
    admin.is_staff = admin.is_superuser = True
    admin.set_password(admin_password)
    admin.save()

    loaded = [_load_service(definition) for definition in _services_from(infra_file)]
    incident = Incident.objects.filter(title=DEMO_INCIDENT_TITLE).exclude(
        status=IncidentStatus.RESOLVED
    ).first() or _open_demo_incident(
        people["commander"],
        people["responder"],
        [s for s in loaded if s.name in DEMO_INCIDENT_SERVICES] or loaded,
    )
    return DemoLoaded(
        passwords=passwords, services=loaded, incident=incident, admin_password=admin_password
    )


def _open_demo_incident(commander: Any, responder: Any, affected: list[Service]) -> Incident:
    now = timezone.now()
    incident = services.incident_open(
        title=DEMO_INCIDENT_TITLE,
        severity="P1",
        environment="production",
        opened_by=None,
        actor_label="alertmanager",
        commander=commander,
        services=affected,
        summary=(
            "Card payments fail with HTTP 502 since the v2.4.0 rollout of checkout; error rate "
            "climbed from 0.3% to 14% within six minutes. The last known-good release is v2.3.1."
        ),
        started_at=now - timedelta(minutes=9),
        detected_at=now - timedelta(minutes=6),
    )
    services.note_add(
        incident=incident,
        author=responder,
        body="Payment provider status page is green; errors start at our checkout pods.",
    )
    services.incident_change_status(
        incident=incident,
        to_status=IncidentStatus.IDENTIFIED,
        actor=commander,
        reason="Errors began with the v2.4.0 deploy.",
    )
    pre = incident.checklists.get(kind="pre_rollback")
    for item in pre.items.all()[:2]:
        services.checklist_item_set(item=item, done=True, actor=commander)
    return incident
