"""The production layout's files (deploy/, docs/deploy.md) hold together.

The Kubernetes manifests are checked field by field against the official client's models
(generated from the API's OpenAPI schema) and the systemd units with `systemd-analyze
verify`; every command they run is parsed by the program that runs it and must be the
command devinfra/cluster.py runs in the tests; every environment variable they set is one
console/settings.py reads, and .env.example names each of those.
"""

from __future__ import annotations

import ast
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import kubernetes.client
import pytest
import uvicorn
import yaml
from celery.bin.base import CLIContext
from celery.bin.celery import celery as celery_cli
from django.core.management import get_commands, load_command_class

from console.celery import app as celery_app
from devinfra.cluster import beat_command, web_command, worker_command

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
UNIT_PYTHON = "/opt/backout/.venv/bin/python"


def settings_environment() -> set[str]:
    """Every environment variable console/settings.py reads, found in its source."""
    tree = ast.parse((ROOT / "console" / "settings.py").read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            called = ast.unparse(node.func)
            if called in {"os.environ.get", "env_bool", "env_list"}:
                names.add(node.args[0].value)
        elif (
            isinstance(node, ast.Subscript)
            and ast.unparse(node.value) == "os.environ"
            and isinstance(node.slice, ast.Constant)
        ):
            names.add(node.slice.value)
    return names


# -- Kubernetes --------------------------------------------------------------------------------


def manifests() -> list[dict[str, Any]]:
    documents = []
    for path in sorted((DEPLOY / "kubernetes").glob("*.yaml")):
        documents += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    return documents


def of_kind(kind: str) -> list[dict[str, Any]]:
    return [doc for doc in manifests() if doc["kind"] == kind]


def containers(workload: dict[str, Any]) -> list[dict[str, Any]]:
    pod = workload["spec"]["template"]["spec"]
    return [*pod.get("initContainers", []), *pod["containers"]]


def schema_problems(value: Any, type_name: str, where: str) -> list[str]:
    """Where `value` strays from the client's model `type_name`: unknown fields, wrong types."""
    if type_name.startswith("List["):
        if not isinstance(value, list):
            return [f"{where}: a list expected"]
        items = {f"{where}[{index}]": item for index, item in enumerate(value)}
        return [p for at, item in items.items() for p in schema_problems(item, type_name[5:-1], at)]
    if type_name.startswith("Dict["):
        if not isinstance(value, dict):
            return [f"{where}: a mapping expected"]
        inner = type_name[5:-1].partition(", ")[2]
        items = {f"{where}.{key}": item for key, item in value.items()}
        return [p for at, item in items.items() for p in schema_problems(item, inner, at)]
    if type_name == "object":  # int-or-string and the like
        return []
    scalar = {"str": str, "bytes": str, "datetime": str, "int": int, "bool": bool, "float": float}
    if type_name in scalar:
        # bool is an int to Python, never to the API.
        ok = isinstance(value, scalar[type_name])
        ok = ok and (type_name == "bool") == isinstance(value, bool)
        return [] if ok else [f"{where}: {type_name} expected, found {value!r}"]
    model = getattr(kubernetes.client, type_name)
    if not isinstance(value, dict):
        return [f"{where}: a {type_name} mapping expected"]
    fields = {json_name: name for name, json_name in model.attribute_map.items()}
    problems = []
    for key, item in value.items():
        if key not in fields:
            problems.append(f"{where}.{key}: {type_name} has no such field")
        else:
            problems += schema_problems(item, model.openapi_types[fields[key]], f"{where}.{key}")
    return problems


def _named(document: dict[str, Any]) -> str:
    return f"{document['kind']}/{document['metadata']['name']}"


@pytest.mark.parametrize("document", manifests(), ids=_named)
def test_each_manifest_matches_the_kubernetes_api_schema(document: dict[str, Any]) -> None:
    model = f"V1{document['kind']}"
    assert document["apiVersion"].endswith("v1") and hasattr(kubernetes.client, model)

    assert schema_problems(document, model, document["kind"]) == []
    # The models (pydantic) refuse a missing required field, such as a container's name.
    getattr(kubernetes.client, model).from_dict(document)


def test_manifests_set_only_environment_variables_the_settings_read() -> None:
    set_here = set()
    for config in of_kind("ConfigMap"):
        set_here |= set(config["data"])
    for secret in of_kind("Secret"):
        set_here |= set(secret["stringData"])
    for workload in of_kind("Deployment") + of_kind("Job"):
        for container in containers(workload):
            set_here |= {variable["name"] for variable in container.get("env", [])}
            sources = [ref for source in container["envFrom"] for ref in source.values()]
            assert sources == [{"name": "backout-config"}, {"name": "backout-secrets"}]

    assert set_here - settings_environment() == set()
    assert {"SECRET_KEY", "DATABASE_URL", "REDIS_URL", "ALLOWED_HOSTS", "DEBUG"} <= set_here


def test_manifests_pass_django_deployment_checks() -> None:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "console.settings"}
    for config in of_kind("ConfigMap") + of_kind("Secret"):
        env.update(config.get("data", {}) | config.get("stringData", {}))
    env["SECRET_KEY"] = "s" * 30 + "a-strong-key-from-the-secret-store-0f9e8d7c6b5a"

    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_web_pods_are_probed_on_healthz_and_readyz_with_an_allowed_host() -> None:
    [web] = [doc for doc in of_kind("Deployment") if doc["metadata"]["name"] == "backout-web"]
    [container] = containers(web)
    allowed = {host for c in of_kind("ConfigMap") for host in c["data"]["ALLOWED_HOSTS"].split(",")}

    probes = {kind: container[kind]["httpGet"] for kind in ("livenessProbe", "readinessProbe")}
    assert probes["livenessProbe"]["path"] == "/healthz"
    assert probes["readinessProbe"]["path"] == "/readyz"
    for probe in probes.values():
        hosts = {header["value"] for header in probe["httpHeaders"] if header["name"] == "Host"}
        assert hosts and hosts <= allowed


