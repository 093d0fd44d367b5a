"""Full runs of the git revert and PostgreSQL restore backends, seeded by the demo's own seed
functions: a bare repository made under the test's folder, and a scratch database on the
tests' PostgreSQL server (a unique name, dropped afterwards). Drafted, approved and started
in the console; applied by a Celery worker in its own process; verified by its checks."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from datetime import timedelta
from io import StringIO
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.test import Client
from django.utils import timezone
from psycopg import sql

from api.tokens import token_create
from devinfra.demo_git_postgres import (
    database_passwords,
    seed_git_repository,
    seed_postgres_dumps,
)
from incidents.models import Incident, Release, TimelineEntry
from rollbacks.models import Run
from tests.rollbacks.full_runs.conftest import console_service
from tests.rollbacks.full_runs.console import assert_recorded

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(120),
    pytest.mark.usefixtures("policies"),
]


def remote(repository: str, *args: str) -> str:
    bare = urlsplit(repository).path
    done = subprocess.run(["git", *args], cwd=bare, check=True, capture_output=True, text=True)
    return done.stdout.strip()


@pytest.fixture
def inventory_database() -> Iterator[str]:
    """The URL of a scratch database for the inventory seed, dropped afterwards."""
    database = settings.DATABASES["default"]
    name = f"backout_full_run_inventory_{uuid.uuid4().hex[:8]}"
    url = f"postgres://{database['USER']}@{database['HOST']}:{database['PORT']}/{name}"
    yield url
    admin = psycopg.conninfo.make_conninfo(url, dbname="postgres")
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def test_git_reverts_the_bad_merge_back_to_the_known_good_release(
    console, infra, health, incident, worker, tmp_path
):
    repository = seed_git_repository(tmp_path)
    service = console_service(repository, health.url)
    url = repository.target_config["repository"]
    bad = remote(url, "rev-parse", "main")
    worker()

    good = service.releases.get(version="v1.1")
    run = console.draft(incident(service), service, str(good.pk), {})
    preview = console.dry_run(run)
    assert "Merge branch 'payments-provider'" in preview and "-m 1" in preview
    run = console.approve_and_run(run)

    assert_recorded(run, step_checks=["reverted on the branch"])
    assert "payments.toml" not in remote(url, "ls-tree", "--name-only", "main").split()
    message = remote(url, "log", "-1", "--format=%an|%B")
    assert message.startswith("Backout|Revert \"Merge branch 'payments-provider'\"")
    assert f"This reverts commit {bad}, reversing" in message
    assert "to release v1.1." in message
    facts = run.steps.get().apply_facts
    assert facts["new_commit"] == remote(url, "rev-parse", "main")
    applied = TimelineEntry.objects.filter(incident=run.incident, body__contains="applied").get()
    assert "1 revert commit(s) pushed" in applied.body


def test_git_refuses_a_commit_that_is_not_on_the_branch_at_draft(
    console, infra, health, incident, tmp_path
):
    repository = seed_git_repository(tmp_path)
    service = console_service(repository, health.url)
    opened = incident(service)

    refused = console.draft_refused(opened, service, "options", {"commit": "0123456789abcdef"})
    markup = console.draft_refused(opened, service, "options", {"commit": "<b>ab</b>"})

    assert refused.startswith("storefront-config: commit: 0123456789abcdef is not a commit")
    assert markup.startswith("storefront-config: commit: does not match")
    assert not Run.objects.filter(incident=opened).exists()


def test_postgres_restores_the_good_dump_with_the_dba_approving(
    console, infra, health, incident, worker, tmp_path, inventory_database
):
    inventory = seed_postgres_dumps(inventory_database, tmp_path)
    service = console_service(inventory, health.url)
    worker()
    held = psycopg.connect(inventory_database)  # an application's session, open throughout
    held.execute("SELECT count(*) FROM products").fetchone()

    run = console.draft(incident(service), service, "options", {"dump": "inventory-v3.1.dump"})
    assert "inventory-v3.1.dump" in console.dry_run(run)
    request = console.request_approval(run)
    assert request is not None and sorted(request.required_roles) == ["DBA", "On-call"]
    console.approve(run)
    console.start(run)
    run = console.finish(run)

    assert_recorded(run, step_checks=["database answers", "restored from the dump", "check query"])
    with psycopg.connect(inventory_database) as connection:
        prices = connection.execute("SELECT sku, price_cents FROM products ORDER BY sku").fetchall()
    assert prices == [("CAP-3", 1800), ("MUG-1", 1200), ("TEE-2", 2500)]
    with pytest.raises(psycopg.OperationalError):
        held.execute("SELECT 1")
    held.close()
    facts = run.steps.get().apply_facts
    assert facts["terminated_connections"] >= 1
    pre_restore = Path(facts["pre_restore_dump"])
    assert pre_restore.is_file() and pre_restore.read_bytes().startswith(b"PGDMP")
    applied = TimelineEntry.objects.filter(incident=run.incident, body__contains="applied").get()
    assert str(pre_restore) in applied.body


def test_postgres_refuses_a_dump_that_is_not_there_at_draft(
    console, infra, health, incident, tmp_path, inventory_database
):
    inventory = seed_postgres_dumps(inventory_database, tmp_path)
    service = console_service(inventory, health.url)
    opened = incident(service)

    refused = console.draft_refused(opened, service, "options", {"dump": "inventory-v9.dump"})

    assert refused.startswith("inventory-db: dump: inventory-v9.dump is not available"), refused
    assert "inventory-v3.1.dump" in refused
    assert not Run.objects.filter(incident=opened).exists()


def test_postgres_going_back_to_a_release_checks_its_dump_and_the_rpo_at_draft(
    console, infra, health, incident, tmp_path, inventory_database
):
    inventory = seed_postgres_dumps(inventory_database, tmp_path)
    service = console_service(inventory, health.url)
    opened = incident(service)
    good = service.releases.get(version="v3.1")
    dump_dir = Path(service.target_config["dump_dir"])

    # The release's dump is older than the incident's RPO allows: the loss must be written.
    Incident.objects.filter(pk=opened.pk).update(rpo=timedelta(0))
    refused = console.draft_refused(opened, service, str(good.pk), {})
    assert refused.startswith("inventory-db: acknowledge_loss: writes after"), refused

    # The release's dump has gone from the directory: refused at draft, naming the dump.
    (dump_dir / "inventory-v3.1.dump").unlink()
    refused = console.draft_refused(opened, service, str(good.pk), {})
    assert refused.startswith("inventory-db: dump: inventory-v3.1.dump is not available"), refused
    assert not Run.objects.filter(incident=opened).exists()


def test_the_terminal_previews_a_restore_and_refuses_a_commit_off_the_branch(
    console, infra, health, incident, tmp_path, inventory_database, commander
):
    inventory = console_service(seed_postgres_dumps(inventory_database, tmp_path), health.url)
    config = console_service(seed_git_repository(tmp_path), health.url)
    opened = incident(inventory)
    opened.services.add(config)
    out = StringIO()

    call_command(
        "rollback",
        "inventory-db",
        "--incident",
        str(opened.pk),
        "--as",
        commander.username,
        "--set",
        "dump=inventory-v3.1.dump",
        "--dry-run",
        "--yes",
        stdout=out,
    )
    assert "inventory-v3.1.dump" in out.getvalue()
    with psycopg.connect(inventory_database) as connection:
        assert connection.execute("SELECT max(price_cents) FROM products").fetchone() == (250000,)

    with pytest.raises(CommandError, match="commit: 0123456789abcdef is not a commit"):
        call_command(
            "rollback",
            "storefront-config",
            "--incident",
            str(opened.pk),
            "--as",
            commander.username,
            "--set",
            "commit=0123456789abcdef",
            "--yes",
            stdout=StringIO(),
        )


def test_the_api_drafts_a_revert_to_the_known_good_release(
    infra, health, incident, tmp_path, commander, roles
):
    service = console_service(seed_git_repository(tmp_path), health.url)
    Release.objects.filter(service=service, version="v1.1").update(
        known_good=True, known_good_at=timezone.now()
    )
    opened = incident(service)
    _, token = token_create(user=commander, name="pipeline", scopes=("runs:write", "read"))
    client = Client(HTTP_AUTHORIZATION=f"Bearer {token}")

    response = client.post(
        f"/api/v1/incidents/{opened.pk}/rollbacks",
        {"services": ["storefront-config"], "reason": "checkout broken"},
        content_type="application/json",
    )

    assert response.status_code == 201, response.content
    step = response.json()["steps"][0]
    assert step["to_version"] == "v1.1" and step["from_version"] == "v1.2"


def test_the_inventory_password_reaches_the_workers_env_file(
    tmp_path, inventory_database, monkeypatch
):
    monkeypatch.setenv("DEMO_INVENTORY_PASSWORD", "stale from an earlier demo")
    parts = urlsplit(inventory_database)
    with_password = inventory_database.replace(
        f"{parts.username}@", f"{parts.username}:s3cr%C3%A9t@"
    )

    inventory = seed_postgres_dumps(with_password, tmp_path)

    assert inventory.target_config["password_env"] == "DEMO_INVENTORY_PASSWORD"
    assert database_passwords([inventory]) == {"DEMO_INVENTORY_PASSWORD": "s3crét"}
