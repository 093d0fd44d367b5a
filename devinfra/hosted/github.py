"""A stand-in for GitHub's REST API (version 2022-11-28), the parts the `github_actions`
backend (executors.github_actions) calls:

    GET  /repos/{owner}/{repo}                                   the repository
    GET  /repos/{owner}/{repo}/contents/{path}?ref=              a file, base64 encoded
    GET  /repos/{owner}/{repo}/actions/workflows/{id or file}    a workflow
    POST /repos/{owner}/{repo}/actions/workflows/{id or file}/dispatches  {"ref", "inputs"}
        204 and no body; 422 for a workflow without `workflow_dispatch`, a disabled one,
        a ref that does not exist, inputs it does not declare or required ones missing.
    GET  /repos/{owner}/{repo}/actions/workflows/{id or file}/runs
        ?event=&branch=&status=&created=&per_page=&page=  {"total_count", "workflow_runs"},
        newest first, `per_page` (at most 100, default 30) a page, the other pages in a
        Link header (rel="next", rel="last"); `status` matches a status or a conclusion;
        `created` takes >=, >, <=, < or a from..to range of ISO 8601 instants or dates.
    GET  /repos/{owner}/{repo}/actions/runs/{run_id}             a run

A dispatched run's title is the workflow's `run-name` with `${{ inputs.<name> }}` filled in;
it is listed `listing_delay` seconds after the dispatch (GitHub takes a few), queued for
`queued_seconds`, in progress for `run_seconds`, then completed with conclusion success,
or the one `fail_version` set for the version it was given. Each run
has an `html_url` under the stand-in, served as a small page without a token.

Tokens go in `Authorization: Bearer <token>` (or `token <token>`). Errors are GitHub's
{"message", "documentation_url", "status"}: 401 "Bad credentials", 404 "Not Found", 422 with
the reason. Every answer carries the x-ratelimit-* headers; `rate_limit_next(count,
reset_in)` answers 403 "API rate limit exceeded" with x-ratelimit-remaining 0 and the reset
instant, and the frame's `fail_next(429 or 403, retry_after=...)` a secondary limit.
"""

from __future__ import annotations

import base64
import datetime
import itertools
import re
import secrets
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import urlencode

from devinfra.demo_hosted import HostedSeed
from devinfra.demo_services import DemoRelease, DemoService
from devinfra.hosted.server import Answer, Request, Standin, StandinError
from executors.base import Connections
from executors.github_actions import dispatch_inputs

DOCS = "https://docs.github.com/rest"
_OWNER_REPO = r"/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)"
_WORKFLOW = _OWNER_REPO + r"/actions/workflows/(?P<workflow>[^/]+)"
_EXPRESSION = re.compile(r"\$\{\{\s*(?:github\.event\.)?inputs\.([A-Za-z0-9_-]+)\s*\}\}")
MAX_INPUTS = 25
RATE_LIMIT = 5000


