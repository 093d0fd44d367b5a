"""A run read over the API carries the watch kept after it succeeded (rollbacks.watch): its
state, rounds, last result, next check while watching, and end; none before there is one."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from rollbacks.models import Run, RunWatch
from rollbacks.watch import watch_start, watches_sweep
from tests.rollbacks.engine_factories import (
    succeeded_run,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def succeeded(settings, roles, health_endpoint) -> Run:
    settings.VERIFY_ALLOW_PRIVATE_ADDRESSES = True
    return succeeded_run(health_endpoint["url"])


def due(watch: RunWatch) -> None:
    RunWatch.objects.filter(pk=watch.pk).update(next_check_at=timezone.now() - timedelta(seconds=1))


def test_a_run_shows_its_watch_round_by_round(api_as, succeeded, health_endpoint):
    api = api_as(["Viewer"], "read")
    assert api.call("get", f"/runs/{succeeded.pk}").json()["watch"] is None

    watch = watch_start(succeeded.pk)
    assert watch is not None
    due(watch)
    assert watches_sweep() == ["watching"]
    shown = api.call("get", f"/runs/{succeeded.pk}").json()["watch"]
    assert shown["state"] == "watching" and shown["rounds"] == 1
    assert shown["last_summary"] == "every check passed" and shown["last_checked_at"]
    assert shown["next_check_at"] and shown["ends_at"] > shown["next_check_at"]

    health_endpoint["status"] = 503
    due(watch)
    assert watches_sweep() == ["regressed"]
    shown = api.call("get", f"/runs/{succeeded.pk}").json()["watch"]
    assert shown["state"] == "regressed" and shown["rounds"] == 2
    assert "503" in shown["last_summary"] and shown["next_check_at"] is None


def test_a_run_and_its_watch_need_the_scope_the_role_and_a_real_id(api_as, succeeded):
    path = f"/runs/{succeeded.pk}"
    assert api_as(["Incident Commander"], "runs:write").call("get", path).status_code == 403
    roleless = api_as(["Viewer"], "read")
    roleless.user.groups.clear()
    assert roleless.call("get", path).status_code == 403
    viewer = api_as(["Viewer"], "read")
    assert viewer.call("get", "/runs/999999").status_code == 404
    assert viewer.call("get", "/runs/nope").status_code == 400
