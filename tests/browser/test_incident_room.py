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


def test_a_long_timeline_opens_at_its_end_and_loads_earlier_entries_on_scrolling_up(
    live_server, page, roles
):
    ensure_default_records()
    UserFactory(username="vera", password="read-it-all", roles=["Viewer"])
    incident = incident_open(title="Checkout errors after v2.4.0")
    for number in range(449):
        timeline_append(
            incident=incident, kind=TimelineKind.NOTE, body=f"note {number}", actor_label="ic"
        )

    page.set_viewport_size({"width": 1280, "height": 900})
    log_in(page, live_server.url, "vera", "read-it-all")
    page.goto(f"{live_server.url}/incidents/{incident.pk}/")
    rows = page.locator("#timeline-rows > tr.entry")
    expect(rows).to_have_count(200)
    box = page.locator("#timeline-scroll")
    # The box opens at its end: the last entry inside it, the "earlier" row above its top.
    inside = box.evaluate(
        """box => {
            const frame = box.getBoundingClientRect();
            const last = document.querySelector("#timeline-rows > tr.entry:last-child")
                .getBoundingClientRect();
            const earlier = document.getElementById("timeline-earlier").getBoundingClientRect();
            return [last.top >= frame.top && last.bottom <= frame.bottom + 1,
                    earlier.bottom <= frame.top, box.scrollHeight > box.clientHeight];
        }"""
    )
    assert inside == [True, True, True]
    expect(page.get_by_role("button", name="250 earlier entries: show them")).to_be_attached()

    box.evaluate("box => { box.scrollTop = -box.scrollHeight; }")  # column-reverse: up is < 0
    expect(rows).to_have_count(400)
    page.wait_for_timeout(500)
    expect(rows).to_have_count(400)  # one page per scroll, not a cascade
    box.evaluate("box => { box.scrollTop = -box.scrollHeight; }")
    expect(rows).to_have_count(450)
    expect(page.locator("#timeline-earlier")).to_have_count(0)
    texts = rows.locator("td.body").all_inner_texts()
    assert texts[1:] == [f"note {number}" for number in range(449)]

    timeline_append(incident=incident, kind=TimelineKind.NOTE, body="rolled back", actor_label="ic")
    expect(rows).to_have_count(451, timeout=10_000)
    expect(rows.last).to_contain_text("rolled back")
