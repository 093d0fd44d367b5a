"""Full runs of the Vercel backend against the Vercel stand-in, seeded by the demo's own
seed (marketing-site: three production deployments, the newest live and bad): the commander
drafts in the console, previews, the on-call approver approves, the commander types the
confirmation, a Celery worker in its own process requests Instant Rollback over HTTP and
waits for the alias job, and the step's checks and the verification round decide, every
stage on the timeline and the token nowhere the console wrote."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devinfra.hosted.vercel import DEMO_PROJECT, VercelStandin, seed_marketing_site
from incidents.models import TimelineEntry
from rollbacks.models import Run, RunState, StepState
from tests.rollbacks.full_runs.conftest import console_service
from tests.rollbacks.full_runs.console import assert_recorded

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(120),
    pytest.mark.usefixtures("policies"),
]
VERCEL_CHECKS = ["production is the target deployment", "production deployment is READY"]
TOKEN_ENV = "BACKOUT_FULL_RUN_VERCEL_TOKEN"
ROLLBACKS = r"/v1/projects/prj_[0-9a-f]+/rollback/dpl_[0-9a-f]+"


@pytest.fixture
def vercel(monkeypatch: pytest.MonkeyPatch) -> Iterator[VercelStandin]:
    """The Vercel stand-in seeded as the demo seeds it, its alias jobs taking 1.5 s; its
    token in the environment of this process (the console) and so of the workers."""
    standin = VercelStandin(token="vcp_fullrun3b9d0e1f7a2c", alias_delay=1.5).start()
    monkeypatch.setenv(TOKEN_ENV, standin.token)
    yield standin
    standin.stop()


@pytest.fixture
def marketing(vercel, health):
    return console_service(seed_marketing_site(vercel, token_env=TOKEN_ENV), health.url)


def production(vercel: VercelStandin) -> str | None:
    project = next(p for p in vercel.projects.values() if p.name == DEMO_PROJECT)
    return vercel.production_of(project)


def test_production_goes_back_to_the_known_good_deployment(
    console, vercel, marketing, incident, start_worker
):
    good = marketing.releases.get(version="2026.11.3")
    bad = marketing.releases.get(version="2026.12.1")
    start_worker("vercel", **{TOKEN_ENV: vercel.token})

    run = console.draft(incident(marketing), marketing, str(good.pk), {})
    preview = console.dry_run(run)
    assert f"roll production of {DEMO_PROJECT} back from {bad.artifact} to {good.artifact}" in (
        " ".join(preview.split())
    )
    assert vercel.calls("POST", ROLLBACKS) == []
    run = console.approve_and_run(run)

    assert_recorded(run, step_checks=VERCEL_CHECKS, secrets=[vercel.token])
    assert production(vercel) == good.artifact
    assert len(vercel.calls("POST", ROLLBACKS)) == 1
    step = run.steps.get()
    assert step.reached_version == "2026.11.3"
    assert step.apply_facts == {"from": bad.artifact, "to": good.artifact}
    lines = "\n".join(line.line for line in step.log_lines.all())
    assert "rollback job in-progress" in lines


def test_previous_is_rolled_back_to_once_though_throttled(
    console, vercel, marketing, incident, start_worker
):
    middle = marketing.releases.get(version="2026.11.4")
    start_worker("vercel", **{TOKEN_ENV: vercel.token})

    run = console.draft(incident(marketing), marketing, "previous", {})
    vercel.throttle_next(1, reset_in=1)
    run = console.approve_and_run(run)

    step = run.steps.get()
    assert run.state == RunState.SUCCEEDED, (run.failure_reason, step.error)
    assert step.state == StepState.SUCCEEDED and step.attempts == 2
    assert production(vercel) == middle.artifact and step.reached_version == "2026.11.4"
    assert len(vercel.calls("POST", ROLLBACKS)) == 1
    retried = TimelineEntry.objects.filter(
        incident_id=run.incident_id, body__contains="hit a retryable error"
    ).get()
    assert "HTTP 429" in retried.body


def test_what_cannot_be_rolled_back_to_is_refused_when_drafted(
    console, vercel, marketing, incident
):
    opened = incident(marketing)
    project = next(p for p in vercel.projects.values() if p.name == DEMO_PROJECT)
    preview = next(d for d in project.deployments if d.target is None)

    missing = console.draft_refused(opened, marketing, "options", {"deployment": "dpl_nosuch"})
    assert missing == "marketing-site: deployment: deployment dpl_nosuch not found in Vercel"
    refused = console.draft_refused(opened, marketing, "options", {"deployment": preview.id})
    assert refused.startswith(f"marketing-site: deployment: deployment {preview.id} is a preview")
    emoji = console.draft_refused(opened, marketing, "options", {"deployment": "dpl_🚀<b>"})
    assert emoji.startswith("marketing-site: deployment: does not match the expected form")
    vercel.projects.clear()
    gone = console.draft_refused(opened, marketing, "options", {})
    assert gone == f"marketing-site: project: project {DEMO_PROJECT} not found in Vercel"
    assert not Run.objects.filter(incident=opened).exists()
