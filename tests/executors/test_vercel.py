"""VercelBackend against the Vercel stand-in over HTTP: the live deployment, plan without
side effects, Instant Rollback to a chosen or the previous deployment, idempotency, the
wait that polls the alias job, faults, and the refusals at draft time."""

from __future__ import annotations

import time
from typing import Any

import pytest

from devinfra.hosted.vercel import Project, VercelStandin
from executors.base import (
    BackendError,
    CheckStatus,
    ConfigError,
    Connections,
    DeadlineExceeded,
    RollbackTarget,
)
from executors.options import OptionError
from executors.vercel import VercelBackend
from tests.devinfra.hosted_vercel import VERCEL_TOKEN_ENV

ROLLBACKS = r"/v1/projects/prj_[0-9a-f]+/rollback/dpl_[0-9a-f]+"


def backend(vercel: VercelStandin, **config: Any) -> VercelBackend:
    settings = {"project": "web", "api_url": vercel.url, "token_env": VERCEL_TOKEN_ENV, **config}
    return VercelBackend(settings, Connections(), poll_interval=0.05, timeout=2)


def web(vercel: VercelStandin) -> Project:
    return next(p for p in vercel.projects.values() if p.name == "web")


def ids(vercel: VercelStandin) -> list[str]:
    return [d.id for d in web(vercel).deployments]


def to(deployment: str) -> RollbackTarget:
    return RollbackTarget(version="v", artifact=deployment)


def roll_back(chosen: VercelBackend, target: RollbackTarget) -> None:
    chosen.apply(target)
    chosen.wait(target, deadline=time.monotonic() + 5)


def test_the_live_version_and_the_backup_are_the_production_deployment(vercel):
    chosen = backend(vercel, project=web(vercel).id)

    assert chosen.live_version() == ids(vercel)[-1]
    assert chosen.capture_backup() == {"deployment": ids(vercel)[-1]}
    assert chosen.describe_backup("deployment", "dpl_1") == "deployment dpl_1"


def test_the_plan_names_both_deployments_and_changes_nothing(vercel):
    first, _, live = ids(vercel)

    plan = backend(vercel).plan(to(first))

    assert plan.current_version == live and plan.target_version == first
    assert [c.as_json() for c in plan.changes] == [
        {
            "resource": "vercel/web",
            "attribute": "production deployment",
            "before": live,
            "after": first,
        }
    ]
    assert vercel.calls("POST", ROLLBACKS) == []


def test_apply_waits_for_the_alias_job_and_twice_changes_nothing(vercel):
    first, _, live = ids(vercel)
    chosen, lines = backend(vercel), []

    result = chosen.apply(to(first))
    assert result.changed and result.facts == {"from": live, "to": first}
    assert chosen.live_version() == live  # the alias job is still running
    assert not chosen.apply(to(first)).changed  # already under way
    chosen.wait(to(first), deadline=time.monotonic() + 5, log=lines.append)

    assert chosen.live_version() == first
    assert any("rollback job in-progress" in line for line in lines)
    assert len(vercel.calls("GET", r"/v9/projects/web")) > 4
    again = chosen.apply(to(first))
    assert not again.changed and again.detail == f"{first} already serves production"
    assert len(vercel.calls("POST", ROLLBACKS)) == 1
    assert [c.status for c in chosen.checks(to(first))] == [CheckStatus.PASSED] * 2
    assert vercel.calls("POST", ROLLBACKS)[0].query == {"description": "rolled back by Backout"}
    change = chosen.live_change()
    assert change is not None and change.cause == f"rollback to {first}" and change.at


def test_a_failed_alias_job_fails_the_wait_for_good(vercel):
    vercel.alias_outcome = "failed"
    first, _, live = ids(vercel)
    chosen = backend(vercel)
    chosen.apply(to(first))

    with pytest.raises(BackendError, match=f"rollback of web to {first} failed") as raised:
        chosen.wait(to(first), deadline=time.monotonic() + 5)

    assert not raised.value.retryable
    assert chosen.live_version() == live
    assert [c.status for c in chosen.checks(to(first))][0] == CheckStatus.FAILED


def test_previous_is_the_deployment_before_the_newest_on_every_retry(vercel):
    _, middle, _ = ids(vercel)
    chosen, previous = backend(vercel), RollbackTarget(previous=True)

    roll_back(chosen, previous)
    assert chosen.live_version() == middle
    assert chosen.plan(previous).is_noop
    assert not chosen.apply(previous).changed


def test_the_deployment_may_be_named_by_its_url_or_an_option(vercel):
    first = web(vercel).deployments[0]
    chosen = backend(vercel)

    roll_back(chosen, to("https://" + first.url))
    assert chosen.live_version() == first.id
    second = ids(vercel)[1]
    roll_back(chosen, RollbackTarget(params={"deployment": second}))
    assert chosen.live_version() == second


