"""Roll a Docker Swarm service back to its previous spec, as `docker service update
--rollback` does, through the Docker Engine API, and follow the service's UpdateStatus and
tasks until the rollback has settled.

Target config: `service` (its name or ID) and `docker_host`, where the Engine listens:
`unix:///var/run/docker.sock` (the default), `tcp://host:2375` (plain HTTP) or
`https://host:2376` (TLS; `tls_ca` names the CA bundle that verifies the daemon, and
`tls_cert` with `tls_key` a client certificate when the daemon asks for one). The Engine
has no tokens: whoever reaches the socket or the port commands the swarm, so the host must
be a Swarm manager reachable only by the workers. Every path is pinned to Engine API
version 1.45 (`/v1.45/...`, Docker 26 and later).

The release's artifact is an image reference (`registry/team/app:1.8.0`, with or without
`@sha256:<digest>`). A Swarm rollback can only return to the service's PreviousSpec: plan,
apply and the draft (`validate_params(live=True)`) read the service and refuse, naming the
`image` option, a release whose image is not PreviousSpec's, or a service with no
PreviousSpec. The step's `image` option is pinned when drafted (the release's image, or
PreviousSpec's for "previous"), so a retry after the rollback, when PreviousSpec has become
the bad spec, does not roll forward again. Images compare by digest when both sides have
one, else by name and tag (Docker Hub's `docker.io/library/` prefix ignored).

Apply reads the service (Spec, PreviousSpec, Version.Index) and posts
`/services/{id}/update?version=<index>&rollback=previous` with the current Spec as its body.
A service whose Spec already runs the image wanted is left alone (`changed=False`). An
"update out of sequence" answer means the service changed between the read and the update:
the step fails as retryable and its retry reads the service again.

Wait polls the service until UpdateStatus.State is `rollback_completed` (a service that
was already at the image may show `completed` or nothing) and its tasks with desired state
running all run the image wanted, as many as the service's replicas; `rollback_paused` (or
`paused`) fails at once with the Engine's message. The checks confirm the image, the update
state and the tasks.

Errors: the Engine answers `{"message": ...}`. Timeouts, unreachable sockets and 5xx are
retryable (executors.rest); a 404 is a service that does not exist (at draft, an
OptionError naming `service`); a 503 "This node is not a swarm manager" is a permanent
ConfigError naming `docker_host`.
"""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection
from urllib3.connectionpool import HTTPConnectionPool
from urllib3.exceptions import NewConnectionError

from executors.base import (
    ApplyResult,
    Backend,
    BackendError,
    Change,
    CheckResult,
    CheckStatus,
    ConfigError,
    Connections,
    LiveOption,
    LogLine,
    RollbackPlan,
    RollbackTarget,
    discard_log,
    poll_until,
)
from executors.http_guard import guarded_session
from executors.options import Choice, Option, OptionError
from executors.rest import NotFound, RestApi, RestError

API_VERSION = "1.45"
DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"
# The host name requests to the Unix socket carry; the Engine ignores it.
_SOCKET_URL = "http+docker://localhost"
_PATH = {"type": "string", "minLength": 1, "maxLength": 1000, "pattern": r"^/[^\x00-\x1f]*$"}
# A Docker image reference: [registry[:port]/]name[/name...][:tag][@sha256:digest].
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
IMAGE_REFERENCE = re.compile(
    rf"(?:[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?(?::[0-9]+)?/)?{_COMPONENT}(?:/{_COMPONENT})*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[0-9a-f]{64})?"
)
IMAGE = Option(
    "image",
    "Image",
    type="choice",
    live=True,
    max_length=400,
    help="The image to go back to: it must be the service's PreviousSpec image, the only one "
    "a Swarm rollback returns to. Empty: the chosen release's image, or PreviousSpec's.",
)
# UpdateStatus states: in progress, settled, and stopped for a person to look at.
MOVING = frozenset({"rollback_started", "updating"})
PAUSED = frozenset({"rollback_paused", "paused"})
NOT_MANAGER = "not a swarm manager"
OUT_OF_SEQUENCE = "update out of sequence"


class NotSwarmManager(ConfigError):
    """The Engine at docker_host is not a Swarm manager: it cannot read or roll back services."""


# -- the Unix socket ------------------------------------------------------------------------


