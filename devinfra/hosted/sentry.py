"""A stand-in for Sentry's web API (version 0, the `/api/0/` paths of sentry.io and of
self-hosted Sentry), the parts the `sentry_errors` verification check reads
(executors.sentry_check):

    GET /api/0/organizations/{organization_id_or_slug}/projects/
        The organization's projects, `[{"id": "4501", "slug": "storefront-api", ...}]`,
        `per_page` at a time (at most 100) with Sentry's cursor pagination: a Link header
        with a `previous` and a `next` link, each marked `results="true"` or `"false"`.
    GET /api/0/organizations/{organization_id_or_slug}/events/
        "Query Discover Events in Table Format", with `field=count()` only: the number of
        error events (`dataset=errors`) of `project` (ids) in `environment` matching `query`
        between `start` and `end` (ISO 8601, UTC when no offset is given) or over
        `statsPeriod` ("15m", "24h"): `{"data": [{"count()": 12}], "meta": {...}}`.

Tokens go in `Authorization: Bearer <token>`; a wrong one is 401, one without the scope a
path needs (org:read for both) is 403, an unknown organization 404, a project id outside it
403, as Sentry answers them, and every error is Sentry's `{"detail": "..."}`. Throttling is
the frame's `fail_next(429, retry_after=...)`.

Errors happen as streams a test or the demo sets up: `add_errors(org, project, per_minute,
start=..., until=...)` makes a project receive `per_minute` error events evenly spaced from
`start` until `until` (open-ended when None; `stop_errors` ends them), and only events before
the stand-in's clock (`now`) have happened. `seed_demo` is the demo's: organization
backout-demo with projects storefront-web, storefront-api and payments-api, and
storefront-api's errors follow whether its Deployment runs the bad release
(`with_sentry_check`).
"""

from __future__ import annotations

import itertools
import math
import re
import secrets
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar
from urllib.parse import urlencode

from devinfra.demo_health import DemoHealth
from devinfra.demo_hosted import HostedDemo, HostedSeed
from devinfra.demo_services import DemoService
from devinfra.hosted.server import Answer, Request, Standin, StandinError
from executors.base import Connections

# What a token may do unless a test says otherwise.
FULL_SCOPES = ("org:read", "project:read", "event:read")
_PERIOD = re.compile(r"^(\d+)([smhdw])$")
_PERIOD_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_LEVELS = ("fatal", "error", "warning", "info", "debug")
_NO_PERMISSION = "You do not have permission to perform this action."


@dataclass
class ErrorStream:
    """`per_minute` error events of one project, evenly spaced from `start` until `until`
    (never, when None)."""

    project_id: str
    per_minute: float
    start: datetime
    until: datetime | None = None
    environment: str = "production"
    level: str = "error"
    message: str = "Internal Server Error"

    def count(self, low: datetime, high: datetime) -> int:
        """Events in [low, high)."""
        if self.until is not None:
            high = min(high, self.until)
        if high <= low or self.per_minute <= 0:
            return 0
        spacing = 60.0 / self.per_minute
        first = max(0, math.ceil((low - self.start).total_seconds() / spacing))
        past_last = max(0, math.ceil((high - self.start).total_seconds() / spacing))
        return max(0, past_last - first)


@dataclass
class _Project:
    id: str
    slug: str
    name: str


@dataclass
class _Organization:
    id: str
    slug: str
    projects: dict[str, _Project]


def _when(text: str | None, name: str) -> datetime:
    try:
        moment = datetime.fromisoformat(str(text))
    except ValueError:
        raise StandinError(400, f"{name}: {text!r} is not an ISO 8601 date and time") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


