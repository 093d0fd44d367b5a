"""A stand-in for the Docker Engine API v1.45 (Docker 26) on a Swarm manager: the calls
`docker service update --rollback` and `docker service ps` make, over TCP on 127.0.0.1, a
Unix socket (`start_unix(path)`) and TLS (`start_tls(cert, key, client_ca=...)`).

Paths, with or without the `/v1.45` prefix (a newer version is refused as the Engine
does): `GET /_ping`, `GET /services/{id or name}`, `POST /services/{id}/update?version=N
[&rollback=previous]` with a ServiceSpec body, `GET /tasks?filters={"service": [...],
"desired-state": [...]}`. No auth (the Engine has none); errors are `{"message": ...}`.

What it keeps per service: Spec, PreviousSpec, Version.Index (moved by every write,
including the UpdateStatus changes a rollout makes, as swarmkit's store does), UpdateStatus
and tasks. An update posted at another version than the current one is refused with the
Engine's 500 "update out of sequence". `rollback=previous` swaps Spec and PreviousSpec and
sets UpdateStatus `rollback_started` ("manually requested rollback"); a plain update makes
the body the Spec and sets `updating`. Reads then move the rollout on: the tasks are replaced
slot by slot over `settle_seconds`, and the state becomes `rollback_completed` (or
`completed`). A task of an image in `failing_images` fails, and the rollout stops as
`rollback_paused` (or `paused`) with the message swarmkit gives.

Faults for tests, besides the frame's: `swarm_manager = False` answers every swarm call
503 "This node is not a swarm manager", and `move_version_before_update()` makes another
client's write land between the next read and update.
"""

from __future__ import annotations

import copy
import datetime
import itertools
import json
import os
import secrets
import socketserver
import ssl
import threading
import time
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from typing import Any, ClassVar

from devinfra.demo_hosted import HostedSeed
from devinfra.demo_services import DemoRelease, DemoService
from devinfra.hosted.server import Answer, Request, Standin, StandinError
from executors.base import Connections

API_VERSION = "1.45"
NOT_MANAGER = (
    'This node is not a swarm manager. Use "docker swarm init" or "docker swarm join" to '
    "connect this node to swarm and try again."
)
_V = r"(?:/v(?P<api>[0-9]+\.[0-9]+))?"


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _spec(name: str, image: str, replicas: int) -> dict[str, Any]:
    return {
        "Name": name,
        "Labels": {"com.docker.stack.namespace": "demo"},
        "TaskTemplate": {
            "ContainerSpec": {"Image": image, "Env": ["SEARCH_INDEX=products"]},
            "RestartPolicy": {"Condition": "any", "MaxAttempts": 0},
            "ForceUpdate": 0,
        },
        "Mode": {"Replicated": {"Replicas": replicas}},
        "UpdateConfig": {"Parallelism": 1, "FailureAction": "pause", "Order": "stop-first"},
        "RollbackConfig": {"Parallelism": 1, "FailureAction": "pause", "Order": "stop-first"},
    }


@dataclass
class SwarmService:
    """One service as the swarm's store holds it."""

    id: str
    spec: dict[str, Any]
    previous_spec: dict[str, Any] | None
    index: int
    update_status: dict[str, Any] | None = None
    tasks: list[dict[str, Any]] = field(default_factory=list)
    created_at: str = field(default_factory=_now)
    updated_at: str = field(default_factory=_now)
    # When the rollout in progress began (monotonic), and whether it is a rollback.
    rollout_began: float | None = None
    rolling_back: bool = False

    @property
    def name(self) -> str:
        return str(self.spec["Name"])

    @property
    def image(self) -> str:
        return str(self.spec["TaskTemplate"]["ContainerSpec"]["Image"])

    @property
    def replicas(self) -> int:
        return int(((self.spec.get("Mode") or {}).get("Replicated") or {}).get("Replicas", 1))

    def as_json(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            "ID": self.id,
            "Version": {"Index": self.index},
            "CreatedAt": self.created_at,
            "UpdatedAt": self.updated_at,
            "Spec": copy.deepcopy(self.spec),
            "Endpoint": {"Spec": {}},
        }
        if self.previous_spec is not None:
            document["PreviousSpec"] = copy.deepcopy(self.previous_spec)
        if self.update_status is not None:
            document["UpdateStatus"] = dict(self.update_status)
        return document


