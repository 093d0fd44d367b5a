"""Fixtures for backend tests: real servers over HTTP, no Django."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from devinfra.processes import ServerProcess, reset_moto_server, start_moto_server
from executors.base import Connections


@pytest.fixture(scope="session")
def moto_server() -> Iterator[ServerProcess]:
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    server = start_moto_server()
    yield server
    server.stop()


@pytest.fixture
def aws(moto_server: ServerProcess) -> Iterator[Connections]:
    """Connections to an emptied moto server."""
    reset_moto_server(moto_server.url)
    yield Connections(aws_endpoint_url=moto_server.url, aws_region="us-east-1")


# --- Kubernetes API stand-in (devinfra.kube_standin) ------------------------------------

from devinfra.kube_standin import KubeStandinHandle, start_kube_standin  # noqa: E402


@pytest.fixture
def kube_standin() -> Iterator[KubeStandinHandle]:
    """A fresh Kubernetes API stand-in: rollouts settle in 0.1 s, crash loops tick every 0.05 s."""
    handle = start_kube_standin(status_delay=0.1, restart_interval=0.05)
    yield handle
    handle.stop()


@pytest.fixture
def kube(kube_standin: KubeStandinHandle) -> Connections:
    """Connections pointing the kubernetes client at the stand-in."""
    return Connections(kube_host=kube_standin.url)
