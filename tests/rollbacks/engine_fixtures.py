"""Fixtures for the rollback engine's tests, a pytest plugin loaded by tests/conftest.py.

Every test under tests/rollbacks/ runs with `engine_settings` and `isolated_celery`
(tests/rollbacks/conftest.py); a test module elsewhere that executes steps asks for them
with `pytest.mark.usefixtures("engine_settings", "isolated_celery")`.

The engine runs steps on threads and in worker processes, each with its own database
connection, so tests that execute steps use `django_db(transaction=True)`: what a test
creates is committed and visible to them. The fixtures here work under either mark.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from django.conf import LazySettings, settings
from django.db import connection

import rollbacks.services
from console.celery import app as celery_app
from devinfra.kube_standin import KubeStandinHandle, start_kube_standin
from executors.kubernetes.templates import REVISION_ANNOTATION
from incidents.models import Release, Service
from rollbacks.models import Run
from rollbacks.services import StepSpec
from tests.celery_conf import celery_conf_set
from tests.rollbacks.engine_factories import (
    CommanderFactory,
    IncidentFactory,
    KubeServiceFactory,
    UserFactory,
)
from tests.workers import own_redis_url

# The engine's tests keep their Celery messages in a Redis database of their own, so that
# no developer's worker (or another engineer's tests) ever receives them.
ENGINE_BROKER_URL = own_redis_url(
    os.environ.get("ENGINE_TEST_BROKER_URL", "redis://127.0.0.1:6379/11")
)
NAMESPACE = "shop"


@pytest.fixture(scope="session")
def kube_standin_server() -> Iterator[KubeStandinHandle]:
    handle = start_kube_standin(status_delay=0.1, restart_interval=0.05)
    yield handle
    handle.stop()


@pytest.fixture
def kube(kube_standin_server: KubeStandinHandle) -> Iterator[KubeStandinHandle]:
    """The Kubernetes stand-in, emptied, with rollouts settling in 0.1 s."""
    kube_standin_server.reset()
    kube_standin_server.set_status_delay(0.1)
    yield kube_standin_server
    kube_standin_server.clear_faults()


@pytest.fixture
def engine_settings(settings: LazySettings, kube_standin_server: KubeStandinHandle) -> None:
    """Point the engine at the stand-in, with short polls, beats and backoffs."""
    settings.KUBE_HOST = kube_standin_server.url
    settings.KUBECONFIG = None
    settings.KUBE_CONTEXT = None
    settings.ROLLBACK_BACKEND_OPTIONS = {
        "kubernetes": {"poll_interval": 0.05, "request_timeout": 2.0}
    }
    settings.ROLLBACK_RETRY_BACKOFF_SECONDS = 0.05
    settings.ROLLBACK_HEARTBEAT_SECONDS = 0.2
    settings.ROLLBACK_STALE_AFTER_SECONDS = 30.0
    settings.ROLLBACK_STEP_MAX_RETRIES = 3


@pytest.fixture
def isolated_celery() -> Iterator[Any]:
    """Celery runs tasks eagerly in the test (a test needing a real worker turns that
    off); its broker, if ever reached, is the engine tests' own Redis database."""
    saved = {
        "broker_url": celery_app.conf.broker_url,
        "task_always_eager": celery_app.conf.task_always_eager,
        "task_eager_propagates": celery_app.conf.task_eager_propagates,
    }
    celery_app.close()
    celery_conf_set(
        celery_app,
        broker_url=ENGINE_BROKER_URL,
        task_always_eager=True,
        task_eager_propagates=True,
    )
    yield celery_app
    celery_app.close()
    for name, value in saved.items():
        celery_conf_set(celery_app, **{name: value})


@pytest.fixture
def broker() -> Iterator[redis.Redis]:
    """The engine tests' broker database, emptied before and after."""
    client = redis.Redis.from_url(ENGINE_BROKER_URL)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


@pytest.fixture
def commander() -> Any:
    return CommanderFactory(username="ic")


@pytest.fixture
def approver() -> Any:
    return UserFactory(username="lead", roles=["Approver", "On-call", "Engineering Lead"])


def seed_deployment(
    kube: KubeStandinHandle, name: str, images: list[str], *, replicas: int = 2
) -> None:
    """A settled Deployment in namespace `shop` whose history is `images` (last is live)."""
    kube.seed([{"namespace": NAMESPACE, "name": name, "images": images, "replicas": replicas}])


@pytest.fixture
def kube_service(kube: KubeStandinHandle) -> Service:
    """Service `web` on Deployment shop/web, live at web:v2 with web:v1 before it, and a
    release record for each."""
    seed_deployment(kube, "web", ["registry.local/web:v1", "registry.local/web:v2"])
    service = KubeServiceFactory(name="web")
    for version in ("v1", "v2"):
        Release.objects.create(
            service=service, version=version, artifact=f"registry.local/web:{version}"
        )
    return service