def test_a_new_build_does_not_undo_the_rollback(vercel):
    first = ids(vercel)[0]
    chosen = backend(vercel)
    roll_back(chosen, to(first))

    vercel.deploy(web(vercel))

    assert chosen.live_version() == first


def test_pagination_is_followed_to_find_the_previous_deployment(vercel):
    project = vercel.add_project("blog")
    older = vercel.deploy(project)
    for _ in range(60):
        vercel.deploy(project, state="ERROR")
    vercel.deploy(project)

    plan = backend(vercel, project="blog").plan(RollbackTarget(previous=True))

    assert plan.target_version == older.id
    assert len(vercel.calls("GET", "/v6/deployments")) == 2
    assert vercel.calls("GET", "/v6/deployments")[1].query["until"]


def test_wait_past_the_deadline_raises(vercel):
    vercel.alias_delay = 30
    first = ids(vercel)[0]
    chosen = backend(vercel)
    chosen.apply(to(first))

    with pytest.raises(DeadlineExceeded, match="rollback of web"):
        chosen.wait(to(first), deadline=time.monotonic() + 0.3)


def test_a_team_project_needs_its_team_id(vercel):
    team = vercel.add_project("shop", team_id="team_abc123")
    deployment = vercel.deploy(team)

    assert backend(vercel, project="shop", team_id="team_abc123").live_version() == deployment.id
    with pytest.raises(OptionError, match="project shop not found in Vercel"):
        backend(vercel, project="shop").live_version()
    assert vercel.calls("GET", "/v9/projects/shop")[0].query == {"teamId": "team_abc123"}


def test_throttling_is_retryable_with_the_rate_limit_reset(vercel):
    vercel.throttle_next(1, reset_in=2)

    with pytest.raises(BackendError) as raised:
        backend(vercel).live_version()

    assert raised.value.retryable and "HTTP 429: Rate limit exceeded" in str(raised.value)
    assert 0 < raised.value.retry_after <= 2  # type: ignore[attr-defined]
    assert backend(vercel).live_version() == ids(vercel)[-1]


def test_a_server_error_is_retryable(vercel):
    vercel.fail_next(502)

    with pytest.raises(BackendError) as raised:
        backend(vercel).plan(to(ids(vercel)[0]))

    assert raised.value.retryable


def test_a_wrong_token_is_a_permanent_failure_naming_vercel(vercel, monkeypatch):
    monkeypatch.setenv(VERCEL_TOKEN_ENV, "vcp_wrong")

    with pytest.raises(BackendError) as raised:
        backend(vercel).live_version()

    assert not raised.value.retryable
    assert "Vercel refused the credentials (HTTP 401)" in str(raised.value)
    assert "vcp_wrong" not in str(raised.value)


def test_a_missing_token_variable_is_a_config_error(vercel, monkeypatch):
    monkeypatch.delenv(VERCEL_TOKEN_ENV)

    with pytest.raises(ConfigError, match=f"{VERCEL_TOKEN_ENV} is not set"):
        backend(vercel).live_version()


def refusal(chosen: VercelBackend, deployment: str) -> OptionError:
    with pytest.raises(OptionError) as raised:
        chosen.validate_params(chosen.pin_release({}, deployment), live=True)
    return raised.value


def test_what_cannot_be_rolled_back_to_is_refused_at_draft_naming_the_field(vercel):
    project = web(vercel)
    building = vercel.deploy(project, state="BUILDING")
    preview = vercel.deploy(project, target=None)
    docs = next(p for p in vercel.projects.values() if p.name == "docs").deployments[0]
    chosen = backend(vercel)

    assert (
        str(refusal(chosen, "dpl_nosuch"))
        == "deployment: deployment dpl_nosuch not found in Vercel"
    )
    assert str(refusal(chosen, building.id)).endswith(f"{building.id} is BUILDING, not READY")
    assert "is a preview deployment" in str(refusal(chosen, preview.id))
    assert "belongs to another project, not web" in str(refusal(chosen, docs.id))
    gone = refusal(backend(vercel, project="nosuch"), ids(vercel)[0])
    assert gone.option == "project" and "project nosuch not found" in str(gone)
    assert chosen.validate_params({"deployment": ids(vercel)[0]}, live=True)
    assert vercel.calls("POST", ROLLBACKS) == []


@pytest.mark.parametrize(
    "text", ["dpl_" + "a" * 300, "dpl_部署", "dpl_🚀", "dpl_مرحبا", "<b>dpl_1</b>", "dpl_1\x00\n"]
)
def test_odd_deployment_text_is_refused_naming_the_option(vercel, text):
    with pytest.raises(OptionError) as raised:
        backend(vercel).validate_params({"deployment": text}, live=True)

    assert raised.value.option == "deployment"
    assert vercel.calls("GET", r"/v13/deployments/.*") == []


def test_an_odd_project_name_is_refused_by_the_config_schema(vercel):
    for name in ("web<script>", "ウェブ", "a" * 101):
        with pytest.raises(ConfigError, match="project"):
            backend(vercel, project=name)
