"""A stand-in for Doppler's API v3 (https://api.doppler.com/v3), the parts the `doppler`
backend (executors.doppler) calls:

    GET  /v3/projects/project?project=                       {"project": {...}}
    GET  /v3/configs/config?project=&config=                  {"config": {...}}
    GET  /v3/configs/config/secret?project=&config=&name=     {"name", "value": {"raw", "computed"}}
    POST /v3/configs/config/secrets  {"project", "config", "secrets": {NAME: value}}
        Sets the secrets (a value of null deletes one) and answers every secret of the
        config as {"secrets": {NAME: {"raw", "computed"}}}; a change is one log entry.
    GET  /v3/configs/config/logs?project=&config=&page=&per_page=
        The config's log, newest first, `per_page` (at most 100, default 20) at a time:
        {"logs": [...], "page": n}; a page shorter than `per_page` is the last.
    GET  /v3/configs/config/logs/log?project=&config=&log=    {"log": {...}}
    POST /v3/configs/config/logs/log/rollback?project=&config=&log=
        Reverses what that log entry changed (Doppler's "rollback changes"), as a new log
        entry marked `rollback`; answers {"log": {...}}.

A log entry is {"id", "text", "html", "diff": [{"name", "added", "removed"}], "rollback",
"created_at", "config", "environment", "project", "user"}: a diff carries the values, as
Doppler's does. `computed` resolves `${NAME}` references within the config.

Tokens go in `Authorization: Bearer <token>`; every answer carries "success", and every
error is Doppler's {"messages": [...], "success": false}: 401 for a token it does not know,
404 "Could not find requested project/config/secret/log", 400 for a bad name or body.
Throttling is the frame's `fail_next(429, retry_after=...)`. `seed_demo` is the demo's.
"""

from __future__ import annotations

import itertools
import re
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar

from devinfra.demo_hosted import HostedSeed
from devinfra.demo_services import DemoRelease, DemoService
from devinfra.hosted.server import Answer, Request, Standin, StandinError
from executors.base import Connections
from executors.doppler import digest_of

SECRET_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")
_REFERENCE = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)\}")
USER = {"email": "ops@example.com", "name": "Backout stand-in", "profile_image_url": ""}


@dataclass
class Log:
    """One entry of a config's log."""

    id: str
    text: str
    diff: list[dict[str, Any]]
    rollback: bool = False
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())


@dataclass
class Config:
    """A config: its secrets and its log (oldest first)."""

    name: str
    environment: str
    secrets: dict[str, str] = field(default_factory=dict)
    logs: list[Log] = field(default_factory=list)


