"""The rollback parts of the room fetched on their own: live versions for the plan builder,
windows of a step's log, the approvals card the live stream asks each viewer to fetch again,
and the approvals badge."""

from __future__ import annotations

import pytest
from django.urls import reverse

from incidents import room
from rollbacks import room as rollback_room
from rollbacks.approvals import approval_request_open
from rollbacks.models import StepLog
from tests.factories import ReleaseFactory, UserFactory, incident_open
from tests.rollbacks.engine_factories import KubeServiceFactory, RunFactory, StepFactory
from tests.rollbacks.engine_fixtures import seed_deployment

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.usefixtures("engine_settings", "isolated_celery"),
]


@pytest.fixture
def ic(client, roles):
    user = UserFactory(username="ic", roles=["Incident Commander"])
    client.force_login(user)
    return user


def test_plan_builder_versions_show_what_the_cluster_runs_and_the_release_before_it(
    client, ic, kube
):
    seed_deployment(kube, "web", ["registry.local/web:v1", "registry.local/web:v2"])
    service = KubeServiceFactory(name="web")
    for version in ("v1", "v2", "v3"):  # v3 shipped but never went live
        ReleaseFactory(service=service, version=version, artifact=f"registry.local/web:{version}")
    incident = incident_open()
    response = client.get(reverse("incident_versions", args=[incident.pk]), {"service": service.pk})
    page = response.content.decode()
    assert response.status_code == 200
    assert (
        f'<span id="live-{service.pk}" hx-swap-oob="true"><code>registry.local/web:v2</code>'
        in page
    )
    assert f'<span id="previous-{service.pk}" hx-swap-oob="true"><code>v1</code>' in page


def test_plan_builder_says_which_backend_could_not_be_reached(client, ic, kube):
    service = KubeServiceFactory(name="gone")  # no such Deployment on the cluster
    incident = incident_open()
    url = reverse("incident_versions", args=[incident.pk])
    page = client.get(url, {"service": service.pk}).content.decode()
    assert f'<span id="live-{service.pk}" hx-swap-oob="true"><span class="error"' in page
    assert "unreachable" in page


def _step_with_log(lines: int):
    step = StepFactory(run=RunFactory(incident=incident_open()))
    StepLog.objects.bulk_create(
        StepLog(step=step, seq=n, line=f"line {n}") for n in range(1, lines + 1)
    )
    return step


def _log_url(step):
    return reverse("step_log", args=[step.run.incident_id, step.run_id, step.pk])


def test_step_log_window_before_a_line_holds_the_500_lines_just_before_it(client, ic):
    step = _step_with_log(50_000)
    page = client.get(_log_url(step), {"before": 40_001}).content.decode()
    assert page.count('class="line"') == 500
    assert 'data-seq="39501"' in page and 'data-seq="40000"' in page
    assert 'data-seq="40001"' not in page
    assert "?before=39501" in page  # the next "Earlier lines" continues from there


def test_step_log_window_at_the_start_offers_no_earlier_lines(client, ic):
    step = _step_with_log(30)
    page = client.get(_log_url(step), {"before": 20}).content.decode()
    assert page.count('class="line"') == 19
    assert "Earlier lines" not in page


def test_step_log_window_refuses_a_bad_line_number(client, ic):
    step = _step_with_log(3)
    response = client.get(_log_url(step), {"before": "x"})
    assert response.status_code == 400
    assert b"before must be a line number" in response.content


def test_room_part_is_rendered_for_the_viewer(client, ic):
    incident = incident_open()
    page = client.get(reverse("incident_section", args=[incident.pk, "approvals"]))
    assert page.status_code == 200
    assert b'id="approvals"' in page.content
    assert b"Request rollback approval" in page.content  # the commander's control


def test_approver_sees_a_badge_counting_the_requests_waiting_for_them(client, roles):
    requester = UserFactory(roles=["Incident Commander"])
    approver = UserFactory(roles=["Approver", "On-call"])
    incident = incident_open(severity="P1")
    approval_request_open(
        incident=incident, requested_by=requester, scenario="any", reason="bad release"
    )
    client.force_login(approver)
    page = client.get(reverse("incident_list")).content.decode()
    assert 'id="approvals-badge"' in page
    assert '<span class="badge" aria-label="1 waiting for you">1</span>' in page


def test_no_badge_when_nothing_waits(client, roles):
    client.force_login(UserFactory(roles=["Approver", "On-call"]))
    assert b'id="approvals-badge"' not in client.get(reverse("incident_list")).content


def test_step_log_window_after_a_line_comes_as_json_for_the_page_to_fill_a_gap(client, ic):
    step = _step_with_log(700)
    response = client.get(_log_url(step), {"after": 100, "format": "json"})
    payload = response.json()
    assert payload["step"] == step.pk
    assert [line[0] for line in payload["lines"]] == list(range(101, 601))
    assert payload["lines"][0][2] == "line 101"


def test_registering_the_rollback_parts_again_changes_nothing():
    def registered():
        return (
            room.room_sections(),
            room.dashboard_sections(),
            room.live_panels(),
            room.live_lines("log"),
        )

    before = registered()
    rollback_room.register()  # as a second AppConfig.ready() would
    assert registered() == before
    # The rollback cards, then the playbooks' card (its app comes later in INSTALLED_APPS).
    assert [section.name for section in room.room_sections("main")] == ["runs", "plan", "playbooks"]
    assert room.room_part("approvals") is not None
    assert room.room_part("runs") is None  # the panel comes by the stream, not as a part
