import pytest
from playwright.sync_api import expect

from incidents.models import ChecklistItem, TimelineKind
from incidents.timeline import timeline_append
from tests.chromium import log_in
from tests.factories import UserFactory, ensure_default_records, incident_open

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_responder_logs_in_and_ticks_a_checklist_item(live_server, page, roles):
    ensure_default_records()
    UserFactory(username="rosa", password="tick-it-please", roles=["Responder"])
    incident = incident_open(title="Checkout errors after v2.4.0")
    item = incident.checklists.get(kind="pre_rollback").items.first()

    log_in(page, live_server.url, "rosa", "tick-it-please")
    page.get_by_role("link", name="Checkout errors after v2.4.0").click()
    row = page.locator(f"#checklist-item-{item.pk}")
    row.get_by_role("checkbox").check()

    expect(row).to_contain_text("by rosa at")
    expect(page.locator("#timeline-rows")).to_contain_text(f"Ticked “{item.text}”")
    item = ChecklistItem.objects.get(pk=item.pk)
    assert item.done_by.username == "rosa"

    page.reload()
    expect(page.locator(f"#checklist-item-{item.pk}").get_by_role("checkbox")).to_be_checked()


def test_a_long_timeline_entry_wraps_inside_the_timeline_beside_the_side_column(
    live_server, page, roles
):
    ensure_default_records()
    UserFactory(username="vera", password="read-it-all", roles=["Viewer"])
    incident = incident_open(title="Checkout errors after v2.4.0")
    timeline_append(
        incident=incident,
        kind=TimelineKind.STEP_OUTPUT,
        body="applied: " + "registry.example.com/storefront/web:v2.4.1-" + "x" * 120,
        actor_label="rollback engine",
    )

    page.set_viewport_size({"width": 1280, "height": 900})
    log_in(page, live_server.url, "vera", "read-it-all")
    page.goto(f"{live_server.url}/incidents/{incident.pk}/")

    timeline = page.locator("#timeline-rows").bounding_box()
    side = page.locator("#checklists").bounding_box()
    assert timeline is not None and side is not None
    assert timeline["x"] + timeline["width"] <= side["x"]
