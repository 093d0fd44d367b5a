"""The Doppler stand-in answers as Doppler's API v3 does: Bearer tokens, {"messages": [...],
"success": false} errors, the config log a page at a time, rollbacks of a log entry; and
the demo's seed is a working service."""

from __future__ import annotations

from typing import Any

import requests

from devinfra.hosted.doppler import DEMO_TOKEN_ENV, DopplerStandin, seed_demo
from executors.base import Connections
from executors.doppler import DopplerBackend

PRD = {"project": "orders", "config": "prd"}


def call(doppler: DopplerStandin, method: str, path: str, token: str | None = None, **kw: Any):
    headers = {"Authorization": f"Bearer {token or doppler.token}"}
    return requests.request(method, doppler.url + path, headers=headers, timeout=5, **kw)


def test_a_secret_is_read_raw_and_computed(doppler):
    doppler.set("orders", "prd", {"DSN": "${DATABASE_URL}?sslmode=require"})

    answer = call(doppler, "GET", "/v3/configs/config/secret", params={**PRD, "name": "DSN"})

    assert answer.status_code == 200
    value = answer.json()["value"]
    assert value["raw"] == "${DATABASE_URL}?sslmode=require"
    assert value["computed"] == doppler.value("orders", "prd", "DATABASE_URL") + "?sslmode=require"


def test_errors_are_dopplers_messages_and_a_wrong_token_is_401(doppler):
    missing = call(doppler, "GET", "/v3/configs/config/secret", params={**PRD, "name": "NOPE"})
    wrong = call(doppler, "GET", "/v3/configs/config", token="dp.st.nope", params=PRD)
    bad_name = call(
        doppler, "POST", "/v3/configs/config/secrets", json={**PRD, "secrets": {"lower": "x"}}
    )

    assert (missing.status_code, missing.json()) == (
        404,
        {"messages": ["Could not find requested secret"], "success": False},
    )
    assert (wrong.status_code, wrong.json()["messages"]) == (401, ["Invalid Auth token"])
    assert bad_name.status_code == 400 and "uppercase" in bad_name.json()["messages"][0]


def test_the_log_comes_newest_first_a_page_at_a_time(doppler):
    for number in range(5):
        doppler.set("orders", "prd", {"LOG_LEVEL": f"debug-{number}"})

    first = call(doppler, "GET", "/v3/configs/config/logs", params={**PRD, "per_page": 4})
    second = call(
        doppler, "GET", "/v3/configs/config/logs", params={**PRD, "per_page": 4, "page": 2}
    )

    assert [log["diff"][0]["added"] for log in first.json()["logs"][:2]] == ["debug-4", "debug-3"]
    assert len(second.json()["logs"]) == 4 and second.json()["page"] == 2
    assert (
        call(doppler, "GET", "/v3/configs/config/logs", params={**PRD, "per_page": 0}).status_code
        == 400
    )


def test_rolling_back_a_log_entry_reverses_its_change(doppler):
    newest = doppler.projects["orders"]["prd"].logs[-1]
    query = {**PRD, "log": newest.id}

    answer = call(doppler, "POST", "/v3/configs/config/logs/log/rollback", params=query)
    again = call(doppler, "POST", "/v3/configs/config/logs/log/rollback", params=query)

    assert answer.status_code == 200 and answer.json()["log"]["rollback"] is True
    assert doppler.value("orders", "prd", "DATABASE_URL") == newest.diff[0]["removed"]
    assert again.status_code == 400


def test_throttling_answers_429_with_retry_after(doppler):
    doppler.fail_next(429, retry_after="7")

    answer = call(doppler, "GET", "/v3/configs/config", params=PRD)

    assert (answer.status_code, answer.headers["Retry-After"]) == (429, "7")
    assert answer.json() == {"messages": ["rate limited"], "success": False}


def test_the_demo_seed_is_a_service_whose_live_value_is_the_bad_release(monkeypatch):
    seed = seed_demo(Connections())
    try:
        (service,) = seed.services
        assert service.target_config["api_url"] == seed.standin.url
        monkeypatch.setenv(DEMO_TOKEN_ENV, seed.env[DEMO_TOKEN_ENV])
        live = DopplerBackend(service.target_config, Connections()).live_version()
        assert live == service.live_version == service.releases[-1].artifact
    finally:
        seed.standin.stop()
