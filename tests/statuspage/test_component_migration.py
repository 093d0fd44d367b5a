"""Migration statuspage 0005 turns each component's one-to-one service into the first of
its services with nothing lost: the test takes the database back to 0004, writes
components as the old `status_components` command and the admin made them, a published
incident and a draft naming them, migrates forward and reads them back with today's models.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from django.db import IntegrityError, connection, transaction
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from statuspage.models import Component, Draft, PublicIncident, Revision
from tests.factories import ensure_default_records

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = [("statuspage", "0004_delivery_recipients_done")]


def migrate(targets: list[tuple[str, str]]) -> Any:
    """Migrate the test database to `targets` (every other app as it is); the models of
    that state."""
    return MigrationExecutor(connection).migrate(targets).apps


def migrate_to_latest() -> None:
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())


@pytest.fixture(scope="module", autouse=True)
def default_records_restored(django_db_blocker: Any) -> Iterator[None]:
    """A transactional test empties every table when it ends: put back what the migrations
    load (default texts, checklists, policies) for the tests that run after these."""
    yield
    with django_db_blocker.unblock():
        ensure_default_records()


@dataclass(frozen=True)
class WrittenBefore:
    checkout: int
    payments: int
    search: int
    services: dict[str, int]
    times: dict[int, tuple[Any, Any]]
    public_incident: int
    revision: int
    draft: int


def write_before(old: Any) -> WrittenBefore:
    """What a console had before 0005: a component per service named after it with the
    service's description copied (the old command), one renamed and described in the
    admin, one with no service, a published incident and a draft naming them."""
    service = old.get_model("incidents", "Service")
    component = old.get_model("statuspage", "Component")
    checkout = service.objects.create(
        name="checkout",
        backend="kubernetes",
        description="Checkout API on ECS (cluster storefront)",
        target_config={"namespace": "shop", "deployment": "checkout"},
    )
    payments = service.objects.create(
        name="payments-api",
        backend="kubernetes",
        description="Kubernetes Deployment payments/payments-api",
        target_config={"namespace": "payments", "deployment": "payments-api"},
    )
    long_ago = timezone.now() - timedelta(days=40)
    by_command = component.objects.create(
        name="Checkout",
        description=checkout.description,  # what the old command copied
        position=1,
        service=checkout,
        status="partial_outage",
        created_at=long_ago,
        updated_at=long_ago + timedelta(days=1),
    )
    by_admin = component.objects.create(
        name="Payments",
        description="Card payments and refunds",
        position=2,
        service=payments,
        created_at=long_ago,
        updated_at=long_ago,
    )
    unlinked = component.objects.create(name="Search", position=3)

    user = old.get_model("auth", "User").objects.create(username="sam-before")
    incident = old.get_model("incidents", "Incident").objects.create(
        title="Checkout errors", severity="P1", started_at=long_ago, detected_at=long_ago
    )
    public = old.get_model("statuspage", "PublicIncident").objects.create(
        incident=incident, name="Payments failing", status="identified", impact="major"
    )
    public.components.add(by_command, by_admin)
    revision = old.get_model("statuspage", "Revision").objects.create(
        public_incident=public,
        number=1,
        name="Payments failing",
        status="identified",
        impact="major",
        body="Found it.",
        body_html="<p>Found it.</p>",
        component_statuses={str(by_command.pk): "partial_outage"},
        published_by=user,
    )
    draft = old.get_model("statuspage", "Draft").objects.create(
        incident=incident,
        name="Payments failing",
        component_statuses={str(by_command.pk): "major_outage"},
        version=3,
    )
    return WrittenBefore(
        checkout=by_command.pk,
        payments=by_admin.pk,
        search=unlinked.pk,
        services={"checkout": checkout.pk, "payments-api": payments.pk},
        times={c.pk: (c.created_at, c.updated_at) for c in (by_command, by_admin, unlinked)},
        public_incident=public.pk,
        revision=revision.pk,
        draft=draft.pk,
    )


@pytest.fixture
def before() -> WrittenBefore:
    """Written at 0004, then migrated forward (even when writing fails, so that later tests
    find the schema they expect)."""
    try:
        written = write_before(migrate(BEFORE))
    finally:
        migrate_to_latest()
    return written


def test_each_component_keeps_its_row_state_and_times_and_gets_its_service(
    before: WrittenBefore,
) -> None:
    listed = {c.pk: c for c in Component.objects.prefetch_related("services")}

    assert set(listed) == {before.checkout, before.payments, before.search}
    checkout, payments, search = (
        listed[before.checkout],
        listed[before.payments],
        listed[before.search],
    )
    assert [s.pk for s in checkout.services.all()] == [before.services["checkout"]]
    assert [s.pk for s in payments.services.all()] == [before.services["payments-api"]]
    assert list(search.services.all()) == []
    assert [(c.name, c.position) for c in (checkout, payments, search)] == [
        ("Checkout", 1),
        ("Payments", 2),
        ("Search", 3),
    ]
    assert (checkout.status, payments.status) == ("partial_outage", "operational")
    for component in listed.values():
        assert (component.created_at, component.updated_at) == before.times[component.pk]
        assert component.group_id is None and not component.is_group
        assert component.only_show_if_degraded is False


def test_a_description_copied_from_the_service_is_cleared_and_one_written_for_customers_kept(
    before: WrittenBefore,
) -> None:
    assert Component.objects.get(pk=before.checkout).description == ""
    assert Component.objects.get(pk=before.payments).description == "Card payments and refunds"
    # The console keeps the internal text where it belongs.
    checkout = Component.objects.get(pk=before.checkout).services.get()
    assert checkout.description == "Checkout API on ECS (cluster storefront)"


def test_published_history_and_the_draft_still_name_the_same_components(
    before: WrittenBefore,
) -> None:
    public = PublicIncident.objects.get(pk=before.public_incident)
    assert sorted(public.components.values_list("pk", flat=True)) == [
        before.checkout,
        before.payments,
    ]
    assert Revision.objects.get(pk=before.revision).component_statuses == {
        str(before.checkout): "partial_outage"
    }
    draft = Draft.objects.get(pk=before.draft)
    assert (draft.version, draft.component_statuses) == (3, {str(before.checkout): "major_outage"})


def test_after_the_migration_groups_hold_components_and_do_not_nest(
    before: WrittenBefore,
) -> None:
    group = Component.objects.create(name="Online store", is_group=True, position=4)
    Component.objects.filter(pk=before.checkout).update(group=group)
    assert list(group.members.values_list("pk", flat=True)) == [before.checkout]

    other = Component.objects.create(name="Developers", is_group=True, position=5)
    with pytest.raises(IntegrityError, match="component_groups_do_not_nest"), transaction.atomic():
        Component.objects.filter(pk=other.pk).update(group=group)
    with pytest.raises(IntegrityError, match="component_unique_name"), transaction.atomic():
        Component.objects.create(name="Search", position=6)
    new = Component.objects.create(name="Search", group=group, position=2)
    assert new.pk > max(before.checkout, before.payments, before.search)


def test_the_migration_goes_back_to_one_service_per_component(before: WrittenBefore) -> None:
    try:
        old = migrate(BEFORE)
        component = old.get_model("statuspage", "Component")
        assert dict(component.objects.values_list("pk", "service_id")) == {
            before.checkout: before.services["checkout"],
            before.payments: before.services["payments-api"],
            before.search: None,
        }
    finally:
        migrate_to_latest()
