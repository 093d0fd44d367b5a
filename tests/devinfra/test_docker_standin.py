"""The Docker Engine stand-in answers as the Engine does: the real docker CLI rolls its
service back, and its errors have the Engine's status and wording."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import urllib.error
import urllib.request
from typing import Any

import pytest

from devinfra.hosted.docker_engine import API_VERSION, DockerEngineStandin, demo_image, seed_demo
from executors.base import Connections
from executors.registry import backend_class

GOOD, BAD = "registry.example.com/search/api:1.8.0", "registry.example.com/search/api:1.9.0"


def call(standin: DockerEngineStandin, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"{standin.url}{path}", data=data, method=method)
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.mark.skipif(shutil.which("docker") is None, reason="no docker CLI on this machine")
def test_the_docker_cli_rolls_the_service_back_through_the_standin(docker_engine, tmp_path):
    service = docker_engine.add_service("search-api", [GOOD, BAD])
    version = service.index
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "DOCKER_CONFIG": str(tmp_path)}

    done = subprocess.run(
        ["docker", "-H", docker_engine.unix_host, "service", "rollback", "--detach", "search-api"],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
    )

    assert done.returncode == 0, done.stderr
    [update] = docker_engine.calls("POST", r"/v[0-9.]+/services/[^/]+/update")
    assert update.path == f"/v{API_VERSION}/services/{service.id}/update"
    assert update.query == {"rollback": "previous", "version": str(version)}
    assert docker_engine.find("search-api").image == GOOD


def test_an_update_at_an_old_version_is_out_of_sequence(docker_engine):
    service = docker_engine.add_service("search-api", [GOOD, BAD])
    spec = service.as_json()["Spec"]
    path = f"/v1.45/services/{service.id}/update?rollback=previous&version="

    assert call(docker_engine, "POST", path + str(service.index - 1), spec) == (
        500,
        {"message": "rpc error: code = Unknown desc = update out of sequence"},
    )
    assert call(docker_engine, "POST", path + str(service.index), spec) == (200, {"Warnings": []})


def test_errors_have_the_engines_status_and_message(docker_engine):
    assert call(docker_engine, "GET", "/v1.45/services/nothing") == (
        404,
        {"message": "service nothing not found"},
    )
    status, body = call(docker_engine, "GET", "/v1.99/services/nothing")
    assert (status, body["message"]) == (
        400,
        "client version 1.99 is too new. Maximum supported API version is 1.45",
    )
    docker_engine.swarm_manager = False
    status, body = call(docker_engine, "GET", "/v1.45/tasks")
    assert status == 503 and body["message"].startswith("This node is not a swarm manager.")


def test_tasks_are_filtered_by_service_and_desired_state_in_either_filter_form(docker_engine):
    service = docker_engine.add_service("search-api", [GOOD], replicas=3)
    docker_engine.add_service("other", [BAD])
    filters = [
        {"service": ["search-api"], "desired-state": ["running"]},
        {"service": {service.id: True}, "desired-state": {"running": True}},
    ]
    for given in filters:
        query = urllib.request.quote(json.dumps(given))
        status, tasks = call(docker_engine, "GET", f"/v1.45/tasks?filters={query}")
        assert status == 200
        assert sorted(t["Slot"] for t in tasks) == [1, 2, 3]
        assert {t["ServiceID"] for t in tasks} == {service.id}


def test_the_demo_seed_serves_search_api_at_a_bad_image_with_a_good_previous_spec():
    seed = seed_demo(Connections(), settle_seconds=0.1)
    try:
        [demo] = seed.services
        assert seed.env == {}
        backend = backend_class(demo.backend)(demo.target_config, Connections())
        assert backend.live_version() == demo.live_version == demo_image("1.9.0")
        known_good = [r.version for r in demo.releases if r.known_good]
        assert known_good == ["1.7.3", "1.8.0"]
        assert backend.validate_params({}, live=True) == {"image": demo_image("1.8.0")}
    finally:
        seed.standin.stop()