class UnixSocketConnection(HTTPConnection):
    """An HTTP connection to a Unix socket (the host name is only sent in the Host header)."""

    def __init__(self, *args: Any, socket_path: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.socket_path = socket_path

    def _new_conn(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        if isinstance(self.timeout, int | float):
            sock.settimeout(self.timeout)
        try:
            sock.connect(self.socket_path)
        except OSError as error:
            sock.close()
            raise NewConnectionError(self, f"{self.socket_path}: {error.strerror}") from None
        return sock


class UnixSocketPool(HTTPConnectionPool):
    ConnectionCls = UnixSocketConnection  # type: ignore[assignment]


class UnixSocketAdapter(HTTPAdapter):
    """A requests adapter sending every request to one Unix socket."""

    def __init__(self, socket_path: str) -> None:
        super().__init__(max_retries=0)
        self.pool = UnixSocketPool("localhost", maxsize=4, socket_path=socket_path)

    def get_connection_with_tls_context(self, *args: Any, **kwargs: Any) -> UnixSocketPool:
        return self.pool

    def get_connection(self, *args: Any, **kwargs: Any) -> UnixSocketPool:
        return self.pool

    def close(self) -> None:
        self.pool.close()
        super().close()


def unix_socket_session(socket_path: str) -> requests.Session:
    """A session whose requests to http+docker://... go to the Unix socket `socket_path`."""
    session = requests.Session()
    session.trust_env = False  # no proxy from the environment for a local socket
    session.mount("http+docker://", UnixSocketAdapter(socket_path))
    return session


def engine_api(config: Mapping[str, Any], *, timeout: float = 10.0) -> RestApi:
    """The Docker Engine API at the config's `docker_host`, at API_VERSION."""
    host = config.get("docker_host") or DEFAULT_DOCKER_HOST
    parts = urlsplit(host)
    name = f"Docker Engine at {host}"
    if parts.scheme == "unix":
        session = unix_socket_session(parts.path)
        return RestApi(name, f"{_SOCKET_URL}/v{API_VERSION}", timeout=timeout, session=session)
    secure = parts.scheme == "https" or bool(config.get("tls_ca") or config.get("tls_cert"))
    session = guarded_session()
    if config.get("tls_ca"):
        # requests lets REQUESTS_CA_BUNDLE override a session's CA unless it ignores the
        # environment: the daemon's CA named in the config must win.
        session.trust_env = False
        session.verify = config["tls_ca"]
    if config.get("tls_cert"):
        session.cert = (config["tls_cert"], config["tls_key"])
    base = f"{'https' if secure else 'http'}://{parts.netloc}/v{API_VERSION}"
    return RestApi(name, base, timeout=timeout, session=session)


# -- images ---------------------------------------------------------------------------------


def image_parts(reference: str) -> tuple[str, str | None, str | None]:
    """(name, tag, digest) of an image reference; Docker Hub's prefixes dropped from the name."""
    name, _, digest = reference.strip().partition("@")
    tag = None
    if ":" in name.rpartition("/")[2]:
        name, _, tag = name.rpartition(":")
    for prefix in ("docker.io/", "index.docker.io/"):
        if name.startswith(prefix):
            name = name[len(prefix) :]
    if name.startswith("library/") and name.count("/") == 1:
        name = name[len("library/") :]
    return name, tag, digest or None


def same_image(running: str | None, wanted: str | None) -> bool:
    """Whether `running` is the image `wanted` names: by digest when `wanted` has one, else
    by name and tag (no tag meaning latest)."""
    if not running or not wanted:
        return False
    run_name, run_tag, run_digest = image_parts(running)
    name, tag, digest = image_parts(wanted)
    if run_name != name:
        return False
    if digest:
        return digest == run_digest
    return (tag or "latest") == (run_tag or ("latest" if not run_digest else None))


def spec_image(spec: Mapping[str, Any] | None) -> str | None:
    """The image a service spec runs (TaskTemplate.ContainerSpec.Image)."""
    container = ((spec or {}).get("TaskTemplate") or {}).get("ContainerSpec") or {}
    image = container.get("Image")
    return str(image) if image else None


def task_image(task: Mapping[str, Any]) -> str | None:
    return str(((task.get("Spec") or {}).get("ContainerSpec") or {}).get("Image") or "") or None


class DockerSwarmBackend(Backend):
    """A Swarm service: `docker service update --rollback` through the Engine API."""

    kind = "docker_swarm"
    label = "Docker Swarm service"
    config_schema = {
        "type": "object",
        "properties": {
            "service": {
                "type": "string",
                "minLength": 1,
                "maxLength": 63,
                "pattern": r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
            },
            "docker_host": {
                "type": "string",
                "maxLength": 2000,
                "pattern": r"^(unix:///[^\s]+|tcp://[^\s/]+|https://[^\s/]+)$",
            },
            "tls_ca": _PATH,
            "tls_cert": _PATH,
            "tls_key": _PATH,
        },
        "required": ["service"],
        "dependentRequired": {"tls_cert": ["tls_key"], "tls_key": ["tls_cert"]},
        "additionalProperties": False,
    }
    options = (IMAGE,)

    def __init__(
        self,
        config: Mapping[str, Any],
        connections: Connections,
        *,
        poll_interval: float = 1.0,
        timeout: float = 10.0,
    ) -> None:
        super().__init__(config, connections)
        self.poll_interval = poll_interval
        self.engine = engine_api(self.config, timeout=timeout)

    @property
    def docker_host(self) -> str:
        return str(self.config.get("docker_host") or DEFAULT_DOCKER_HOST)

    @property
    def _where(self) -> str:
        return f"Swarm service {self.config['service']}"

    # -- reading ----------------------------------------------------------------------------------

    def _engine_call(self, method: str, path: str, doing: str, **kwargs: Any) -> Any:
        """One Engine call; a node that is no manager is a ConfigError naming docker_host."""
        try:
            return self.engine.json_of(self.engine.request(method, path, doing=doing, **kwargs))
        except RestError as error:
            if error.tls_failed:
                raise ConfigError(
                    f"docker_host {self.docker_host}: TLS failed (tls_ca names the CA of the "
                    "daemon's certificate, tls_cert and tls_key the client certificate it may "
                    f"ask for): {str(error).rpartition('Caused by ')[2]}"
                ) from None
            if error.status == 503 and NOT_MANAGER in str(error).lower():
                raise NotSwarmManager(
                    f"docker_host {self.docker_host} is not a Swarm manager (the Engine answers: "
                    f"{str(error).rpartition('HTTP 503: ')[2]})"
                ) from None
            raise

    def service(self) -> dict[str, Any]:
        """The service as the Engine describes it (ID, Version, Spec, PreviousSpec,
        UpdateStatus); ConfigError when it does not exist."""
        ref = self.config["service"]
        try:
            found = self._engine_call("GET", f"/services/{ref}", f"read service {ref}")
        except NotFound as error:
            raise ConfigError(
                f"no service {ref} on {self.docker_host} (the Engine answers: "
                f"{str(error).rpartition('HTTP 404: ')[2]})"
            ) from None
        if not isinstance(found, dict) or not isinstance(found.get("Spec"), dict):
            raise BackendError(f"{self._where}: the Engine's answer has no Spec")
        return found

    def tasks(self, service: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The service's tasks whose desired state is running."""
        filters = json.dumps({"service": [service["ID"]], "desired-state": ["running"]})
        found = self._engine_call(
            "GET", "/tasks", f"list the tasks of {self._where}", params={"filters": filters}
        )
        return [task for task in found or [] if task.get("ServiceID") == service["ID"]]

    def live_version(self) -> str | None:
        """The image the service's Spec runs."""
        return spec_image(self.service()["Spec"])

    def capture_backup(self) -> dict[str, Any]:
        """The image the service runs before a release (never the spec: its Env may hold
        secrets)."""
        return {"image": self.live_version()}

    def describe_backup(self, key: str, content: Any) -> str:
        return str(content) if key == "image" and content else ""

    def live_options(self) -> dict[str, LiveOption]:
        """PreviousSpec's image (what a rollback returns to) and the live one."""
        service = self.service()
        current, previous = spec_image(service["Spec"]), spec_image(service.get("PreviousSpec"))
        choices = []
        if previous:
            choices.append(Choice(previous, previous, "PreviousSpec: what a rollback returns to"))
        if current and current != previous:
            choices.append(Choice(current, current, "runs now: nothing to do", current=True))
        note = "" if previous else f"{self._where} has no PreviousSpec: nothing to roll back to"
        return {"image": LiveOption(choices=tuple(choices), note=note)}

    # -- deciding -------------------------------------------------------------------------------

    def decide(self, service: Mapping[str, Any], wanted: str | None) -> tuple[str, bool]:
        """The image to reach (`wanted`, or PreviousSpec's when None) and whether a rollback
        is needed to reach it; ConfigError when a rollback cannot reach it."""
        current = spec_image(service["Spec"])
        previous = spec_image(service.get("PreviousSpec"))
        if wanted and same_image(current, wanted):
            return wanted, False
        if previous is None:
            asked = f" to {wanted}" if wanted else ""
            raise ConfigError(
                f"{self._where} has no PreviousSpec: a rollback{asked} has nothing to return to "
                f"(it runs {current})"
            )
        if wanted and not same_image(previous, wanted):
            raise ConfigError(
                f"{self._where}: PreviousSpec runs {previous}, not {wanted}; a Swarm rollback "
                f"returns only to PreviousSpec (it runs {current})"
            )
        return wanted or previous, True

    def wanted_image(self, target: RollbackTarget) -> str | None:
        """The image the step goes to: its pinned `image` option, else the release's artifact."""
        image = target.params.get("image") or target.artifact
        return str(image) if image else None

    def pin_release(self, params: Mapping[str, Any], artifact: str) -> dict[str, Any]:
        """A release's artifact is its image: the step goes there unless another is chosen."""
        pinned = dict(params)
        if not pinned.get("image"):
            pinned["image"] = artifact
        return pinned

    def validate_params(self, params: Mapping[str, Any], *, live: bool = False) -> dict[str, Any]:
        """As the base class, `image` an image reference; with `live`, the service read now:
        one that does not exist is refused naming `service`, an Engine that is no manager
        or cannot be reached naming `docker_host`, an image a rollback cannot reach naming
        `image`, and the image pinned (PreviousSpec's when none is given)."""
        cleaned = super().validate_params(params, live=False)
        image = cleaned.get("image")
        if image is not None and not IMAGE_REFERENCE.fullmatch(image):
            raise OptionError(
                "image", "must be an image reference: registry/name[:tag][@sha256:<64 hex>]"
            )
        if not live:
            return cleaned
        try:
            service = self.service()
        except NotSwarmManager as error:
            raise OptionError("docker_host", str(error)) from None
        except ConfigError as error:
            raise OptionError("service", str(error)) from None
        except BackendError as error:
            raise OptionError("docker_host", f"the Engine cannot be asked now: {error}") from None
        try:
            cleaned["image"], _ = self.decide(service, image)
        except ConfigError as error:
            raise OptionError("image", str(error)) from None
        return cleaned

    # -- plan, apply, wait, checks --------------------------------------------------------------

    def plan(self, target: RollbackTarget) -> RollbackPlan:
        """The rollback to PreviousSpec, naming its image; nothing when the service runs the
        image wanted; ConfigError when PreviousSpec is not what is wanted."""
        service = self.service()
        current = spec_image(service["Spec"])
        previous = spec_image(service.get("PreviousSpec"))
        wanted, needed = self.decide(service, self.wanted_image(target))
        state = (service.get("UpdateStatus") or {}).get("State") or "none"
        if not needed:
            summary = (
                f"{self._where} already runs {wanted} (update state {state}); nothing to roll "
                f"back (PreviousSpec: {previous or 'none'})"
            )
            return RollbackPlan(self.kind, summary, current, wanted)
        summary = (
            f"roll {self._where} back to its PreviousSpec: {current} → {previous} "
            f"(docker service update --rollback on {self.docker_host})"
        )
        change = Change(f"swarm/service/{service['Spec'].get('Name')}", "image", current, wanted)
        return RollbackPlan(self.kind, summary, current, wanted, (change,))

    def apply(self, target: RollbackTarget, *, log: LogLine = discard_log) -> ApplyResult:
        """Post the rollback at the service's version; a no-op when it runs the image wanted."""
        service = self.service()
        current = spec_image(service["Spec"])
        wanted, needed = self.decide(service, self.wanted_image(target))
        facts = {"service_id": service["ID"], "from_image": current, "to_image": wanted}
        if not needed:
            state = (service.get("UpdateStatus") or {}).get("State") or "none"
            return ApplyResult(
                False, f"{self._where} already runs {wanted} (update state {state})", facts
            )
        index = (service.get("Version") or {}).get("Index")
        log(f"rolling {self._where} back at version {index}: {current} → {wanted}")
        try:
            answer = self._engine_call(
                "POST",
                f"/services/{service['ID']}/update",
                f"roll back {self._where}",
                params={"version": index, "rollback": "previous"},
                json=service["Spec"],
            )
        except RestError as error:
            if OUT_OF_SEQUENCE in str(error):
                raise BackendError(
                    f"{self._where} changed after version {index} was read (update out of "
                    "sequence); a retry reads it again",
                    retryable=True,
                ) from None
            raise
        for warning in (answer or {}).get("Warnings") or []:
            log(f"the Engine warns: {warning}")
        return ApplyResult(True, f"{self._where}: rollback to {wanted} started", facts)

    def _settled(self, asked: str | None) -> tuple[bool, str]:
        service = self.service()
        current = spec_image(service["Spec"])
        wanted = asked or current or ""
        status = service.get("UpdateStatus") or {}
        state, message = status.get("State"), status.get("Message") or ""
        if state in PAUSED:
            raise BackendError(f"{self._where}: {state}: {message or 'no message given'}")
        if not same_image(current, wanted):
            raise BackendError(
                f"{self._where} runs {current}, not {wanted}: its spec changed since the rollback"
            )
        running, desired, others = self._task_counts(service, wanted)
        line = (
            f"{self._where}: {state or 'no update state'}"
            + (f" ({message})" if message else "")
            + f"; {running}/{desired} tasks running {wanted}"
            + (f", {others} other task(s) still wanted" if others else "")
        )
        return state not in MOVING and running == desired and others == 0, line

    def _task_counts(self, service: Mapping[str, Any], wanted: str) -> tuple[int, int, int]:
        """(tasks running `wanted`, tasks the service wants, wanted-running tasks of another
        image or not running yet)."""
        tasks = self.tasks(service)
        running = sum(
            1
            for task in tasks
            if (task.get("Status") or {}).get("State") == "running"
            and same_image(task_image(task), wanted)
        )
        mode = service["Spec"].get("Mode") or {}
        replicated = mode.get("Replicated")
        desired = int(replicated.get("Replicas", 1)) if replicated is not None else len(tasks)
        return running, desired, len(tasks) - running

    def wait(self, target: RollbackTarget, *, deadline: float, log: LogLine = discard_log) -> None:
        """Follow UpdateStatus and the tasks until the rollback completed and every task runs
        the image; a paused rollback fails at once with the Engine's message."""
        wanted = self.wanted_image(target)
        poll_until(
            lambda: self._settled(wanted),
            deadline=deadline,
            log=log,
            interval=self.poll_interval,
            what=self._where,
        )

    def checks(self, target: RollbackTarget) -> list[CheckResult]:
        """The spec runs the image, the update state settled, the tasks run the image."""
        service = self.service()
        current = spec_image(service["Spec"])
        wanted = self.wanted_image(target) or current or ""
        state = (service.get("UpdateStatus") or {}).get("State")
        message = (service.get("UpdateStatus") or {}).get("Message") or ""
        running, desired, others = self._task_counts(service, wanted)
        settled = CheckStatus.FAILED if state in PAUSED | MOVING else CheckStatus.PASSED
        return [
            CheckResult(
                "image matches target",
                CheckStatus.PASSED if same_image(current, wanted) else CheckStatus.FAILED,
                f"Spec runs {current}",
                observed=current,
                threshold=wanted,
            ),
            CheckResult(
                "update settled",
                settled,
                f"UpdateStatus {state or 'none'}" + (f": {message}" if message else ""),
                observed=state or "none",
                threshold="rollback_completed",
            ),
            CheckResult(
                "tasks running the image",
                CheckStatus.PASSED if running == desired and others == 0 else CheckStatus.FAILED,
                f"{running} of {desired} tasks run {wanted}"
                + (f"; {others} other task(s) wanted running" if others else ""),
                observed=running,
                threshold=desired,
            ),
        ]
