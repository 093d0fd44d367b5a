"""The Sentry error-count check against the Sentry stand-in over HTTP, alone and as a
service's check spec."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from devinfra.hosted.sentry import SentryStandin
from devinfra.processes import free_port
from executors.base import CheckResult, CheckStatus, ConfigError, Connections
from executors.check_specs import validate_checks
from executors.checks import VerificationDefaults, run_check
from tests.devinfra.hosted_sentry import SENTRY_ORGANIZATION, SENTRY_TOKEN_ENV

EVENTS = f"/api/0/organizations/{SENTRY_ORGANIZATION}/events/"
PROJECTS = f"/api/0/organizations/{SENTRY_ORGANIZATION}/projects/"


@pytest.fixture(autouse=True)
def quick_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("executors.sentry_check.REQUERY_SECONDS", 0.1)
    monkeypatch.setattr("executors.sentry_check.RETRY_BACKOFF_SECONDS", 0.01)


def _now() -> datetime:
    return datetime.now(UTC)


def _check(spec: dict[str, Any], since: datetime | None = None, **changes: Any) -> CheckResult:
    checked = validate_checks([{**spec, **changes}])[0]
    return run_check(
        checked,
        version=None,
        connections=Connections(),
        defaults=VerificationDefaults(),
        since=since,
    )


def _no_token(result: CheckResult, sentry: SentryStandin) -> CheckResult:
    assert sentry.token not in f"{result.detail} {result.observed} {result.threshold}"
    return result


# -- counting --------------------------------------------------------------------------------


def test_errors_that_stopped_before_the_window_pass_with_the_count_and_threshold(
    sentry, sentry_spec
):
    sentry.add_errors(
        "acme", "web", 6, start=_now() - timedelta(minutes=20), until=_now() - timedelta(minutes=6)
    )

    result = _check(sentry_spec)

    assert result.status == CheckStatus.PASSED
    assert (result.observed, result.threshold) == (0, "≤ 3 in 5 min")
    assert result.name == "sentry acme/web"
    assert result.detail.startswith("0 error events in acme/web (production) from ")


def test_the_count_is_asked_of_the_documented_events_endpoint_for_the_project_id(
    sentry, sentry_spec
):
    _check(sentry_spec)

    (call,) = sentry.calls("GET", EVENTS)
    assert call.query["field"] == "count()" and call.query["dataset"] == "errors"
    assert call.query["project"] == sentry.project_id("acme", "web")
    assert (call.query["environment"], call.query["query"]) == ("production", "level:error")
    start, end = (datetime.fromisoformat(call.query[key]) for key in ("start", "end"))
    assert end - start == timedelta(minutes=5)


def test_more_errors_than_the_threshold_fail_with_the_count(sentry, sentry_spec):
    sentry.add_errors("acme", "web", 2, start=_now() - timedelta(minutes=30))

    result = _check(sentry_spec)

    assert result.status == CheckStatus.FAILED
    assert result.observed in (9, 10, 11)  # 2 a minute over 5 minutes, give or take an edge
    assert "above 3" in result.detail


def test_only_errors_of_the_environment_and_query_count(sentry, sentry_spec):
    start = _now() - timedelta(minutes=30)
    sentry.add_errors("acme", "web", 6, start=start, environment="staging")
    sentry.add_errors("acme", "web", 6, start=start, level="warning")
    sentry.add_errors("acme", "api", 6, start=start)

    assert _check(sentry_spec).status == CheckStatus.PASSED
    assert _check(sentry_spec, query="").observed == pytest.approx(30, abs=1)


def test_errors_before_the_rollback_finished_are_not_counted(sentry, sentry_spec):
    finished = _now() - timedelta(minutes=5) + timedelta(seconds=1.5)
    sentry.add_errors("acme", "web", 1200, start=finished - timedelta(minutes=10), until=finished)

    assert _check(sentry_spec).status == CheckStatus.FAILED  # the last 5 minutes hold them
    result = _check(sentry_spec, since=finished)

    assert result.status == CheckStatus.PASSED and result.observed == 0
    counts = sentry.calls("GET", EVENTS)[1:]
    start, end = (
        datetime.fromisoformat(call.query[key]).replace(tzinfo=UTC)
        for call, key in ((counts[0], "start"), (counts[-1], "end"))
    )
    assert finished <= start < finished + timedelta(seconds=1)
    assert end - start == timedelta(minutes=5)  # it waited for the window to close


def test_a_window_still_open_when_the_wait_ends_is_inconclusive_saying_when_it_closes(
    sentry, sentry_spec
):
    sentry.add_errors("acme", "web", 6, start=_now() - timedelta(minutes=30))

    result = _check(sentry_spec, since=_now(), wait_seconds=0.3)

    assert result.status == CheckStatus.INCONCLUSIVE
    assert "the 5-minute window ends at" in result.detail and "resume the run" in result.detail
    assert result.observed is not None and result.observed <= 3


def test_errors_above_the_threshold_fail_before_the_window_closes(sentry, sentry_spec):
    rollback_finished = _now()
    sentry.add_errors("acme", "web", 1200, start=rollback_finished)
    started = time.monotonic()

    result = _check(sentry_spec, since=rollback_finished, wait_seconds=30)

    assert result.status == CheckStatus.FAILED
    assert time.monotonic() - started < 5


# -- when Sentry cannot be asked -------------------------------------------------------------


def test_5xx_after_the_retries_is_inconclusive_with_the_status(sentry, sentry_spec):
    sentry.fail_next(502, 3, path_prefix=EVENTS)

    result = _check(sentry_spec, retries=2)

    assert result.status == CheckStatus.INCONCLUSIVE
    assert "Sentry: count error events: HTTP 502" in result.detail
    assert len(sentry.calls("GET", EVENTS)) == 3


def test_a_5xx_within_the_retries_is_tried_again(sentry, sentry_spec):
    sentry.fail_next(503, 1, path_prefix=PROJECTS)

    assert _check(sentry_spec, retries=1).status == CheckStatus.PASSED
    assert len(sentry.calls("GET", PROJECTS)) == 2


def test_429_waits_what_retry_after_asks_then_counts(sentry, sentry_spec):
    sentry.fail_next(429, 1, retry_after="1", path_prefix=EVENTS)
    started = time.monotonic()

    result = _check(sentry_spec, retries=1)

    assert result.status == CheckStatus.PASSED
    assert time.monotonic() - started >= 1
    assert len(sentry.calls("GET", EVENTS)) == 2


def test_a_429_asking_for_too_long_a_wait_is_inconclusive_at_once(sentry, sentry_spec):
    sentry.fail_next(429, 1, retry_after="600", path_prefix=EVENTS)
    started = time.monotonic()

    result = _check(sentry_spec, retries=3)

    assert result.status == CheckStatus.INCONCLUSIVE
    assert "HTTP 429" in result.detail and "asks to wait 600 s" in result.detail
    assert time.monotonic() - started < 2


def test_no_answer_in_time_is_inconclusive(sentry, sentry_spec):
    sentry.delay_next(1.5)

    result = _check(sentry_spec, timeout=0.3)

    assert result.status == CheckStatus.INCONCLUSIVE
    assert "no answer within 0.3 s" in result.detail


def test_a_sentry_that_is_not_there_is_inconclusive(sentry_spec):
    result = _check(sentry_spec, api_url=f"http://127.0.0.1:{free_port()}")

    assert result.status == CheckStatus.INCONCLUSIVE and result.detail.startswith("Sentry: ")


# -- credentials and names -------------------------------------------------------------------


def test_a_refused_token_names_sentry_and_the_variable_never_the_token(
    sentry, sentry_spec, monkeypatch
):
    monkeypatch.setenv(SENTRY_TOKEN_ENV, "sntrys_wrong_4411")

    result = _check(sentry_spec)

    assert result.status == CheckStatus.INCONCLUSIVE
    assert "Sentry refused the credentials (HTTP 401): Invalid token" in result.detail
    assert f"check the token in {SENTRY_TOKEN_ENV}" in result.detail
    assert "sntrys_wrong_4411" not in result.detail
    _no_token(result, sentry)


def test_a_token_without_the_scopes_is_refused_with_403(sentry, sentry_spec):
    sentry.scopes = ()

    result = _no_token(_check(sentry_spec), sentry)

    assert result.status == CheckStatus.INCONCLUSIVE
    assert "(HTTP 403)" in result.detail and "org:read and event:read" in result.detail


def test_an_unset_token_variable_is_inconclusive_naming_it(sentry_spec, monkeypatch):
    monkeypatch.delenv(SENTRY_TOKEN_ENV)

    result = _check(sentry_spec)

    assert result.status == CheckStatus.INCONCLUSIVE
    assert result.detail == f"Sentry: the environment variable {SENTRY_TOKEN_ENV} is not set"


def test_an_unknown_project_is_a_clear_inconclusive_result(sentry, sentry_spec):
    result = _no_token(_check(sentry_spec, project="checkout"), sentry)

    assert result.status == CheckStatus.INCONCLUSIVE
    assert result.detail.startswith("Sentry organization 'acme' has no project 'checkout'")
    assert sentry.calls("GET", EVENTS) == []


def test_an_unknown_organization_is_a_clear_inconclusive_result(sentry, sentry_spec):
    result = _check(sentry_spec, organization="globex")

    assert result.status == CheckStatus.INCONCLUSIVE
    assert result.detail.startswith("Sentry has no organization 'globex'")


def test_a_project_on_a_later_page_is_found_by_its_id(sentry, sentry_spec):
    for number in range(120):
        sentry.add_project("acme", f"aa-{number:03}")  # listed before web
    sentry.add_errors("acme", "web", 6, start=_now() - timedelta(minutes=30))

    result = _check(sentry_spec, project=sentry.project_id("acme", "web"), threshold=100)

    assert result.status == CheckStatus.PASSED and result.observed == pytest.approx(30, abs=1)
    assert len(sentry.calls("GET", PROJECTS)) == 2


# -- the spec --------------------------------------------------------------------------------

_GOOD = {"kind": "sentry_errors", "organization": "acme", "project": "web", "window": 5}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"window": 0}, "window"),
        ({"window": 61}, "window"),
        ({"window": 1.5}, "window"),
        ({"threshold": -1}, "threshold"),
        ({"threshold": 1_000_001}, "threshold"),
        ({"organization": "Acme"}, "organization"),
        ({"organization": "会社"}, "organization"),
        ({"organization": "a" * 51}, "organization"),
        ({"organization": "acme\n"}, "organization"),
        ({"project": "<b>web</b>"}, "project"),
        ({"project": "web 🚀"}, "project"),
        ({"environment": "prod/eu"}, "environment"),
        ({"environment": ".."}, "environment"),
        ({"environment": "e" * 65}, "environment"),
        ({"query": "level:error\nlevel:fatal"}, "query"),
        ({"query": "x" * 1001}, "query"),
        ({"api_url": "ftp://sentry.example.com"}, "api_url"),
        ({"api_url": "http://169.254.169.254/"}, "api_url"),
        ({"token_env": "1TOKEN"}, "token_env"),
        ({"wait_seconds": 3601}, "wait_seconds"),
        ({"url": "http://x"}, ""),
    ],
)
def test_bad_sentry_specs_are_refused_naming_the_field(change, field):
    with pytest.raises(ConfigError, match=f"^checks/0{'/' + field if field else ''}: "):
        validate_checks([{**_GOOD, "threshold": 3, **change}])


def test_a_spec_without_a_threshold_is_refused():
    with pytest.raises(ConfigError, match="^checks/0: 'threshold' is a required property"):
        validate_checks([_GOOD])


def test_inputs_at_their_maximum_length_and_in_any_script_are_asked_as_given(sentry, sentry_spec):
    organization, project = "o" * 50, "p" * 50
    sentry.add_project(organization, project)
    query = ("<script>alert(1)</script> 数据库错误 🚨 خطأ " * 30)[:1000]

    result = _check(
        sentry_spec,
        organization=organization,
        project=project,
        environment="生产-" + "e" * 61,
        query=query,
        name="エラー <i>count</i>",
        window=60,
    )

    assert result.status == CheckStatus.PASSED and result.name == "エラー <i>count</i>"
    (call,) = sentry.calls("GET", f"/api/0/organizations/{organization}/events/")
    assert call.query["query"] == query


def test_a_release_still_erring_right_after_the_rollback_fails_within_seconds(
    sentry, sentry_spec, monkeypatch
):
    """At first the window has not begun (nothing to ask Sentry: it refuses an empty
    range); the next asks come as soon as the window has run about as long again, not
    REQUERY_SECONDS later."""
    monkeypatch.setattr("executors.sentry_check.REQUERY_SECONDS", 15.0)
    sentry.add_errors("acme", "web", 600, start=_now() - timedelta(minutes=1))

    result = _check(sentry_spec, since=_now(), window=1, wait_seconds=6)

    assert result.status == CheckStatus.FAILED  # a 15 s wait would have given up
    assert result.observed > 3
    asked = sentry.calls("GET", EVENTS)
    assert 1 <= len(asked) <= 3
    assert all(call.query["start"] < call.query["end"] for call in asked)
