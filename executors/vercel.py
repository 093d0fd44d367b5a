"""Put a Vercel project's production traffic back on an earlier production deployment, with
Vercel's Instant Rollback over its REST API (a token in `Authorization: Bearer`).

Target config: `project` (the project's id, prj_..., or its name), optional `team_id` (sent
as Vercel's `teamId` query parameter on every call, for a project owned by a team), `api_url`
(default https://api.vercel.com) and `token_env`, the environment variable holding the token
(VERCEL_TOKEN is the usual name).

A release's artifact is a deployment: its id (dpl_...) or its URL (example-abc.vercel.app,
with or without https://). The step's `deployment` option names one too; a release's
artifact is pinned into it when the step is drafted, so the draft checks it.

Why Instant Rollback and not promote. Vercel documents two calls that point the production
domains at an existing deployment without building anything:
- POST /v1/projects/{projectId}/rollback/{deploymentId}, "point production traffic to a
  previous production deployment": made for going back to a deployment that has served
  production before. Vercel then stops assigning the production domains to new production
  builds until someone promotes one, so a pipeline still pushing the bad change cannot undo
  the rollback behind the incident's back;
- POST /v10/projects/{projectId}/promote/{deploymentId}: makes any deployment production,
  the way forward once the cause is fixed (and how a rollback is undone).
A rollback goes back, so this backend uses the first, and only to production deployments:
a preview deployment is refused when the step is drafted. The call answers 201 at once and
the alias change runs as a job; the project's `lastAliasRequest` ({fromDeploymentId,
toDeploymentId, jobStatus, type}) follows it.

Versions. `live_version` is the id of the deployment serving production: the project's
`targets.production` (GET /v9/projects/{idOrName}), or, when a project does not say, the
newest READY production deployment (GET /v6/deployments?projectId=&target=production, pages
followed by `pagination.next` passed back as `until`). "previous" is the newest READY
production deployment created before the newest production deployment: a rollback builds
nothing, so the choice is the same on every retry and after the rollback.

Apply is idempotent: when the target already serves production, or the project's last alias
request is already taking production to it, nothing is sent and `changed=False`. `wait`
reads the project until production is the target and READY (a failed alias job is a
permanent failure); `checks` confirm both. Errors: 429 (Vercel's X-RateLimit-Reset or
Retry-After), 5xx and timeouts are retryable, 401/403 a permanent failure naming Vercel
(executors.rest). A project or deployment that does not exist, a deployment of another
project, not READY or never production is refused at draft time, naming `project` or
`deployment`.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from executors.base import (
    ApplyResult,
    Backend,
    BackendError,
    Change,
    CheckResult,
    CheckStatus,
    ConfigError,
    Connections,
    LiveChange,
    LogLine,
    RollbackPlan,
    RollbackTarget,
    discard_log,
    poll_until,
)
from executors.options import Option, OptionError
from executors.rest import API_URL_SCHEMA, TOKEN_ENV_SCHEMA, NotFound, RestApi

DEFAULT_API_URL = "https://api.vercel.com"
SERVICE = "Vercel"
READY = "READY"
# Alias jobs still running, and the one that ended badly (lastAliasRequest.jobStatus).
PENDING_JOBS = ("pending", "in-progress")
FAILED_JOB = "failed"
# Deployments listed per page, and at most how many pages a search reads.
PAGE_SIZE = 50
MAX_PAGES = 20
DEPLOYMENT_ID = r"dpl_[A-Za-z0-9]{1,64}"
_LABEL = r"[a-z0-9]([a-z0-9-]{0,62}[a-z0-9])?"
DEPLOYMENT_URL = rf"(https://)?{_LABEL}(\.{_LABEL})+"
DEPLOYMENT_PATTERN = f"({DEPLOYMENT_ID}|{DEPLOYMENT_URL})"

DEPLOYMENT = Option(
    "deployment",
    "Deployment",
    max_length=300,
    pattern=DEPLOYMENT_PATTERN,
    help="The production deployment to go back to: its id (dpl_...) or URL. Empty: the "
    "chosen release's deployment, or the one before the newest production deployment.",
)


@dataclass(frozen=True)
class Deployment:
    """What the backend needs of one deployment."""

    id: str
    url: str
    project_id: str
    state: str
    target: str | None
    created: int  # milliseconds since the epoch

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> Deployment:
        """From GET /v13/deployments/{id} or an item of GET /v6/deployments."""
        return cls(
            id=str(document.get("id") or document.get("uid") or ""),
            url=str(document.get("url") or ""),
            project_id=str(document.get("projectId") or ""),
            state=str(document.get("readyState") or document.get("state") or ""),
            target=document.get("target"),
            created=int(document.get("createdAt") or document.get("created") or 0),
        )

    def describe(self) -> str:
        return f"{self.id} ({self.url})" if self.url else self.id


class VercelBackend(Backend):
    """One Vercel project: point its production domains back at an earlier deployment."""

    kind = "vercel"
    label = "Vercel project"
    config_schema = {
        "type": "object",
        "properties": {
            "project": {"type": "string", "pattern": r"^[A-Za-z0-9._-]{1,100}$"},
            "team_id": {"type": "string", "pattern": r"^[A-Za-z0-9_-]{1,100}$"},
            "api_url": API_URL_SCHEMA,
            "token_env": TOKEN_ENV_SCHEMA,
        },
        "required": ["project", "token_env"],
        "additionalProperties": False,
    }
    options = (DEPLOYMENT,)

    def __init__(
        self,
        config: Mapping[str, Any],
        connections: Connections,
        *,
        poll_interval: float = 1.0,
        timeout: float = 10.0,
    ) -> None:
        super().__init__(config, connections)
        self.project = str(self.config["project"])
        self.team_id = self.config.get("team_id")
        self.poll_interval = poll_interval
        self.timeout = timeout
        self._api: RestApi | None = None

    @property
    def api(self) -> RestApi:
        """The Vercel API client, its token read from `token_env` on first use."""
        if self._api is None:
            self._api = RestApi.from_config(
                SERVICE, self.config, DEFAULT_API_URL, timeout=self.timeout
            )
        return self._api

    def _query(self, **params: Any) -> dict[str, Any]:
        return {**params, "teamId": self.team_id} if self.team_id else params

    # -- reading ---------------------------------------------------------------------------

    def _project(self) -> Mapping[str, Any]:
        try:
            return self.api.get(  # type: ignore[no-any-return]
                f"/v9/projects/{self.project}",
                params=self._query(),
                doing=f"read project {self.project}",
            )
        except NotFound:
            raise OptionError("project", f"project {self.project} not found in Vercel") from None

    def _deployment(self, reference: str) -> Deployment:
        """The deployment an id or URL names; ConfigError when there is none."""
        key = reference.removeprefix("https://").rstrip("/")
        if not re.fullmatch(DEPLOYMENT_PATTERN, key):
            raise ConfigError(f"{reference[:80]!r} is neither a deployment id nor its URL")
        try:
            answer = self.api.get(
                f"/v13/deployments/{key}", params=self._query(), doing=f"read deployment {key}"
            )
        except NotFound:
            raise ConfigError(f"deployment {key} not found in Vercel") from None
        return Deployment.from_json(answer)

    def _production_deployments(self, project_id: str) -> Iterator[Deployment]:
        """The project's production deployments, newest first."""
        for item in self.api.pages(
            "/v6/deployments",
            params=self._query(projectId=project_id, target="production", limit=PAGE_SIZE),
            items=lambda page: list(page.get("deployments") or []),
            next_page=_next_page,
            limit=MAX_PAGES,
            doing=f"list the production deployments of {self.project}",
        ):
            yield Deployment.from_json(item)

    def _live(self, project: Mapping[str, Any] | None = None) -> Deployment | None:
        """The deployment serving production now."""
        project = project if project is not None else self._project()
        production = (project.get("targets") or {}).get("production")
        if isinstance(production, Mapping) and production.get("id"):
            return Deployment.from_json({"projectId": project.get("id"), **production})
        for deployment in self._production_deployments(str(project.get("id"))):
            if deployment.state == READY:
                return deployment
        return None

    def _previous(self, project_id: str) -> Deployment:
        """The newest READY production deployment created before the newest one."""
        newest = None
        for deployment in self._production_deployments(project_id):
            if newest is None:
                newest = deployment
            elif deployment.state == READY and deployment.created < newest.created:
                return deployment
        raise ConfigError(
            f"project {self.project} has no READY production deployment before its newest one"
        )

    def _target(self, target: RollbackTarget, project: Mapping[str, Any]) -> Deployment:
        """The deployment production is to go back to, checked (see `_refusal`)."""
        chosen = target.params.get("deployment") or target.artifact
        if chosen:
            deployment = self._deployment(str(chosen))
            refusal = self._refusal(deployment, project)
            if refusal:
                raise ConfigError(refusal)
            return deployment
        if not target.previous:
            raise ConfigError(
                "a rollback needs the deployment option, a release whose artifact is a "
                "deployment, or the previous deployment"
            )
        return self._previous(str(project.get("id")))

    def _refusal(self, deployment: Deployment, project: Mapping[str, Any]) -> str:
        """Why production cannot go back to `deployment` ("" when it can)."""
        if deployment.project_id != project.get("id"):
            return f"deployment {deployment.id} belongs to another project, not {self.project}"
        if deployment.state != READY:
            return f"deployment {deployment.id} is {deployment.state or 'not ready'}, not READY"
        if deployment.target != "production":
            return (
                f"deployment {deployment.id} is a preview deployment; Instant Rollback goes "
                f"back to production deployments only"
            )
        return ""

    # -- options, versions, backups --------------------------------------------------------

    def pin_release(self, params: Mapping[str, Any], artifact: str) -> dict[str, Any]:
        """A release's deployment becomes the step's `deployment` option, checked at draft."""
        pinned = dict(params)
        if artifact and not pinned.get("deployment"):
            pinned["deployment"] = artifact
        return pinned

    def validate_params(self, params: Mapping[str, Any], *, live: bool = False) -> dict[str, Any]:
        """As the base class; with `live`, a project that does not exist is refused naming
        `project`, and a deployment that does not exist, belongs to another project, is not
        READY or never served production naming `deployment`."""
        cleaned = super().validate_params(params, live=live)
        if live:
            project = self._project()
            if cleaned.get("deployment"):
                try:
                    deployment = self._deployment(str(cleaned["deployment"]))
                except ConfigError as error:
                    raise OptionError("deployment", str(error)) from None
                refusal = self._refusal(deployment, project)
                if refusal:
                    raise OptionError("deployment", refusal)
        return cleaned

    def live_version(self) -> str | None:
        """The id of the deployment serving production."""
        live = self._live()
        return live.id if live else None

    def live_change(self) -> LiveChange | None:
        """The project's last alias request (a rollback or promotion), when there is one."""
        request = self._project().get("lastAliasRequest")
        if not isinstance(request, Mapping):
            return None
        at = None
        if isinstance(request.get("requestedAt"), int):
            at = datetime.datetime.fromtimestamp(request["requestedAt"] / 1000, datetime.UTC)
        cause = f"{request.get('type')} to {request.get('toDeploymentId')}"
        return LiveChange(SERVICE, at, cause)

    def capture_backup(self) -> dict[str, Any]:
        """The deployment serving production before a release: what a rollback goes to."""
        live = self._live()
        return {"deployment": live.id} if live else {}

    def describe_backup(self, key: str, content: Any) -> str:
        return f"deployment {content}" if key == "deployment" else ""

    # -- the rollback ----------------------------------------------------------------------

    def plan(self, target: RollbackTarget) -> RollbackPlan:
        """Which deployment will serve production; no calls that change anything."""
        project = self._project()
        live, chosen = self._live(project), self._target(target, project)
        current = live.id if live else None
        changes: tuple[Change, ...] = ()
        if current == chosen.id:
            summary = f"{chosen.describe()} already serves production of {self.project}"
        else:
            resource = f"vercel/{self.project}"
            changes = (Change(resource, "production deployment", current, chosen.id),)
            summary = (
                f"roll production of {self.project} back from {current or 'nothing'} to "
                f"{chosen.describe()} (Instant Rollback, no build; new production builds "
                f"stay off the domains until one is promoted)"
            )
        return RollbackPlan(
            backend=self.kind,
            summary=summary,
            current_version=current,
            target_version=chosen.id,
            changes=changes,
        )

    def apply(self, target: RollbackTarget, *, log: LogLine = discard_log) -> ApplyResult:
        """Request the Instant Rollback, unless production is already (going) there."""
        project = self._project()
        live, chosen = self._live(project), self._target(target, project)
        facts: dict[str, Any] = {"from": live.id if live else None, "to": chosen.id}
        if live is not None and live.id == chosen.id:
            return ApplyResult(False, f"{chosen.id} already serves production", facts)
        request = project.get("lastAliasRequest") or {}
        if request.get("toDeploymentId") == chosen.id and request.get("jobStatus") in PENDING_JOBS:
            return ApplyResult(False, f"a rollback to {chosen.id} is already under way", facts)
        log(f"{self.project}: rolling production back to {chosen.describe()}")
        self.api.request(
            "POST",
            f"/v1/projects/{project.get('id')}/rollback/{chosen.id}",
            params=self._query(description="rolled back by Backout"),
            doing=f"roll {self.project} back to {chosen.id}",
        )
        return ApplyResult(True, f"rollback of {self.project} to {chosen.id} requested", facts)

    def _state(self, wanted: str) -> tuple[bool, str]:
        """Whether `wanted` serves production and is READY, and a progress line."""
        project = self._project()
        live = self._live(project)
        request = project.get("lastAliasRequest") or {}
        job = request.get("jobStatus") if request.get("toDeploymentId") == wanted else None
        if job == FAILED_JOB and (live is None or live.id != wanted):
            raise BackendError(
                f"Vercel: the rollback of {self.project} to {wanted} failed", retryable=False
            )
        if live is not None and live.id == wanted and live.state == READY:
            return True, f"{self.project}: {wanted} serves production"
        serving = live.id if live else "nothing"
        return False, f"{self.project}: production is {serving}; rollback job {job or 'not seen'}"

    def wait(self, target: RollbackTarget, *, deadline: float, log: LogLine = discard_log) -> None:
        """Read the project until its production deployment is the target and READY."""
        wanted = self._target(target, self._project()).id
        poll_until(
            lambda: self._state(wanted),
            deadline=deadline,
            log=log,
            interval=self.poll_interval,
            what=f"rollback of {self.project}",
        )

    def checks(self, target: RollbackTarget) -> list[CheckResult]:
        """Production is the target deployment, and it is READY."""
        project = self._project()
        live, wanted = self._live(project), self._target(target, project)
        serving = live.id if live else None
        return [
            CheckResult(
                "production is the target deployment",
                CheckStatus.PASSED if serving == wanted.id else CheckStatus.FAILED,
                f"production of {self.project} is {serving or 'nothing'}; target {wanted.id}",
                observed=serving,
                threshold=wanted.id,
            ),
            CheckResult(
                "production deployment is READY",
                CheckStatus.PASSED if live and live.state == READY else CheckStatus.FAILED,
                f"{serving or 'nothing'} is {live.state if live else 'absent'}",
                observed=live.state if live else None,
                threshold=READY,
            ),
        ]


def _next_page(response: Any, page: Any) -> dict[str, Any] | None:
    """Vercel's pagination: `pagination.next` (a timestamp) is the next page's `until`."""
    following = (page.get("pagination") or {}).get("next") if isinstance(page, Mapping) else None
    return {"until": following} if following else None
