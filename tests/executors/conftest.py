"""Fixtures for backend tests: connections to the stand-ins of tests/devinfra/standins.py,
real servers over HTTP, no Django."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from devinfra.kube_standin import KubeStandinHandle
from devinfra.processes import ServerProcess, reset_moto_server
from executors.base import Connections
from tests.executors.git_repos import Repository
from tests.executors.rds_world import OLD_HOST, PASSWORD, rds_secret


@pytest.fixture
def aws(moto_server: ServerProcess) -> Iterator[Connections]:
    """Connections to an emptied moto server."""
    reset_moto_server(moto_server.url)
    yield Connections(aws_endpoint_url=moto_server.url, aws_region="us-east-1")


@pytest.fixture
def kube(kube_standin: KubeStandinHandle) -> Connections:
    """Connections pointing the kubernetes client at the stand-in."""
    return Connections(kube_host=kube_standin.url)


@pytest.fixture
def rds(aws: Connections) -> Any:
    """RDS instance `orders` (PostgreSQL, a week of backups) on the moto server."""
    client = boto3.client("rds", endpoint_url=aws.aws_endpoint_url, region_name=aws.aws_region)
    client.create_db_instance(
        DBInstanceIdentifier="orders",
        Engine="postgres",
        DBInstanceClass="db.t3.micro",
        MasterUsername="app",
        MasterUserPassword=PASSWORD,
        AllocatedStorage=20,
        BackupRetentionPeriod=7,
    )
    return client


@pytest.fixture
def secrets(aws: Connections, rds: Any) -> Any:
    """Secret `orders/db`: an RDS-style JSON secret pointing at the `orders` instance."""
    client = boto3.client(
        "secretsmanager", endpoint_url=aws.aws_endpoint_url, region_name=aws.aws_region
    )
    client.create_secret(Name="orders/db", SecretString=json.dumps(rds_secret(OLD_HOST)))
    return client


@pytest.fixture
def repo(tmp_path: Path) -> Repository:
    """A bare repository with one commit on main, and a developer's clone of it."""
    repository = Repository(tmp_path)
    repository.commit({"app.py": "VERSION = 1\n", "README": "shop\n"}, "Initial version")
    return repository
