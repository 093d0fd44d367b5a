"""GitHubActionsBackend against the GitHub stand-in over HTTP: the live version from the runs,
the dispatch and the run it started found by its stamp (once, whatever the retries), the
run followed to its conclusion, draft-time refusals naming the field, rate limits and
credentials."""

from __future__ import annotations

import time
from typing import Any

import pytest

from devinfra.hosted.github import DEMO_REPOSITORY, GitHubStandin
from executors.base import (
    BackendError,
    CheckStatus,
    ConfigError,
    Connections,
    DeadlineExceeded,
    RollbackTarget,
)
from executors.github_actions import DISPATCH_STAMP, GitHubActionsBackend, dispatch_inputs
from executors.options import OptionError
from rollbacks.engine.retries import retry_after_hint
from tests.devinfra.hosted_github import GITHUB_TOKEN_ENV

DISPATCHES = r"/repos/example-org/billing/actions/workflows/deploy\.yml/dispatches"
RUNS = r"/repos/example-org/billing/actions/workflows/deploy\.yml/runs"


def backend(github: GitHubStandin, **config: Any) -> GitHubActionsBackend:
    settings = {
        "repository": DEMO_REPOSITORY,
        "workflow": "deploy.yml",
        "ref": "main",
        "inputs": {"version": "{artifact}", "environment": "production"},
        "api_url": github.url,
        "token_env": GITHUB_TOKEN_ENV,
        **config,
    }
    return GitHubActionsBackend(
        settings, Connections(), poll_interval=0.05, find_seconds=2, timeout=2
    )


def drafted(github: GitHubStandin, **params: Any) -> RollbackTarget:
    """A step drafted as the console drafts it: validated live, stamped."""
    cleaned = backend(github).validate_params(params, live=True)
    return RollbackTarget(version=cleaned["artifact"], params=cleaned)


def finish(github: GitHubStandin, target: RollbackTarget, seconds: float = 5) -> list[str]:
    lines: list[str] = []
    backend(github).wait(target, deadline=time.monotonic() + seconds, log=lines.append)
    return lines


def workflow(github: GitHubStandin, file_name: str) -> Any:
    repository = github.repositories[DEMO_REPOSITORY]
    return next(w for w in repository.workflows.values() if w.path.endswith(file_name))


def test_the_live_version_is_the_newest_successful_deploy(github):
    chosen = backend(github)

    # the failed v2.4.1-rc.1 deploy and ci.yml's runs are not deploys of a version
    assert chosen.live_version() == "v2.4.1"
    assert chosen.capture_backup() == {"version": "v2.4.1"}
    assert chosen.describe_backup("version", "v2.4.1") == "version v2.4.1"


def test_previous_is_pinned_when_drafted_and_the_stamp_is_always_the_servers(github):
    cleaned = backend(github).validate_params({DISPATCH_STAMP: "2020-01-01T00:00:00Z-000000"})
    pinned = backend(github).validate_params({}, live=True)

    assert cleaned[DISPATCH_STAMP] != "2020-01-01T00:00:00Z-000000"
    assert pinned["artifact"] == "v2.4.0"
    assert pinned[DISPATCH_STAMP] != cleaned[DISPATCH_STAMP]


def test_the_plan_names_the_inputs_and_dispatches_nothing(github):
    target = drafted(github, artifact="v2.3.0")

    plan = backend(github).plan(target)

    assert (plan.current_version, plan.target_version) == ("v2.4.1", "v2.3.0")
    (change,) = plan.changes
    assert (change.resource, change.before, change.after) == (
        "github/example-org/billing/deploy.yml",
        "v2.4.1",
        "v2.3.0",
    )
    assert "version=v2.3.0, environment=production" in plan.summary
    assert github.calls("POST", DISPATCHES) == []


def test_a_dispatch_answered_too_late_is_not_sent_again(github):
    target = drafted(github, artifact="v2.4.0")
    github.delay_next(1.0, path_prefix=DISPATCHES.replace("\\", ""))
    slow = GitHubActionsBackend(
        {**backend(github).config}, Connections(), poll_interval=0.05, find_seconds=3, timeout=0.3
    )
    lines: list[str] = []

    result = slow.apply(target, log=lines.append)
    again = backend(github).apply(target)

    assert len(github.calls("POST", DISPATCHES)) == 1 and len(github.dispatched()) == 1
    assert result.changed and not again.changed
    assert any("the dispatch was not answered" in line for line in lines), lines


