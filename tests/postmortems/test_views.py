"""Post-mortem pages: what they show, and refused input answering 4xx with a message."""

from __future__ import annotations

import pytest
from django.urls import reverse

from postmortems import services
from postmortems.models import ActionItem, Postmortem
from tests.postmortems.builders import finished_run, responder

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def postmortem(ic, incident):
    return services.postmortem_start(incident=incident, actor=ic)


def _edit_data(postmortem, **overrides):
    data = {
        "summary": postmortem.summary,
        "root_cause": "",
        "resolution": "",
        "revenue_currency": "USD",
        "timeline_filter": "all",
        "base_revision": postmortem.revision,
    }
    data.update(overrides)
    return data


def test_page_before_starting_offers_the_start_button_to_editors(client, ic, incident):
    client.force_login(ic)
    response = client.get(reverse("postmortem", args=[incident.pk]))
    assert b"Start the post-mortem" in response.content
    assert b"Recovery metrics" in response.content


def test_page_shows_the_form_metrics_runs_and_timeline_with_star_buttons(client, ic, postmortem):
    finished_run(postmortem.incident)
    client.force_login(ic)
    response = client.get(reverse("postmortem", args=[postmortem.incident_id]))
    content = response.content.decode()
    assert 'name="root_cause"' in content
    assert "Time to roll back" in content and "Run #" in content
    assert content.count('class="star-toggle"') == postmortem.incident.timeline.count()


def test_starred_filter_lists_only_starred_entries_on_the_page(client, ic, postmortem):
    client.force_login(ic)
    response = client.get(
        reverse("postmortem", args=[postmortem.incident_id]) + "?timeline=starred"
    )
    assert response.content.decode().count('id="entry-') == postmortem.stars.count()


def test_saving_the_form_stores_the_fields_and_redirects(client, ic, postmortem):
    client.force_login(ic)
    url = reverse("postmortem_edit", args=[postmortem.incident_id])
    response = client.post(url, _edit_data(postmortem, root_cause="A typo", users_affected="40"))
    assert response.status_code == 302
    postmortem.refresh_from_db()
    assert (postmortem.root_cause, postmortem.users_affected) == ("A typo", 40)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("users_affected", "-3", b"greater than or equal to 0"),
        ("revenue_impact", "lots", b"Enter a number"),
        ("revenue_currency", "E1", b"three-letter currency code"),
        ("timeline_filter", "some", b"Select a valid choice"),
    ],
)
def test_bad_form_input_answers_400_and_saves_nothing(
    client, ic, postmortem, field, value, message
):
    client.force_login(ic)
    url = reverse("postmortem_edit", args=[postmortem.incident_id])
    response = client.post(url, _edit_data(postmortem, root_cause="changed", **{field: value}))
    assert response.status_code == 400
    assert message in response.content
    postmortem.refresh_from_db()
    assert postmortem.root_cause == "" and postmortem.revision == 1


def test_a_save_naming_a_revision_not_yet_reached_answers_400(client, ic, postmortem):
    client.force_login(ic)
    url = reverse("postmortem_edit", args=[postmortem.incident_id])
    response = client.post(url, _edit_data(postmortem, root_cause="changed", base_revision=99))
    assert response.status_code == 400
    assert b"names revision 99, but the post-mortem is at revision 1" in response.content
    postmortem.refresh_from_db()
    assert postmortem.root_cause == "" and postmortem.revision == 1


def test_a_clashing_save_answers_409_with_the_reason(client, ic, postmortem):
    services.postmortem_edit(
        postmortem=postmortem, actor=responder(), values={"root_cause": "DNS"}, base_revision=1
    )
    client.force_login(ic)
    url = reverse("postmortem_edit", args=[postmortem.incident_id])
    response = client.post(url, _edit_data(postmortem, root_cause="Config", base_revision=1))
    assert response.status_code == 409
    assert b"Someone saved root cause after you opened this page" in response.content


