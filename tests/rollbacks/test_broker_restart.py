"""A Celery worker rides out a restart of its broker (a Redis restarted while a step runs):
it reconnects, the step is applied once and the run finishes, and the worker process lives
on. Real parts: a private redis-server process the test stops and starts again on the same
port, a worker process, the Kubernetes stand-in."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

import rollbacks.services
from devinfra.processes import free_port
from rollbacks.models import Run, RunState, Step, StepState
from rollbacks.services import StepSpec
from tests.celery_conf import celery_conf_set
from tests.rollbacks.engine_factories import IncidentFactory
from tests.rollbacks.engine_fixtures import (
    PRODUCTION_LIKE,
    SOLO_OPTIONS,
    deployment_revision,
    patches_to,
    wait_for,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]


class PrivateRedis:
    """redis-server on a port of its own, with no persistence: a restart loses every key,
    as a crashed or replaced broker does."""

    def __init__(self, log_dir: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.log = log_dir / "redis.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--save", "", "--appendonly", "no"],
            stdout=self.log.open("a"),
            stderr=subprocess.STDOUT,
        )
        wait_for(self.answers, 10, "redis-server to answer")

    def answers(self) -> bool:
        client = redis.Redis.from_url(self.url, socket_timeout=0.5)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait(timeout=10)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    if server.process is not None and server.process.poll() is None:
        server.kill()


@pytest.mark.parametrize("options", [SOLO_OPTIONS, PRODUCTION_LIKE], ids=["solo", "prefork"])
def test_a_worker_rides_out_a_broker_restart_in_the_middle_of_a_step(
    commander,
    kube,
    kube_service,
    start_worker: Callable[..., Any],
    private_redis,
    isolated_celery,
    options,
    tmp_path,
):
    isolated_celery.close()
    celery_conf_set(isolated_celery, broker_url=private_redis.url)
    kube.set_status_delay(4.0)  # the rollout takes 4 s after the apply
    revision, patches = deployment_revision(kube, "web"), patches_to(kube, "web")
    worker = start_worker(
        "steady",
        options + ("-B", "--schedule", str(tmp_path / "beat")),
        CELERY_BROKER_URL=private_redis.url,
    )

    run = rollbacks.services.run_create(
        incident=IncidentFactory(),
        steps=[StepSpec(service=kube_service, previous=True, timeout_seconds=60)],
        actor=commander,
    )
    run = rollbacks.services.run_request_approval(run=run, actor=commander)
    run = rollbacks.services.run_confirm_and_start(run=run, actor=commander, confirmation="web")
    wait_for(
        lambda: Step.objects.filter(run=run, applied_at__isnull=False).exists(), 20, "the apply"
    )
    private_redis.kill()
    time.sleep(1.0)
    private_redis.start()
    wait_for(lambda: Run.objects.get(pk=run.pk).is_finished, 60, "the run to finish")

    run.refresh_from_db()
    step = run.steps.get()
    assert run.state == RunState.SUCCEEDED, (run.failure_reason, worker.output()[-3000:])
    assert step.state == StepState.SUCCEEDED and step.attempts == 1
    assert patches_to(kube, "web") == patches + 1
    assert deployment_revision(kube, "web") == revision + 1
    time.sleep(2.0)  # the worker has had time to crash, if it would
    assert worker.process.poll() is None, worker.output()[-3000:]
    assert "Unrecoverable error" not in worker.output()