def test_a_run_of_someone_else_deploying_the_version_does_not_stand_in_for_the_steps(github):
    target = drafted(github, artifact="v2.4.0")
    # Someone deploys v2.4.0 by hand after the step was drafted; this step's run is not listed.
    deploy = workflow(github, "deploy.yml")
    github.add_run(DEMO_REPOSITORY, deploy, title="Deploy v2.4.0", hours_ago=-0.01)
    assert backend(github).live_version() == "v2.4.0"

    with pytest.raises(DeadlineExceeded):
        finish(github, target, seconds=0.5)


def test_apply_dispatches_once_and_a_second_apply_finds_its_run(github):
    target = drafted(github, artifact="v2.4.0")
    lines: list[str] = []

    first = backend(github).apply(target, log=lines.append)
    second = backend(github).apply(target)

    (dispatch,) = github.calls("POST", DISPATCHES)
    assert dispatch.body == {
        "ref": "main",
        "inputs": {
            "version": "v2.4.0",
            "environment": "production",
            "backout_stamp": target.params[DISPATCH_STAMP],
        },
    }
    assert dispatch.headers["accept"] == "application/vnd.github+json"
    assert dispatch.headers["x-github-api-version"] == "2022-11-28"
    (run,) = github.dispatched()
    html_url = f"{github.url}/example-org/billing/actions/runs/{run.id}"
    assert first.changed and not second.changed
    assert first.facts["html_url"] == second.facts["html_url"] == html_url
    assert first.facts["run_id"] == run.id and first.facts["from"] == "v2.4.1"
    assert html_url in first.detail and html_url in lines[-1]
    assert run.title == f"Deploy v2.4.0 {target.params[DISPATCH_STAMP]}"


def test_the_run_is_followed_to_success_with_its_link_in_the_log(github):
    target = drafted(github, artifact="v2.4.0")
    backend(github).apply(target)

    lines = finish(github, target)
    checks = backend(github).checks(target)

    (run,) = github.dispatched()
    assert [line.rsplit(": ", 1)[1] for line in lines] == [
        "queued",
        "in_progress",
        "completed, success",
    ]
    assert all(f"/actions/runs/{run.id}" in line for line in lines)
    assert backend(github).live_version() == "v2.4.0"
    assert [(c.name, c.status) for c in checks] == [
        ("workflow run succeeded", CheckStatus.PASSED),
        ("live version is the target", CheckStatus.PASSED),
    ]
    assert backend(github).plan(target).is_noop


@pytest.mark.parametrize("conclusion", ["failure", "cancelled", "timed_out"])
def test_a_run_that_does_not_succeed_fails_the_step_naming_its_conclusion(github, conclusion):
    github.fail_version("v2.3.0", conclusion)
    target = drafted(github, artifact="v2.3.0")
    backend(github).apply(target)

    with pytest.raises(BackendError) as raised:
        finish(github, target)

    (run,) = github.dispatched()
    assert not raised.value.retryable
    assert str(raised.value) == (
        f"workflow deploy.yml of example-org/billing on main: run #{run.number} concluded "
        f"{conclusion}: {github.url}/example-org/billing/actions/runs/{run.id}"
    )
    checks = {c.name: c.status for c in backend(github).checks(target)}
    assert checks == {
        "workflow run succeeded": CheckStatus.FAILED,
        "live version is the target": CheckStatus.FAILED,
    }
    assert backend(github).live_version() == "v2.4.1"


def test_a_run_still_going_at_the_deadline_raises_deadline_exceeded(github):
    github.run_seconds = 30
    target = drafted(github, artifact="v2.4.0")
    backend(github).apply(target)

    with pytest.raises(DeadlineExceeded, match="in_progress"):
        finish(github, target, seconds=0.6)


def test_a_version_already_live_dispatches_nothing(github):
    target = drafted(github, artifact="v2.4.1")

    result = backend(github).apply(target)
    lines = finish(github, target)

    assert not result.changed and "v2.4.1 is live" in result.detail
    assert backend(github).plan(target).is_noop
    assert lines == ["v2.4.1 is live; no run was needed"]
    assert github.calls("POST", DISPATCHES) == []


def test_a_run_github_lists_late_is_found_by_the_wait(github):
    github.listing_delay = 0.4
    target = drafted(github, artifact="v2.4.0")
    chosen = backend(github)
    chosen.find_seconds = 0.1

    applied = chosen.apply(target)
    lines = finish(github, target)

    assert applied.changed and applied.detail.endswith("GitHub lists no run yet")
    assert lines[0] == (
        "waiting for GitHub to list the run dispatched on workflow deploy.yml of "
        "example-org/billing on main"
    )
    assert lines[-1].endswith(": completed, success")
    assert len(github.calls("POST", DISPATCHES)) == 1