class DockerEngineStandin(Standin):
    """The Engine API of a Swarm manager; `services` by ID."""

    name = "docker-engine"
    routes: ClassVar[list[tuple[str, str, str]]] = [
        ("GET", f"{_V}/_ping", "ping"),
        ("GET", f"{_V}/services/(?P<ref>[^/]+)", "inspect"),
        ("POST", f"{_V}/services/(?P<ref>[^/]+)/update", "update"),
        ("GET", f"{_V}/tasks", "list_tasks"),
    ]

    def __init__(self, *, settle_seconds: float = 0.5) -> None:
        super().__init__(token="")
        self.settle_seconds = settle_seconds
        self.swarm_manager = True
        self.failing_images: set[str] = set()
        self.services: dict[str, SwarmService] = {}
        self._moves_before_update = 0
        self._index = itertools.count(100)
        # The Unix socket and TLS listeners beside the frame's TCP one.
        self._listeners: list[socketserver.BaseServer] = []
        self.socket_path: str | None = None
        self.tls_port: int | None = None

    def authorized(self, request: Request) -> bool:
        """The Engine has no tokens: reaching it is the authority."""
        return True

    # -- serving on a Unix socket and over TLS -----------------------------------------------

    def _listen(self, server: socketserver.BaseServer, what: str) -> None:
        server.daemon_threads = True  # type: ignore[attr-defined]
        self._listeners.append(server)
        threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},  # stop() waits for a poll
            name=f"{self.name}-{what}",
            daemon=True,
        ).start()

    def start_unix(self, path: str) -> DockerEngineStandin:
        """Serve the same API on the Unix socket `path` too (created; removed by stop())."""
        if os.path.exists(path):
            os.unlink(path)
        self._listen(socketserver.ThreadingUnixStreamServer(path, self.handler_class()), "unix")
        self.socket_path = path
        return self

    def start_tls(
        self, certfile: str, keyfile: str, *, client_ca: str | None = None
    ) -> DockerEngineStandin:
        """Serve the same API over TLS on another free port of 127.0.0.1, with the server
        certificate `certfile`; with `client_ca`, only to clients whose certificate it signed
        (the Engine's --tlsverify)."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(certfile, keyfile)
        if client_ca:
            context.load_verify_locations(client_ca)
            context.verify_mode = ssl.CERT_REQUIRED
        server = ThreadingHTTPServer(("127.0.0.1", 0), self.handler_class())
        server.socket = context.wrap_socket(server.socket, server_side=True)
        self.tls_port = server.server_address[1]
        self._listen(server, "tls")
        return self

    @property
    def tcp_host(self) -> str:
        """The docker_host of its TCP listener: tcp://127.0.0.1:<port>."""
        return "tcp://" + self.url.removeprefix("http://")

    @property
    def unix_host(self) -> str:
        """The docker_host of its Unix socket: unix://<path>."""
        assert self.socket_path is not None, "start_unix() it first"
        return f"unix://{self.socket_path}"

    @property
    def tls_host(self) -> str:
        """The docker_host of its TLS listener: https://127.0.0.1:<port>."""
        assert self.tls_port is not None, "start_tls() it first"
        return f"https://127.0.0.1:{self.tls_port}"

    def stop(self) -> None:
        for server in self._listeners:
            server.shutdown()
            server.server_close()
        self._listeners = []
        if self.socket_path and os.path.exists(self.socket_path):
            os.unlink(self.socket_path)
        super().stop()

    # -- seeding and faults ----------------------------------------------------------------------

    def add_service(self, name: str, images: list[str], *, replicas: int = 2) -> SwarmService:
        """A settled service created with `images[0]` and updated to each later image: the
        last is its Spec, the one before its PreviousSpec."""
        with self.lock:
            specs = [_spec(name, image, replicas) for image in images]
            service = SwarmService(
                id=secrets.token_hex(13)[:25],
                spec=specs[-1],
                previous_spec=specs[-2] if len(specs) > 1 else None,
                index=next(self._index),
            )
            if len(specs) > 1:
                service.update_status = {
                    "State": "completed",
                    "StartedAt": _now(),
                    "CompletedAt": _now(),
                    "Message": "update completed",
                }
            for slot in range(1, replicas + 1):
                service.tasks.append(self._task(service, slot, service.image, "running"))
            self.services[service.id] = service
            return service

    def move_version_before_update(self, count: int = 1) -> None:
        """Let another client's write land before each of the next `count` updates."""
        with self.lock:
            self._moves_before_update += count

    def find(self, ref: str) -> SwarmService:
        """A service by ID, name or unique ID prefix; the Engine's 404 otherwise."""
        with self.lock:
            if ref in self.services:
                return self.services[ref]
            found = [s for s in self.services.values() if s.name == ref] or [
                s for s in self.services.values() if s.id.startswith(ref)
            ]
            if len(found) != 1:
                raise StandinError(404, f"service {ref} not found")
            return found[0]

    # -- the rollout -----------------------------------------------------------------------------

    def _task(self, service: SwarmService, slot: int, image: str, state: str) -> dict[str, Any]:
        failed = state == "failed"
        return {
            "ID": secrets.token_hex(13)[:25],
            "Version": {"Index": next(self._index)},
            "CreatedAt": _now(),
            "UpdatedAt": _now(),
            "Labels": {},
            "Spec": {"ContainerSpec": {"Image": image}},
            "ServiceID": service.id,
            "Slot": slot,
            "NodeID": "standinnode0000000000000",
            "Status": {
                "Timestamp": _now(),
                "State": state,
                "Message": "started",
                **({"Err": "task: non-zero exit (1)"} if failed else {}),
                "ContainerStatus": {"ExitCode": 1 if failed else 0},
            },
            "DesiredState": "shutdown" if failed else "running",
        }

    def _write(self, service: SwarmService) -> None:
        service.index = next(self._index)
        service.updated_at = _now()

    def _advance(self, service: SwarmService) -> None:
        """Move the rollout in progress on to where `settle_seconds` say it is by now."""
        if service.rollout_began is None:
            return
        replicas = max(service.replicas, 1)
        elapsed = time.monotonic() - service.rollout_began
        settle = max(self.settle_seconds, 1e-6)
        due = min(replicas, int(elapsed / settle * replicas))
        for slot in range(1, due + 1):
            wanted = [
                t for t in service.tasks if t["Slot"] == slot and t["DesiredState"] == "running"
            ]
            if any(t["Spec"]["ContainerSpec"]["Image"] == service.image for t in wanted):
                continue
            for old in wanted:
                old["DesiredState"] = "shutdown"
                old["Status"] = {**old["Status"], "State": "shutdown", "Timestamp": _now()}
            fails = service.image in self.failing_images
            task = self._task(service, slot, service.image, "failed" if fails else "running")
            service.tasks.append(task)
            if fails:
                self._finish(
                    service,
                    "paused",
                    f"paused due to failure or early termination of task {task['ID']}",
                )
                return
        if due >= replicas:
            self._finish(service, "completed", "completed")

    def _finish(self, service: SwarmService, how: str, detail: str) -> None:
        prefix = "rollback" if service.rolling_back else "update"
        state = f"rollback_{how}" if service.rolling_back else how
        service.update_status = {
            **(service.update_status or {}),
            "State": state,
            "Message": f"{prefix} {detail}",
            **({"CompletedAt": _now()} if how == "completed" else {}),
        }
        service.rollout_began = None
        self._write(service)

    # -- routes ------------------------------------------------------------------------------------

    def _check(self, request: Request, *, swarm: bool = True) -> None:
        asked = request.params.get("api")
        if asked and tuple(map(int, asked.split("."))) > tuple(map(int, API_VERSION.split("."))):
            raise StandinError(
                400,
                f"client version {asked} is too new. Maximum supported API version is "
                f"{API_VERSION}",
            )
        if swarm and not self.swarm_manager:
            raise StandinError(503, NOT_MANAGER)

    def ping(self, request: Request) -> Answer:
        self._check(request, swarm=False)
        headers = {
            "Content-Type": "text/plain; charset=utf-8",
            "API-Version": API_VERSION,
            "OSType": "linux",
            "Swarm": "active/manager" if self.swarm_manager else "inactive",
        }
        return Answer(200, b"OK", headers)

    def inspect(self, request: Request) -> Any:
        self._check(request)
        with self.lock:
            service = self.find(request.params["ref"])
            self._advance(service)
            return service.as_json()

    def update(self, request: Request) -> Any:
        self._check(request)
        with self.lock:
            service = self.find(request.params["ref"])
            self._advance(service)
            if self._moves_before_update > 0:
                self._moves_before_update -= 1
                self._write(service)
            version = request.arg("version") or ""
            if not version.isdigit():
                raise StandinError(400, f"invalid service version '{version}'")
            if int(version) != service.index:
                raise StandinError(500, "rpc error: code = Unknown desc = update out of sequence")
            if not isinstance(request.body, dict) or not request.body.get("TaskTemplate"):
                raise StandinError(400, "the body is not a ServiceSpec")
            rollback = request.arg("rollback")
            if rollback not in (None, "", "previous"):
                raise StandinError(400, f"unrecognized rollback option {rollback}")
            now = _now()
            if rollback == "previous":
                if service.previous_spec is None:
                    raise StandinError(400, f"service {service.id} does not have a previous spec")
                service.spec, service.previous_spec = service.previous_spec, service.spec
                service.rolling_back = True
                message = "manually requested rollback"
                state = "rollback_started"
            else:
                service.previous_spec, service.spec = service.spec, copy.deepcopy(request.body)
                service.rolling_back = False
                message, state = "update in progress", "updating"
            service.update_status = {"State": state, "StartedAt": now, "Message": message}
            service.rollout_began = time.monotonic()
            self._write(service)
            return {"Warnings": []}

    def list_tasks(self, request: Request) -> Any:
        self._check(request)
        try:
            filters = json.loads(request.arg("filters") or "{}")
        except ValueError:
            raise StandinError(400, "invalid filter") from None
        if not isinstance(filters, dict):
            raise StandinError(400, "invalid filter")

        def values(name: str) -> set[str]:
            given = filters.get(name) or []
            return set(given) if isinstance(given, list) else {k for k, v in given.items() if v}

        wanted_services, states = values("service"), values("desired-state")
        with self.lock:
            found = []
            for service in self.services.values():
                if wanted_services and not {service.id, service.name} & wanted_services:
                    continue
                self._advance(service)
                found += [
                    copy.deepcopy(task)
                    for task in service.tasks
                    if not states or task["DesiredState"] in states
                ]
            return found


