"""A stand-in for Vercel's REST API (https://api.vercel.com), the parts the `vercel` backend
(executors.vercel) calls, as Vercel documents them:

    GET  /v9/projects/{idOrName}             the project: {"id", "name", "framework",
        "targets": {"production": {deployment}}, "lastAliasRequest": {...} | null}
    GET  /v13/deployments/{idOrUrl}          one deployment: {"id", "url", "name",
        "projectId", "readyState", "target", "createdAt"}
    GET  /v6/deployments?projectId=&target=&limit=&until=
        Deployments newest first, `limit` (default 20, at most 100) a page:
        {"deployments": [{"uid", "url", "name", "state", "readyState", "target",
        "created"}], "pagination": {"count", "next", "prev"}}; `next` is the `created` of the
        page's last item when more follow (pass it back as `until`), else null.
    POST /v1/projects/{projectId}/rollback/{deploymentId}?description=
        Instant Rollback: 201 with no body. The alias job runs for `alias_delay` seconds
        (lastAliasRequest.jobStatus "in-progress"), then production is the deployment
        ("succeeded", or "failed" when `alias_outcome` says so) and the project is marked
        rolled back: new production builds no longer take the domains.

Every call may carry `teamId`; a project owned by a team is not found without it. Tokens go
in `Authorization: Bearer <token>`; errors are Vercel's {"error": {"code", "message"}}: 401
"forbidden" for a token it does not know, 404 "not_found", 400 "bad_request", 409
"conflict" while another alias job runs. `throttle_next(count, reset_in)` answers 429
"rate_limited" with X-RateLimit-Limit/-Remaining/-Reset (epoch seconds), as Vercel does.
`seed_demo` is the demo's.
"""

from __future__ import annotations

import itertools
import secrets
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

from devinfra.demo_hosted import HostedSeed
from devinfra.demo_services import DemoRelease, DemoService
from devinfra.hosted.server import Answer, Request, Standin, StandinError
from executors.base import Connections

ERROR_CODES = {
    400: "bad_request",
    401: "forbidden",
    403: "forbidden",
    404: "not_found",
    409: "conflict",
    429: "rate_limited",
}
RATE_LIMIT = 100


@dataclass
class Deployment:
    id: str
    url: str
    project_id: str
    state: str
    target: str | None
    created: int

    def as_json(self, name: str) -> dict[str, Any]:
        return {
            "id": self.id,
            "url": self.url,
            "name": name,
            "projectId": self.project_id,
            "readyState": self.state,
            "target": self.target,
            "createdAt": self.created,
        }

    def as_item(self, name: str) -> dict[str, Any]:
        return {
            "uid": self.id,
            "url": self.url,
            "name": name,
            "state": self.state,
            "readyState": self.state,
            "target": self.target,
            "created": self.created,
        }


@dataclass
class Project:
    id: str
    name: str
    framework: str = "nextjs"
    team_id: str | None = None
    deployments: list[Deployment] = field(default_factory=list)
    production: str | None = None
    alias_request: dict[str, Any] | None = None
    alias_done_at: float = 0.0


