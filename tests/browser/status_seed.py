"""A public status page worth looking at: customer-facing components in a group, an active
incident with two published updates, a resolved one in the past, and 90 days of history
with one earlier outage. Written through the status page's own services, as a support lead
would. The accessibility test (tests/browser/test_status_accessibility.py) and the
screenshot script (scripts/status_screenshots.py) both check this page."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.contrib.auth.models import Group, User
from django.utils import timezone

from incidents.models import Environment, Incident, Service
from incidents.roles import ensure_roles
from incidents.services import incident_open
from statuspage import components, maintenances, services
from statuspage.models import Component, ComponentStatusChange, Maintenance, PublicIncident


@dataclass(frozen=True)
class SeededPage:
    active: PublicIncident
    past: PublicIncident
    checkout: Component
    maintenance: Maintenance


def _service(name: str) -> Service:
    service, _ = Service.objects.get_or_create(
        name=name,
        environment=Environment.PRODUCTION,
        defaults={
            "backend": "kubernetes",
            "target_config": {"namespace": "shop", "deployment": name},
        },
    )
    return service


def _publish(lead: User, incident: Incident, updates: list[tuple[str, str, dict[str, str]]]) -> Any:
    for version, (status, body, states) in enumerate(updates):
        services.draft_publish(
            incident=incident,
            actor=lead,
            version=version,
            name=incident.title,
            status=status,
            impact="major",
            body=body,
            component_statuses=states,
        )
    return PublicIncident.objects.get(incident=incident)


def seed_status_page() -> SeededPage:
    ensure_roles()
    lead, _ = User.objects.get_or_create(username="support-lead")
    lead.groups.add(Group.objects.get(name="Support Lead"))
    checkout_service, payments, search = (
        _service(name) for name in ("checkout", "payments-api", "search-api")
    )
    store = components.component_create(
        actor=lead, name="Online store", description="What shoppers use", is_group=True
    )
    storefront = components.component_create(
        actor=lead, name="Storefront", group_id=store.pk, service_ids=[search.pk]
    )
    checkout = components.component_create(
        actor=lead,
        name="Checkout",
        description="Basket and card payments",
        group_id=store.pk,
        service_ids=[checkout_service.pk, payments.pk],
    )
    api = components.component_create(
        actor=lead, name="Public API", description="api.example.com", service_ids=[payments.pk]
    )
    dashboard = components.component_create(actor=lead, name="Dashboard", service_ids=[payments.pk])

    # 90 days of history: every component has been there all along, with one outage.
    now = timezone.now()
    ComponentStatusChange.objects.filter(component__in=[storefront, checkout, api]).update(
        changed_at=now - timedelta(days=95)
    )
    Component.objects.filter(is_group=False).update(created_at=now - timedelta(days=95))
    ComponentStatusChange.objects.filter(component__name="Dashboard").update(
        changed_at=now - timedelta(days=95)
    )

    past_incident = incident_open(
        title="Search results slow",
        severity="P2",
        environment=Environment.PRODUCTION,
        opened_by=lead,
        services=[search],
        started_at=now - timedelta(hours=2),
        detected_at=now - timedelta(hours=2),
    )
    slow = {str(storefront.pk): "degraded_performance"}
    fast = {str(storefront.pk): "operational"}
    past = _publish(
        lead,
        past_incident,
        [
            ("investigating", "Search is slow for some shoppers.", slow),
            ("resolved", "Search is fast again. Sorry for the wait.", fast),
        ],
    )
    # Its outage happened twelve days ago.
    ComponentStatusChange.objects.filter(public_incident=past).update(
        changed_at=now - timedelta(days=12)
    )
    ComponentStatusChange.objects.filter(public_incident=past, status="operational").update(
        changed_at=now - timedelta(days=12) + timedelta(hours=3)
    )

    active_incident = incident_open(
        title="Card payments failing at checkout",
        severity="P1",
        environment=Environment.PRODUCTION,
        opened_by=lead,
        services=[checkout_service, payments],
        started_at=now - timedelta(minutes=40),
        detected_at=now - timedelta(minutes=35),
    )
    states = {str(checkout.pk): "partial_outage", str(api.pk): "degraded_performance"}
    active = _publish(
        lead,
        active_incident,
        [
            (
                "investigating",
                "Some card payments fail at checkout. We are looking into it.",
                states,
            ),
            (
                "identified",
                "The cause is **the latest release of the payment service**. We are rolling it "
                "back now; [follow the updates here](https://status.example.com/).",
                states,
            ),
        ],
    )
    tomorrow = timezone.localtime(now).replace(hour=2, minute=0, second=0, microsecond=0)
    tomorrow += timedelta(days=1)
    maintenance = maintenances.maintenance_schedule(
        actor=lead,
        name="Dashboard database upgrade",
        scheduled_for=tomorrow,
        scheduled_until=tomorrow + timedelta(hours=1),
        body="The dashboard may be read-only for a few minutes while we upgrade its database.",
        component_ids=[dashboard.pk],
    )
    return SeededPage(active=active, past=past, checkout=checkout, maintenance=maintenance)