def test_publishing_without_the_confirmation_answers_400(client, ic, postmortem):
    services.postmortem_edit(
        postmortem=postmortem,
        actor=ic,
        values={"root_cause": "typo", "resolution": "rolled back"},
        base_revision=1,
    )
    services.postmortem_change_state(postmortem=postmortem, actor=ic, to_state="in_review")
    client.force_login(ic)
    url = reverse("postmortem_state", args=[postmortem.incident_id])
    response = client.post(url, {"to_state": "published"})
    assert response.status_code == 400
    assert b"Tick the box to confirm publishing" in response.content
    assert Postmortem.objects.get(pk=postmortem.pk).state == "in_review"


def test_sending_an_unwritten_postmortem_for_review_answers_400(client, ic, postmortem):
    client.force_login(ic)
    url = reverse("postmortem_state", args=[postmortem.incident_id])
    response = client.post(url, {"to_state": "in_review"}, **HTMX)
    assert response.status_code == 400
    assert b"Write the root cause, the resolution first." in response.content


def test_starring_over_htmx_answers_with_the_row_alone(client, ic, postmortem):
    note = postmortem.incident.timeline.filter(kind="note").first()
    client.force_login(ic)
    url = reverse("postmortem_star", args=[postmortem.incident_id, note.pk])
    response = client.post(url, {"starred": "1"}, **HTMX)
    content = response.content.decode()
    assert response.status_code == 200
    assert content.strip().startswith(f'<tr id="entry-{note.pk}"') and "starred" in content
    assert postmortem.stars.filter(entry=note).exists()


def test_starring_an_entry_of_another_incident_is_not_found(client, ic, postmortem):
    from tests.postmortems.builders import resolved_incident

    other = resolved_incident(by=ic, title="Other")
    client.force_login(ic)
    url = reverse("postmortem_star", args=[postmortem.incident_id, other.timeline.first().pk])
    assert client.post(url, {"starred": "1"}).status_code == 404


def test_an_action_item_without_a_title_answers_400(client, ic, postmortem):
    client.force_login(ic)
    url = reverse("action_item_create", args=[postmortem.incident_id])
    response = client.post(url, {"title": "", "due_on": "someday"})
    assert response.status_code == 400
    assert (
        b"This field is required" in response.content and b"Enter a valid date" in response.content
    )
    assert not ActionItem.objects.exists()


def test_a_bad_ticket_url_answers_400(client, ic, postmortem):
    client.force_login(ic)
    url = reverse("action_item_create", args=[postmortem.incident_id])
    response = client.post(url, {"title": "Runbook", "ticket_url": "javascript:alert(1)"})
    assert response.status_code == 400 and not ActionItem.objects.exists()


def test_history_lists_each_revision_with_its_author(client, ic, postmortem):
    services.postmortem_edit(
        postmortem=postmortem, actor=responder(), values={"prevention": "Canary"}, base_revision=1
    )
    client.force_login(ic)
    content = client.get(reverse("postmortem_history", args=[postmortem.incident_id])).content
    assert b"responder" in content and b"Canary" in content and b"Started" in content


def test_a_published_postmortem_shows_text_without_the_form(client, ic, postmortem):
    services.postmortem_edit(
        postmortem=postmortem,
        actor=ic,
        values={"root_cause": "typo", "resolution": "rolled back"},
        base_revision=1,
    )
    services.postmortem_change_state(postmortem=postmortem, actor=ic, to_state="in_review")
    services.postmortem_change_state(postmortem=postmortem, actor=ic, to_state="published")
    client.force_login(ic)
    content = client.get(reverse("postmortem", args=[postmortem.incident_id])).content.decode()
    assert 'name="root_cause"' not in content and "typo" in content
    assert "Reopen as draft" in content and 'class="star-toggle"' not in content


def test_exports_of_an_unknown_incident_are_not_found(client, ic, incident):
    client.force_login(ic)
    assert client.get("/incidents/999999/postmortem.json").status_code == 404
    assert client.get("/incidents/999999/postmortem/").status_code == 404


def test_the_pdf_export_is_served_inline_as_a_pdf(client, ic, incident):
    client.force_login(ic)
    response = client.get(reverse("postmortem_pdf", args=[incident.pk]))
    assert response["Content-Type"] == "application/pdf"
    assert response["Content-Disposition"] == (
        f'inline; filename="postmortem-incident-{incident.pk}.pdf"'
    )