def parallel_run(
    commander: Any, kube: KubeStandinHandle, *names: str, enqueue: bool = False
) -> Run:
    """A confirmed, started run of one parallel group rolling back each of `names` (each a
    Deployment seeded at `<name>:1` then `<name>:2`); `enqueue` hands its steps to Celery."""
    for name in names:
        seed_deployment(kube, name, [f"{name}:1", f"{name}:2"])
    specs = [
        StepSpec(service=KubeServiceFactory(name=name), previous=True, group=1) for name in names
    ]
    run = rollbacks.services.run_create(incident=IncidentFactory(), steps=specs, actor=commander)
    run = rollbacks.services.run_request_approval(run=run, actor=commander)
    return rollbacks.services.run_confirm_and_start(
        run=run, actor=commander, confirmation=run.expected_confirmation(), enqueue=enqueue
    )


def step_ids(run: Run) -> list[int]:
    """The run's step ids in plan order."""
    return list(run.steps.order_by("position").values_list("pk", flat=True))


def deployment_revision(kube: KubeStandinHandle, name: str) -> int:
    """The Deployment's `deployment.kubernetes.io/revision`."""
    deployment = kube.get("deployments", NAMESPACE, name)
    assert deployment is not None
    return int(deployment["metadata"]["annotations"][REVISION_ANNOTATION])


def live_image(kube: KubeStandinHandle, name: str) -> str:
    deployment = kube.get("deployments", NAMESPACE, name)
    assert deployment is not None
    return str(deployment["spec"]["template"]["spec"]["containers"][0]["image"])


def patches_to(kube: KubeStandinHandle, name: str) -> int:
    """How many PATCH requests reached the Deployment (answered or not)."""
    requests = kube.call(lambda: list(kube.standin._requests))
    return sum(
        1
        for request in requests
        if request.method == "PATCH" and request.url.path.endswith(f"/deployments/{name}")
    )


ROOT = Path(__file__).resolve().parents[2]


# One task at a time in the worker's own process, no worker-to-worker chatter: what most
# engine tests need. PRODUCTION_LIKE is how bin/demo and docs/ run a worker.
SOLO = ("--pool", "solo", "--concurrency", "1", "--without-gossip", "--without-mingle")
SOLO_OPTIONS = (*SOLO, "--without-heartbeat")
PRODUCTION_LIKE = ("--pool", "prefork", "--concurrency", "2")


class Worker:
    """`celery -A console worker` in its own process group, logging to a file."""

    def __init__(
        self,
        name: str,
        log_dir: Path,
        env: dict[str, str],
        options: tuple[str, ...] = SOLO_OPTIONS,
    ) -> None:
        self.log = log_dir / f"{name}.log"
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "console",
                "worker",
                *options,
                "--hostname",
                f"{name}@%h",
                "--loglevel",
                "INFO",
            ],
            cwd=ROOT,
            env=env,
            stdout=self.log.open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_ready(self, timeout: float = 30.0) -> None:
        wait_for(lambda: " ready." in self.output(), timeout, f"worker start:\n{self.output()}")

    def kill(self) -> None:
        """SIGKILL the whole process group: no shutdown, no acknowledgement, nothing."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        """Cold shutdown (SIGQUIT): the test is over, nothing is left to finish. A worker
        whose step or verification threads are still waiting on something would hold its
        exit until they end: after 3 s it is killed."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGQUIT)
            try:
                self.process.wait(timeout=3)
            except subprocess.TimeoutExpired:
                self.kill()


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll `condition` every 50 ms until it holds; after `timeout` seconds fail the test,
    saying it timed out waiting for `what`."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.fixture
def start_worker(broker: Any, kube: Any, isolated_celery: Any, tmp_path: Path) -> Iterator[Any]:
    """Start workers on the engine tests' broker, database and Kubernetes stand-in;
    `start(name, **env)` adds `env` to the worker's environment (where AWS, the flag store
    or the registered commands are)."""
    celery_conf_set(isolated_celery, task_always_eager=False)
    database = settings.DATABASES["default"]
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.rollbacks.engine_worker_settings",
        "PYTHONPATH": str(ROOT),
        "DEBUG": "1",
        "DATABASE_URL": (
            f"postgres://{database['USER']}@{database['HOST']}:{database['PORT']}/"
            f"{connection.settings_dict['NAME']}"
        ),
        "CELERY_BROKER_URL": ENGINE_BROKER_URL,
        "REDIS_URL": settings.REDIS_URL,
        "KUBE_HOST": kube.url,
    }
    workers: list[Worker] = []

    def start(name: str, options: tuple[str, ...] = SOLO_OPTIONS, **extra_env: str) -> Worker:
        worker = Worker(name, tmp_path, {**env, **extra_env}, options)
        workers.append(worker)
        worker.wait_ready()
        return worker

    yield start
    for worker in workers:
        worker.stop()