class DopplerStandin(Standin):
    """Doppler's API v3 as the module docstring describes it."""

    name: ClassVar[str] = "doppler"
    routes: ClassVar[list[tuple[str, str, str]]] = [
        ("GET", r"/v3/projects/project", "get_project"),
        ("GET", r"/v3/configs/config", "get_config"),
        ("GET", r"/v3/configs/config/secret", "get_secret"),
        ("POST", r"/v3/configs/config/secrets", "set_secrets"),
        ("GET", r"/v3/configs/config/logs", "list_logs"),
        ("GET", r"/v3/configs/config/logs/log", "get_log"),
        ("POST", r"/v3/configs/config/logs/log/rollback", "rollback_log"),
    ]

    def __init__(self, token: str = "dp.st.standin") -> None:
        super().__init__(token)
        self.projects: dict[str, dict[str, Config]] = {}
        self._ids = itertools.count(1)

    def error_body(self, status: int, message: str, **extra: Any) -> Any:
        return {"messages": [message], "success": False, **extra}

    def handle(self, request: Request) -> Answer:
        answer = super().handle(request)
        if answer.status == 401:  # Doppler's own words for a token it does not know
            answer.body = self.error_body(401, "Invalid Auth token")
        return answer

    # -- seeding and reading (for tests and the demo) -----------------------------------------

    def add_config(self, project: str, config: str, environment: str | None = None) -> Config:
        with self.lock:
            configs = self.projects.setdefault(project, {})
            if config not in configs:
                configs[config] = Config(config, environment or config.split("_")[0])
            return configs[config]

    def set(self, project: str, config: str, values: dict[str, str | None]) -> Log | None:
        """Set (or, for None, delete) secrets as one change; its log entry (None: no change)."""
        with self.lock:
            return self._apply(self.add_config(project, config), values, rollback=False)

    def value(self, project: str, config: str, name: str) -> str | None:
        with self.lock:
            return self.projects[project][config].secrets.get(name)

    # -- Doppler's behaviour -------------------------------------------------------------------

    def _apply(
        self, config: Config, values: dict[str, str | None], *, rollback: bool
    ) -> Log | None:
        diff = []
        for name, value in values.items():
            before = config.secrets.get(name)
            if before == value:
                continue
            entry: dict[str, Any] = {"name": name}
            if value is not None:
                entry["added"] = value
                config.secrets[name] = value
            if before is not None:
                entry["removed"] = before
            if value is None:
                config.secrets.pop(name, None)
            diff.append(entry)
        if not diff:
            return None
        names = ", ".join(entry["name"] for entry in diff)
        verb = "Rolled back" if rollback else "Updated"
        log = Log(secrets.token_urlsafe(18)[:24], f"{verb} {names}", diff, rollback)
        config.logs.append(log)
        return log

    def _config(self, request: Request, body: Any = None) -> tuple[str, Config]:
        source = body if isinstance(body, dict) else request.query
        project, name = source.get("project"), source.get("config")
        if not project:
            raise StandinError(400, "Missing project")
        if project not in self.projects:
            raise StandinError(404, "Could not find requested project")
        if not name:
            raise StandinError(400, "Missing config")
        config = self.projects[project].get(name)
        if config is None:
            raise StandinError(404, "Could not find requested config")
        return project, config

    def _computed(self, config: Config, value: str) -> str:
        return _REFERENCE.sub(lambda m: config.secrets.get(m.group(1), ""), value)

    def _log_json(self, project: str, config: Config, log: Log) -> dict[str, Any]:
        return {
            "id": log.id,
            "text": log.text,
            "html": f"<p>{log.text}</p>",
            "diff": [dict(entry) for entry in log.diff],
            "rollback": log.rollback,
            "created_at": log.created_at,
            "config": config.name,
            "environment": config.environment,
            "project": project,
            "user": USER,
        }

    def _find_log(self, request: Request) -> tuple[str, Config, Log]:
        project, config = self._config(request)
        wanted = request.arg("log")
        log = next((entry for entry in config.logs if entry.id == wanted), None)
        if log is None:
            raise StandinError(404, "Could not find requested log")
        return project, config, log

    # -- routes ----------------------------------------------------------------------------------

    def get_project(self, request: Request) -> dict[str, Any]:
        name = request.arg("project")
        with self.lock:
            if name not in self.projects:
                raise StandinError(404, "Could not find requested project")
        return {"project": {"id": name, "slug": name, "name": name}, "success": True}

    def get_config(self, request: Request) -> dict[str, Any]:
        with self.lock:
            project, config = self._config(request)
            document = {"name": config.name, "project": project, "environment": config.environment}
        return {"config": document, "success": True}

    def get_secret(self, request: Request) -> dict[str, Any]:
        with self.lock:
            _, config = self._config(request)
            name = request.arg("name") or ""
            value = config.secrets.get(name)
            if value is None:
                raise StandinError(404, "Could not find requested secret")
            computed = self._computed(config, value)
        return {"name": name, "value": {"raw": value, "computed": computed}, "success": True}

    def set_secrets(self, request: Request) -> dict[str, Any]:
        body = request.body
        if not isinstance(body, dict) or not isinstance(body.get("secrets"), dict):
            raise StandinError(400, "Invalid body: secrets must be an object")
        values = body["secrets"]
        for name, value in values.items():
            if not SECRET_NAME.match(name) or len(name) > 256:
                raise StandinError(
                    400, "Secret names may only contain uppercase letters, numbers, and underscores"
                )
            if value is not None and not isinstance(value, str):
                raise StandinError(400, f"Invalid value for secret {name}")
        with self.lock:
            _, config = self._config(request, body)
            self._apply(config, values, rollback=False)
            every = {
                name: {"raw": value, "computed": self._computed(config, value)}
                for name, value in config.secrets.items()
            }
        return {"secrets": every, "success": True}

    def list_logs(self, request: Request) -> dict[str, Any]:
        try:
            page = int(request.arg("page") or 1)
            per_page = int(request.arg("per_page") or 20)
        except ValueError:
            raise StandinError(400, "page and per_page must be numbers") from None
        if page < 1 or not 1 <= per_page <= 100:
            raise StandinError(400, "page must be at least 1 and per_page between 1 and 100")
        with self.lock:
            project, config = self._config(request)
            newest_first = list(reversed(config.logs))
            chosen = newest_first[(page - 1) * per_page : page * per_page]
            logs = [self._log_json(project, config, log) for log in chosen]
        return {"logs": logs, "page": page, "success": True}

    def get_log(self, request: Request) -> dict[str, Any]:
        with self.lock:
            project, config, log = self._find_log(request)
            return {"log": self._log_json(project, config, log), "success": True}

    def rollback_log(self, request: Request) -> dict[str, Any]:
        with self.lock:
            project, config, log = self._find_log(request)
            undo = {entry["name"]: entry.get("removed") for entry in log.diff}
            new = self._apply(config, undo, rollback=True)
            if new is None:
                raise StandinError(400, "There are no changes to roll back")
            return {"log": self._log_json(project, config, new), "success": True}


