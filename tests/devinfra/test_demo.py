"""The demo infrastructure: seeded services the backends can read and roll back.

Independent of Django: run with `pytest -p no:django tests/devinfra` or in the whole suite.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from devinfra.demo import (
    DemoInfrastructure,
    environment,
    start_demo_infrastructure,
    write_env_file,
)
from devinfra.processes import free_port
from executors.base import RollbackTarget
from executors.registry import BACKENDS, backend_class
from tests.workers import own_name, own_redis_url

# A Redis database of its own, so a demo running beside the tests keeps its flag.
REDIS_URL = own_redis_url("redis://127.0.0.1:6379/13")
# And a database of its own for the command service's schema.
ORDERS_URL = psycopg.conninfo.make_conninfo(
    os.environ.get("DATABASE_URL") or "postgres://postgres@127.0.0.1:5432/backout",
    dbname=own_name("backout_test_demo_orders"),
)
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoInfrastructure]:
    folder = tmp_path_factory.mktemp("demo")
    infrastructure = start_demo_infrastructure(
        state_file=folder / "demo-infra.json",
        status_delay=0.2,
        redis_url=REDIS_URL,
        orders_url=ORDERS_URL,
    )
    # The tests read the hosted services' live versions with the stand-ins' tokens, as the
    # console's processes do from the env file; none outlives the module.
    with environment(infrastructure.hosted.env() if infrastructure.hosted else {}):
        yield infrastructure
    infrastructure.stop()


@pytest.fixture(scope="module")
def state(demo: DemoInfrastructure) -> dict[str, Any]:
    return json.loads(demo.state_file.read_text())


def read_env_file(path: Path) -> dict[str, str]:
    """The env file's variables, read as a shell sourcing it would."""
    pairs = (shlex.split(line.removeprefix("export "))[0] for line in path.read_text().splitlines())
    return dict(pair.split("=", 1) for pair in pairs)


def backend_for(service: dict[str, Any], demo: DemoInfrastructure) -> Any:
    # A command has nothing to poll: it is done when its process exits.
    polling = {} if service["backend"] == "command" else {"poll_interval": 0.05}
    return backend_class(service["backend"])(service["target_config"], demo.connections, **polling)


def service_named(state: dict[str, Any], name: str) -> dict[str, Any]:
    return next(service for service in state["services"] if service["name"] == name)


def known_good(service: dict[str, Any]) -> dict[str, Any]:
    return [release for release in service["releases"] if release["known_good"]][-1]


def test_state_file_lists_a_service_of_every_infrastructure_backend(state):
    kinds = {service["backend"] for service in state["services"]}

    assert kinds == set(BACKENDS)
    assert {"checkout", "storefront-web", "web-frontend", "status-dns"} <= {
        service["name"] for service in state["services"]
    }


def test_every_service_has_a_slug_a_valid_config_and_a_known_good_release_before_live(state):
    for service in state["services"]:
        assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", service["name"]), service["name"]
        assert service["environment"] == "production"
        backend_class(service["backend"]).validate_config(service["target_config"])
        if service["live_version"] is None:  # a registered command has no version to read
            if service["releases"]:
                assert not service["releases"][-1]["known_good"], service["name"]
            continue
        live = [
            release
            for release in service["releases"]
            if service["live_version"] in (release["artifact"], release["version"])
        ]
        assert len(live) == 1 and not live[0]["known_good"], service["name"]
        assert service["releases"].index(known_good(service)) < service["releases"].index(live[0])


def test_every_live_version_is_what_the_backend_reads_from_the_demo(state, demo):
    for service in state["services"]:
        assert backend_for(service, demo).live_version() == service["live_version"], service


@pytest.mark.parametrize("name", ["storefront-web", "checkout"])  # Kubernetes, ECS
def test_rolling_back_to_the_known_good_release_changes_the_live_version(state, demo, name):
    service = service_named(state, name)
    release = known_good(service)
    backend = backend_for(service, demo)
    target = RollbackTarget(version=release["version"], artifact=release["artifact"])

    assert not backend.plan(target).is_noop
    assert backend.apply(target).changed
    backend.wait(target, deadline=time.monotonic() + 15)

    assert backend.live_version() == release["artifact"] != service["live_version"]


def test_the_dns_service_rolls_back_with_the_saved_record_set_and_to_maintenance(state, demo):
    service = service_named(state, "status-dns")
    release = known_good(service)
    backend = backend_for(service, demo)
    # What the console drafts when the commander picks the known-good release and no option.
    params = backend.validate_params({"backup": release["backup"]["record_sets"]})
    target = RollbackTarget(version=release["version"], params=params)
    assert backend.apply(target).changed
    backend.wait(target, deadline=time.monotonic() + 15)
    assert backend.live_version() == release["artifact"]

    maintenance = RollbackTarget(params=backend.validate_params({"mode": "maintenance"}))
    assert backend.apply(maintenance).changed
    assert "maintenance.backout-demo.example.net" in str(backend.live_version())