def test_every_container_asks_for_resources_and_caps_its_memory() -> None:
    for workload in of_kind("Deployment") + of_kind("Job"):
        for container in containers(workload):
            resources = container["resources"]
            assert {"cpu", "memory"} <= set(resources["requests"]), workload["metadata"]["name"]
            assert "memory" in resources["limits"], workload["metadata"]["name"]


def test_exactly_one_beat_and_every_queue_consumed() -> None:
    commands = [c["command"] for w in of_kind("Deployment") for c in containers(w)]
    beats = [w for w in of_kind("Deployment") if "beat" in containers(w)[0]["command"]]
    assert [(w["spec"]["replicas"], w["spec"]["strategy"]["type"]) for w in beats] == [
        (1, "Recreate")
    ]
    consumed = {option(command, "--queues") for command in commands if "worker" in command}
    assert consumed == set(celery_app.amqp.queues)


# -- systemd -------------------------------------------------------------------------------------


def unit_entries(path: Path) -> dict[str, list[str]]:
    """`Section.Key` → its values, in order (a oneshot may have several ExecStart)."""
    entries: dict[str, list[str]] = {}
    section = ""
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        entries.setdefault(f"{section}.{key}", []).append(value)
    return entries


UNITS = sorted((DEPLOY / "systemd").iterdir())


def unit_commands(path: Path) -> Iterator[list[str]]:
    """The Python commands a unit runs (signals sent with /bin/kill left out)."""
    for key in ("Service.ExecStartPre", "Service.ExecStart", "Service.ExecReload"):
        for line in unit_entries(path).get(key, []):
            argv = shlex.split(line.replace("%i", "steps").replace("%H", "host"))
            if argv[0] != "/bin/kill":
                yield argv


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_systemd_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    for unit in UNITS:
        text = unit.read_text().replace(UNIT_PYTHON, sys.executable)
        (tmp_path / unit.name).write_text(text.replace("/opt/backout", str(ROOT)))
    names = [f"./{u.name}".replace("@.service", "@steps.service") for u in UNITS]

    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *names],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_systemd_units_set_only_environment_variables_the_settings_read() -> None:
    set_here = {
        assignment.partition("=")[0]
        for unit in UNITS
        for line in unit_entries(unit).get("Service.Environment", [])
        for assignment in shlex.split(line)
    }
    assert set_here and set_here - settings_environment() == set()


def test_the_beat_unit_is_the_only_one_running_beat() -> None:
    running_beat = [u.name for u in UNITS for c in unit_commands(u) if "beat" in c]
    assert running_beat == ["backout-beat.service"]


# -- the commands --------------------------------------------------------------------------------


def option(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def deploy_commands() -> list[list[str]]:
    found = [c["command"] for w in of_kind("Deployment") + of_kind("Job") for c in containers(w)]
    for unit in UNITS:
        for argv in unit_commands(unit):
            found.append(["python" if arg == UNIT_PYTHON else arg for arg in argv])
    return found


@pytest.mark.parametrize("argv", deploy_commands(), ids=lambda argv: " ".join(argv[:6]))
def test_each_command_parses_and_is_the_one_the_tests_run(argv: list[str]) -> None:
    assert argv[0] == "python"
    if argv[1] == "manage.py":
        name, *rest = argv[2:]
        command = load_command_class(get_commands()[name], name)
        command.create_parser("manage.py", name).parse_args(rest)
        return
    assert argv[1] == "-m"
    program, *rest = argv[2:]
    if program == "uvicorn":
        params = uvicorn.main.make_context("uvicorn", list(rest)).params
        assert argv == web_command(
            "python", host=params["host"], port=params["port"], workers=params["workers"]
        )
        return
    assert program == "celery" and rest[:2] == ["-A", "console"]
    name, arguments = rest[2], rest[3:]
    assert name in {"worker", "beat"}
    group = celery_cli.make_context("celery", list(rest))
    group.obj = CLIContext(app=celery_app, no_color=True, workdir=None, quiet=True)
    celery_cli.commands[name].make_context(name, arguments, parent=group)
    if name == "worker":
        expected = worker_command(
            "python",
            hostname=option(argv, "--hostname"),
            concurrency=int(option(argv, "--concurrency")),
            queues=option(argv, "--queues"),
        )
    else:
        expected = beat_command("python", schedule=Path(option(argv, "--schedule")))
    assert argv == expected


def test_a_command_with_an_unknown_option_is_refused() -> None:
    # The check above would pass anything if the parsers accepted anything.
    with pytest.raises(click.UsageError):
        uvicorn.main.make_context("uvicorn", ["console.asgi:application", "--no-such-option"])


# -- the documents -------------------------------------------------------------------------------


def test_docs_deploy_names_every_file_under_deploy() -> None:
    guide = (ROOT / "docs" / "deploy.md").read_text()
    files = [p.relative_to(ROOT).as_posix() for p in DEPLOY.rglob("*") if p.is_file()]
    assert files and [name for name in files if name not in guide] == []


def test_env_example_names_every_variable_the_settings_read() -> None:
    example = (ROOT / ".env.example").read_text()
    missing = [n for n in sorted(settings_environment()) if not re.search(rf"\b{n}\b", example)]
    assert missing == []
