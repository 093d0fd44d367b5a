"""The database recovery playbook with an ECS service as the writer, drafted from the room's
playbook card and run by a worker: the service's desired count goes to zero and is recorded,
the RDS snapshot is restored on moto and the secret switched, the service is restarted by a
forced new deployment and scaled back to the recorded count."""

from __future__ import annotations

import pytest

from devinfra.demo_services import seed_database, seed_ecs
from executors.aws import aws_client
from executors.ecs_operations import DESIRED_BEFORE_SCALE_TAG, RESTARTED_AT_TAG
from playbooks.models import Playbook
from playbooks.services import playbook_save
from rollbacks.models import RunState
from tests.rollbacks.full_runs.conftest import BUILTIN, assert_secret_switched, console_service

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(120),
    pytest.mark.usefixtures("policies"),
]


def test_ecs_writers_are_stopped_restarted_and_scaled_back(
    console, commander, infra, health, incident, worker
):
    source = (BUILTIN / "database-recovery.yaml").read_text()
    playbook = Playbook.objects.filter(name="database-recovery").first()
    version = playbook.current() if playbook else playbook_save(source=source, actor=commander)
    assert version is not None and "ecs" in version.source
    checkout = console_service(seed_ecs(infra), health.url)
    database = console_service(seed_database(infra), health.url)
    worker()

    run = console.draft_playbook(
        incident(database),
        "database-recovery",
        version.number,
        {
            "database": database.name,
            "writers": [checkout.name],
            "method": "snapshot",
            "snapshot": "orders-db-schema-41",
        },
    )
    steps = list(run.steps.order_by("position"))
    assert [(step.group, step.service.name, step.target_label) for step in steps] == [
        (1, "checkout", "operation scale, replicas 0"),
        (2, "orders-db", "method snapshot, snapshot orders-db-schema-41"),
        (3, "checkout", "operation restart"),
        (5, "checkout", "operation scale, replicas restore"),
    ]
    preview = console.dry_run(run)
    assert "desiredCount: 3 → 0" in preview or "3 → 0 desired tasks" in preview
    run = console.approve_and_run(run, timeout=90)

    assert run.state == RunState.SUCCEEDED, run.failure_reason
    ecs = aws_client(infra, "ecs")
    service = ecs.describe_services(cluster="storefront", services=["checkout"], include=["TAGS"])[
        "services"
    ][0]
    tags = {tag["key"]: tag["value"] for tag in service.get("tags") or []}
    assert service["desiredCount"] == service["runningCount"] == 3
    assert DESIRED_BEFORE_SCALE_TAG not in tags
    assert tags[RESTARTED_AT_TAG] == steps[2].params["restarted_at"]
    facts = [step.apply_facts for step in run.steps.order_by("position")]
    assert facts[0] == {"from_desired_count": 3, "to_desired_count": 0}
    assert facts[3] == {"from_desired_count": 0, "to_desired_count": 3}
    assert_secret_switched(infra)