def test_a_step_whose_earlier_attempt_dispatched_does_not_dispatch_again(github):
    target = drafted(github, artifact="v2.4.0")
    earlier = backend(github)
    # an earlier attempt's dispatch, its worker lost before it recorded the apply
    earlier.api.send("POST", earlier.workflow_path + "/dispatches", earlier.dispatch_body(target))

    retried = backend(github).apply(target)

    assert not retried.changed and "already" in retried.detail
    assert len(github.calls("POST", DISPATCHES)) == 1


def test_the_run_is_found_past_the_first_page_of_runs(github):
    target = drafted(github, artifact="v2.4.0")
    backend(github).apply(target)
    deploy = workflow(github, "deploy.yml")
    for number in range(130):  # newer runs push it to the second page
        github.add_run(DEMO_REPOSITORY, deploy, title=f"Smoke test {number}", hours_ago=-0.01)

    again = backend(github).apply(target)
    finish(github, target)

    assert not again.changed
    pages = [call.query.get("page") for call in github.calls("GET", RUNS)]
    assert "2" in pages
    assert backend(github).live_version() == "v2.4.0"  # past 130 untitled successful runs


def test_a_primary_rate_limit_is_retryable_until_its_reset(github):
    github.rate_limit_next(1, reset_in=30)

    with pytest.raises(BackendError) as raised:
        backend(github).live_version()

    assert raised.value.retryable
    assert 25 <= (retry_after_hint(raised.value) or 0) <= 31
    assert "API rate limit exceeded" in str(raised.value)
    assert backend(github).live_version() == "v2.4.1"


@pytest.mark.parametrize("status", [403, 429])
def test_a_secondary_rate_limit_is_retryable_with_its_retry_after(github, status):
    target = drafted(github, artifact="v2.4.0")
    github.fail_next(status, retry_after="7", path_prefix="/repos/example-org/billing/actions")

    with pytest.raises(BackendError) as raised:
        backend(github).apply(target)

    assert raised.value.retryable and retry_after_hint(raised.value) == 7
    assert github.calls("POST", DISPATCHES) == []


def test_a_server_error_is_retryable(github):
    github.fail_next(503)

    with pytest.raises(BackendError) as raised:
        backend(github).live_version()

    assert raised.value.retryable


def test_a_wrong_token_is_a_permanent_failure_naming_github(github, monkeypatch):
    monkeypatch.setenv(GITHUB_TOKEN_ENV, "ghp_wrong-token-value")

    with pytest.raises(BackendError) as raised:
        backend(github).live_version()

    assert not raised.value.retryable
    assert "GitHub refused the credentials (HTTP 401): Bad credentials" in str(raised.value)
    assert "ghp_wrong-token-value" not in str(raised.value)


def test_a_missing_token_variable_is_a_config_error_naming_it(github, monkeypatch):
    monkeypatch.delenv(GITHUB_TOKEN_ENV)

    with pytest.raises(ConfigError, match=f"variable {GITHUB_TOKEN_ENV} is not set"):
        backend(github).live_version()


def test_a_draft_github_cannot_answer_is_refused_naming_the_token_or_the_url(github, monkeypatch):
    github.fail_next(503)
    unavailable = refusal(github)
    monkeypatch.setenv(GITHUB_TOKEN_ENV, "ghp_wrong-token-value")
    wrong_token = refusal(github)
    monkeypatch.delenv(GITHUB_TOKEN_ENV)
    unset = refusal(github)

    assert unavailable.option == "api_url" and "cannot be asked now" in unavailable.reason
    assert wrong_token.option == "token_env" and "refused the credentials" in wrong_token.reason
    assert "ghp_wrong-token-value" not in wrong_token.reason
    assert unset.option == "token_env" and GITHUB_TOKEN_ENV in unset.reason


def test_a_dispatch_github_refuses_is_permanent_with_its_message(github):
    target = drafted(github, artifact="v2.4.0")
    deploy = workflow(github, "deploy.yml")
    deploy.text = deploy.text.replace("      environment:\n", "      region:\n")

    with pytest.raises(BackendError) as raised:
        backend(github).apply(target)

    assert not raised.value.retryable
    assert 'HTTP 422: Unexpected inputs provided: ["environment"]' in str(raised.value)


