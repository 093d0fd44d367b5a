"""Migration statuspage 0007 turns the four default public texts into update templates:
the test takes the database back to 0006 (where the texts are message templates), edits
them as a support lead would have in the admin, migrates forward and reads the templates
back with today's models; then it goes back again and finds the texts where they were."""

from __future__ import annotations

from collections.abc import Iterator
from importlib import import_module
from typing import Any

import pytest
from django.apps import apps
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from statuspage.models import MessageTemplate, UpdateTemplate
from tests.factories import ensure_default_records

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = [("statuspage", "0006_history_maintenances_subscribers_templates")]
FIRST_TEXTS = import_module("statuspage.migrations.0002_default_texts").TEXTS
MIGRATION = import_module("statuspage.migrations.0007_update_templates_from_defaults")


def migrate(targets: list[tuple[str, str]]) -> Any:
    """Migrate the test database to `targets` (every other app as it is); the models of
    that state."""
    return MigrationExecutor(connection).migrate(targets).apps


def migrate_to_latest() -> None:
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())


def defaults_loaded() -> None:
    """What the migrations load: default texts and update templates, checklists, policies."""
    import_module("statuspage.migrations.0002_default_texts").add_texts(apps, None)
    MIGRATION.templates_from_texts(apps, None)
    ensure_default_records()


@pytest.fixture(autouse=True)
def defaults_before(transactional_db: None) -> None:
    """A transactional test before this one may have emptied every table."""
    defaults_loaded()


@pytest.fixture(scope="module", autouse=True)
def default_records_restored(django_db_blocker: Any) -> Iterator[None]:
    """A transactional test empties every table when it ends: put back what the migrations
    load for the tests after these."""
    yield
    with django_db_blocker.unblock():
        defaults_loaded()


def test_each_public_text_becomes_a_template_as_the_admin_left_it():
    try:
        old = migrate(BEFORE)
        texts = old.get_model("statuspage", "MessageTemplate")
        assert texts.objects.filter(key__startswith="public_").count() == 4
        texts.objects.filter(key="public_identified").update(
            body="Trouvé : {components} 修复中 🔧 نعمل على ذلك"
        )
        texts.objects.filter(key="public_monitoring").delete()  # deleted in the admin
    finally:
        migrate_to_latest()

    listed = list(UpdateTemplate.objects.order_by("position"))
    assert [(t.name, t.status, t.position) for t in listed] == [
        ("Investigating", "investigating", 1),
        ("Identified", "identified", 2),
        ("Monitoring", "monitoring", 3),
        ("Resolved", "resolved", 4),
    ]
    assert {t.title for t in listed} == {"Service disruption: {components}"}
    assert listed[0].body == FIRST_TEXTS["public_investigating"][1]
    assert listed[1].body == "Trouvé : {components} 修复中 🔧 نعمل على ذلك"
    assert listed[2].body == FIRST_TEXTS["public_monitoring"][1]  # the first text, again
    assert [t.component_status for t in listed] == ["", "", "", "operational"]
    assert not MessageTemplate.objects.filter(key__startswith="public_").exists()
    # The internal notices' texts stay where they are.
    assert MessageTemplate.objects.filter(key="rollback_started").exists()


def test_going_back_puts_the_templates_texts_into_the_message_templates():
    UpdateTemplate.objects.filter(name="Resolved").update(body="Over: {components} ✓")
    UpdateTemplate.objects.create(name="Kept by the support lead", title="t", body="b", position=7)
    try:
        old = migrate(BEFORE)
        texts = dict(
            old.get_model("statuspage", "MessageTemplate").objects.values_list("key", "body")
        )
        assert texts["public_resolved"] == "Over: {components} ✓"
        assert texts["public_investigating"] == FIRST_TEXTS["public_investigating"][1]
        names = set(
            old.get_model("statuspage", "UpdateTemplate").objects.values_list("name", flat=True)
        )
        assert names == {"Kept by the support lead"}
    finally:
        migrate_to_latest()
    # And forward again: a template of the same name is left alone, the others are added.
    assert UpdateTemplate.objects.get(name="Resolved").body == "Over: {components} ✓"
    listed = UpdateTemplate.objects.order_by("position").values_list("name", "position")
    assert list(listed) == [
        ("Kept by the support lead", 7),
        ("Investigating", 8),
        ("Identified", 9),
        ("Monitoring", 10),
        ("Resolved", 11),
    ]