DEMO_SERVICE = "search-api"
DEMO_REPOSITORY = "registry.example.com/search/api"
DEMO_DIGESTS = {
    "1.7.3": "3f" * 32,
    "1.8.0": "8a" * 32,
    "1.9.0": "c4" * 32,
}


def demo_image(version: str) -> str:
    """The demo registry's image of search-api `version`, pinned by digest."""
    return f"{DEMO_REPOSITORY}:{version}@sha256:{DEMO_DIGESTS[version]}"


def seed_demo(connections: Connections, *, settle_seconds: float = 3.0) -> HostedSeed:
    """The Engine stand-in on 127.0.0.1 with service search-api: 1.9.0 (bad) in its Spec,
    1.8.0 (known-good) in its PreviousSpec, three replicas; 1.7.3 is an older release that a
    Swarm rollback cannot reach."""
    standin = DockerEngineStandin(settle_seconds=settle_seconds)
    standin.start()
    images = [demo_image(version) for version in ("1.7.3", "1.8.0", "1.9.0")]
    standin.add_service(DEMO_SERVICE, images[1:], replicas=3)
    releases = (
        DemoRelease("1.7.3", images[0], 96, "Search API before the ranking change", True),
        DemoRelease("1.8.0", images[1], 30, "Ranking by recency", True),
        DemoRelease("1.9.0", images[2], 1.5, "New tokenizer: empty results for CJK queries", False),
    )
    service = DemoService(
        name=DEMO_SERVICE,
        backend="docker_swarm",
        description="Search API on Docker Swarm; rolled back with docker service update --rollback",
        target_config={"service": DEMO_SERVICE, "docker_host": standin.tcp_host},
        releases=releases,
        live_version=images[2],
    )
    return HostedSeed(standin, [service], {})
