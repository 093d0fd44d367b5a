"""Full runs of the backends that need no cloud: a feature flag in the tests' Redis, and
the demo's registered command moving a real PostgreSQL schema back a migration. Drafted,
approved and started in the console; applied by a Celery worker in its own process;
verified by its checks."""

from __future__ import annotations

import json
from datetime import timedelta

import psycopg
import pytest
import redis
from django.conf import settings

from devinfra.demo_services import FLAG_KEY_PREFIX, seed_commands, seed_feature_flag
from rollbacks.reminders import reminders_due
from tests.rollbacks.full_runs.conftest import console_service
from tests.rollbacks.full_runs.console import assert_recorded

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(120),
    pytest.mark.usefixtures("policies"),
]


def test_a_flag_is_turned_off_for_a_while(console, infra, health, incident, worker):
    flag = seed_feature_flag(settings.REDIS_URL)
    service = console_service(flag, health.url)
    worker()

    run = console.draft(
        incident(service), service, "options", {"state": "off", "for_minutes": "45"}
    )
    assert "new-checkout-flow" in console.dry_run(run)
    run = console.approve_and_run(run)

    assert_recorded(run, step_checks=["flag state"])
    client = redis.Redis.from_url(settings.REDIS_URL)
    try:
        assert client.get(f"{FLAG_KEY_PREFIX}new-checkout-flow") == b"off"
    finally:
        client.close()
    step = run.steps.get()
    assert step.params["for_minutes"] == 45
    assert reminders_due(step.finished_at + timedelta(minutes=44)) == []
    assert reminders_due(step.finished_at + timedelta(minutes=45)) == [step.pk]


def test_a_registered_command_moves_the_schema_back(
    console, infra, health, incident, worker, orders_database, settings, tmp_path
):
    commands_file = tmp_path / "commands.json"
    schema, _ = seed_commands(orders_database, commands_file)
    settings.REGISTERED_COMMANDS = json.loads(commands_file.read_text())
    service = console_service(schema, health.url)
    worker(REGISTERED_COMMANDS_FILE=str(commands_file))

    run = console.draft(incident(service), service, "options", {"migration": "0041_order_totals"})
    assert "devinfra.demo_migrations migrate orders 0041_order_totals" in console.dry_run(run)
    run = console.approve_and_run(run)

    assert_recorded(run, step_checks=["check command"])
    step = run.steps.get()
    assert [line.line for line in step.log_lines.all()][-1] == (
        "unapplied orders.0042_split_addresses"
    )
    with psycopg.connect(orders_database) as connection:
        applied = connection.execute("SELECT name FROM demo_migrations ORDER BY name").fetchall()
    assert [name for (name,) in applied] == ["0040_initial", "0041_order_totals"]