class VercelStandin(Standin):
    """Vercel's projects and deployments, with Instant Rollback taking `alias_delay` s."""

    name = "vercel"
    routes: ClassVar[list[tuple[str, str, str]]] = [
        ("GET", r"/v9/projects/(?P<project>[^/]+)", "get_project"),
        ("GET", r"/v13/deployments/(?P<deployment>[^/]+)", "get_deployment"),
        ("GET", r"/v6/deployments", "list_deployments"),
        ("POST", r"/v1/projects/(?P<project>[^/]+)/rollback/(?P<deployment>[^/]+)", "rollback"),
    ]

    def __init__(self, token: str = "standin-token", *, alias_delay: float = 0.6) -> None:
        super().__init__(token)
        self.alias_delay = alias_delay
        # How alias jobs end: "succeeded", or "failed" (production stays where it was).
        self.alias_outcome = "succeeded"
        self.projects: dict[str, Project] = {}
        self._throttled = 0
        self._reset_in = 1
        self._clock = itertools.count(1_764_000_000_000, 3_600_000)

    def error_body(self, status: int, message: str, **extra: Any) -> Any:
        return {
            "error": {
                "code": ERROR_CODES.get(status, "internal_server_error"),
                "message": message,
                **extra,
            }
        }

    def throttle_next(self, count: int = 1, *, reset_in: int = 1) -> None:
        """Answer the next `count` requests 429 with Vercel's rate-limit headers."""
        with self.lock:
            self._throttled, self._reset_in = count, reset_in

    def handle(self, request: Request) -> Answer:
        with self.lock:
            throttled = self._throttled > 0
            self._throttled -= 1 if throttled else 0
        if throttled:
            headers = {
                "X-RateLimit-Limit": str(RATE_LIMIT),
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": str(int(time.time()) + self._reset_in),
            }
            return Answer(429, self.error_body(429, "Rate limit exceeded"), headers)
        return super().handle(request)

    # -- seeding -----------------------------------------------------------------------------

    def add_project(self, name: str, *, team_id: str | None = None) -> Project:
        project = Project("prj_" + secrets.token_hex(12), name, team_id=team_id)
        with self.lock:
            self.projects[project.id] = project
        return project

    def deploy(
        self, project: Project, *, target: str | None = "production", state: str = "READY"
    ) -> Deployment:
        """A new deployment; a READY production one takes production, as a build does
        unless the project is rolled back."""
        with self.lock:
            suffix = secrets.token_hex(5)
            deployment = Deployment(
                "dpl_" + secrets.token_hex(12),
                f"{project.name}-{suffix}.vercel.app",
                project.id,
                state,
                target,
                next(self._clock),
            )
            project.deployments.append(deployment)
            rolled_back = (project.alias_request or {}).get("type") == "rollback"
            if target == "production" and state == "READY" and not rolled_back:
                project.production = deployment.id
            return deployment

    def production_of(self, project: Project) -> str | None:
        with self.lock:
            self._settle(project)
            return project.production

    # -- routes -----------------------------------------------------------------------------

    def _settle(self, project: Project) -> None:
        request = project.alias_request
        if (
            request
            and request["jobStatus"] == "in-progress"
            and time.monotonic() >= project.alias_done_at
        ):
            request["jobStatus"] = self.alias_outcome
            if self.alias_outcome == "succeeded":
                project.production = request["toDeploymentId"]

    def _project(self, request: Request, key: str) -> Project:
        for project in self.projects.values():
            if key in (project.id, project.name) and project.team_id in (
                None,
                request.arg("teamId"),
            ):
                self._settle(project)
                return project
        raise StandinError(404, "Project not found")

    def _find(self, request: Request, key: str) -> tuple[Project, Deployment]:
        for project in self.projects.values():
            if project.team_id not in (None, request.arg("teamId")):
                continue
            for deployment in project.deployments:
                if key in (deployment.id, deployment.url):
                    return project, deployment
        raise StandinError(404, "The deployment could not be found.")

    def get_project(self, request: Request) -> Any:
        with self.lock:
            project = self._project(request, request.params["project"])
            production = next((d for d in project.deployments if d.id == project.production), None)
            return {
                "id": project.id,
                "name": project.name,
                "framework": project.framework,
                "accountId": project.team_id or "user_standin",
                "targets": {"production": production.as_json(project.name)} if production else {},
                "lastAliasRequest": dict(project.alias_request) if project.alias_request else None,
            }

    def get_deployment(self, request: Request) -> Any:
        with self.lock:
            project, deployment = self._find(request, request.params["deployment"])
            return deployment.as_json(project.name)

    def list_deployments(self, request: Request) -> Any:
        try:
            limit = min(int(request.arg("limit") or 20), 100)
            until = int(request.arg("until") or 0)
        except ValueError:
            raise StandinError(
                400, "Invalid request: `limit` and `until` must be numbers"
            ) from None
        with self.lock:
            project = self._project(request, request.arg("projectId") or "")
            target = request.arg("target")
            matching = [
                d
                for d in sorted(project.deployments, key=lambda d: -d.created)
                if (target is None or d.target == target) and (not until or d.created < until)
            ]
            page = matching[:limit]
            more = len(matching) > limit
            return {
                "deployments": [d.as_item(project.name) for d in page],
                "pagination": {
                    "count": len(page),
                    "next": page[-1].created if more else None,
                    "prev": page[0].created if page else None,
                },
            }

    def rollback(self, request: Request) -> Answer:
        with self.lock:
            project = self._project(request, request.params["project"])
            if request.params["project"] != project.id:
                raise StandinError(404, "Project not found")
            deployment = next(
                (d for d in project.deployments if d.id == request.params["deployment"]), None
            )
            if deployment is None:
                raise StandinError(404, "The deployment could not be found.")
            if deployment.state != "READY" or deployment.target != "production":
                raise StandinError(400, "Only READY production deployments can be rolled back to")
            running = project.alias_request
            if running and running["jobStatus"] == "in-progress":
                raise StandinError(409, "Another alias job is in progress for this project")
            project.alias_request = {
                "fromDeploymentId": project.production,
                "toDeploymentId": deployment.id,
                "jobStatus": "in-progress",
                "requestedAt": int(time.time() * 1000),
                "type": "rollback",
            }
            project.alias_done_at = time.monotonic() + self.alias_delay
            return Answer(201, None)


# -- the demo --------------------------------------------------------------------------------

DEMO_TOKEN_ENV = "DEMO_VERCEL_TOKEN"
DEMO_PROJECT = "marketing-site"
DEMO_VERSIONS = (
    ("2026.11.3", "Pricing page copy update.", True),
    ("2026.11.4", "New hero image and the newsletter form.", True),
    ("2026.12.1", "Next.js upgrade; the contact form posts to a route that 404s.", False),
)


def seed_marketing_site(standin: VercelStandin, *, token_env: str = DEMO_TOKEN_ENV) -> DemoService:
    """Project marketing-site (Next.js) with three production deployments, the newest live
    and bad, and a preview deployment beside them; its demo service."""
    project = standin.add_project(DEMO_PROJECT)
    deployments = [standin.deploy(project) for _ in DEMO_VERSIONS]
    standin.deploy(project, target=None)
    releases = tuple(
        DemoRelease(version, deployment.id, hours, notes, good)
        for (version, notes, good), deployment, hours in zip(
            DEMO_VERSIONS, deployments, (72, 26, 0.4), strict=True
        )
    )
    return DemoService(
        name=DEMO_PROJECT,
        backend="vercel",
        description="Marketing site (Next.js on Vercel)",
        target_config={"project": DEMO_PROJECT, "api_url": standin.url, "token_env": token_env},
        releases=releases,
        live_version=deployments[-1].id,
    )


def seed_demo(connections: Connections) -> HostedSeed:
    """Start the Vercel stand-in with the marketing site; the token goes to the console's
    processes as DEMO_VERCEL_TOKEN."""
    standin = VercelStandin(token="vcp_" + secrets.token_urlsafe(24), alias_delay=3.0)
    standin.start()
    service = seed_marketing_site(standin)
    return HostedSeed(standin, [service], env={DEMO_TOKEN_ENV: standin.token})