def test_the_command_service_moves_the_orders_schema_back_and_its_check_agrees(state, demo):
    service = service_named(state, "orders-schema")
    backend = backend_for(service, demo)
    options = {option.name for option in backend.option_fields()}
    assert options == {"migration"}  # the app is fixed by the service
    target = RollbackTarget(params=backend.validate_params({"migration": "0041_order_totals"}))
    lines: list[str] = []

    backend.apply(target, log=lines.append)

    assert lines[-1] == "unapplied orders.0042_split_addresses"
    assert [check.status.value for check in backend.checks(target)] == ["passed"]
    with psycopg.connect(ORDERS_URL) as connection:
        columns = connection.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'addresses'"
        ).fetchall()
    assert sorted(column for (column,) in columns) == ["line", "order_id"]


def test_good_kubernetes_releases_carry_the_manifest_that_ran_them(state, demo):
    service = service_named(state, "storefront-api")  # not rolled back by the tests above
    release = known_good(service)
    manifest = release["backup"]["manifest"]
    assert manifest["kind"] == "Deployment"
    assert manifest["metadata"]["name"] == service["target_config"]["deployment"]
    assert manifest["spec"]["template"]["spec"]["containers"][0]["image"] == release["artifact"]
    params = backend_for(service, demo).validate_params(
        {"operation": "apply_manifest", "manifest": manifest}
    )
    plan = backend_for(service, demo).plan(RollbackTarget(params=params))
    assert [change.attribute for change in plan.changes] == ["image"]


def test_env_file_names_the_demo_servers_with_absolute_paths(demo, tmp_path):
    env_file = tmp_path / "demo.env"

    write_env_file(env_file, demo)

    lines = env_file.read_text().splitlines()
    assert all(line.startswith("export ") for line in lines)
    env = read_env_file(env_file)
    assert env == {
        "AWS_ENDPOINT_URL": demo.moto.url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "KUBECONFIG": str(demo.kubeconfig.resolve()),
        "DEMO_INFRA_FILE": str(demo.state_file.resolve()),
        "REGISTERED_COMMANDS_FILE": str(demo.commands_file.resolve()),
        # The decision helper's signals come from the demo's Prometheus.
        **({"PROMETHEUS_URL": demo.prometheus.url} if demo.prometheus else {}),
        # The tokens the hosted stand-ins accept, and where PagerDuty events go.
        **(demo.hosted.env() if demo.hosted else {}),
    }
    assert {"PAGERDUTY_ROUTING_KEY", "PAGERDUTY_EVENTS_URL", "DEMO_GITHUB_TOKEN"} <= set(env)
    assert Path(env["KUBECONFIG"]).is_file()
    assert "orders-migrate" in json.loads(Path(env["REGISTERED_COMMANDS_FILE"]).read_text())


def start_serving(env_file: Path, *arguments: str) -> subprocess.Popen[str]:
    """`python -m devinfra.demo serve` as bin/demo runs it, with folders of the test's own."""
    return subprocess.Popen(
        [sys.executable, "-m", "devinfra.demo", "serve", "--env-file", str(env_file)]
        + ["--state", str(env_file.with_name("demo-infra.json")), "--redis-url", REDIS_URL]
        + ["--orders-database-url", ORDERS_URL, *arguments],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_for_env_file(process: subprocess.Popen[str], env_file: Path) -> dict[str, str]:
    deadline = time.monotonic() + 30
    while not env_file.exists():
        assert process.poll() is None, process.communicate()[0]
        assert time.monotonic() < deadline, "no env file after 30 s"
        time.sleep(0.1)
    return read_env_file(env_file)


def stop_serving(process: subprocess.Popen[str]) -> str:
    """SIGTERM, as bin/demo stops it; what it printed."""
    try:
        process.send_signal(signal.SIGTERM)
        return process.communicate(timeout=20)[0]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_serve_writes_the_env_file_when_ready_and_cleans_up_on_sigterm(tmp_path):
    env_file = tmp_path / "demo.env"
    process = start_serving(env_file)
    try:
        env = wait_for_env_file(process, env_file)
        moto_port = int(env["AWS_ENDPOINT_URL"].rpartition(":")[2])
    finally:
        output = stop_serving(process)

    assert process.returncode == 0, output
    assert not env_file.exists()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", moto_port), timeout=1).close()


@pytest.mark.parametrize("sso", [True, False])  # bin/demo, and DEMO_SSO=0 ./bin/demo
def test_the_console_port_brings_the_alertmanager_whether_or_not_sso_is_on(tmp_path, sso):
    env_file = tmp_path / "demo.env"
    console_port = str(free_port())
    process = start_serving(
        env_file, "--console-port", console_port, *([] if sso else ["--no-sso"])
    )
    try:
        env = wait_for_env_file(process, env_file)
    finally:
        output = stop_serving(process)

    assert process.returncode == 0, output
    assert env.get("DEMO_ALERTMANAGER_TOKEN", "").startswith("bko_"), output  # alerts come in
    assert ("OIDC_RP_CLIENT_ID" in env) is sso
    assert "Alertmanager" in output and ("SSO provider" in output) is sso  # the summary
