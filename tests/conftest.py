"""Fixtures shared by the Django tests: real PostgreSQL and Redis, roles in place."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import redis
from django.conf import LazySettings

from console.celery import app as celery_app
from devinfra.kube_standin import KubeStandinHandle
from devinfra.processes import ServerProcess, reset_moto_server
from executors.base import Connections
from incidents import timeline
from incidents.roles import ensure_roles
from tests.asgi import asgi_server  # noqa: F401  (fixtures for every test module)
from tests.celery_conf import celery_conf_set
from tests.chromium import browser, page  # noqa: F401
from tests.factories import ensure_default_records
from tests.workers import own_redis_url

# Fixtures several test packages share: the stand-ins (moto, Kubernetes) and the rollback
# engine's (its settings, eager Celery, workers).
pytest_plugins = [
    "tests.devinfra.standins",
    "tests.devinfra.hosted_vercel",
    "tests.devinfra.hosted_github",
    "tests.devinfra.hosted_docker",
    "tests.devinfra.hosted_doppler",
    "tests.devinfra.hosted_pagerduty",
    "tests.devinfra.hosted_sentry",
    "tests.rollbacks.engine_fixtures",
]

# Concurrent test runs on one machine each take their own Redis database.
TEST_REDIS_URL = own_redis_url(os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15"))
TEST_BROKER_URL = own_redis_url(os.environ.get("TEST_BROKER_URL", "redis://127.0.0.1:6379/10"))


@pytest.fixture(autouse=True, scope="session")
def _test_broker() -> Iterator[None]:
    """Tasks the tests hand to Celery go to a Redis database of the tests' own, emptied
    before and after: never to the broker a console or demo on this machine reads, whose
    worker would run them against its own database."""
    broker = redis.Redis.from_url(TEST_BROKER_URL)
    broker.flushdb()
    saved = celery_app.conf.broker_url
    celery_app.close()
    celery_conf_set(celery_app, broker_url=TEST_BROKER_URL)
    yield
    celery_app.close()
    celery_conf_set(celery_app, broker_url=saved)
    broker.flushdb()
    broker.close()


@pytest.fixture(autouse=True)
def _no_second_factor(settings: LazySettings) -> None:
    """Tests sign people in with force_login; the two-factor tests turn it on themselves."""
    settings.REQUIRE_TWO_FACTOR = False


@pytest.fixture(autouse=True)
def _default_records(request: pytest.FixtureRequest) -> None:
    """Put back the records the migrations load (checklists, approval policies, built-in
    playbooks, status texts, update templates) when a transactional test that ran earlier in
    this process emptied every table. Without xdist pytest-django runs those tests last; with
    it (bin/test runs two workers) a worker may get a file of them before other files."""
    marker = request.node.get_closest_marker("django_db")
    transactional = "transactional_db" in request.fixturenames or bool(
        marker and marker.kwargs.get("transaction")
    )
    if not transactional and marker is None and "db" not in request.fixturenames:
        return
    request.getfixturevalue("transactional_db" if transactional else "db")
    from playbooks.models import Playbook
    from rollbacks.models import ApprovalPolicy
    from statuspage.models import MessageTemplate, UpdateTemplate

    if not (
        ApprovalPolicy.objects.exists()
        and Playbook.objects.exists()
        and MessageTemplate.objects.exists()
        and UpdateTemplate.objects.exists()
    ):
        ensure_default_records()


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings: LazySettings) -> None:
    # Real hashers cost about a second per user on this hardware; tests need no strength.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _test_redis(settings: LazySettings) -> Iterator[None]:
    """Point the live fan-out at a Redis database of its own."""
    settings.REDIS_URL = TEST_REDIS_URL
    timeline.redis_client_reset()
    yield
    timeline.redis_client_reset()


@pytest.fixture
def roles(db: None) -> dict:
    return ensure_roles()


@pytest.fixture
def redis_listener() -> Iterator[redis.client.PubSub]:
    """A subscriber on the test Redis, for asserting what was announced."""
    client = redis.Redis.from_url(TEST_REDIS_URL)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    yield pubsub
    pubsub.close()
    client.close()


# The platforms service discovery lists (tests/rollbacks/test_discovery.py, and the API's).


@pytest.fixture
def shop(kube: KubeStandinHandle, engine_settings: None) -> None:
    """Namespace `shop` on the Kubernetes stand-in: Deployments web (tier=web) and api."""
    kube.seed(
        [
            {"namespace": "shop", "name": "web", "images": ["r/web:v1"], "labels": {"tier": "web"}},
            {"namespace": "shop", "name": "api", "images": ["r/api:v7"], "labels": {"tier": "api"}},
        ]
    )


@pytest.fixture
def aws(settings: LazySettings, moto_server: ServerProcess) -> Connections:
    """The moto server, emptied, and the console's settings pointing at it."""
    reset_moto_server(moto_server.url)
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        os.environ.setdefault(key, value)
    settings.AWS_ENDPOINT_URL = moto_server.url
    settings.AWS_REGION = "us-east-1"
    return Connections(aws_endpoint_url=moto_server.url, aws_region="us-east-1")
