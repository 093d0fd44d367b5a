"""Deploy a chosen version by dispatching a GitHub Actions workflow (`workflow_dispatch` with
inputs) and following the run it started to its conclusion. GitHub's REST API, version
2022-11-28, with a token in `Authorization: Bearer`.

Target config: `repository` (owner/name), `workflow` (its file name, deploy.yml, or its
numeric id), `ref` (the branch or tag the workflow runs from, default main), `inputs` (the
workflow inputs to send: fixed text, where `{artifact}` becomes the artifact deployed and
`{version}` the release's label, default {"version": "{artifact}"}), `stamp_input` (the
input that carries the step's stamp, default backout_stamp), `title_pattern` (a regular
expression with a `version` group, read against a run's title, default
`Deploy (?P<version>\\S+)`), `token_env` (the environment variable holding the token) and
`api_url` (default https://api.github.com).

What the workflow must declare: a `workflow_dispatch` trigger with the inputs the config
sends (the stamp input among them), and a `run-name` that shows both the deployed version
and the stamp, e.g. `run-name: Deploy ${{ inputs.version }} ${{ inputs.backout_stamp }}`.
The draft reads the workflow file at `ref` and refuses, naming the field, a repository,
workflow or ref that does not exist, a workflow without `workflow_dispatch` (GitHub would
answer the dispatch 422), inputs it does not declare, and a run-name without the stamp.

Finding the run. A dispatch answers 204 with no run id. Each step is stamped when it is
drafted (`dispatch_stamp`, a UTC instant and a random suffix, set by the server only) and
the stamp is sent as `stamp_input`; the run it starts shows it in its title. The run is the
workflow's `workflow_dispatch` run on `ref`, created since the stamp's instant (less a
margin for clocks), whose title contains the stamp: listed newest first, page after page by
the Link header. An apply that finds it does not dispatch again (`changed=False`), so a
retried step deploys once. Only a worker lost between the dispatch and GitHub listing the
run (a few seconds; apply waits for it) could dispatch twice.

The live version. The runs API does not return a run's inputs, and a run's `head_sha` is
the commit of the workflow's branch, not what it deployed (a deploy workflow checks out or
pulls the version it is given). So the live version is the version in the title of the
newest successful run of the workflow on `ref` (any event, so that pipeline deploys count),
read with `title_pattern`; "previous" is the newest successful run's version that differs
from it, pinned as the step's `artifact` when the step is drafted.
"""

from __future__ import annotations

import base64
import datetime
import re
import secrets
import time
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import quote

import yaml

from executors.base import (
    ApplyResult,
    Backend,
    BackendError,
    Change,
    CheckResult,
    CheckStatus,
    ConfigError,
    Connections,
    LogLine,
    Option,
    RollbackPlan,
    RollbackTarget,
    discard_log,
    poll_until,
)
from executors.options import OptionError, restart_stamp
from executors.rest import (
    API_URL_SCHEMA,
    TOKEN_ENV_SCHEMA,
    NotFound,
    RestApi,
    RestError,
    link_next,
)

SERVICE = "GitHub"
DEFAULT_API_URL = "https://api.github.com"
API_VERSION = "2022-11-28"
# The step parameter the server sets when a step is drafted (a value given is replaced).
DISPATCH_STAMP = "dispatch_stamp"
STAMP_PATTERN = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)-[0-9a-f]{6}")
# How far GitHub's clock may be behind ours when runs are listed by creation time.
CLOCK_MARGIN = datetime.timedelta(minutes=10)
RUNS_PER_PAGE = 100
RUN_PAGES = 10
DEFAULT_TITLE_PATTERN = r"Deploy (?P<version>\S+)"
# Conclusions of a completed run that fail the step (anything but success does).
SUCCESS = "success"
INPUT_NAME = r"^[A-Za-z_][A-Za-z0-9_-]{0,99}$"

