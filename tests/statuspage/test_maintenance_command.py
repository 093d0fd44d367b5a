"""`manage.py status_maintenance`: the same services and forms as the console's pages,
with `--as` and errors naming the option."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from statuspage.models import Component, Maintenance
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def _run(*args: str) -> str:
    out = StringIO()
    call_command("status_maintenance", *args, stdout=out)
    return out.getvalue()


def _tomorrow(hour: int) -> str:
    day = timezone.localtime() + timedelta(days=1)
    return f"{day:%Y-%m-%d} {hour:02d}:00"


@pytest.fixture
def orders(db) -> Component:
    return Component.objects.create(name="Order history", position=1)


def _schedule(*extra: str) -> str:
    return _run(
        "schedule",
        "Database upgrade",
        "--start",
        _tomorrow(2),
        "--end",
        _tomorrow(3),
        "--component",
        "Order history",
        "--body",
        "We upgrade the orders database.",
        "--as",
        "sam",
        *extra,
    )


def test_schedule_show_update_and_list_through_the_services(support_lead, orders):
    assert "Scheduled Database upgrade" in _schedule("--impact", "minor", "--no-auto-start")
    maintenance = Maintenance.objects.get()
    assert (maintenance.impact, maintenance.auto_start) == ("minor", False)
    assert timezone.localtime(maintenance.scheduled_for).hour == 2
    assert list(maintenance.components.all()) == [orders]
    out = _run(
        "update", str(maintenance.pk), "--status", "in_progress", "--body", "Go.", "--as", "sam"
    )
    assert "in_progress" in out
    orders.refresh_from_db()
    assert orders.status == "under_maintenance"
    shown = _run("show", str(maintenance.pk))
    assert "components: Order history" in shown and "We upgrade the orders database." in shown
    assert "in_progress" in _run("list")


def test_edit_changes_only_what_is_given(support_lead, orders):
    _schedule()
    maintenance = Maintenance.objects.get()
    _run("edit", str(maintenance.pk), "--end", _tomorrow(5), "--no-auto-complete", "--as", "sam")
    maintenance.refresh_from_db()
    assert timezone.localtime(maintenance.scheduled_until).hour == 5
    assert maintenance.name == "Database upgrade" and not maintenance.auto_complete
    assert list(maintenance.components.all()) == [orders]


def test_cancel_completes_it_with_the_reason(support_lead, orders):
    _schedule()
    maintenance = Maintenance.objects.get()
    _run("cancel", str(maintenance.pk), "--reason", "Vendor delay.", "--as", "sam")
    maintenance.refresh_from_db()
    assert maintenance.status == "completed"
    assert "Vendor delay." in maintenance.updates.last().body


def test_a_bad_cancel_reason_is_named_and_nothing_is_saved(support_lead, orders):
    _schedule()
    maintenance = Maintenance.objects.get()
    with pytest.raises(CommandError, match="Reason: control characters are not allowed"):
        _run("cancel", str(maintenance.pk), "--reason", "bell\x07", "--as", "sam")
    maintenance.refresh_from_db()
    assert maintenance.status == "scheduled" and maintenance.updates.count() == 1


@pytest.mark.parametrize(
    ("extra", "said"),
    [
        (("--end", _tomorrow(1)), "--end: The end must be after the start."),
        (("--start", "tomorrow-ish"), "--start: Enter a valid date/time."),
        (("--component", "Nowhere"), "component: none is named 'Nowhere'"),
        (("--end", "9999-12-31 23:59"), "End: a window lasts at most 30 days."),
    ],
)
def test_bad_options_are_named_and_nothing_is_saved(support_lead, orders, extra, said):
    with pytest.raises(CommandError, match=said.replace("(", r"\(")):
        _schedule(*extra)
    assert not Maintenance.objects.exists()


def test_a_name_of_201_characters_is_refused(support_lead, orders):
    with pytest.raises(CommandError, match="name: Ensure this value has at most 200"):
        _run("schedule", "維" * 201, "--start", _tomorrow(2), "--end", _tomorrow(3),
             "--body", "x", "--as", "sam")  # fmt: skip
    assert not Maintenance.objects.exists()


def test_a_viewer_is_refused_by_the_service(roles, orders):
    UserFactory(username="vic", roles=["Viewer"])
    with pytest.raises(CommandError, match="--as vic: You do not have the role"):
        _run("schedule", "Upgrade", "--start", _tomorrow(2), "--end", _tomorrow(3),
             "--body", "x", "--as", "vic")  # fmt: skip
    assert not Maintenance.objects.exists()


def test_moving_backwards_is_refused(support_lead, orders):
    _schedule()
    pk = str(Maintenance.objects.get().pk)
    _run("update", pk, "--status", "verifying", "--body", "Checking.", "--as", "sam")
    with pytest.raises(CommandError, match="Status: a maintenance only moves forward"):
        _run("update", pk, "--status", "in_progress", "--body", "Again.", "--as", "sam")


def test_demo_schedules_once(roles, orders):
    assert "Scheduled" in _run("demo")
    assert "already" in _run("demo")
    assert Maintenance.objects.count() == 1
