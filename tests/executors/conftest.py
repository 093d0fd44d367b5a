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