ARTIFACT = Option(
    "artifact",
    "Version to deploy",
    help="What the workflow's version input receives (a release's artifact); left empty, "
    "the release chosen, or the version before the live one.",
    max_length=200,
    pattern=r"[A-Za-z0-9][A-Za-z0-9._/:@+-]*",
)


def _on(document: Mapping[Any, Any]) -> Any:
    # YAML 1.1 reads the key `on` as the boolean true.
    return document.get("on", document.get(True))


def dispatch_inputs(workflow_text: str) -> dict[str, Mapping[str, Any]] | None:
    """The inputs a workflow file's `workflow_dispatch` trigger declares, or None when it
    has no such trigger; ConfigError when the file is not a YAML mapping."""
    try:
        document = yaml.safe_load(workflow_text)
    except yaml.YAMLError as error:
        raise ConfigError(f"the workflow file is not valid YAML: {error}") from None
    if not isinstance(document, Mapping):
        raise ConfigError("the workflow file is not a YAML mapping")
    triggers = _on(document)
    if triggers == "workflow_dispatch":
        return {}
    if isinstance(triggers, list):
        return {} if "workflow_dispatch" in triggers else None
    if not isinstance(triggers, Mapping) or "workflow_dispatch" not in triggers:
        return None
    dispatch = triggers.get("workflow_dispatch") or {}
    declared = dispatch.get("inputs") if isinstance(dispatch, Mapping) else None
    if not isinstance(declared, Mapping):
        return {}
    return {str(name): spec if isinstance(spec, Mapping) else {} for name, spec in declared.items()}