class SentryStandin(Standin):
    """Sentry's web API v0 as the module docstring describes it."""

    name: ClassVar[str] = "sentry"
    routes: ClassVar[list[tuple[str, str, str]]] = [
        ("GET", r"/api/0/organizations/(?P<org>[^/]+)/projects/", "list_projects"),
        ("GET", r"/api/0/organizations/(?P<org>[^/]+)/events/", "query_events"),
    ]

    def __init__(
        self,
        token: str = "sentry-standin-token",
        *,
        scopes: Sequence[str] = FULL_SCOPES,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        super().__init__(token)
        self.scopes = tuple(scopes)
        self.clock = clock or (lambda: datetime.now(UTC))
        self.organizations: dict[str, _Organization] = {}
        self.streams: list[ErrorStream] = []
        self._ids = itertools.count(4501)
        self._stopping = threading.Event()

    # -- Sentry's shapes ----------------------------------------------------------------------

    def error_body(self, status: int, message: str, **extra: Any) -> Any:
        return {"detail": message, **extra}

    def handle(self, request: Request) -> Answer:
        answer = super().handle(request)
        if answer.status == 401:  # Sentry's own words for a token it does not know
            answer.body = {"detail": "Invalid token"}
        return answer

    def _need(self, scope: str) -> None:
        if scope not in self.scopes:
            raise StandinError(403, _NO_PERMISSION)

    def _organization(self, request: Request) -> _Organization:
        wanted = request.params["org"]
        with self.lock:
            for organization in self.organizations.values():
                if wanted in (organization.slug, organization.id):
                    return organization
        raise StandinError(404, "The requested resource does not exist")

    # -- seeding --------------------------------------------------------------------------------

    def add_project(self, organization: str, slug: str) -> str:
        """Create project `slug` in `organization` (created too when new); returns its id."""
        with self.lock:
            org = self.organizations.get(organization)
            if org is None:
                org = _Organization(str(next(self._ids)), organization, {})
                self.organizations[organization] = org
            if slug not in org.projects:
                title = slug.replace("-", " ").title()
                org.projects[slug] = _Project(str(next(self._ids)), slug, title)
            return org.projects[slug].id

    def project_id(self, organization: str, slug: str) -> str:
        with self.lock:
            return self.organizations[organization].projects[slug].id

    def add_errors(
        self,
        organization: str,
        project: str,
        per_minute: float,
        *,
        start: datetime | None = None,
        until: datetime | None = None,
        environment: str = "production",
        level: str = "error",
        message: str = "Internal Server Error",
    ) -> ErrorStream:
        """Make `project` receive `per_minute` error events from `start` (now) until `until`
        (until stopped), of that environment, level and message."""
        stream = ErrorStream(
            self.project_id(organization, project),
            per_minute,
            start or self.clock(),
            until,
            environment=environment,
            level=level,
            message=message,
        )
        with self.lock:
            self.streams.append(stream)
        return stream

    def stop_errors(self, organization: str, project: str, at: datetime | None = None) -> None:
        """End `project`'s open error streams at `at` (now)."""
        project_id = self.project_id(organization, project)
        at = at or self.clock()
        with self.lock:
            for stream in self.streams:
                if stream.project_id == project_id and (stream.until is None or stream.until > at):
                    stream.until = max(at, stream.start)

    def follow(
        self,
        organization: str,
        project: str,
        failing: Callable[[], bool],
        per_minute: float,
        *,
        every: float = 0.5,
    ) -> threading.Thread:
        """Keep `project` receiving `per_minute` errors exactly while `failing()` says so
        (read every `every` s in a daemon thread, until `stop()`)."""

        def watch() -> None:
            erring = False
            while not self._stopping.is_set():
                now_failing = failing()
                if now_failing and not erring:
                    self.add_errors(organization, project, per_minute)
                elif erring and not now_failing:
                    self.stop_errors(organization, project)
                erring = now_failing
                self._stopping.wait(every)

        thread = threading.Thread(target=watch, name=f"sentry-follow-{project}", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self._stopping.set()
        super().stop()

    # -- routes ---------------------------------------------------------------------------------

    def list_projects(self, request: Request) -> Answer:
        self._need("org:read")
        organization = self._organization(request)
        per_page = min(100, max(1, int(request.arg("per_page") or 100)))
        offset = 0
        cursor = request.arg("cursor")
        if cursor:
            parts = cursor.split(":")
            if len(parts) != 3 or not all(part.isdigit() for part in parts):
                raise StandinError(400, "Invalid cursor parameter.")
            offset = int(parts[1])
        with self.lock:
            projects = sorted(organization.projects.values(), key=lambda project: project.slug)
        page = projects[offset : offset + per_page]
        body = [
            {
                "id": project.id,
                "slug": project.slug,
                "name": project.name,
                "platform": "python",
                "dateCreated": "2026-01-05T09:00:00.000000Z",
                "isMember": True,
                "status": "active",
            }
            for project in page
        ]
        base = f"{self.url}/api/0/organizations/{organization.slug}/projects/"

        def link(rel: str, at: int, results: bool, previous: bool) -> str:
            cursor = f"0:{at}:{int(previous)}"
            query = urlencode({"per_page": per_page, "cursor": cursor})
            marked = "true" if results else "false"
            return f'<{base}?{query}>; rel="{rel}"; results="{marked}"; cursor="{cursor}"'

        following = offset + per_page
        links = ", ".join(
            (
                link("previous", max(0, offset - per_page), offset > 0, True),
                link("next", following, following < len(projects), False),
            )
        )
        return Answer(200, body, {"Link": links})

    def query_events(self, request: Request) -> Answer:
        self._need("org:read")
        organization = self._organization(request)
        if request.arg("field") != "count()":
            raise StandinError(400, "The stand-in answers field=count() only.")
        if request.arg("dataset", "errors") not in ("errors", "discover"):
            raise StandinError(400, f"dataset {request.arg('dataset')!r} is not supported")
        low, high = self._period(request)
        with self.lock:
            ids = {project.id for project in organization.projects.values()}
        wanted = request.arg("project")
        if wanted is not None and wanted not in ids:
            raise StandinError(403, _NO_PERMISSION)
        projects = {wanted} if wanted is not None else ids
        environment = request.arg("environment")
        matches = _query_filter(request.arg("query") or "")
        high = min(high, self.clock())
        with self.lock:
            total = sum(
                stream.count(low, high)
                for stream in self.streams
                if stream.project_id in projects
                and (environment is None or stream.environment == environment)
                and matches(stream)
            )
        return Answer(
            200,
            {
                "data": [{"count()": total}],
                "meta": {
                    "fields": {"count()": "integer"},
                    "units": {"count()": None},
                    "isMetricsData": False,
                    "dataset": "errors",
                },
            },
        )

    def _period(self, request: Request) -> tuple[datetime, datetime]:
        start, end, period = request.arg("start"), request.arg("end"), request.arg("statsPeriod")
        if period is not None and (start is not None or end is not None):
            raise StandinError(400, "statsPeriod cannot be combined with start and end")
        if start is not None or end is not None:
            if start is None or end is None:
                raise StandinError(400, "start and end are both required")
            low, high = _when(start, "start"), _when(end, "end")
            if high <= low:  # as Sentry's own check: an empty range is refused
                raise StandinError(400, "start must be before end")
            return low, high
        match = _PERIOD.match(period or "14d")
        if match is None:
            raise StandinError(400, f"Invalid statsPeriod: {period!r}")
        now = self.clock()
        seconds = int(match.group(1)) * _PERIOD_UNITS[match.group(2)]
        return now - timedelta(seconds=seconds), now


def _term_test(term: str) -> Callable[[ErrorStream], bool]:
    """One term of a search: `level:`, `environment:` or free text found in the message."""
    key, colon, value = term.partition(":")
    if colon and key in ("level", "environment"):
        wanted = value.strip('"')
        return lambda stream: str(getattr(stream, key)) == wanted
    text = term.strip('"').lower()
    return lambda stream: text in stream.message.lower()


def _query_filter(query: str) -> Callable[[ErrorStream], bool]:
    """The part of Sentry's search syntax the stand-in understands: `level:` and
    `environment:` terms (`!` negates one) and free text found in the message, all of
    which must hold."""
    if query.count('"') % 2:
        raise StandinError(400, "Parse error: unbalanced quotes in the query")
    tests: list[tuple[bool, Callable[[ErrorStream], bool]]] = [
        (term.startswith("!"), _term_test(term.lstrip("!")))
        for term in re.findall(r'!?[\w.]+:"[^"]*"|"[^"]*"|\S+', query)
    ]
    return lambda stream: all(test(stream) != negated for negated, test in tests)


# -- the demo ------------------------------------------------------------------------------------

DEMO_ORGANIZATION = "backout-demo"
DEMO_TOKEN_ENV = "DEMO_SENTRY_TOKEN"
DEMO_PROJECTS = ("storefront-web", "storefront-api", "payments-api")
# The demo service whose rollback a sentry_errors check verifies, and its Deployment.
DEMO_CHECKED_SERVICE = ("storefront-api", "storefront", "api")
DEMO_ERRORS_PER_MINUTE = 12
DEMO_CHECK_WINDOW_MINUTES = 1


def seed_demo(connections: Connections) -> HostedSeed:
    """Start the Sentry stand-in with organization backout-demo and its projects; the
    token goes to the console's processes as DEMO_SENTRY_TOKEN. It serves no service of
    its own: `with_sentry_check` gives storefront-api a check against it."""
    standin = SentryStandin(token=secrets.token_urlsafe(24))
    standin.start()
    for project in DEMO_PROJECTS:
        standin.add_project(DEMO_ORGANIZATION, project)
    return HostedSeed(standin, [], env={DEMO_TOKEN_ENV: standin.token})


def with_sentry_check(
    services: Sequence[DemoService], hosted: HostedDemo | None, health: DemoHealth
) -> list[DemoService]:
    """`services` with a sentry_errors check on storefront-api, whose Sentry project
    receives DEMO_ERRORS_PER_MINUTE errors a minute exactly while its Deployment runs a
    bad image; unchanged when the Sentry stand-in is not running."""
    sentry = (
        next(
            (seed.standin for seed in hosted.seeds if isinstance(seed.standin, SentryStandin)),
            None,
        )
        if hosted is not None
        else None
    )
    if sentry is None:
        return list(services)
    service_name, namespace, deployment = DEMO_CHECKED_SERVICE

    def failing() -> bool:
        live = health.kube.get("deployments", namespace, deployment) or {}
        containers = live.get("spec", {}).get("template", {}).get("spec", {}).get("containers")
        return bool(containers) and containers[0].get("image") in health.bad_images

    # The bad release shipped two hours ago (devinfra.demo_seeding) and has erred since.
    now = sentry.clock()
    sentry.add_errors(
        DEMO_ORGANIZATION,
        service_name,
        DEMO_ERRORS_PER_MINUTE,
        start=now - timedelta(hours=2),
        until=now,
    )
    sentry.follow(DEMO_ORGANIZATION, service_name, failing, DEMO_ERRORS_PER_MINUTE)
    check = {
        "kind": "sentry_errors",
        "name": "sentry errors",
        "organization": DEMO_ORGANIZATION,
        "project": service_name,
        "environment": "production",
        "query": "level:error",
        "window": DEMO_CHECK_WINDOW_MINUTES,
        "threshold": 2,
        "api_url": sentry.url,
        "token_env": DEMO_TOKEN_ENV,
        "timeout": 5,
    }
    result = []
    for service in services:
        if service.name == service_name:
            checks = [*service.target_config.get("checks", []), check]
            service = replace(service, target_config={**service.target_config, "checks": checks})
        result.append(service)
    return result
