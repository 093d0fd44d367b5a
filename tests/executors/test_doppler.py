"""DopplerBackend against the Doppler stand-in over HTTP: the switch by digest, log id or
"previous", the kept value, idempotency, faults, draft-time refusals, and no value ever in
what the backend says."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import pytest
import requests

from devinfra.hosted.doppler import DopplerStandin
from devinfra.hosted.server import StandinError
from executors.base import (
    BackendError,
    CheckStatus,
    ConfigError,
    Connections,
    DeadlineExceeded,
    RollbackTarget,
)
from executors.doppler import (
    DOPPLER_STAMP,
    PREVIOUS_SUFFIX,
    SWITCH_SUFFIX,
    DopplerBackend,
    digest_of,
)
from executors.options import OptionError
from rollbacks.engine.retries import retry_after_hint
from tests.devinfra.hosted_doppler import DOPPLER_BAD, DOPPLER_GOOD, DOPPLER_TOKEN_ENV

STAMP = "0123456789abcdef"
GOOD_DIGEST, BAD_DIGEST = digest_of(DOPPLER_GOOD), digest_of(DOPPLER_BAD)
ENOUGH_LOGS = 45  # more than two pages of the config's log


def backend(doppler: DopplerStandin, **config: Any) -> DopplerBackend:
    settings = {
        "project": "orders",
        "config": "prd",
        "secret": "DATABASE_URL",
        "api_url": doppler.url,
        "token_env": DOPPLER_TOKEN_ENV,
        **config,
    }
    return DopplerBackend(settings, Connections(), poll_interval=0.05, timeout=2)


def live(doppler: DopplerStandin, name: str = "DATABASE_URL") -> str | None:
    return doppler.value("orders", "prd", name)


def said(*things: object) -> str:
    return "\n".join(repr(thing) for thing in things)


def upper(escape: re.Match[str]) -> str:
    return escape.group().upper().replace("\\U", "\\u")


def assert_no_values(text: str) -> None:
    for value in (DOPPLER_GOOD, DOPPLER_BAD, "ｇｏｏｄ-密码", "שלום-bad"):
        assert value not in text


def test_the_live_version_and_the_backup_are_digests_of_the_live_value(doppler):
    chosen = backend(doppler)

    assert chosen.live_version() == BAD_DIGEST
    assert chosen.capture_backup() == {"digest": BAD_DIGEST}
    assert chosen.describe_backup("digest", BAD_DIGEST) == f"value {BAD_DIGEST}"
    assert len(BAD_DIGEST) == len("sha256:") + 16


def test_the_live_change_is_the_latest_log_entry_changing_the_secret(doppler):
    doppler.set("orders", "prd", {"LOG_LEVEL": "debug"})
    newest_switch = doppler.projects["orders"]["prd"].logs[-2]

    change = backend(doppler).live_change()

    assert change is not None and change.by == "Backout stand-in"
    assert change.cause == f"config log {newest_switch.id}" and change.at is not None


def test_the_plan_names_digests_and_writes_nothing(doppler):
    plan = backend(doppler).plan(RollbackTarget(artifact=GOOD_DIGEST))

    assert (plan.current_version, plan.target_version) == (BAD_DIGEST, GOOD_DIGEST)
    (change,) = plan.changes
    assert (change.resource, change.before, change.after) == (
        "doppler/orders/prd/DATABASE_URL",
        BAD_DIGEST,
        GOOD_DIGEST,
    )
    assert "kept in DATABASE_URL_BACKOUT_PREVIOUS" in plan.summary
    assert not doppler.calls("POST", r".*")
    assert_no_values(said(plan))


def test_a_switch_to_a_release_keeps_the_replaced_value_and_applies_once(doppler):
    chosen = backend(doppler)
    target = RollbackTarget(artifact=GOOD_DIGEST, params={DOPPLER_STAMP: STAMP})
    lines: list[str] = []

    first = chosen.apply(target, log=lines.append)
    chosen.wait(target, deadline=time.monotonic() + 2, log=lines.append)
    results = chosen.checks(target)
    again = chosen.apply(target, log=lines.append)

    assert first.changed and not again.changed
    assert (live(doppler), live(doppler, "DATABASE_URL" + PREVIOUS_SUFFIX)) == (
        DOPPLER_GOOD,
        DOPPLER_BAD,
    )
    assert live(doppler, "DATABASE_URL" + SWITCH_SUFFIX) == f"{STAMP} {GOOD_DIGEST} {BAD_DIGEST}"
    assert len(doppler.calls("POST", "/v3/configs/config/secrets")) == 1
    switch_log = doppler.projects["orders"]["prd"].logs[-1]
    assert first.facts == {
        "from_digest": BAD_DIGEST,
        "to_digest": GOOD_DIGEST,
        "log": switch_log.id,
    }
    assert {entry["name"] for entry in switch_log.diff} == {
        "DATABASE_URL",
        "DATABASE_URL_BACKOUT_PREVIOUS",
        "DATABASE_URL_BACKOUT_SWITCH",
    }
    assert [(r.name, r.status) for r in results] == [
        ("live value is the target's", CheckStatus.PASSED),
        ("replaced value kept", CheckStatus.PASSED),
    ]
    assert chosen.live_version() == GOOD_DIGEST
    assert_no_values(said(first, again, results, lines))


def test_the_switch_can_be_undone_by_its_own_digest_or_doppler_s_rollback(doppler):
    chosen = backend(doppler)
    switched = chosen.apply(RollbackTarget(artifact=GOOD_DIGEST))

    back = chosen.apply(RollbackTarget(artifact=switched.facts["from_digest"]))

    assert back.changed and live(doppler) == DOPPLER_BAD
    assert live(doppler, "DATABASE_URL" + PREVIOUS_SUFFIX) == DOPPLER_GOOD
    token = {"Authorization": f"Bearer {doppler.token}"}
    query = {"project": "orders", "config": "prd", "log": back.facts["log"]}
    answer = requests.post(
        doppler.url + "/v3/configs/config/logs/log/rollback", params=query, headers=token, timeout=5
    )
    assert answer.status_code == 200 and answer.json()["log"]["rollback"] is True
    assert live(doppler) == DOPPLER_GOOD


def test_previous_is_chosen_once_per_step_and_another_step_steps_back(doppler):
    chosen = backend(doppler)
    step = RollbackTarget(previous=True, params=chosen.validate_params({}, live=True))

    assert chosen.plan(step).target_version == GOOD_DIGEST
    assert chosen.apply(step).changed
    assert not chosen.apply(step).changed  # a retry keeps the value it chose
    assert chosen.checks(step)[0].status == CheckStatus.PASSED
    assert live(doppler) == DOPPLER_GOOD

    another = RollbackTarget(previous=True, params=chosen.validate_params({}, live=True))
    assert chosen.apply(another).changed
    assert live(doppler) == DOPPLER_BAD


def test_previous_without_a_stamp_is_refused(doppler):
    with pytest.raises(ConfigError, match="doppler_stamp"):
        backend(doppler).apply(RollbackTarget(previous=True))


def test_a_log_id_names_the_value_that_entry_set(doppler):
    good_log = doppler.projects["orders"]["prd"].logs[1]
    chosen = backend(doppler)

    by_option = chosen.plan(RollbackTarget(params={"log": good_log.id}))
    by_artifact = chosen.apply(RollbackTarget(artifact=good_log.id))

    assert by_option.target_version == GOOD_DIGEST
    assert by_artifact.changed and live(doppler) == DOPPLER_GOOD


def test_a_value_far_back_is_found_on_a_later_page_of_the_log(doppler):
    for number in range(ENOUGH_LOGS):
        doppler.set("orders", "prd", {"LOG_LEVEL": f"debug-{number}"})
    chosen = backend(doppler)

    result = chosen.apply(RollbackTarget(artifact=GOOD_DIGEST[:19]))  # 12 hex digits do

    assert result.changed and live(doppler) == DOPPLER_GOOD
    pages = {call.query["page"] for call in doppler.calls("GET", "/v3/configs/config/logs")}
    assert {"1", "2", "3"} <= pages


def test_a_digest_no_value_has_is_refused(doppler):
    with pytest.raises(ConfigError, match="no value of DATABASE_URL in orders/prd with digest"):
        backend(doppler).plan(RollbackTarget(artifact="sha256:" + "0" * 16))


def test_waiting_for_a_value_that_never_comes_passes_the_deadline(doppler):
    lines: list[str] = []

    with pytest.raises(DeadlineExceeded, match="DATABASE_URL in orders/prd"):
        backend(doppler).wait(
            RollbackTarget(artifact=GOOD_DIGEST), deadline=time.monotonic() + 0.2, log=lines.append
        )

    assert lines == [f"DATABASE_URL in orders/prd has {BAD_DIGEST}, not yet {GOOD_DIGEST}"]


def test_throttling_is_retryable_with_the_servers_wait_and_no_values(doppler):
    doppler.fail_next(429, retry_after="3", path_prefix="/v3/configs/config/secrets")

    with pytest.raises(BackendError) as raised:
        backend(doppler).apply(RollbackTarget(artifact=GOOD_DIGEST))

    assert raised.value.retryable and retry_after_hint(raised.value) == 3
    assert "HTTP 429" in str(raised.value) and raised.value.__cause__ is None
    assert live(doppler) == DOPPLER_BAD


def test_a_server_error_is_retryable(doppler):
    doppler.fail_next(503)

    with pytest.raises(BackendError) as raised:
        backend(doppler).live_version()

    assert raised.value.retryable


def test_a_wrong_token_is_a_permanent_failure_naming_doppler(doppler, monkeypatch):
    monkeypatch.setenv(DOPPLER_TOKEN_ENV, "dp.st.wrong/token&value")
    original = doppler.handle

    def repeating(request):  # a 401 that quotes the token it was given, Go-escaped
        answer = original(request)
        given = request.headers["authorization"].removeprefix("Bearer ")
        answer.body["messages"].append(f"token {given.replace('&', '\\u0026')} is unknown")
        return answer

    monkeypatch.setattr(doppler, "handle", repeating)

    with pytest.raises(BackendError) as raised:
        backend(doppler).live_version()

    assert not raised.value.retryable
    assert str(raised.value).endswith(
        "Doppler refused the credentials (HTTP 401): Invalid Auth token; token **** is unknown"
    )
    assert "dp.st.wrong" not in str(raised.value) and "token\\u0026" not in str(raised.value)


def test_an_error_answer_repeating_a_value_has_it_masked(doppler, monkeypatch):
    def refuse(request):
        value = request.body["secrets"]["DATABASE_URL"]
        raise StandinError(400, f"Invalid value {value} for DATABASE_URL")

    monkeypatch.setattr(doppler, "set_secrets", refuse)

    with pytest.raises(BackendError) as raised:
        backend(doppler).apply(RollbackTarget(artifact=GOOD_DIGEST))

    assert "Invalid value **** for DATABASE_URL" in str(raised.value)
    assert not raised.value.retryable
    assert raised.value.__cause__ is None and raised.value.__context__ is None
    assert_no_values(str(raised.value))


@pytest.mark.parametrize(
    "echo",
    [
        lambda value: f"Invalid body {json.dumps({'DATABASE_URL': value})}",
        lambda value: "x" * 280 + " " + json.dumps(value)[1:-1],  # cut off at 300 characters
        lambda value: f"Invalid body {json.dumps(json.dumps({'DATABASE_URL': value}))}",
        lambda value: "Invalid value " + re.sub(r"\\u[0-9a-f]{4}", upper, json.dumps(value)),
    ],
    ids=["json-escaped", "cut-short", "escaped-twice", "upper-hex"],
)
def test_an_error_answer_repeating_a_value_escaped_or_cut_short_has_it_masked(
    doppler, monkeypatch, echo
):
    def refuse(request):
        raise StandinError(400, echo(request.body["secrets"]["DATABASE_URL"]))

    monkeypatch.setattr(doppler, "set_secrets", refuse)

    with pytest.raises(BackendError) as raised:
        backend(doppler).apply(RollbackTarget(artifact=GOOD_DIGEST))

    assert "****" in str(raised.value)
    assert_no_values(str(raised.value))
    for form in (json.dumps(DOPPLER_GOOD)[1:-1], "postgres://app:"):
        assert form not in str(raised.value)


@pytest.mark.parametrize(
    ("config", "field", "message"),
    [
        ({"project": "billing"}, "project", "project billing not found in Doppler"),
        ({"config": "dev"}, "config", "config dev not found in Doppler"),
        ({"secret": "REDIS_URL"}, "secret", "secret REDIS_URL in orders/prd not found"),
    ],
)
def test_what_does_not_exist_is_refused_when_drafted_naming_it(doppler, config, field, message):
    with pytest.raises(OptionError) as raised:
        backend(doppler, **config).validate_params({}, live=True)

    assert (raised.value.option, raised.value.reason) == (field, message)


def test_a_log_that_does_not_exist_or_did_not_set_the_secret_is_refused(doppler):
    chosen = backend(doppler)
    other = doppler.projects["orders"]["prd"].logs[0].id  # it set LOG_LEVEL

    with pytest.raises(OptionError) as missing:
        chosen.validate_params({"log": "nosuchlog"}, live=True)
    with pytest.raises(OptionError) as unrelated:
        chosen.validate_params({"log": other}, live=True)
    with pytest.raises(OptionError) as markup:
        chosen.validate_params({"log": "<script>"}, live=True)

    assert missing.value.option == unrelated.value.option == markup.value.option == "log"
    assert "config log nosuchlog not found in orders/prd" in str(missing.value)
    assert f"config log {other} did not set DATABASE_URL" in str(unrelated.value)


def test_options_and_names_at_their_maximum_length_get_a_clear_answer(doppler):
    with pytest.raises(OptionError) as longest:
        backend(doppler).validate_params({"log": "L" * 64}, live=True)
    with pytest.raises(OptionError) as too_long:
        backend(doppler).validate_params({"log": "L" * 65}, live=True)
    with pytest.raises(OptionError) as long_name:
        backend(doppler, secret="D" * 100).validate_params({}, live=True)

    assert longest.value.reason == f"config log {'L' * 64} not found in orders/prd"
    assert too_long.value.reason == "must be at most 64 characters"
    assert (long_name.value.option, long_name.value.reason) == (
        "secret",
        f"secret {'D' * 100} in orders/prd not found",
    )


def test_a_secret_doppler_does_not_reveal_is_a_clear_error(doppler, monkeypatch):
    original = doppler.get_secret

    def restricted(request):
        answer = original(request)
        answer["value"] = {"raw": None, "computed": None}
        return answer

    monkeypatch.setattr(doppler, "get_secret", restricted)

    with pytest.raises(ConfigError, match="Doppler does not reveal the value of DATABASE_URL"):
        backend(doppler).live_version()


def test_the_stamp_is_set_by_the_server_only(doppler):
    cleaned = backend(doppler).validate_params({DOPPLER_STAMP: STAMP}, live=True)

    assert cleaned[DOPPLER_STAMP] != STAMP and len(cleaned[DOPPLER_STAMP]) == 16


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"secret": "database_url"}, "secret"),
        ({"secret": "D" * 101}, "secret"),
        ({"secret": "数据库"}, "secret"),
        ({"secret": "DB_🔑"}, "secret"),
        ({"project": "<b>orders</b>"}, "project"),
        ({"project": "שלום"}, "project"),
        ({"config": "prd\x00"}, "config"),
        ({"config": "p" * 81}, "config"),
        ({"token_env": "DOPPLER TOKEN"}, "token_env"),
        ({"api_url": "ftp://doppler"}, "api_url"),
    ],
)
def test_a_config_doppler_cannot_have_is_refused_naming_the_field(config, field):
    valid = {"project": "orders", "config": "prd", "secret": "DATABASE_URL", "token_env": "T"}

    with pytest.raises(ConfigError, match=f"^{field}: "):
        DopplerBackend({**valid, **config}, Connections())


def test_an_unset_token_variable_is_a_config_error_naming_it(doppler, monkeypatch):
    monkeypatch.delenv(DOPPLER_TOKEN_ENV)

    with pytest.raises(ConfigError, match=f"{DOPPLER_TOKEN_ENV} is not set"):
        backend(doppler).live_version()


@pytest.mark.parametrize("value", ["on", "1", "ab3"], ids=["two", "one", "three"])
def test_a_short_value_is_masked_where_it_stands_as_a_word(doppler, monkeypatch, value):
    doppler.set("orders", "prd", {"DATABASE_URL": value})

    def refuse(request):
        kept = request.body["secrets"]["DATABASE_URL_BACKOUT_PREVIOUS"]
        raise StandinError(400, f"HTTP-ish 4001: previous value '{kept}' rejected")

    monkeypatch.setattr(doppler, "set_secrets", refuse)

    with pytest.raises(BackendError) as raised:
        backend(doppler).apply(RollbackTarget(artifact=GOOD_DIGEST))

    assert str(raised.value).endswith("HTTP 400: HTTP-ish 4001: previous value '****' rejected")


@pytest.mark.parametrize(
    ("route", "answer"),
    [
        ("get_secret", ["not", "an", "object"]),
        ("get_secret", {"value": "raw text"}),
        ("list_logs", {"logs": {"id": "not a list"}}),
        ("list_logs", {"logs": ["not an object"]}),
        ("list_logs", {"logs": [{"id": "log_1", "diff": "not a list"}]}),
        ("list_logs", {"logs": [{"id": "log_1", "diff": [7]}]}),
        ("get_log", {"log": "not an object"}),
    ],
)
def test_an_answer_of_an_unexpected_shape_is_a_backend_error_naming_it(
    doppler, monkeypatch, route, answer
):
    monkeypatch.setattr(doppler, route, lambda request: answer)
    chosen = backend(doppler)

    with pytest.raises(BackendError, match="^Doppler answered .* not (an object|a list)$"):
        if route == "get_log":
            chosen.validate_params({"log": "log_1"}, live=True)
        elif route == "list_logs":
            chosen.live_change()
        else:
            chosen.live_version()


def test_a_value_holding_a_lone_surrogate_has_a_digest_and_no_encoding_error(doppler):
    doppler.set("orders", "prd", {"DATABASE_URL": "postgres://app:\ud800-x@db/orders"})

    assert backend(doppler).live_version() == digest_of("postgres://app:\ud800-x@db/orders")
    assert digest_of("\ud800").startswith("sha256:")