class GitHubActionsBackend(Backend):
    """A GitHub Actions deploy workflow: dispatch it with the version, follow its run."""

    kind = "github_actions"
    label = "GitHub Actions workflow"
    config_schema = {
        "type": "object",
        "properties": {
            "repository": {
                "type": "string",
                "pattern": r"^[A-Za-z0-9_.-]{1,100}/[A-Za-z0-9_.-]{1,100}$",
            },
            "workflow": {
                "type": "string",
                "pattern": r"^([0-9]{1,20}|[A-Za-z0-9_.-]{1,200}\.ya?ml)$",
            },
            "ref": {"type": "string", "pattern": r"^[A-Za-z0-9_./-]{1,255}$"},
            "inputs": {
                "type": "object",
                "propertyNames": {"pattern": INPUT_NAME},
                "additionalProperties": {"type": "string", "maxLength": 1000},
                "maxProperties": 24,
            },
            "stamp_input": {"type": "string", "pattern": INPUT_NAME},
            "title_pattern": {"type": "string", "minLength": 1, "maxLength": 300},
            "api_url": API_URL_SCHEMA,
            "token_env": TOKEN_ENV_SCHEMA,
        },
        "required": ["repository", "workflow", "token_env"],
        "additionalProperties": False,
    }
    options = (ARTIFACT,)

    def __init__(
        self,
        config: Mapping[str, Any],
        connections: Connections,
        *,
        poll_interval: float = 5.0,
        find_seconds: float = 30.0,
        timeout: float = 10.0,
    ) -> None:
        super().__init__(config, connections)
        self.repository = str(self.config["repository"])
        self.workflow = str(self.config["workflow"])
        self.ref = str(self.config.get("ref") or "main")
        self.inputs: dict[str, str] = dict(self.config.get("inputs") or {"version": "{artifact}"})
        self.stamp_input = str(self.config.get("stamp_input") or "backout_stamp")
        if self.stamp_input in self.inputs:
            raise ConfigError(f"inputs: {self.stamp_input} is the stamp_input, set by the backend")
        if not any("{artifact}" in value or "{version}" in value for value in self.inputs.values()):
            raise ConfigError("inputs: no input receives {artifact} or {version}")
        try:
            self.title_pattern = re.compile(
                str(self.config.get("title_pattern") or DEFAULT_TITLE_PATTERN)
            )
        except re.error as error:
            raise ConfigError(f"title_pattern: not a regular expression: {error}") from None
        if "version" not in self.title_pattern.groupindex:
            raise ConfigError("title_pattern: needs a group named version, (?P<version>...)")
        self.poll_interval = poll_interval
        self.find_seconds = find_seconds
        self.timeout = timeout
        self._api: RestApi | None = None

    @property
    def api(self) -> RestApi:
        """The GitHub REST client, its token read from `token_env` on first use."""
        if self._api is None:
            self._api = RestApi.from_config(
                SERVICE,
                self.config,
                DEFAULT_API_URL,
                timeout=self.timeout,
                headers={
                    "Accept": "application/vnd.github+json",
                    "X-GitHub-Api-Version": API_VERSION,
                },
            )
        return self._api

    @property
    def where(self) -> str:
        return f"workflow {self.workflow} of {self.repository} on {self.ref}"

    @property
    def _repo_path(self) -> str:
        return f"/repos/{self.repository}"

    @property
    def workflow_path(self) -> str:
        return f"{self._repo_path}/actions/workflows/{quote(self.workflow, safe='')}"

    # -- reading runs -------------------------------------------------------------------------

    def _runs(self, query: Mapping[str, str], doing: str) -> Iterator[Mapping[str, Any]]:
        """The workflow's runs matching `query`, newest first, page after page."""
        yield from self.api.pages(
            f"{self.workflow_path}/runs",
            params={**query, "per_page": RUNS_PER_PAGE},
            items=lambda data: list(data.get("workflow_runs") or []),
            next_page=link_next,
            limit=RUN_PAGES,
            doing=doing,
        )

    def _version_of(self, run: Mapping[str, Any]) -> str | None:
        found = self.title_pattern.search(str(run.get("display_title") or ""))
        return found.group("version") if found else None

    def _deployed(self) -> Iterator[tuple[str, Mapping[str, Any]]]:
        """(version, run) of each successful run on `ref` whose title names a version."""
        query = {"branch": self.ref, "status": SUCCESS}
        for run in self._runs(query, f"list the successful runs of {self.where}"):
            version = self._version_of(run)
            if version:
                yield version, run

    def _live_before_the_step(self, target: RollbackTarget, artifact: str) -> bool:
        """Whether `artifact` is live through a run started before this step was drafted
        (apply then dispatched nothing): a run of someone else's since does not stand in for
        this step's own."""
        _, when = self._stamp(target)
        for version, run in self._deployed():
            created = str(run.get("created_at") or "")
            return version == artifact and created < when.strftime("%Y-%m-%dT%H:%M:%SZ")
        return False

    def live_version(self) -> str | None:
        """The version the newest successful run of the workflow deployed (its title's)."""
        for version, _ in self._deployed():
            return version
        return None

    def _previous(self) -> str:
        """The version deployed before the live one: the newest successful run's version
        that differs from the live one."""
        live = None
        for version, _ in self._deployed():
            if live is None:
                live = version
            elif version != live:
                return version
        raise ConfigError(f"no successful run of {self.where} deployed another version before")

    def capture_backup(self) -> dict[str, Any]:
        """The version live before a release: what a dispatch goes back to."""
        return {"version": self.live_version()}

    def describe_backup(self, key: str, content: Any) -> str:
        return f"version {content}" if key == "version" and content else ""

    def _stamp(self, target: RollbackTarget) -> tuple[str, datetime.datetime]:
        stamp = target.params.get(DISPATCH_STAMP)
        found = STAMP_PATTERN.fullmatch(stamp) if isinstance(stamp, str) else None
        if found is None:
            raise ConfigError(
                "a dispatch needs the dispatch_stamp set when it is drafted (draft it again)"
            )
        when = datetime.datetime.strptime(found.group(1), "%Y-%m-%dT%H:%M:%SZ")
        return found.group(0), when.replace(tzinfo=datetime.UTC)

    def stamped_run(self, target: RollbackTarget) -> Mapping[str, Any] | None:
        """The run this step's dispatch started, or None when GitHub lists none (yet)."""
        stamp, when = self._stamp(target)
        since = (when - CLOCK_MARGIN).strftime("%Y-%m-%dT%H:%M:%SZ")
        query = {"event": "workflow_dispatch", "branch": self.ref, "created": f">={since}"}
        for run in self._runs(query, f"find the run dispatched for {stamp}"):
            if stamp in str(run.get("display_title") or ""):
                return run
        return None

    def _run(self, run_id: Any) -> Mapping[str, Any]:
        return dict(
            self.api.get(f"{self._repo_path}/actions/runs/{run_id}", doing=f"read run {run_id}")
        )

    # -- options at draft ---------------------------------------------------------------------

    def pin_release(self, params: Mapping[str, Any], artifact: str) -> dict[str, Any]:
        """A release's artifact is what the workflow deploys, unless another is chosen."""
        pinned = dict(params)
        if not pinned.get("artifact"):
            pinned["artifact"] = artifact
        return pinned

    def validate_params(self, params: Mapping[str, Any], *, live: bool = False) -> dict[str, Any]:
        """As the base class, and stamped (`dispatch_stamp`, set here only); with `live`,
        the repository, workflow, ref and the workflow file's dispatch inputs are checked
        (OptionError naming `repository`, `workflow`, `ref` or `inputs`; `token_env` or
        `api_url` when GitHub cannot be asked), and a step with no artifact is pinned to
        the version before the live one (naming `artifact`)."""
        if isinstance(params, Mapping):
            params = {name: value for name, value in params.items() if name != DISPATCH_STAMP}
        cleaned = super().validate_params(params, live=live)
        if live:
            try:
                self.check_workflow()
                if not cleaned.get("artifact"):
                    try:
                        cleaned["artifact"] = self._previous()
                    except ConfigError as error:
                        raise OptionError("artifact", str(error)) from None
            except OptionError:
                raise
            except BackendError as error:
                raise self._draft_refusal(error) from None
        cleaned[DISPATCH_STAMP] = f"{restart_stamp()}-{secrets.token_hex(3)}"
        return cleaned

    @staticmethod
    def _draft_refusal(error: BackendError) -> OptionError:
        """A failure to ask GitHub at draft time, as a refusal naming the field to look at:
        `token_env` for a token that is unset or refused, else `api_url`."""
        refused = isinstance(error, RestError) and error.status in (401, 403)
        if (
            (refused and not error.retryable)
            or "token_env" in str(error)
            or ("environment variable" in str(error))
        ):
            return OptionError("token_env", str(error))
        return OptionError("api_url", f"GitHub cannot be asked now: {error}")

    def check_workflow(self) -> None:
        """Refuse, naming the field, what would make a dispatch fail: a repository, workflow
        or ref that does not exist, a disabled workflow, one without `workflow_dispatch`,
        inputs it does not declare or requires and does not get, a run-name without the
        stamp."""
        try:
            self.api.get(self._repo_path, doing=f"read repository {self.repository}")
        except NotFound:
            raise OptionError(
                "repository", f"repository {self.repository} not found on GitHub"
            ) from None
        try:
            workflow = self.api.get(self.workflow_path, doing=f"read workflow {self.workflow}")
        except NotFound:
            raise OptionError(
                "workflow", f"workflow {self.workflow} not found in {self.repository}"
            ) from None
        if workflow.get("state") != "active":
            raise OptionError(
                "workflow", f"workflow {self.workflow} is {workflow.get('state')}, not active"
            )
        text = self._workflow_file(str(workflow.get("path") or ""))
        try:
            declared = dispatch_inputs(text)
        except ConfigError as error:
            raise OptionError("workflow", f"{workflow.get('path')}: {error}") from None
        if declared is None:
            raise OptionError(
                "workflow",
                f"{workflow.get('path')} on {self.ref} has no workflow_dispatch trigger: GitHub "
                "would refuse the dispatch (HTTP 422)",
            )
        sent = [*self.inputs, self.stamp_input]
        unknown = [name for name in sent if name not in declared]
        if unknown:
            raise OptionError(
                "inputs",
                f"{workflow.get('path')} declares no input {', '.join(unknown)} (it declares "
                f"{', '.join(declared) or 'none'})",
            )
        missing = [
            name
            for name, spec in declared.items()
            if spec.get("required") and spec.get("default") is None and name not in sent
        ]
        if missing:
            raise OptionError("inputs", f"the workflow requires {', '.join(missing)}")
        run_name = str(yaml.safe_load(text).get("run-name") or "")
        if not re.search(rf"inputs\.{re.escape(self.stamp_input)}\b", run_name):
            raise OptionError(
                "workflow",
                f"{workflow.get('path')}: run-name must show ${{{{ inputs.{self.stamp_input} "
                "}}, so that the run a dispatch starts can be found",
            )

    def _workflow_file(self, path: str) -> str:
        """The workflow file's text at `ref`; OptionError naming `ref` when it is not there."""
        try:
            document = self.api.get(
                f"{self._repo_path}/contents/{quote(path)}",
                params={"ref": self.ref},
                doing=f"read {path} at {self.ref}",
            )
        except NotFound:
            raise OptionError(
                "ref", f"{path} not found at ref {self.ref} of {self.repository}"
            ) from None
        try:
            return base64.b64decode(str(document.get("content") or "")).decode()
        except ValueError:
            raise OptionError("workflow", f"{path} is not a readable text file") from None

    # -- plan, apply, wait, checks ------------------------------------------------------------

    def wanted(self, target: RollbackTarget) -> str:
        """The artifact the step deploys: its pinned `artifact`, else the release's."""
        artifact = target.params.get("artifact") or target.artifact
        if artifact:
            return str(artifact)
        if target.previous:
            return self._previous()
        raise ConfigError("a dispatch needs a release, the artifact option, or previous")

    def dispatch_body(self, target: RollbackTarget) -> dict[str, Any]:
        """The dispatch's body: `ref` and the inputs, the stamp among them."""
        artifact = self.wanted(target)
        version = target.version or artifact
        inputs = {
            name: value.replace("{artifact}", artifact).replace("{version}", version)
            for name, value in self.inputs.items()
        }
        inputs[self.stamp_input] = self._stamp(target)[0]
        return {"ref": self.ref, "inputs": inputs}

    @staticmethod
    def describe_run(run: Mapping[str, Any]) -> str:
        """A run in a few words, with its link: "run #7 (<html_url>): in_progress"."""
        state = run.get("status")
        if state == "completed":
            state = f"completed, {run.get('conclusion')}"
        return f"run #{run.get('run_number')} ({run.get('html_url')}): {state}"

    def plan(self, target: RollbackTarget) -> RollbackPlan:
        """The dispatch with its inputs; nothing when this step's run exists already or the
        version is live."""
        live, artifact = self.live_version(), self.wanted(target)
        run = self.stamped_run(target)
        changes: tuple[Change, ...] = ()
        if run is not None:
            summary = f"this step dispatched {self.where} already: {self.describe_run(run)}"
        elif live == artifact:
            summary = f"{artifact} is live (the last successful run of {self.where} deployed it)"
        else:
            inputs = self.dispatch_body(target)["inputs"]
            shown = ", ".join(f"{name}={value}" for name, value in inputs.items())
            summary = f"dispatch {self.where} with inputs {shown}, then follow its run"
            resource = f"github/{self.repository}/{self.workflow}"
            changes = (Change(resource, "deployed version", live, artifact),)
        return RollbackPlan(self.kind, summary, live, artifact, changes)

    def apply(self, target: RollbackTarget, *, log: LogLine = discard_log) -> ApplyResult:
        """Dispatch the workflow, then wait for GitHub to list its run; a no-op when this
        step's run exists already or the version is live."""
        artifact = self.wanted(target)
        run = self.stamped_run(target)
        if run is not None:
            detail = f"this step dispatched {self.where} already: {self.describe_run(run)}"
            return ApplyResult(False, detail, self._facts(run, artifact))
        live = self.live_version()
        if live == artifact:
            return ApplyResult(False, f"{artifact} is live; nothing dispatched", {"to": artifact})
        body = self.dispatch_body(target)
        log(f"dispatching {self.where} to deploy {artifact}")
        try:
            self.api.send(
                "POST", f"{self.workflow_path}/dispatches", body, doing=f"dispatch {self.where}"
            )
        except BackendError as error:
            # No answer, or a 5xx, may still have dispatched: a retry must not dispatch a
            # second run, so look for this step's run before giving the error back.
            if not error.retryable or self._await_listing(target) is None:
                raise
            log(f"{self.where}: the dispatch was not answered ({error}), but its run is listed")
        run = self._await_listing(target)
        if run is None:
            detail = f"dispatched {self.where} to deploy {artifact}; GitHub lists no run yet"
            return ApplyResult(True, detail, {"from": live, "to": artifact})
        log(f"{self.where}: {self.describe_run(run)}")
        detail = f"dispatched {self.where} to deploy {artifact}: {self.describe_run(run)}"
        return ApplyResult(True, detail, {"from": live, **self._facts(run, artifact)})

    def _facts(self, run: Mapping[str, Any], artifact: str) -> dict[str, Any]:
        return {
            "to": artifact,
            "run_id": run.get("id"),
            "run_number": run.get("run_number"),
            "html_url": run.get("html_url"),
        }

    def _await_listing(self, target: RollbackTarget) -> Mapping[str, Any] | None:
        """The dispatched run, once GitHub lists it (within `find_seconds`), else None."""
        until = time.monotonic() + self.find_seconds
        while True:
            run = self.stamped_run(target)
            if run is not None or time.monotonic() >= until:
                return run
            time.sleep(min(self.poll_interval, 1.0))

    def wait(self, target: RollbackTarget, *, deadline: float, log: LogLine = discard_log) -> None:
        """Follow this step's run until it completes; any conclusion but success fails the
        step, naming it and the run's link."""
        found: dict[str, Any] = {}
        artifact = self.wanted(target)

        def settled() -> tuple[bool, str]:
            if "id" not in found:
                listed = self.stamped_run(target)
                if listed is None:
                    if self._live_before_the_step(target, artifact):
                        return True, f"{artifact} is live; no run was needed"
                    return False, f"waiting for GitHub to list the run dispatched on {self.where}"
                found["id"] = listed.get("id")
            run = self._run(found["id"])
            if run.get("status") != "completed":
                return False, f"{self.where}: {self.describe_run(run)}"
            if run.get("conclusion") != SUCCESS:
                raise BackendError(
                    f"{self.where}: run #{run.get('run_number')} concluded "
                    f"{run.get('conclusion')}: {run.get('html_url')}"
                )
            return True, f"{self.where}: {self.describe_run(run)}"

        poll_until(
            settled, deadline=deadline, log=log, interval=self.poll_interval, what=self.where
        )

    def checks(self, target: RollbackTarget) -> list[CheckResult]:
        """This step's run concluded success; the live version is the one deployed."""
        artifact = self.wanted(target)
        live = self.live_version()
        results = []
        run = self.stamped_run(target)
        if run is None:
            results.append(
                CheckResult(
                    "workflow run succeeded",
                    CheckStatus.INCONCLUSIVE if live == artifact else CheckStatus.FAILED,
                    f"no run of {self.where} was dispatched by this step",
                )
            )
        else:
            conclusion = run.get("conclusion") or run.get("status")
            results.append(
                CheckResult(
                    "workflow run succeeded",
                    CheckStatus.PASSED if conclusion == SUCCESS else CheckStatus.FAILED,
                    self.describe_run(run),
                    observed=str(conclusion),
                    threshold=SUCCESS,
                )
            )
        results.append(
            CheckResult(
                "live version is the target",
                CheckStatus.PASSED if live == artifact else CheckStatus.FAILED,
                f"the last successful run of {self.where} deployed {live or 'nothing known'}; "
                f"target {artifact}",
                observed=live,
                threshold=artifact,
            )
        )
        return results
