"""Fixtures for backend tests: connections to the stand-ins of tests/devinfra/standins.py,
real servers over HTTP, no Django."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devinfra.kube_standin import KubeStandinHandle
from devinfra.processes import ServerProcess, reset_moto_server
from executors.base import Connections


@pytest.fixture
def aws(moto_server: ServerProcess) -> Iterator[Connections]:
    """Connections to an emptied moto server."""
    reset_moto_server(moto_server.url)
    yield Connections(aws_endpoint_url=moto_server.url, aws_region="us-east-1")


@pytest.fixture
def kube(kube_standin: KubeStandinHandle) -> Connections:
    """Connections pointing the kubernetes client at the stand-in."""
    return Connections(kube_host=kube_standin.url)
