"""Migration statuspage 0006 rebuilds each existing component's uptime history from what
was published: operational from its creation, the states its revisions set, in order, and
its present state last, so the bars end where the component is."""

from __future__ import annotations

from datetime import timedelta
from importlib import import_module

import pytest
from django.apps import apps
from django.utils import timezone

from statuspage.models import Component, ComponentStatusChange, PublicIncident, Revision
from tests.factories import incident_open

pytestmark = pytest.mark.django_db

rebuild = import_module(
    "statuspage.migrations.0006_history_maintenances_subscribers_templates"
).history_from_revisions


def published(public: PublicIncident, number: int, at, statuses: dict[str, str]) -> Revision:
    return Revision.objects.create(
        public_incident=public,
        number=number,
        name="Checkout errors",
        status="investigating",
        impact="major",
        body="We are looking into it.",
        body_html="<p>We are looking into it.</p>",
        component_statuses=statuses,
        published_at=at,
    )


def test_the_history_follows_the_revisions_and_ends_in_the_present_state():
    start = timezone.now() - timedelta(days=10)
    checkout = Component.objects.create(name="Checkout 決済 ✅", created_at=start, updated_at=start)
    search = Component.objects.create(name="בדיקה", created_at=start, updated_at=start)
    public = PublicIncident.objects.create(
        incident=incident_open(), name="Checkout errors", status="resolved", impact="major"
    )
    published(public, 1, start + timedelta(days=1), {str(checkout.pk): "major_outage"})
    published(
        public,
        2,
        start + timedelta(days=2),
        {str(checkout.pk): "major_outage", str(search.pk): "degraded_performance"},
    )
    published(public, 3, start + timedelta(days=3), {str(checkout.pk): "operational"})
    # The old admin set Search back to operational without moving `updated_at`, and put
    # Checkout under maintenance the same way: the last row must still be the present state.
    Component.objects.filter(pk=search.pk).update(status="operational")
    Component.objects.filter(pk=checkout.pk).update(status="under_maintenance")
    ComponentStatusChange.objects.all().delete()

    rebuild(apps, None)

    def history(component: Component) -> list[tuple[str, int]]:
        rows = ComponentStatusChange.objects.filter(component=component).order_by(
            "changed_at", "id"
        )
        return [(row.status, (row.changed_at - start).days) for row in rows]

    assert history(checkout) == [
        ("operational", 0),
        ("major_outage", 1),
        ("operational", 3),
        ("under_maintenance", 3),
    ]
    assert history(search) == [
        ("operational", 0),
        ("degraded_performance", 2),
        ("operational", 2),
    ]
    assert ComponentStatusChange.objects.filter(public_incident=public).count() == 3