def test_the_incident_room_links_to_its_postmortem(client, ic, incident):
    client.force_login(ic)
    content = client.get(reverse("incident_room", args=[incident.pk])).content.decode()
    assert f'href="{reverse("postmortem", args=[incident.pk])}"' in content


def test_the_navigation_links_to_the_reports(client, ic):
    client.force_login(ic)
    assert (
        f'href="{reverse("recovery_metrics")}"' in client.get(reverse("dashboard")).content.decode()
    )


def test_the_admin_shows_postmortems_without_letting_them_be_changed(admin_client, postmortem):
    listing = admin_client.get("/admin/postmortems/postmortem/")
    assert listing.status_code == 200 and b"Checkout errors" in listing.content
    change = admin_client.get(f"/admin/postmortems/postmortem/{postmortem.pk}/change/")
    assert change.status_code == 200 and b'name="root_cause"' not in change.content


def test_a_refused_star_over_htmx_shows_the_reason_in_the_row_without_buttons(
    client, roles, postmortem
):
    from tests.postmortems.builders import viewer

    note = postmortem.incident.timeline.filter(kind="note").first()
    client.force_login(viewer())
    url = reverse("postmortem_star", args=[postmortem.incident_id, note.pk])
    response = client.post(url, {"starred": "1"}, **HTMX)
    assert response.status_code == 403
    assert b"Only incident commanders and responders" in response.content
    assert b"star-toggle" not in response.content


def test_open_action_items_are_listed_across_incidents_soonest_due_first(client, ic, postmortem):
    from datetime import timedelta

    from django.utils import timezone

    today = timezone.localdate()
    later = services.action_item_add(
        postmortem=postmortem, actor=ic, title="Later item", due_on=today + timedelta(days=9)
    )
    services.action_item_add(
        postmortem=postmortem, actor=ic, title="Overdue item", due_on=today - timedelta(days=2)
    )
    closed = services.action_item_add(postmortem=postmortem, actor=ic, title="Closed item")
    services.action_item_set_done(item=closed, actor=ic, done=True)
    client.force_login(ic)
    content = client.get(reverse("postmortem_list")).content.decode()
    assert content.index("Overdue item") < content.index(later.title)
    assert "Closed item" not in content and "overdue</strong>" in content


def test_a_long_timeline_is_cut_on_the_page_but_not_in_the_exports(client, ic, postmortem):
    from incidents.models import TimelineEntry
    from postmortems import views

    TimelineEntry.objects.bulk_create(
        TimelineEntry(incident=postmortem.incident, kind="note", body=f"bulk {n}")
        for n in range(views.PAGE_TIMELINE_LIMIT)
    )
    client.force_login(ic)
    content = client.get(reverse("postmortem", args=[postmortem.incident_id])).content.decode()
    assert content.count('id="entry-') == views.PAGE_TIMELINE_LIMIT
    assert "the exports carry all" in content
    document = client.get(reverse("postmortem_json", args=[postmortem.incident_id])).json()
    assert len(document["timeline"]["entries"]) > views.PAGE_TIMELINE_LIMIT


def test_the_list_pages_action_items_and_refuses_a_page_that_does_not_exist(
    client, ic, postmortem, monkeypatch
):
    from incidents import pagination

    monkeypatch.setattr(pagination, "PAGE_SIZE", 2)
    for number in range(5):
        services.action_item_add(postmortem=postmortem, actor=ic, title=f"Item {number} 項目")
    client.force_login(ic)
    second = client.get(reverse("postmortem_list"), {"items": "2"}).content.decode()
    assert "Item 2 項目" in second and "Item 0 項目" not in second
    assert "Page 2 of 3 (5 in all)" in second and 'href="?items=3"' in second
    refused = client.get(reverse("postmortem_list"), {"items": "9"})
    assert refused.status_code == 400
    assert refused.content.decode().startswith("items: must be a page number from 1 to 3")
