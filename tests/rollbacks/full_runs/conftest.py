"""Fixtures of the full runs: the real infrastructure each backend talks to (a moto server
for AWS, the tests' Redis for flags, a PostgreSQL scratch database for the registered
command), seeded by the demo's own seed functions, the service and its releases in the
console, and a Celery worker in a process of its own reaching all of it.

The services carry an http check of the real health endpoint (`health`), so every run ends
with a verification round."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.conf import LazySettings, settings
from django.utils import timezone
from psycopg import sql

from devinfra.demo_services import DemoService
from devinfra.processes import ServerProcess, reset_moto_server
from executors.aws import aws_client
from executors.base import Connections
from incidents.models import Release, Service
from rollbacks.models import ApprovalPolicy
from tests.rollbacks.engine_factories import IncidentFactory
from tests.rollbacks.full_runs.console import Console
from tests.workers import own_name

BUILTIN = Path(__file__).resolve().parents[3] / "playbooks" / "builtin"
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@pytest.fixture
def infra(settings: LazySettings, moto_server: ServerProcess, tmp_path: Path) -> Connections:
    """An emptied moto server and the test Redis, as the console and the backends see them."""
    reset_moto_server(moto_server.url)
    for key, value in AWS_ENV.items():
        os.environ.setdefault(key, value)
    settings.AWS_ENDPOINT_URL = moto_server.url
    settings.AWS_REGION = "us-east-1"
    return Connections(
        aws_endpoint_url=moto_server.url, aws_region="us-east-1", redis_url=settings.REDIS_URL
    )


@pytest.fixture
def orders_database() -> Iterator[str]:
    """A scratch PostgreSQL database for the orders schema, dropped afterwards."""
    database = settings.DATABASES["default"]
    name = own_name("backout_full_run_orders")
    url = f"postgres://{database['USER']}@{database['HOST']}:{database['PORT']}/{name}"
    yield url
    admin = psycopg.conninfo.make_conninfo(url, dbname="postgres")
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@pytest.fixture
def worker(
    start_worker: Callable[..., Any], infra: Connections, moto_server: ServerProcess
) -> Callable[..., Any]:
    """Start a Celery worker reaching the moto server (and `env`, e.g. the commands file)."""

    def start(**env: str) -> Any:
        return start_worker("full", AWS_ENDPOINT_URL=moto_server.url, **AWS_ENV, **env)

    return start


@pytest.fixture
def console(commander: Any, roles: dict) -> Console:
    return Console(commander)


@pytest.fixture
def policies(roles: dict) -> None:
    """The approvals production asks: On-call for a P2, a DBA for a database restore (and
    no other policy, whatever an earlier test left)."""
    ApprovalPolicy.objects.update(active=False)
    ApprovalPolicy.objects.update_or_create(
        name="P2 needs on-call",
        defaults={"severities": ["P2"], "required_roles": ["On-call"], "active": True},
    )
    ApprovalPolicy.objects.update_or_create(
        name="Database restores need a DBA",
        defaults={
            "required_roles": ["DBA"],
            "restores_data": True,
            "severities": [],
            "active": True,
        },
    )


def console_service(demo: DemoService, health_url: str) -> Service:
    """`demo` (a seed's record) as a console service with its releases, verified by an http
    check of `health_url`."""
    checks = [{"kind": "http", "name": "health endpoint", "url": health_url, "retries": 2}]
    service = Service.objects.create(
        name=demo.name,
        backend=demo.backend,
        description=demo.description,
        target_config={**demo.target_config, "checks": checks},
    )
    service.full_clean()
    now = timezone.now()
    for release in demo.releases:
        Release.objects.create(
            service=service,
            version=release.version,
            artifact=release.artifact,
            notes=release.notes,
            shipped_at=now - timedelta(hours=release.shipped_hours_ago),
            backup=dict(release.backup or {}),
        )
    return service


@pytest.fixture
def incident() -> Callable[[Service], Any]:
    """A P2 incident with `service` affected."""

    def make(service: Service) -> Any:
        opened = IncidentFactory(severity="P2")
        opened.services.add(service)
        return opened

    return make


def assert_secret_switched(infra: Connections) -> dict[str, Any]:
    """The demo database's secret names a restored instance, available, with the password
    kept; that instance's description."""
    secret = json.loads(
        aws_client(infra, "secretsmanager").get_secret_value(SecretId="backout-demo/orders-db")[
            "SecretString"
        ]
    )
    assert secret["dbInstanceIdentifier"].startswith("orders-db-restore-")
    assert secret["password"] == "demo-only-password"
    restored = aws_client(infra, "rds").describe_db_instances(
        DBInstanceIdentifier=secret["dbInstanceIdentifier"]
    )["DBInstances"][0]
    assert restored["DBInstanceStatus"] == "available"
    return dict(restored)
