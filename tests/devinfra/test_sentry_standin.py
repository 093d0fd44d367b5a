"""The Sentry stand-in answers as Sentry's API v0 does: Bearer tokens, `{"detail": ...}`
errors, cursor pagination in Link headers, error events counted over a period; and the
demo's seed gives storefront-api a check whose errors follow its Deployment."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests

from devinfra.demo_hosted import HostedDemo
from devinfra.demo_services import DemoService
from devinfra.hosted.sentry import (
    DEMO_ORGANIZATION,
    DEMO_TOKEN_ENV,
    ErrorStream,
    SentryStandin,
    seed_demo,
    with_sentry_check,
)
from executors.base import CheckStatus, Connections
from executors.check_specs import validate_checks
from executors.checks import VerificationDefaults, run_check

START = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


def _get(sentry: SentryStandin, path: str, token: str | None = None, **params: Any) -> Any:
    return requests.get(
        sentry.url + path,
        params=params,
        headers={"Authorization": f"Bearer {token or sentry.token}"},
        timeout=5,
    )


def _count(sentry: SentryStandin, **params: Any) -> int:
    answer = _get(sentry, "/api/0/organizations/acme/events/", field="count()", **params)
    assert answer.status_code == 200, answer.text
    return int(answer.json()["data"][0]["count()"])


def test_a_stream_counts_its_evenly_spaced_events_in_a_half_open_period():
    stream = ErrorStream("1", 6, START, until=START + timedelta(minutes=2))

    assert stream.count(START, START + timedelta(minutes=1)) == 6
    assert stream.count(START + timedelta(seconds=5), START + timedelta(seconds=25)) == 2
    assert stream.count(START - timedelta(hours=1), START + timedelta(hours=1)) == 12
    assert stream.count(START + timedelta(minutes=3), START + timedelta(minutes=4)) == 0


def test_projects_are_listed_a_page_at_a_time_with_sentrys_link_header(sentry):
    sentry.add_project("acme", "worker")

    first = _get(sentry, "/api/0/organizations/acme/projects/", per_page=2)
    second = requests.get(
        first.links["next"]["url"],
        headers={"Authorization": f"Bearer {sentry.token}"},
        timeout=5,
    )

    assert [project["slug"] for project in first.json()] == ["api", "web"]
    assert first.links["previous"]["results"] == "false"
    assert first.links["next"]["results"] == "true"
    assert [project["slug"] for project in second.json()] == ["worker"]
    assert second.links["next"]["results"] == "false"


def test_errors_are_counted_per_project_environment_level_and_period(sentry):
    sentry.clock = lambda: START + timedelta(hours=1)
    sentry.add_errors("acme", "web", 6, start=START)
    sentry.add_errors("acme", "web", 6, start=START, environment="staging")
    sentry.add_errors("acme", "web", 6, start=START, level="warning", message="Slow query")
    web = sentry.project_id("acme", "web")
    period = {"start": "2026-12-04T12:00:00", "end": "2026-12-04T12:10:00"}

    assert _count(sentry, project=web, environment="production", **period) == 120
    assert _count(sentry, project=web, query="level:error", **period) == 120
    assert _count(sentry, project=web, query="!level:error", **period) == 60
    assert _count(sentry, project=web, query='"slow query"', **period) == 60
    assert _count(sentry, project=sentry.project_id("acme", "api"), **period) == 0
    assert _count(sentry, project=web, statsPeriod="1m", query="level:warning") == 6


def test_events_after_the_stand_ins_present_have_not_happened(sentry):
    sentry.clock = lambda: START + timedelta(minutes=1)
    sentry.add_errors("acme", "web", 6, start=START)

    count = _count(sentry, start="2026-12-04T12:00:00", end="2026-12-04T13:00:00")

    assert count == 6


def test_stopping_errors_ends_the_stream_at_that_instant(sentry):
    sentry.clock = lambda: START + timedelta(hours=1)
    sentry.add_errors("acme", "web", 6, start=START)
    sentry.stop_errors("acme", "web", at=START + timedelta(minutes=1))

    assert _count(sentry, start="2026-12-04T12:00:00", end="2026-12-04T13:00:00") == 6


@pytest.mark.parametrize(
    ("params", "status", "detail"),
    [
        ({"field": "title"}, 400, "count() only"),
        ({"field": "count()", "dataset": "spans"}, 400, "not supported"),
        ({"field": "count()", "start": "2026-12-04T12:00:00"}, 400, "both required"),
        ({"field": "count()", "start": "yesterday", "end": "today"}, 400, "not an ISO 8601"),
        (
            {"field": "count()", "start": "2026-12-04T12:00:00", "end": "2026-12-04T12:00:00"},
            400,
            "start must be before end",
        ),
        ({"field": "count()", "statsPeriod": "5 minutes"}, 400, "Invalid statsPeriod"),
        ({"field": "count()", "query": 'message:"open'}, 400, "unbalanced quotes"),
        ({"field": "count()", "project": "999"}, 403, "do not have permission"),
    ],
)
def test_bad_event_queries_are_answered_in_sentrys_error_shape(sentry, params, status, detail):
    answer = _get(sentry, "/api/0/organizations/acme/events/", **params)

    assert answer.status_code == status
    assert detail in answer.json()["detail"]


def test_a_wrong_token_is_401_invalid_token(sentry):
    answer = _get(sentry, "/api/0/organizations/acme/projects/", token="nope")

    assert (answer.status_code, answer.json()) == (401, {"detail": "Invalid token"})


def test_a_token_without_org_read_is_403_and_an_unknown_organization_404(sentry):
    assert _get(sentry, "/api/0/organizations/globex/projects/").status_code == 404
    sentry.scopes = ("event:read",)

    assert _get(sentry, "/api/0/organizations/acme/projects/").status_code == 403


def test_throttling_answers_429_with_retry_after(sentry):
    sentry.fail_next(429, retry_after="7")

    answer = _get(sentry, "/api/0/organizations/acme/projects/")

    assert (answer.status_code, answer.headers["Retry-After"]) == (429, "7")
    assert answer.json() == {"detail": "rate limited"}


def test_following_a_condition_starts_and_stops_the_errors(sentry):
    failing = [True]
    sentry.follow("acme", "web", lambda: failing[0], 60, every=0.05)
    time.sleep(0.3)
    failing[0] = False
    time.sleep(0.3)

    (stream,) = sentry.streams
    assert stream.until is not None and stream.until > stream.start


# -- the demo --------------------------------------------------------------------------------


class _Kube:
    def __init__(self, image: str) -> None:
        self.image = image

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        if (kind, namespace, name) != ("deployments", "storefront", "api"):
            return None
        return {"spec": {"template": {"spec": {"containers": [{"image": self.image}]}}}}


class _Health:
    bad_images = frozenset({"registry.example.com/storefront/api:v1.9.0"})

    def __init__(self) -> None:
        self.kube = _Kube("registry.example.com/storefront/api:v1.9.0")


def _demo_service(name: str) -> DemoService:
    return DemoService(name, "kubernetes", name, {"namespace": "n", "deployment": name}, (), None)


def test_the_demo_seed_gives_storefront_api_a_check_that_follows_its_release(monkeypatch):
    seed = seed_demo(Connections())
    health = _Health()
    try:
        services = with_sentry_check(
            [_demo_service("storefront-web"), _demo_service("storefront-api")],
            HostedDemo([seed]),
            health,  # type: ignore[arg-type]
        )
        monkeypatch.setenv(DEMO_TOKEN_ENV, seed.env[DEMO_TOKEN_ENV])
        assert "checks" not in services[0].target_config
        (spec,) = validate_checks(services[1].target_config["checks"])
        assert spec["organization"] == DEMO_ORGANIZATION and spec["api_url"] == seed.standin.url

        def verify(since: datetime | None) -> Any:
            return run_check(
                {**spec, "wait_seconds": 0},
                version=None,
                connections=Connections(),
                defaults=VerificationDefaults(),
                since=since,
            )

        # The bad release has erred a dozen times a minute since it shipped.
        live = verify(None)
        assert live.status == CheckStatus.FAILED and live.observed >= 11
        health.kube.image = "registry.example.com/storefront/api:v1.8.2"  # rolled back
        deadline = time.monotonic() + 5
        while any(stream.until is None for stream in seed.standin.streams):
            assert time.monotonic() < deadline, "the errors did not stop"
            time.sleep(0.05)
        rolled_back = datetime.now(UTC)
        time.sleep(1.1)
        result = verify(rolled_back)
        assert result.status == CheckStatus.INCONCLUSIVE and result.observed == 0
    finally:
        seed.standin.stop()
