"""Scheduled maintenances' services: scheduling, editing, updates moving forward only,
components under maintenance and given back, the uptime history, the beat with two
claimers, and every refusal saving nothing."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

import pytest
from django.db import close_old_connections, connection
from django.utils import timezone

from incidents.errors import PermissionDenied
from statuspage import maintenance_selectors, maintenances, public_cache, services
from statuspage.maintenances import MaintenanceRefused
from statuspage.models import (
    Component,
    ComponentStatusChange,
    Maintenance,
    MaintenanceUpdate,
)
from statuspage.signals import maintenance_update_published
from statuspage.status_changes import component_history_start
from tests.factories import UserFactory, incident_open

pytestmark = pytest.mark.django_db


def _window(hours_from_now: float = 24, length: float = 1) -> dict:
    start = timezone.now() + timedelta(hours=hours_from_now)
    return {"scheduled_for": start, "scheduled_until": start + timedelta(hours=length)}


def _component(name: str, **extra) -> Component:
    component = Component.objects.create(name=name, position=Component.objects.count() + 1, **extra)
    component_history_start(component)
    return component


def _schedule(actor, components=(), **overrides) -> Maintenance:
    fields = {
        "name": "Database upgrade",
        "body": "We upgrade the orders database.",
        "component_ids": [c.pk for c in components],
        **_window(),
    }
    fields.update(overrides)
    return maintenances.maintenance_schedule(actor=actor, **fields)


def _post(actor, maintenance, status, body="Progress.") -> MaintenanceUpdate:
    return maintenances.maintenance_update_post(
        actor=actor, maintenance=maintenance, status=status, body=body
    )


def _nothing_saved() -> None:
    assert not Maintenance.objects.exists()
    assert not MaintenanceUpdate.objects.exists()


def test_scheduling_creates_a_scheduled_maintenance_with_its_first_update(support_lead):
    orders = _component("Order history")
    maintenance = _schedule(support_lead, [orders], impact="minor", auto_start=False)
    assert maintenance.status == "scheduled" and maintenance.impact == "minor"
    assert not maintenance.auto_start and maintenance.auto_complete
    assert list(maintenance.components.all()) == [orders]
    (update,) = maintenance.updates.all()
    assert update.status == "scheduled" and update.published_by == support_lead
    assert update.body_html.strip() == "<p>We upgrade the orders database.</p>"
    orders.refresh_from_db()
    assert orders.status == "operational"


def test_every_published_update_is_announced_after_commit(
    support_lead, django_capture_on_commit_callbacks
):
    heard: list[int] = []

    def listener(sender, update_id, **kwargs):
        heard.append(update_id)

    maintenance_update_published.connect(listener)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            maintenance = _schedule(support_lead)
        assert heard == [maintenance.updates.get().pk]
        with django_capture_on_commit_callbacks(execute=True):
            update = _post(support_lead, maintenance, "in_progress")
        assert heard[-1] == update.pk
    finally:
        maintenance_update_published.disconnect(listener)


def test_scheduling_drops_the_public_pages_cached_copies(support_lead):
    from django.core.cache import cache

    cache.set(public_cache.PUBLIC_CACHE_KEY, "old generation", None)
    _schedule(support_lead)
    assert cache.get(public_cache.PUBLIC_CACHE_KEY) != "old generation"


def test_in_progress_puts_components_under_maintenance_and_records_the_history(support_lead):
    orders, api = _component("Order history"), _component("API", status="degraded_performance")
    maintenance = _schedule(support_lead, [orders, api])
    _post(support_lead, maintenance, "in_progress", "Started.")
    maintenance.refresh_from_db()
    assert maintenance.status == "in_progress" and maintenance.started_at is not None
    assert maintenance.previous_statuses == {
        str(orders.pk): "operational",
        str(api.pk): "degraded_performance",
    }
    for component in (orders, api):
        component.refresh_from_db()
        assert component.status == "under_maintenance"
        last = ComponentStatusChange.objects.filter(component=component).last()
        assert last.status == "under_maintenance" and last.maintenance == maintenance


def test_every_transition_forward_is_allowed_and_completion_gives_the_states_back(support_lead):
    orders, api = _component("Order history"), _component("API", status="degraded_performance")
    maintenance = _schedule(support_lead, [orders, api])
    for status in ("scheduled", "in_progress", "in_progress", "verifying", "completed"):
        _post(support_lead, maintenance, status)
    maintenance.refresh_from_db()
    assert maintenance.status == "completed" and maintenance.resolved_at is not None
    assert [u.status for u in maintenance.updates.order_by("published_at", "id")] == [
        "scheduled", "scheduled", "in_progress", "in_progress", "verifying", "completed",
    ]  # fmt: skip
    orders.refresh_from_db()
    api.refresh_from_db()
    assert (orders.status, api.status) == ("operational", "degraded_performance")
    history = list(
        ComponentStatusChange.objects.filter(component=orders).values_list("status", "maintenance")
    )
    assert history == [
        ("operational", None),
        ("under_maintenance", maintenance.pk),
        ("operational", maintenance.pk),
    ]


def test_going_straight_to_verifying_starts_it_and_straight_to_completed_touches_nothing(
    support_lead,
):
    orders = _component("Order history")
    first = _schedule(support_lead, [orders])
    _post(support_lead, first, "verifying")
    orders.refresh_from_db()
    assert orders.status == "under_maintenance"
    _post(support_lead, first, "completed")
    second = _schedule(support_lead, [orders], name="Never started")
    _post(support_lead, second, "completed", "Done early, nothing to do.")
    assert ComponentStatusChange.objects.filter(maintenance=second).count() == 0
    orders.refresh_from_db()
    assert orders.status == "operational"


@pytest.mark.parametrize(
    ("path", "refused"),
    [
        (["in_progress"], "scheduled"),
        (["verifying"], "in_progress"),
        (["verifying"], "scheduled"),
        (["completed"], "verifying"),
        (["completed"], "completed"),
        (["in_progress"], "bogus"),
    ],
)
def test_transitions_go_forward_only_and_nothing_changes_after_completion(
    support_lead, path, refused
):
    orders = _component("Order history")
    maintenance = _schedule(support_lead, [orders])
    for status in path:
        _post(support_lead, maintenance, status)
    before = MaintenanceUpdate.objects.count()
    with pytest.raises(MaintenanceRefused) as caught:
        _post(support_lead, maintenance, refused)
    assert caught.value.field == "status"
    assert MaintenanceUpdate.objects.count() == before


def test_an_incident_that_changed_a_component_meanwhile_keeps_its_word(support_lead):
    orders, api = _component("Order history"), _component("API")
    maintenance = _schedule(support_lead, [orders, api])
    _post(support_lead, maintenance, "in_progress")
    incident = incident_open()
    draft = services.draft_get(incident)
    services.draft_publish(
        incident=incident,
        actor=support_lead,
        version=draft.version,
        name="Orders failing",
        status="investigating",
        impact="major",
        body="Orders fail to load.",
        component_statuses={str(orders.pk): "major_outage"},
    )
    _post(support_lead, maintenance, "completed")
    orders.refresh_from_db()
    api.refresh_from_db()
    assert orders.status == "major_outage"  # the incident's, not overwritten
    assert api.status == "operational"  # given back


def test_overlapping_windows_give_a_component_back_only_when_the_last_completes(support_lead):
    orders = _component("Order history", status="degraded_performance")
    first = _schedule(support_lead, [orders], name="First")
    second = _schedule(support_lead, [orders], name="Second")
    _post(support_lead, first, "in_progress")
    _post(support_lead, second, "in_progress")
    second.refresh_from_db()
    assert second.previous_statuses == {str(orders.pk): "degraded_performance"}
    _post(support_lead, first, "completed")
    orders.refresh_from_db()
    assert orders.status == "under_maintenance"
    _post(support_lead, second, "completed")
    orders.refresh_from_db()
    assert orders.status == "degraded_performance"


def _publish_outage(actor, component) -> None:
    incident = incident_open()
    draft = services.draft_get(incident)
    services.draft_publish(
        incident=incident,
        actor=actor,
        version=draft.version,
        name="Orders failing",
        status="investigating",
        impact="major",
        body="Orders fail to load.",
        component_statuses={str(component.pk): "major_outage"},
    )


def test_a_window_starting_over_another_keeps_what_an_incident_set_since(support_lead):
    orders = _component("Order history")
    first = _schedule(support_lead, [orders], name="First")
    second = _schedule(support_lead, [orders], name="Second")
    _post(support_lead, first, "in_progress")
    _publish_outage(support_lead, orders)  # between the two starts
    _post(support_lead, second, "in_progress")
    second.refresh_from_db()
    assert second.previous_statuses == {str(orders.pk): "major_outage"}
    _post(support_lead, first, "completed")
    _post(support_lead, second, "completed")
    orders.refresh_from_db()
    assert orders.status == "major_outage"  # not the operational state of before the incident


def test_the_end_must_come_after_the_start(support_lead):
    start = timezone.now() + timedelta(days=1)
    for end in (start, start - timedelta(minutes=1)):
        with pytest.raises(MaintenanceRefused, match="End: the end must be after the start") as c:
            _schedule(support_lead, scheduled_for=start, scheduled_until=end)
        assert c.value.field == "scheduled_until"
    _nothing_saved()


@pytest.mark.parametrize(
    ("window", "field", "said"),
    [
        (
            {
                "scheduled_for": timezone.now() + timedelta(days=1),
                "scheduled_until": datetime.fromisoformat("9999-12-31T23:59:59-05:00"),
            },
            "scheduled_until",
            "at most 30 days",
        ),
        (_window(hours_from_now=24 * 366), "scheduled_for", "at most 365 days ahead"),
        (_window(length=24 * 30 + 1), "scheduled_until", "at most 30 days"),
    ],
)
def test_a_far_off_start_or_a_window_over_a_month_is_refused(support_lead, window, field, said):
    with pytest.raises(MaintenanceRefused, match=said) as caught:
        _schedule(support_lead, **window)
    assert caught.value.field == field
    _nothing_saved()


def test_a_window_of_thirty_days_up_to_a_year_ahead_is_kept(support_lead):
    maintenance = _schedule(support_lead, **_window(hours_from_now=24 * 364, length=24 * 30))
    assert maintenance.scheduled_until - maintenance.scheduled_for == timedelta(days=30)


def test_a_window_already_over_or_without_a_time_zone_is_refused(support_lead):
    with pytest.raises(MaintenanceRefused) as caught:
        _schedule(support_lead, **_window(hours_from_now=-3))
    assert caught.value.field == "scheduled_until"
    naive = timezone.now().replace(tzinfo=None) + timedelta(days=1)
    with pytest.raises(MaintenanceRefused) as caught:
        _schedule(support_lead, scheduled_for=naive, scheduled_until=naive + timedelta(hours=1))
    assert caught.value.field == "scheduled_for"
    _nothing_saved()


@pytest.mark.parametrize(
    "name",
    [
        "維" * 200,
        "🛠️" * 100,  # two code points each
        "صيانة قاعدة البيانات" + "ب" * 180,
        "<b>Upgrade</b> **now**",
    ],
)
def test_names_at_the_limit_in_any_script_are_kept(support_lead, name):
    maintenance = _schedule(support_lead, name=name)
    assert maintenance.name == name.replace("<b>", "").replace("</b>", "")
    assert len(maintenance.name) <= 200


@pytest.mark.parametrize(
    "name",
    ["x" * 201, "維" * 201, "   ", "<script>alert(1)</script>", "bad\x00name", "line\nbreak",
     "rtl\u202eoverride",
     # Entities the clean-up decodes, and a name it lengthens past the limit (200 → 254).
     "rtl&#x202E;override", "line&#x2028;separator", "tab&#9;in", "line&#10;break",
     "javascript:" * 18 + "ab"],
)  # fmt: skip
def test_bad_names_are_refused_and_nothing_is_saved(support_lead, name):
    with pytest.raises(MaintenanceRefused) as caught:
        _schedule(support_lead, name=name)
    assert caught.value.field == "name"
    _nothing_saved()


def test_bodies_are_rendered_and_sanitised_like_revisions(support_lead):
    maintenance = _schedule(
        support_lead, body="**Bold** <script>alert(1)</script> [x](javascript:alert(1)) مرحبا 🛠️"
    )
    update = maintenance.updates.get()
    assert "<script" not in update.body and "javascript:" not in update.body
    assert "<strong>Bold</strong>" in update.body_html and "<script" not in update.body_html
    assert "مرحبا 🛠️" in update.body_html


@pytest.mark.parametrize(
    "body",
    ["x" * 10_001, "", "<script>only markup</script>", "bell\x07", "nul\x00",
     "rtl&#x202E;override", "bell&#7;", "javascript:" * 909 + "x"],  # the last: 10,000 → 13,636
)  # fmt: skip
def test_bad_bodies_are_refused_and_nothing_is_saved(support_lead, body):
    with pytest.raises(MaintenanceRefused) as caught:
        _schedule(support_lead, body=body)
    assert caught.value.field == "body"
    _nothing_saved()


def test_a_body_of_ten_thousand_characters_is_kept(support_lead):
    maintenance = _schedule(support_lead, body="維" * 10_000)
    assert len(maintenance.updates.get().body) == 10_000


def test_unknown_components_and_groups_are_refused(support_lead):
    group = _component("Online store", is_group=True)
    for ids, said in (([999_999], "there is no component 999999"), ([group.pk], "is a group")):
        with pytest.raises(MaintenanceRefused, match=said) as caught:
            _schedule(support_lead, component_ids=ids)
        assert caught.value.field == "components"
    with pytest.raises(MaintenanceRefused) as caught:
        _schedule(support_lead, impact="apocalyptic")
    assert caught.value.field == "impact"
    _nothing_saved()


def test_a_viewer_may_not_schedule_or_update(support_lead, roles):
    viewer = UserFactory(roles=["Viewer"])
    with pytest.raises(PermissionDenied):
        _schedule(viewer)
    maintenance = _schedule(support_lead)
    with pytest.raises(PermissionDenied):
        _post(viewer, maintenance, "in_progress")
    with pytest.raises(PermissionDenied):
        maintenances.maintenance_cancel(actor=viewer, maintenance=maintenance)
    assert maintenance.updates.count() == 1


def test_editing_changes_a_scheduled_maintenance_and_nothing_after_it_starts(support_lead):
    orders, api = _component("Order history"), _component("API")
    maintenance = _schedule(support_lead, [orders])
    window = _window(hours_from_now=48, length=2)
    edited = maintenances.maintenance_edit(
        actor=support_lead,
        maintenance=maintenance,
        name="Bigger upgrade",
        component_ids=[api.pk],
        impact="major",
        auto_start=False,
        auto_complete=False,
        **window,
    )
    assert (edited.name, edited.impact, list(edited.components.all())) == (
        "Bigger upgrade",
        "major",
        [api],
    )
    assert edited.scheduled_until - edited.scheduled_for == timedelta(hours=2)
    with pytest.raises(MaintenanceRefused) as caught:
        maintenances.maintenance_edit(
            actor=support_lead,
            maintenance=maintenance,
            name="x",
            component_ids=[],
            impact="none",
            auto_start=True,
            auto_complete=True,
            scheduled_for=window["scheduled_until"],
            scheduled_until=window["scheduled_for"],
        )
    assert caught.value.field == "scheduled_until"
    _post(support_lead, maintenance, "in_progress")
    with pytest.raises(MaintenanceRefused, match="only a scheduled maintenance"):
        maintenances.maintenance_edit(
            actor=support_lead,
            maintenance=maintenance,
            name="Too late",
            component_ids=[],
            impact="none",
            auto_start=True,
            auto_complete=True,
            **window,
        )
    maintenance.refresh_from_db()
    assert maintenance.name == "Bigger upgrade"


def test_cancelling_completes_it_with_a_note_and_only_while_scheduled(support_lead):
    orders = _component("Order history")
    maintenance = _schedule(support_lead, [orders])
    update = maintenances.maintenance_cancel(
        actor=support_lead, maintenance=maintenance, reason="The vendor moved the date."
    )
    maintenance.refresh_from_db()
    assert maintenance.status == "completed" and update.status == "completed"
    assert update.body.startswith(maintenances.CANCELLED_TEXT)
    assert "vendor moved the date" in update.body
    assert not ComponentStatusChange.objects.filter(maintenance=maintenance).exists()
    started = _schedule(support_lead, [orders], name="Started one")
    _post(support_lead, started, "in_progress")
    with pytest.raises(MaintenanceRefused, match="only a scheduled maintenance"):
        maintenances.maintenance_cancel(actor=support_lead, maintenance=started)


@pytest.mark.parametrize("reason", ["bell\x07", "rtl&#x202E;override", "維" * 10_000])
def test_a_bad_cancel_reason_is_refused_naming_the_reason(support_lead, reason):
    maintenance = _schedule(support_lead)
    with pytest.raises(MaintenanceRefused, match="^Reason: ") as caught:
        maintenances.maintenance_cancel(actor=support_lead, maintenance=maintenance, reason=reason)
    assert caught.value.field == "reason"
    maintenance.refresh_from_db()
    assert maintenance.status == "scheduled" and maintenance.updates.count() == 1


# -- the beat ------------------------------------------------------------------------------------


def test_the_beat_starts_and_completes_at_the_windows_edges_and_is_idempotent(support_lead):
    orders = _component("Order history")
    maintenance = _schedule(support_lead, [orders], **_window(hours_from_now=1))
    manual = _schedule(support_lead, [orders], name="By hand", auto_start=False)
    assert maintenances.maintenances_due_advance().started == []
    at_start = maintenance.scheduled_for + timedelta(seconds=1)
    advanced = maintenances.maintenances_due_advance(now=at_start)
    assert advanced.started == [maintenance.pk] and advanced.completed == []
    maintenance.refresh_from_db()
    assert maintenance.started_at == at_start  # the pass's moment, not the clock's
    assert maintenances.maintenances_due_advance(now=at_start).started == []
    orders.refresh_from_db()
    assert orders.status == "under_maintenance"
    last = maintenance.updates.order_by("published_at", "id").last()
    assert last.status == "in_progress" and last.published_by is None
    at_end = maintenance.scheduled_until
    assert maintenances.maintenances_due_advance(now=at_end).completed == [maintenance.pk]
    assert maintenances.maintenances_due_advance(now=at_end).completed == []
    orders.refresh_from_db()
    maintenance.refresh_from_db()
    manual.refresh_from_db()
    assert (orders.status, maintenance.status, manual.status) == (
        "operational",
        "completed",
        "scheduled",
    )
    assert maintenance.updates.count() == 3


def test_the_beat_closes_a_maintenance_left_unstarted_past_its_window(support_lead):
    manual = _schedule(support_lead, name="By hand", auto_start=False, **_window(length=2))
    after = manual.scheduled_until + timedelta(seconds=1)
    assert maintenance_selectors.upcoming() == [manual]
    assert maintenance_selectors.upcoming(now=after) == []  # no longer upcoming, even before
    assert maintenance_selectors.shown(now=after) == []  # the beat has passed
    assert maintenances.maintenances_due_advance(now=manual.scheduled_for).not_held == []
    advanced = maintenances.maintenances_due_advance(now=after)
    assert advanced.not_held == [manual.pk] and advanced.started == advanced.completed == []
    assert maintenances.maintenances_due_advance(now=after).not_held == []
    manual.refresh_from_db()
    assert manual.status == "completed" and manual.started_at is None
    assert manual.resolved_at == after
    last = manual.updates.order_by("published_at", "id").last()
    assert (last.status, last.body, last.published_by) == (
        "completed",
        maintenances.NOT_HELD_TEXT,
        None,
    )
    assert maintenance_selectors.past() == [manual]


@pytest.mark.django_db(transaction=True)
def test_two_beats_at_once_move_each_maintenance_once(roles):
    lead = UserFactory(roles=["Support Lead"])
    orders = _component("Order history")
    due = [
        _schedule(lead, [orders], name=f"Window {n}", **_window(hours_from_now=0.5))
        for n in range(3)
    ]
    moment = due[0].scheduled_for + timedelta(minutes=1)
    results: list[maintenances.Advanced] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def beat() -> None:
        try:
            barrier.wait(timeout=10)
            results.append(maintenances.maintenances_due_advance(now=moment))
        except BaseException as error:  # reported below
            errors.append(error)
        finally:
            close_old_connections()
            connection.close()

    threads = [threading.Thread(target=beat) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors
    started = sorted(pk for result in results for pk in result.started)
    assert started == sorted(m.pk for m in due)
    for maintenance in due:
        assert maintenance.updates.filter(status="in_progress").count() == 1
    assert ComponentStatusChange.objects.filter(status="under_maintenance").count() == 1


def test_the_beat_task_runs_the_same_pass(support_lead):
    from statuspage.tasks import maintenances_advance

    maintenance = _schedule(support_lead, **_window(hours_from_now=-0.5))
    maintenances_advance.apply()
    maintenance.refresh_from_db()
    assert maintenance.status == "in_progress"


def test_the_demo_maintenance_is_scheduled_once(roles):
    orders = _component("Order history")
    first = maintenances.maintenance_demo_schedule()
    assert first is not None and list(first.components.all()) == [orders]
    local = timezone.localtime(first.scheduled_for)
    assert (local.hour, local.minute) == (2, 0)
    assert local.date() == (timezone.localtime() + timedelta(days=1)).date()
    assert maintenances.maintenance_demo_schedule() is None
    assert Maintenance.objects.count() == 1
