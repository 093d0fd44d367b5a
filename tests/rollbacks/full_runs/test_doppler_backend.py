"""Full runs of the Doppler backend against the Doppler stand-in, seeded by the demo's own
seed (payments/prd DATABASE_URL: the replica's URL, known-good, then the new primary's, bad
and live): the commander drafts in the console, previews, the on-call approver approves,
the commander types the confirmation, a Celery worker in its own process switches the
secret over HTTP, and the step's checks and the verification round decide, every stage on
the timeline and no value of the secret anywhere the console wrote or exports."""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Iterator

import pytest
from django.urls import reverse

from devinfra.hosted.doppler import (
    DEMO_CONFIG,
    DEMO_HOSTS,
    DEMO_PASSWORD,
    DEMO_PROJECT,
    DEMO_SECRET,
    DopplerStandin,
    demo_url,
    seed_payments,
)
from devinfra.hosted.server import StandinError
from executors.doppler import PREVIOUS_SUFFIX, digest_of
from incidents.models import TimelineEntry
from rollbacks.models import Run, RunState, StepState
from tests.rollbacks.full_runs.conftest import console_service
from tests.rollbacks.full_runs.console import assert_recorded

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(120),
    pytest.mark.usefixtures("policies"),
]
DOPPLER_CHECKS = ["live value is the target's", "replaced value kept"]
TOKEN_ENV = "BACKOUT_FULL_RUN_DOPPLER_TOKEN"
GOOD, BAD = demo_url(DEMO_HOSTS["replica-a"]), demo_url(DEMO_HOSTS["primary-b"])
VALUES = [GOOD, BAD, DEMO_PASSWORD]
SWITCHES = "/v3/configs/config/secrets"


@pytest.fixture
def doppler(monkeypatch: pytest.MonkeyPatch) -> Iterator[DopplerStandin]:
    """The Doppler stand-in seeded as the demo seeds it; its token in the environment of
    this process (the console) and so of the workers started after it."""
    standin = DopplerStandin(token="dp.st.prd.fullrun5e2b7f0d").start()
    monkeypatch.setenv(TOKEN_ENV, standin.token)
    yield standin
    standin.stop()


@pytest.fixture
def payments(doppler, health):
    return console_service(seed_payments(doppler, token_env=TOKEN_ENV), health.url)


def live(doppler: DopplerStandin, name: str = DEMO_SECRET) -> str | None:
    return doppler.value(DEMO_PROJECT, DEMO_CONFIG, name)


def assert_not_exported(console, run: Run) -> None:
    for fmt in ("md", "json"):
        answer = console.commander.get(reverse(f"postmortem_{fmt}", args=[run.incident_id]))
        assert answer.status_code == 200
        text = answer.content.decode()
        assert not [value for value in VALUES if value in text], fmt


def test_the_secret_goes_back_to_the_known_good_value(
    console, doppler, payments, incident, start_worker
):
    good = payments.releases.get(version="replica-a")
    start_worker("doppler", **{TOKEN_ENV: doppler.token})

    run = console.draft(incident(payments), payments, str(good.pk), {})
    preview = console.dry_run(run)
    assert f"set {DEMO_SECRET} in payments/prd from {digest_of(BAD)} to {good.artifact}" in preview
    assert not [value for value in VALUES if value in preview]
    assert doppler.calls("POST", SWITCHES) == []
    run = console.approve_and_run(run)

    assert_recorded(run, step_checks=DOPPLER_CHECKS, secrets=VALUES)
    assert_not_exported(console, run)
    assert (live(doppler), live(doppler, DEMO_SECRET + PREVIOUS_SUFFIX)) == (GOOD, BAD)
    assert len(doppler.calls("POST", SWITCHES)) == 1
    step = run.steps.get()
    assert step.reached_version == "replica-a"
    assert step.apply_facts["from_digest"] == digest_of(BAD)
    assert step.apply_facts["log"] == doppler.projects[DEMO_PROJECT][DEMO_CONFIG].logs[-1].id


def test_previous_goes_back_once_though_throttled(
    console, doppler, payments, incident, start_worker
):
    doppler.fail_next(429, retry_after="1", path_prefix=SWITCHES)
    start_worker("doppler", **{TOKEN_ENV: doppler.token})

    run = console.draft(incident(payments), payments, "previous", {})
    run = console.approve_and_run(run)

    step = run.steps.get()
    assert run.state == RunState.SUCCEEDED, (run.failure_reason, step.error)
    assert step.state == StepState.SUCCEEDED and step.attempts == 2
    assert live(doppler) == GOOD and step.reached_version == "replica-a"
    switches = [
        log for log in doppler.projects[DEMO_PROJECT][DEMO_CONFIG].logs if len(log.diff) == 3
    ]
    assert len(switches) == 1
    lines = "\n".join(line.line for line in step.log_lines.all())
    assert not [value for value in VALUES if value in lines]
    retried = TimelineEntry.objects.filter(
        incident_id=run.incident_id, body__contains="hit a retryable error"
    ).get()
    assert "HTTP 429" in retried.body and "(the server asked for 1 s)" in retried.body


def test_what_does_not_exist_is_refused_when_drafted(console, doppler, payments, incident):
    opened = incident(payments)

    no_log = console.draft_refused(opened, payments, "options", {"log": "nosuchlog"})
    assert no_log == "payments-db-url: log: config log nosuchlog not found in payments/prd"
    markup = console.draft_refused(opened, payments, "options", {"log": "<b>x</b>"})
    assert markup.startswith("payments-db-url: log: does not match the expected form")
    doppler.set(DEMO_PROJECT, DEMO_CONFIG, {DEMO_SECRET: None})
    gone = console.draft_refused(opened, payments, "options", {})
    assert gone == "payments-db-url: secret: secret DATABASE_URL in payments/prd not found"
    del doppler.projects[DEMO_PROJECT]
    no_project = console.draft_refused(opened, payments, "options", {})
    assert no_project == "payments-db-url: project: project payments not found in Doppler"
    assert not Run.objects.filter(incident=opened).exists()


def test_a_refusal_repeating_the_values_fails_the_step_with_them_masked(
    console, doppler, payments, incident, start_worker, monkeypatch
):
    def refuse(request):  # the value sent as upper-case escapes, the kept one as a query
        sent = request.body["secrets"]
        escaped = "".join(f"\\u{ord(char):04X}" for char in sent[DEMO_SECRET])
        kept = urllib.parse.quote(sent[DEMO_SECRET + PREVIOUS_SUFFIX], safe="")
        raise StandinError(400, f'see /v?kept={kept}; invalid value "{escaped}"')

    monkeypatch.setattr(doppler, "set_secrets", refuse)
    good = payments.releases.get(version="replica-a")
    start_worker("doppler", **{TOKEN_ENV: doppler.token})

    run = console.approve_and_run(console.draft(incident(payments), payments, str(good.pk), {}))

    step = run.steps.get()
    assert (run.state, step.state, step.error_retryable) == (RunState.FAILED, "failed", False)
    # The escaped value runs past the 300 characters quoted: masked whole before the cut.
    assert step.error == (
        'Doppler: update payments/prd: HTTP 400: see /v?kept=****; invalid value "****'
    )
    recorded = json.dumps(
        [list(TimelineEntry.objects.filter(incident_id=run.incident_id).values("body", "payload"))]
        + [step.error, run.failure_reason, [line.line for line in step.log_lines.all()]],
        default=str,
    )
    for value in [*VALUES, json.dumps(GOOD)[1:-1], "payments:"]:
        assert value not in recorded
    assert_not_exported(console, run)
    assert live(doppler) == BAD