def refusal(github: GitHubStandin, **config: Any) -> OptionError:
    with pytest.raises(OptionError) as raised:
        backend(github, **config).validate_params({}, live=True)
    return raised.value


def test_what_a_dispatch_cannot_reach_is_refused_when_drafted_naming_the_field(github):
    missing_repository = refusal(github, repository="example-org/nope")
    missing_workflow = refusal(github, workflow="release.yml")
    push_only = refusal(github, workflow="ci.yml")
    missing_ref = refusal(github, ref="release/9")
    undeclared = refusal(github, inputs={"version": "{artifact}", "region": "eu"})
    required = refusal(github, inputs={"environment": "{artifact}"})

    assert (missing_repository.option, missing_repository.reason) == (
        "repository",
        "repository example-org/nope not found on GitHub",
    )
    assert (missing_workflow.option, missing_workflow.reason) == (
        "workflow",
        "workflow release.yml not found in example-org/billing",
    )
    assert (push_only.option, push_only.reason) == (
        "workflow",
        ".github/workflows/ci.yml on main has no workflow_dispatch trigger: GitHub would "
        "refuse the dispatch (HTTP 422)",
    )
    assert missing_ref.option == "ref" and "at ref release/9" in missing_ref.reason
    assert undeclared.option == "inputs" and "declares no input region" in undeclared.reason
    assert (required.option, required.reason) == ("inputs", "the workflow requires version")


def test_a_workflow_whose_runs_cannot_be_found_or_run_is_refused_when_drafted(github):
    deploy = workflow(github, "deploy.yml")
    deploy.text = deploy.text.replace(" ${{ inputs.backout_stamp }}", "")
    no_stamp = refusal(github)
    deploy.state = "disabled_manually"
    disabled = refusal(github)

    assert no_stamp.option == "workflow"
    assert "run-name must show ${{ inputs.backout_stamp }}" in no_stamp.reason
    assert (disabled.option, disabled.reason) == (
        "workflow",
        "workflow deploy.yml is disabled_manually, not active",
    )


def test_no_earlier_version_to_go_back_to_is_refused_naming_the_artifact(github):
    github.repositories[DEMO_REPOSITORY].workflows.clear()
    github.add_workflow(
        DEMO_REPOSITORY,
        "Deploy",
        ".github/workflows/deploy.yml",
        workflow_text := "run-name: Deploy ${{ inputs.version }} ${{ inputs.backout_stamp }}\n"
        "on:\n  workflow_dispatch:\n    inputs:\n      version: {}\n      environment: {}\n"
        "      backout_stamp: {}\n",
    )

    error = refusal(github)

    assert dispatch_inputs(workflow_text) == {"version": {}, "environment": {}, "backout_stamp": {}}
    assert error.option == "artifact" and "deployed another version" in error.reason


@pytest.mark.parametrize(
    ("artifact", "reason"),
    [
        ("v" * 201, "must be at most 200 characters"),
        ("版本-2.4 🚀", "does not match the expected form"),
        ("v2.4.0\u202e", "does not match the expected form"),
        ("<script>alert(1)</script>", "does not match the expected form"),
        ("v2.4.0\x07", "must not contain control characters"),
    ],
)
def test_an_artifact_that_is_no_version_is_refused_naming_it(github, artifact, reason):
    with pytest.raises(OptionError) as raised:
        backend(github).validate_params({"artifact": artifact}, live=True)

    assert raised.value.option == "artifact" and reason in raised.value.reason
    assert github.calls("GET", r"/repos/.*") == []


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"inputs": {"environment": "production"}}, "no input receives {artifact}"),
        ({"inputs": {"backout_stamp": "{artifact}"}}, "backout_stamp is the stamp_input"),
        ({"title_pattern": "Deploy (\\S+)"}, "needs a group named version"),
        ({"title_pattern": "Deploy ("}, "not a regular expression"),
        ({"repository": "example-org"}, "repository: 'example-org' does not match"),
        ({"workflow": "../deploy.yml"}, "workflow: '../deploy.yml' does not match"),
        ({"inputs": {"ver sion": "{artifact}"}}, "inputs: 'ver sion' does not match"),
    ],
)
def test_a_target_config_that_cannot_work_is_refused(github, config, message):
    with pytest.raises(ConfigError) as raised:
        backend(github, **config)

    assert message in str(raised.value)


def test_a_numeric_workflow_id_works_as_the_file_name_does(github):
    deploy = workflow(github, "deploy.yml")
    by_id = backend(github, workflow=str(deploy.id))

    assert by_id.live_version() == "v2.4.1"
    by_id.check_workflow()
