"""The GitHub stand-in answers as GitHub's REST API does: Bearer or token credentials,
{"message", "documentation_url"} errors, runs a page at a time behind a Link header, the
rate-limit headers, dispatches refused with 422 as GitHub refuses them, a dispatched run
that moves from queued to completed; and the demo's seed is a working service."""

from __future__ import annotations

import time
from typing import Any

import requests

from devinfra.hosted.github import DEMO_TOKEN_ENV, GitHubStandin, seed_demo
from executors.base import Connections
from executors.github_actions import GitHubActionsBackend

WORKFLOWS = "/repos/example-org/billing/actions/workflows"


def call(github: GitHubStandin, method: str, path: str, auth: str | None = None, **kw: Any):
    headers = {"Authorization": auth or f"Bearer {github.token}"}
    return requests.request(method, github.url + path, headers=headers, timeout=5, **kw)


def test_both_token_schemes_are_accepted_and_a_wrong_token_is_bad_credentials(github):
    bearer = call(github, "GET", "/repos/example-org/billing")
    classic = call(github, "GET", "/repos/example-org/billing", auth=f"token {github.token}")
    wrong = call(github, "GET", "/repos/example-org/billing", auth="Bearer ghp_nope")
    missing = call(github, "GET", "/repos/example-org/nope")

    assert bearer.json()["full_name"] == classic.json()["full_name"] == "example-org/billing"
    assert int(bearer.headers["x-ratelimit-remaining"]) < 5000
    assert (wrong.status_code, wrong.json()["message"]) == (401, "Bad credentials")
    assert missing.status_code == 404
    assert set(missing.json()) == {"message", "documentation_url", "status"}


def test_runs_come_newest_first_a_page_at_a_time_behind_a_link_header(github):
    first = call(github, "GET", f"{WORKFLOWS}/deploy.yml/runs", params={"per_page": 2})
    following = requests.get(
        first.links["next"]["url"], headers={"Authorization": f"Bearer {github.token}"}, timeout=5
    )
    successes = call(
        github, "GET", f"{WORKFLOWS}/deploy.yml/runs", params={"status": "success", "per_page": 9}
    )

    titles = [run["display_title"] for run in first.json()["workflow_runs"]]
    assert titles == ["Deploy v2.4.1", "Deploy v2.4.1-rc.1"]
    assert first.json()["total_count"] == 4 and 'rel="last"' in first.headers["Link"]
    assert [r["display_title"] for r in following.json()["workflow_runs"]] == [
        "Deploy v2.4.0",
        "Deploy v2.3.0",
    ]
    assert "next" not in following.links
    assert len(successes.json()["workflow_runs"]) == 3


def test_dispatches_are_refused_as_github_refuses_them(github):
    push_only = call(github, "POST", f"{WORKFLOWS}/ci.yml/dispatches", json={"ref": "main"})
    no_ref = call(github, "POST", f"{WORKFLOWS}/deploy.yml/dispatches", json={"ref": "nope"})
    required = call(github, "POST", f"{WORKFLOWS}/deploy.yml/dispatches", json={"ref": "main"})
    unexpected = call(
        github,
        "POST",
        f"{WORKFLOWS}/deploy.yml/dispatches",
        json={"ref": "main", "inputs": {"version": "v1", "colour": "red"}},
    )

    assert push_only.json()["message"] == "Workflow does not have 'workflow_dispatch' trigger"
    assert no_ref.json()["message"] == "No ref found for: nope"
    assert required.json()["message"] == "Required input 'version' not provided"
    assert unexpected.json()["message"] == 'Unexpected inputs provided: ["colour"]'
    assert {push_only.status_code, no_ref.status_code, required.status_code} == {422}
    assert github.dispatched() == []


def test_a_dispatched_run_is_queued_then_in_progress_then_completed(github):
    answer = call(
        github,
        "POST",
        f"{WORKFLOWS}/deploy.yml/dispatches",
        json={"ref": "main", "inputs": {"version": "v2.4.0"}},
    )
    (run,) = github.dispatched()
    path = f"/repos/example-org/billing/actions/runs/{run.id}"

    seen = []
    for _ in range(40):
        state = call(github, "GET", path).json()
        if not seen or seen[-1] != state["status"]:
            seen.append(state["status"])
        if state["status"] == "completed":
            break
        time.sleep(0.05)

    assert (answer.status_code, answer.content) == (204, b"")
    assert seen == ["queued", "in_progress", "completed"]
    assert state["conclusion"] == "success" and state["display_title"] == "Deploy v2.4.0"
    assert run.inputs == {"version": "v2.4.0", "environment": "production", "backout_stamp": ""}
    assert "run #5: completed, success" in requests.get(state["html_url"], timeout=5).text


def test_a_primary_rate_limit_answers_403_with_the_reset(github):
    github.rate_limit_next(1, reset_in=20)

    limited = call(github, "GET", "/repos/example-org/billing")

    assert limited.status_code == 403
    assert limited.headers["x-ratelimit-remaining"] == "0"
    assert 0 < int(limited.headers["x-ratelimit-reset"]) - time.time() <= 20
    assert call(github, "GET", "/repos/example-org/billing").status_code == 200


def test_the_demo_seed_is_a_service_the_backend_reads(monkeypatch):
    seed = seed_demo(Connections())
    try:
        (service,) = seed.services
        monkeypatch.setenv(DEMO_TOKEN_ENV, seed.env[DEMO_TOKEN_ENV])
        chosen = GitHubActionsBackend(service.target_config, Connections())

        assert service.target_config["api_url"] == seed.standin.url
        assert chosen.live_version() == service.live_version == "v2.4.1"
        chosen.check_workflow()
    finally:
        seed.standin.stop()
