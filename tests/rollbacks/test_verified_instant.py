"""When a run ends, the recovery clock's phases stop where they should: a service with no
verification checks counts as verified once every step's own checks passed, so "time to
verify" stops with the run; a step whose checks were unsure leaves it running for a person
to record."""

from __future__ import annotations

import pytest

from rollbacks.engine.inline import run_inline
from rollbacks.engine.run_finish import steps_checked
from rollbacks.models import RunState, Step, StepState
from tests.rollbacks.engine_fixtures import parallel_run

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_run_whose_steps_checked_out_stops_the_verify_clock(commander, kube):
    run = run_inline(parallel_run(commander, kube, "web", "api").pk)

    assert run.state == RunState.SUCCEEDED
    incident = run.incident
    incident.refresh_from_db()
    assert incident.restored_at is not None and incident.verified_at is not None
    assert incident.time_to_verify is not None and incident.time_to_verify.total_seconds() < 5


@pytest.mark.parametrize(
    ("results", "checked"),
    [
        ([["passed", "passed"]], True),
        ([["passed", "inconclusive"]], True),  # e.g. a count the platform does not report
        ([["passed"], ["inconclusive"]], False),  # one step has nothing it could confirm
        ([["passed", "failed"]], False),
        ([[]], False),
        ([["passed"], None], False),  # a step was skipped: that service was not rolled back
    ],
)
def test_which_step_checks_count_as_verified(results, checked):
    steps = [
        Step(state=StepState.SKIPPED)
        if each is None
        else Step(
            state=StepState.SUCCEEDED,
            check_results=[{"name": f"c{i}", "status": status} for i, status in enumerate(each)],
        )
        for each in results
    ]
    assert steps_checked(steps) is checked
