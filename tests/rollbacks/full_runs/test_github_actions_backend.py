"""Full runs of the GitHub Actions backend against the GitHub stand-in, seeded by the demo's
own seed (billing-worker, deployed by deploy.yml in example-org/billing: v2.4.1 live and
bad, v2.4.0 and v2.3.0 before it): the commander drafts in the console, previews, the
on-call approver approves, the commander types the confirmation, a Celery worker in its own
process dispatches the workflow with the version and follows the run it started, and the
step's checks and the verification round decide, the run's link on the timeline."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devinfra.demo_hosted import HostedSeed
from devinfra.hosted.github import DEMO_SERVICE, DEMO_TOKEN_ENV, GitHubStandin, seed_demo
from executors.base import Connections
from incidents.models import TimelineEntry, TimelineKind
from rollbacks.models import Run, RunState
from tests.rollbacks.full_runs.conftest import console_service
from tests.rollbacks.full_runs.console import assert_recorded

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(120),
    pytest.mark.usefixtures("policies"),
]
GITHUB_CHECKS = ["workflow run succeeded", "live version is the target"]
DISPATCHES = r"/repos/example-org/billing/actions/workflows/deploy\.yml/dispatches"


@pytest.fixture
def billing(monkeypatch: pytest.MonkeyPatch) -> Iterator[HostedSeed]:
    """The demo's GitHub stand-in and billing-worker, a dispatched run listed after 0.3 s
    and taking 1.3 s; its
    token in this process's environment (the console drafts against it too)."""
    seed = seed_demo(Connections(), queued_seconds=0.3, run_seconds=1.0, listing_delay=0.3)
    monkeypatch.setenv(DEMO_TOKEN_ENV, seed.env[DEMO_TOKEN_ENV])
    yield seed
    seed.standin.stop()


@pytest.fixture
def github(billing: HostedSeed) -> GitHubStandin:
    assert isinstance(billing.standin, GitHubStandin)
    return billing.standin


def start_github_worker(start_worker, billing: HostedSeed) -> None:
    start_worker("github", **billing.env)


def test_previous_deploys_the_version_before_the_live_one(
    console, billing, github, health, incident, start_worker
):
    service = console_service(billing.services[0], health.url)
    start_github_worker(start_worker, billing)

    run = console.draft(incident(service), service, "previous", {})
    assert run.steps.get().params["artifact"] == "v2.4.0"
    preview = console.dry_run(run)
    assert "version=v2.4.0, environment=production" in preview
    assert github.calls("POST", DISPATCHES) == []
    run = console.approve_and_run(run)

    entries = assert_recorded(run, step_checks=GITHUB_CHECKS, secrets=[github.token])
    (dispatched,) = github.dispatched()
    assert dispatched.inputs["version"] == "v2.4.0"
    assert dispatched.inputs["backout_stamp"] == run.steps.get().params["dispatch_stamp"]
    link = f"{github.url}/example-org/billing/actions/runs/{dispatched.id}"
    step = run.steps.get()
    assert step.reached_version == "v2.4.0"
    assert step.apply_facts["html_url"] == link
    applied = [
        e.body for e in entries if e.kind == TimelineKind.STEP_OUTPUT and "applied" in e.body
    ]
    assert applied and link in applied[0]
    lines = [line.line for line in step.log_lines.all()]
    assert any(line.endswith(f"({link}): completed, success") for line in lines), lines


def test_a_chosen_release_whose_run_fails_fails_the_run_with_its_link(
    console, billing, github, health, incident, start_worker
):
    github.fail_version("v2.3.0")
    service = console_service(billing.services[0], health.url)
    oldest = service.releases.get(version="v2.3.0")
    start_github_worker(start_worker, billing)

    run = console.draft(incident(service), service, str(oldest.pk), {})
    run = console.approve_and_run(run)

    (dispatched,) = github.dispatched()
    link = f"{github.url}/example-org/billing/actions/runs/{dispatched.id}"
    assert run.state == RunState.FAILED
    assert f"run #{dispatched.number} concluded failure: {link}" in run.failure_reason
    assert run.steps.get().attempts == 1
    recorded = " ".join(
        TimelineEntry.objects.filter(incident_id=run.incident_id).values_list("body", flat=True)
    )
    assert link in recorded and github.token not in recorded


def test_a_rate_limited_worker_retries_and_dispatches_once(
    console, billing, github, health, incident, start_worker
):
    service = console_service(billing.services[0], health.url)
    start_github_worker(start_worker, billing)
    run = console.draft(incident(service), service, "previous", {})
    console.request_approval(run)
    console.approve(run)

    github.rate_limit_next(1, reset_in=1)
    console.start(run)
    run = console.finish(run, timeout=90)

    assert run.state == RunState.SUCCEEDED, run.failure_reason
    assert run.steps.get().attempts == 2
    assert len(github.calls("POST", DISPATCHES)) == 1
    retried = TimelineEntry.objects.filter(
        incident_id=run.incident_id, body__contains="hit a retryable error"
    ).get()
    assert "API rate limit exceeded" in retried.body


def test_what_a_dispatch_cannot_reach_is_refused_when_drafted(
    console, billing, github, health, incident
):
    service = console_service(billing.services[0], health.url)
    opened = incident(service)

    def refused(target: str = "previous", **options: str) -> str:
        return console.draft_refused(opened, service, target, options)

    assert refused("options", artifact="账单 v2 🚀").startswith(
        f"{DEMO_SERVICE}: artifact: does not match the expected form"
    )
    assert refused("options", artifact="v" * 201) == (
        f"{DEMO_SERVICE}: artifact: must be at most 200 characters"
    )
    service.target_config["workflow"] = "ci.yml"
    service.save()
    assert refused() == (
        f"{DEMO_SERVICE}: workflow: .github/workflows/ci.yml on main has no workflow_dispatch "
        "trigger: GitHub would refuse the dispatch (HTTP 422)"
    )
    service.target_config["repository"] = "example-org/gone"
    service.save()
    assert refused() == (
        f"{DEMO_SERVICE}: repository: repository example-org/gone not found on GitHub"
    )
    assert not Run.objects.filter(incident=opened).exists()
    assert github.calls("POST", DISPATCHES) == []
