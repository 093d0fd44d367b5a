"""Full runs of the Docker Swarm backend against the Engine stand-in, seeded by the demo's
own seed (search-api: 1.9.0, bad, in its Spec; 1.8.0, known-good, in its PreviousSpec): the
commander drafts in the console, previews, the on-call approver approves, the commander
types the confirmation, a Celery worker in its own process posts the rollback over TCP or
the Unix socket and follows UpdateStatus and the tasks, and the step's checks and the
verification round decide, every stage on the timeline."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest

from devinfra.demo_hosted import HostedSeed
from devinfra.hosted.docker_engine import DEMO_SERVICE, DockerEngineStandin, demo_image, seed_demo
from executors.base import Connections
from rollbacks.models import Run, RunState
from tests.rollbacks.full_runs.conftest import console_service
from tests.rollbacks.full_runs.console import assert_recorded

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(120),
    pytest.mark.usefixtures("policies"),
]
SWARM_CHECKS = ["image matches target", "update settled", "tasks running the image"]
UPDATES = r"/v1\.45/services/[^/]+/update"


@pytest.fixture
def swarm() -> Iterator[HostedSeed]:
    """The demo's Engine stand-in and search-api, rollouts settling in 0.6 s."""
    seed = seed_demo(Connections(), settle_seconds=0.6)
    yield seed
    seed.standin.stop()


@pytest.fixture
def engine(swarm: HostedSeed) -> DockerEngineStandin:
    assert isinstance(swarm.standin, DockerEngineStandin)
    return swarm.standin


@pytest.fixture
def socket_path(engine: DockerEngineStandin) -> Iterator[str]:
    """The stand-in also served on a Unix socket (a short path: at most 108 bytes)."""
    folder = tempfile.mkdtemp(prefix="dkr", dir="/tmp")
    engine.start_unix(f"{folder}/docker.sock")
    yield engine.unix_host
    shutil.rmtree(folder, ignore_errors=True)


def test_the_service_goes_back_to_the_known_good_release(
    console, swarm, engine, health, incident, start_worker
):
    service = console_service(swarm.services[0], health.url)
    good = service.releases.get(version="1.8.0")
    start_worker("swarm")

    run = console.draft(incident(service), service, str(good.pk), {})
    preview = console.dry_run(run)
    assert f"back to its PreviousSpec: {demo_image('1.9.0')} → {demo_image('1.8.0')}" in preview
    assert engine.calls("POST", UPDATES) == []
    run = console.approve_and_run(run)

    assert_recorded(run, step_checks=SWARM_CHECKS)
    assert engine.find(DEMO_SERVICE).image == good.artifact
    assert len(engine.calls("POST", UPDATES)) == 1
    step = run.steps.get()
    assert step.reached_version == "1.8.0"
    assert step.apply_facts["from_image"] == demo_image("1.9.0")
    lines = [line.line for line in step.log_lines.all()]
    assert any("rollback_started (manually requested rollback)" in line for line in lines)
    assert any(
        "rollback_completed (rollback completed); 3/3 tasks running" in line for line in lines
    )


def test_previous_goes_back_over_the_unix_socket(
    console, swarm, engine, socket_path, health, incident, start_worker
):
    demo = swarm.services[0]
    service = console_service(demo, health.url)
    service.target_config["docker_host"] = socket_path
    service.full_clean()
    service.save()
    start_worker("swarm")

    run = console.draft(incident(service), service, "previous", {})
    assert run.steps.get().params == {"image": demo_image("1.8.0")}
    run = console.approve_and_run(run)

    assert_recorded(run, step_checks=SWARM_CHECKS)
    assert engine.find(DEMO_SERVICE).image == demo_image("1.8.0")
    assert {call.headers.get("host") for call in engine.calls("POST", UPDATES)} == {"localhost"}


def test_a_rollback_that_pauses_fails_the_run_with_the_engines_message(
    console, swarm, engine, health, incident, start_worker
):
    engine.failing_images.add(demo_image("1.8.0"))
    service = console_service(swarm.services[0], health.url)
    start_worker("swarm")

    run = console.draft(incident(service), service, "previous", {})
    run = console.approve_and_run(run)

    assert run.state == RunState.FAILED
    assert "rollback_paused: rollback paused due to failure or early termination of task" in (
        run.failure_reason
    )
    assert run.steps.get().attempts == 1


def refused(console: Any, opened: Any, service: Any, target: str, **options: str) -> str:
    return console.draft_refused(opened, service, target, options)


def test_what_a_swarm_rollback_cannot_reach_is_refused_when_drafted(
    console, swarm, engine, health, incident
):
    service = console_service(swarm.services[0], health.url)
    opened = incident(service)
    older = service.releases.get(version="1.7.3")

    assert refused(console, opened, service, str(older.pk)) == (
        f"{DEMO_SERVICE}: image: Swarm service {DEMO_SERVICE}: PreviousSpec runs "
        f"{demo_image('1.8.0')}, not {demo_image('1.7.3')}; a Swarm rollback returns only to "
        f"PreviousSpec (it runs {demo_image('1.9.0')})"
    )
    assert refused(console, opened, service, "options", image="検索:1.8.0 🚀").startswith(
        f"{DEMO_SERVICE}: image: must be an image reference"
    )
    assert refused(console, opened, service, "options", image="a" * 401) == (
        f"{DEMO_SERVICE}: image: must be at most 400 characters"
    )
    engine.swarm_manager = False
    assert refused(console, opened, service, "previous").startswith(
        f"{DEMO_SERVICE}: docker_host: docker_host {engine.tcp_host} is not a Swarm manager"
    )
    engine.swarm_manager = True
    engine.services.clear()
    assert refused(console, opened, service, "previous") == (
        f"{DEMO_SERVICE}: service: no service {DEMO_SERVICE} on {engine.tcp_host} "
        f"(the Engine answers: service {DEMO_SERVICE} not found)"
    )
    assert not Run.objects.filter(incident=opened).exists()
    assert engine.calls("POST", UPDATES) == []