# -- the demo --------------------------------------------------------------------------------

DEMO_TOKEN_ENV = "DEMO_DOPPLER_TOKEN"
DEMO_PROJECT, DEMO_CONFIG, DEMO_SECRET = "payments", "prd", "DATABASE_URL"
# A demo-only password, in the secret's values: the full runs check it is never recorded.
DEMO_PASSWORD = "demo-only-doppler-password"
DEMO_HOSTS = {
    "replica-a": "payments-a.backout-demo.internal",
    "primary-b": "payments-b.backout-demo.internal",
}


def demo_url(host: str) -> str:
    return f"postgres://payments:{DEMO_PASSWORD}@{host}:5432/payments"


def seed_payments(standin: DopplerStandin, *, token_env: str = DEMO_TOKEN_ENV) -> DemoService:
    """Config payments/prd: DATABASE_URL set to the replica's URL (good), then switched to
    the new primary's (bad, live), beside two other secrets; its demo service."""
    standin.set(DEMO_PROJECT, DEMO_CONFIG, {"LOG_LEVEL": "info", "STRIPE_REGION": "eu"})
    standin.add_config(DEMO_PROJECT, "stg")
    good, bad = (demo_url(host) for host in DEMO_HOSTS.values())
    standin.set(DEMO_PROJECT, DEMO_CONFIG, {DEMO_SECRET: good})
    standin.set(DEMO_PROJECT, DEMO_CONFIG, {DEMO_SECRET: bad})
    return DemoService(
        name="payments-db-url",
        backend="doppler",
        description=f"Payments database URL (Doppler {DEMO_PROJECT}/{DEMO_CONFIG} {DEMO_SECRET})",
        target_config={
            "project": DEMO_PROJECT,
            "config": DEMO_CONFIG,
            "secret": DEMO_SECRET,
            "api_url": standin.url,
            "token_env": token_env,
        },
        releases=(
            DemoRelease("replica-a", digest_of(good), 30, "Payments database at payments-a.", True),
            DemoRelease(
                "primary-b",
                digest_of(bad),
                0.5,
                "Switched to payments-b; its primary refuses writes after a failed promotion.",
                False,
            ),
        ),
        live_version=digest_of(bad),
    )


def seed_demo(connections: Connections) -> HostedSeed:
    """Start the Doppler stand-in with the payments config; the token goes to the
    console's processes as DEMO_DOPPLER_TOKEN."""
    standin = DopplerStandin(token="dp.st.prd." + secrets.token_urlsafe(24))
    standin.start()
    service = seed_payments(standin)
    return HostedSeed(standin, [service], env={DEMO_TOKEN_ENV: standin.token})