def _iso(moment: datetime.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _instant(text: str) -> datetime.datetime:
    for form in ("%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%d"):
        try:
            moment = datetime.datetime.strptime(text, form)
        except ValueError:
            continue
        return moment if moment.tzinfo else moment.replace(tzinfo=datetime.UTC)
    raise StandinError(422, f"created: cannot read {text!r} as a date or an ISO 8601 instant")


@dataclass
class Workflow:
    id: int
    name: str
    path: str
    text: str
    state: str = "active"
    runs: int = 0


@dataclass
class Run:
    """A workflow run. `started` is the monotonic instant a dispatched run began; a seeded
    run has none and is completed from the start."""

    id: int
    workflow: Workflow
    number: int
    title: str
    branch: str
    sha: str
    event: str
    created: datetime.datetime
    inputs: dict[str, str]
    conclusion: str = "success"
    started: float | None = None


@dataclass
class Repository:
    full_name: str
    id: int
    branches: dict[str, str] = field(default_factory=dict)
    workflows: dict[int, Workflow] = field(default_factory=dict)


class GitHubStandin(Standin):
    """GitHub's REST API as the module docstring describes it."""

    name: ClassVar[str] = "github"
    routes: ClassVar[list[tuple[str, str, str]]] = [
        ("GET", _OWNER_REPO, "get_repository"),
        ("GET", _OWNER_REPO + r"/contents/(?P<path>.+)", "get_contents"),
        ("GET", _WORKFLOW, "get_workflow"),
        ("POST", _WORKFLOW + r"/dispatches", "dispatch"),
        ("GET", _WORKFLOW + r"/runs", "list_runs"),
        ("GET", _OWNER_REPO + r"/actions/runs/(?P<run>\d+)", "get_run"),
    ]

    def __init__(
        self,
        token: str = "ghp_standin",
        *,
        queued_seconds: float = 0.2,
        run_seconds: float = 0.5,
        listing_delay: float = 0.0,
    ) -> None:
        super().__init__(token)
        self.queued_seconds = queued_seconds
        self.run_seconds = run_seconds
        self.listing_delay = listing_delay
        self.repositories: dict[str, Repository] = {}
        self.failing_versions: dict[str, str] = {}
        self._ids = itertools.count(1001)
        self._runs: dict[int, Run] = {}
        self._rate_limited = 0
        self._reset_in = 60.0
        self._used = 0

    # -- the frame's hooks ---------------------------------------------------------------------

    def authorized(self, request: Request) -> bool:
        given = request.headers.get("authorization", "")
        return given in (f"Bearer {self.token}", f"token {self.token}")

    def error_body(self, status: int, message: str, **extra: Any) -> Any:
        return {"message": message, "documentation_url": DOCS, "status": str(status), **extra}

    def handle(self, request: Request) -> Answer:
        """GitHub's rate-limit headers on every answer, a primary limit when one is queued."""
        if re.fullmatch(r"/[^/]+/[^/]+/actions/runs/\d+", request.path):
            return self.run_page(request)  # a run's page is public, as html_url points there
        with self.lock:
            limited = self._rate_limited > 0
            self._rate_limited -= 1 if limited else 0
            self._used += 0 if limited else 1
            reset = int(time.time() + self._reset_in)
            headers = {
                "x-ratelimit-limit": str(RATE_LIMIT),
                "x-ratelimit-remaining": "0" if limited else str(RATE_LIMIT - self._used),
                "x-ratelimit-reset": str(reset),
                "x-ratelimit-used": str(RATE_LIMIT if limited else self._used),
                "x-ratelimit-resource": "core",
            }
        if limited:
            message = "API rate limit exceeded for user ID 1."
            return Answer(403, self.error_body(403, message), headers)
        answer = super().handle(request)
        if answer.status == 401:
            answer.body = self.error_body(401, "Bad credentials")
        answer.headers = {**headers, **answer.headers}
        return answer

    # -- seeding and faults (for tests and the demo) -------------------------------------------

    def rate_limit_next(self, count: int = 1, *, reset_in: float = 1.0) -> None:
        """Answer the next `count` requests as an exhausted primary rate limit, resetting
        `reset_in` seconds later."""
        with self.lock:
            self._rate_limited, self._reset_in = count, reset_in

    def fail_version(self, version: str, conclusion: str = "failure") -> None:
        """Runs dispatched with `version` as an input's value conclude `conclusion`."""
        with self.lock:
            self.failing_versions[version] = conclusion

    def add_repository(self, full_name: str, branches: dict[str, str] | None = None) -> Repository:
        with self.lock:
            repository = Repository(full_name, next(self._ids), branches or {})
            repository.branches.setdefault("main", secrets.token_hex(20))
            self.repositories[full_name.lower()] = repository
            return repository

    def add_workflow(self, full_name: str, name: str, path: str, text: str) -> Workflow:
        with self.lock:
            repository = self.repositories[full_name.lower()]
            workflow = Workflow(next(self._ids) * 100 + 7, name, path, text)
            repository.workflows[workflow.id] = workflow
            return workflow

    def add_run(
        self,
        full_name: str,
        workflow: Workflow,
        *,
        title: str,
        hours_ago: float,
        event: str = "workflow_dispatch",
        conclusion: str = "success",
        branch: str = "main",
    ) -> Run:
        """A completed run from the past."""
        with self.lock:
            repository = self.repositories[full_name.lower()]
            created = datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=hours_ago)
            return self._new_run(
                repository, workflow, title, branch, event, created, {}, conclusion, None
            )

    def dispatched(self) -> list[Run]:
        """The runs made by dispatches, oldest first."""
        with self.lock:
            return [run for run in self._runs.values() if run.started is not None]

    # -- GitHub's behaviour --------------------------------------------------------------------

    def _new_run(
        self,
        repository: Repository,
        workflow: Workflow,
        title: str,
        branch: str,
        event: str,
        created: datetime.datetime,
        inputs: dict[str, str],
        conclusion: str,
        started: float | None,
    ) -> Run:
        workflow.runs += 1
        sha = repository.branches.get(branch, "0" * 40)
        run = Run(
            next(self._ids), workflow, workflow.runs, title, branch, sha, event, created, inputs
        )
        run.conclusion, run.started = conclusion, started
        self._runs[run.id] = run
        return run

    def _repository(self, request: Request) -> Repository:
        found = self.repositories.get(f"{request.params['owner']}/{request.params['repo']}".lower())
        if found is None:
            raise StandinError(404, "Not Found")
        return found

    def _workflow(self, request: Request) -> tuple[Repository, Workflow]:
        repository = self._repository(request)
        wanted = request.params["workflow"]
        for workflow in repository.workflows.values():
            if wanted in (str(workflow.id), workflow.path.rpartition("/")[2]):
                return repository, workflow
        raise StandinError(404, "Not Found")

    def _state(self, run: Run) -> tuple[str, str | None, datetime.datetime]:
        """The run's status, conclusion and last update now."""
        if run.started is None:
            return "completed", run.conclusion, run.created + datetime.timedelta(minutes=3)
        elapsed = time.monotonic() - run.started
        if elapsed < self.queued_seconds:
            return "queued", None, run.created
        moved = run.created + datetime.timedelta(seconds=elapsed)
        if elapsed < self.queued_seconds + self.run_seconds:
            return "in_progress", None, moved
        return "completed", run.conclusion, moved

    def _run_json(self, repository: Repository, run: Run) -> dict[str, Any]:
        status, conclusion, updated = self._state(run)
        api = f"{self.url}/repos/{repository.full_name}"
        return {
            "id": run.id,
            "name": run.workflow.name,
            "display_title": run.title,
            "run_number": run.number,
            "run_attempt": 1,
            "event": run.event,
            "status": status,
            "conclusion": conclusion,
            "workflow_id": run.workflow.id,
            "path": run.workflow.path,
            "head_branch": run.branch,
            "head_sha": run.sha,
            "created_at": _iso(run.created),
            "run_started_at": _iso(run.created),
            "updated_at": _iso(updated),
            "url": f"{api}/actions/runs/{run.id}",
            "html_url": f"{self.url}/{repository.full_name}/actions/runs/{run.id}",
            "repository": {"id": repository.id, "full_name": repository.full_name},
        }

    # -- routes --------------------------------------------------------------------------------

    def get_repository(self, request: Request) -> dict[str, Any]:
        with self.lock:
            repository = self._repository(request)
            return {
                "id": repository.id,
                "full_name": repository.full_name,
                "name": repository.full_name.partition("/")[2],
                "default_branch": "main",
                "private": True,
            }

    def get_contents(self, request: Request) -> dict[str, Any]:
        with self.lock:
            repository = self._repository(request)
            ref = request.arg("ref") or "main"
            if ref not in repository.branches:
                raise StandinError(404, f"No commit found for the ref {ref}")
            path = request.params["path"]
            for workflow in repository.workflows.values():
                if workflow.path == path:
                    content = base64.b64encode(workflow.text.encode()).decode()
                    return {
                        "type": "file",
                        "encoding": "base64",
                        "path": path,
                        "name": path.rpartition("/")[2],
                        "size": len(workflow.text.encode()),
                        "content": content,
                    }
            raise StandinError(404, "Not Found")

    def get_workflow(self, request: Request) -> dict[str, Any]:
        with self.lock:
            repository, workflow = self._workflow(request)
            return {
                "id": workflow.id,
                "name": workflow.name,
                "path": workflow.path,
                "state": workflow.state,
                "url": f"{self.url}/repos/{repository.full_name}/actions/workflows/{workflow.id}",
            }

    def dispatch(self, request: Request) -> Answer:
        body = request.body if isinstance(request.body, dict) else {}
        ref, inputs = body.get("ref"), body.get("inputs") or {}
        if not isinstance(ref, str) or not ref:
            raise StandinError(422, 'Invalid request.\n\n"ref" wasn\'t supplied.')
        if not isinstance(inputs, dict):
            raise StandinError(422, "Invalid request.\n\nFor 'properties/inputs', not an object.")
        with self.lock:
            repository, workflow = self._workflow(request)
            declared = dispatch_inputs(workflow.text)
            if declared is None:
                raise StandinError(422, "Workflow does not have 'workflow_dispatch' trigger")
            if workflow.state != "active":
                raise StandinError(
                    422, "Cannot trigger a 'workflow_dispatch' on a disabled workflow"
                )
            if ref not in repository.branches:
                raise StandinError(422, f"No ref found for: {ref}")
            if len(inputs) > MAX_INPUTS:
                raise StandinError(422, f"you may only define up to {MAX_INPUTS} `inputs`")
            unknown = sorted(name for name in inputs if name not in declared)
            if unknown:
                raise StandinError(422, f"Unexpected inputs provided: {unknown}".replace("'", '"'))
            for name, value in inputs.items():
                if not isinstance(value, str):
                    raise StandinError(422, f"For 'properties/{name}', {value!r} is not a string.")
            for name, spec in declared.items():
                if spec.get("required") and spec.get("default") is None and name not in inputs:
                    raise StandinError(422, f"Required input '{name}' not provided")
            given = {
                name: str(inputs.get(name, spec.get("default") or ""))
                for name, spec in declared.items()
            }
            title = workflow.name
            match = re.search(r"^run-name:\s*(.+)$", workflow.text, re.M)
            if match:
                title = _EXPRESSION.sub(lambda m: given.get(m.group(1), ""), match.group(1))
                title = " ".join(title.strip().strip("'\"").split())
            conclusion = next(
                (self.failing_versions[v] for v in given.values() if v in self.failing_versions),
                "success",
            )
            now = datetime.datetime.now(datetime.UTC)
            self._new_run(
                repository,
                workflow,
                title,
                ref,
                "workflow_dispatch",
                now,
                given,
                conclusion,
                time.monotonic(),
            )
        return Answer(204, None)

    def list_runs(self, request: Request) -> Answer:
        try:
            page = int(request.arg("page") or 1)
            per_page = min(int(request.arg("per_page") or 30), 100)
        except ValueError:
            raise StandinError(422, "page and per_page must be numbers") from None
        page, per_page = max(page, 1), max(per_page, 1)
        with self.lock:
            repository, workflow = self._workflow(request)
            now = time.monotonic()
            runs = [
                run
                for run in self._runs.values()
                if run.workflow is workflow
                and (run.started is None or now - run.started >= self.listing_delay)
            ]
            chosen = [
                self._run_json(repository, run)
                for run in sorted(runs, key=lambda run: (run.created, run.id), reverse=True)
            ]
        chosen = [run for run in chosen if self._matches(run, request)]
        shown = chosen[(page - 1) * per_page : page * per_page]
        last = max(1, -(-len(chosen) // per_page))
        headers = {}
        if page < last:
            base = f"{self.url}{request.path}?"
            links = [
                f'<{base}{urlencode({**request.query, "page": page + 1})}>; rel="next"',
                f'<{base}{urlencode({**request.query, "page": last})}>; rel="last"',
            ]
            headers["Link"] = ", ".join(links)
        return Answer(200, {"total_count": len(chosen), "workflow_runs": shown}, headers)

    def _matches(self, run: dict[str, Any], request: Request) -> bool:
        for name, key in (("event", "event"), ("branch", "head_branch")):
            wanted = request.arg(name)
            if wanted and run[key] != wanted:
                return False
        status = request.arg("status")
        if status and status not in (run["status"], run["conclusion"]):
            return False
        created = request.arg("created")
        if created:
            moment = _instant(run["created_at"])
            if ".." in created:
                start, _, end = created.partition("..")
                return _instant(start) <= moment <= _instant(end)
            for sign, holds in (
                (">=", lambda a, b: a >= b),
                ("<=", lambda a, b: a <= b),
                (">", lambda a, b: a > b),
                ("<", lambda a, b: a < b),
            ):
                if created.startswith(sign):
                    return bool(holds(moment, _instant(created[len(sign) :])))
            return moment.date() == _instant(created).date()
        return True

    def get_run(self, request: Request) -> dict[str, Any]:
        with self.lock:
            repository = self._repository(request)
            run = self._runs.get(int(request.params["run"]))
            if run is None or run.workflow.id not in repository.workflows:
                raise StandinError(404, "Not Found")
            return self._run_json(repository, run)

    def run_page(self, request: Request) -> Answer:
        """A run's page (where html_url points): its title and state, as plain HTML."""
        match = re.fullmatch(r"/([^/]+/[^/]+)/actions/runs/(\d+)", request.path)
        with self.lock:
            run = self._runs.get(int(match.group(2))) if match else None
            if run is None:
                return Answer(404, b"Not Found", {"Content-Type": "text/plain"})
            status, conclusion, _ = self._state(run)
        text = f"<!doctype html><title>{run.workflow.name}</title><p>run #{run.number}: {status}"
        text += f", {conclusion}</p>" if conclusion else "</p>"
        return Answer(200, text.encode(), {"Content-Type": "text/html; charset=utf-8"})


# -- the demo --------------------------------------------------------------------------------

DEMO_TOKEN_ENV = "DEMO_GITHUB_TOKEN"
DEMO_REPOSITORY = "example-org/billing"
DEMO_SERVICE = "billing-worker"
DEPLOY_WORKFLOW = """\
name: Deploy billing-worker
run-name: Deploy ${{ inputs.version }} ${{ inputs.backout_stamp }}
on:
  push:
    branches: [main]
  workflow_dispatch:
    inputs:
      version:
        description: Release of billing-worker to deploy
        required: true
      environment:
        description: Where to deploy it
        default: production
      backout_stamp:
        description: Set by Backout to find the run it started
        default: ""
jobs:
  deploy:
    runs-on: ubuntu-latest
    environment: ${{ inputs.environment }}
    steps:
      - uses: actions/checkout@v4
      - run: ./scripts/deploy "$VERSION"
        env:
          VERSION: ${{ inputs.version }}
"""
CI_WORKFLOW = """\
name: CI
on: [push, pull_request]
jobs:
  test:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - run: make test
"""
DEMO_RELEASES = (
    DemoRelease("v2.3.0", "v2.3.0", 96, "Invoices grouped by customer", True),
    DemoRelease("v2.4.0", "v2.4.0", 30, "Retries card payments once on timeouts", True),
    DemoRelease("v2.4.1", "v2.4.1", 1.5, "New tax rounding: invoices off by one cent", False),
)


def seed_billing(standin: GitHubStandin, *, token_env: str = DEMO_TOKEN_ENV) -> DemoService:
    """Repository example-org/billing with deploy.yml (dispatchable, its past deploys of
    v2.3.0, v2.4.0 and the live v2.4.1 successful, one failed deploy between) and ci.yml
    (push only); the billing-worker demo service."""
    standin.add_repository(DEMO_REPOSITORY)
    deploy = standin.add_workflow(
        DEMO_REPOSITORY, "Deploy billing-worker", ".github/workflows/deploy.yml", DEPLOY_WORKFLOW
    )
    ci = standin.add_workflow(DEMO_REPOSITORY, "CI", ".github/workflows/ci.yml", CI_WORKFLOW)
    for release in DEMO_RELEASES:
        standin.add_run(
            DEMO_REPOSITORY,
            deploy,
            title=f"Deploy {release.artifact}",
            hours_ago=release.shipped_hours_ago,
        )
        standin.add_run(
            DEMO_REPOSITORY,
            ci,
            title=release.notes,
            hours_ago=release.shipped_hours_ago + 0.2,
            event="push",
        )
    standin.add_run(
        DEMO_REPOSITORY, deploy, title="Deploy v2.4.1-rc.1", hours_ago=3, conclusion="failure"
    )
    return DemoService(
        name=DEMO_SERVICE,
        backend="github_actions",
        description=f"Billing worker, deployed by deploy.yml in {DEMO_REPOSITORY} (GitHub Actions)",
        target_config={
            "repository": DEMO_REPOSITORY,
            "workflow": "deploy.yml",
            "ref": "main",
            "inputs": {"version": "{artifact}", "environment": "production"},
            "api_url": standin.url,
            "token_env": token_env,
        },
        releases=DEMO_RELEASES,
        live_version="v2.4.1",
    )


def seed_demo(
    connections: Connections,
    *,
    queued_seconds: float = 2.0,
    run_seconds: float = 6.0,
    listing_delay: float = 1.0,
) -> HostedSeed:
    """Start the GitHub stand-in with the billing repository; the token goes to the
    console's processes as DEMO_GITHUB_TOKEN."""
    standin = GitHubStandin(
        token="ghp_" + secrets.token_urlsafe(27),
        queued_seconds=queued_seconds,
        run_seconds=run_seconds,
        listing_delay=listing_delay,
    ).start()
    service = seed_billing(standin)
    return HostedSeed(standin, [service], env={DEMO_TOKEN_ENV: standin.token})
