"""Post-mortem services: starting from the record, editing with history, states, stars,
action items."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from incidents import services as incident_services
from incidents.errors import DomainError, PermissionDenied
from incidents.models import TimelineEntry, TimelineKind
from postmortems import services
from postmortems.models import ActionItem, PostmortemState, RevisionAction, TimelineStar
from tests.postmortems.builders import (
    commander,
    finished_run,
    resolved_incident,
    responder,
    viewer,
)

pytestmark = pytest.mark.django_db

WRITTEN = {
    "summary": "Checkout failed for 18 minutes.",
    "root_cause": "v1.5.0 sent amounts in cents to a service expecting units.",
    "resolution": "Rolled back checkout to v1.4.2.",
}


def _written(postmortem, actor):
    return services.postmortem_edit(
        postmortem=postmortem, actor=actor, values=WRITTEN, base_revision=postmortem.revision
    )


def test_starting_fills_in_summary_and_resolution_from_the_record(ic, incident):
    run = finished_run(incident)
    postmortem = services.postmortem_start(incident=incident, actor=ic)
    assert postmortem.summary == "Payments failed for a third of checkouts."
    assert f"Rollback #{run.pk} returned" in postmortem.resolution
    assert "to previous revision" in postmortem.resolution
    assert postmortem.state == PostmortemState.DRAFT


def test_starting_stars_the_turns_of_the_story_and_not_the_notes(ic, incident):
    postmortem = services.postmortem_start(incident=incident, actor=ic)
    starred = set(
        TimelineEntry.objects.filter(pk__in=postmortem.stars.values("entry")).values_list(
            "kind", flat=True
        )
    )
    assert starred == {TimelineKind.INCIDENT_OPENED, TimelineKind.STATUS_CHANGE}


def test_drill_runs_are_left_out_of_the_drafted_resolution(ic, incident):
    finished_run(incident, drill=True)
    postmortem = services.postmortem_start(incident=incident, actor=ic)
    assert postmortem.resolution == ""


def test_starting_writes_a_postmortem_entry_and_the_first_revision(ic, incident):
    postmortem = services.postmortem_start(incident=incident, actor=ic)
    last = incident.timeline.order_by("-id").first()
    assert last.kind == TimelineKind.POSTMORTEM
    assert last.body == "Post-mortem started by ic"
    revision = postmortem.revisions.get()
    assert (revision.number, revision.action, revision.author) == (1, RevisionAction.STARTED, ic)


def test_a_second_start_is_refused(ic, incident):
    services.postmortem_start(incident=incident, actor=ic)
    with pytest.raises(DomainError, match="already has a post-mortem"):
        services.postmortem_start(incident=incident, actor=ic)


@pytest.mark.parametrize("role", ["Viewer", "Support Lead", "Approver"])
def test_only_commanders_and_responders_start_postmortems(roles, incident, role):
    from tests.factories import UserFactory

    with pytest.raises(PermissionDenied):
        services.postmortem_start(incident=incident, actor=UserFactory(roles=[role]))


def test_a_responder_edits_and_the_revision_keeps_who_when_and_each_change(ic, incident):
    postmortem = services.postmortem_start(incident=incident, actor=ic)
    person = responder()
    saved = services.postmortem_edit(
        postmortem=postmortem,
        actor=person,
        values={
            "root_cause": "A config typo",
            "users_affected": 1200,
            "summary": postmortem.summary,
        },
        base_revision=1,
    )
    assert saved.root_cause == "A config typo"
    revision = saved.revisions.first()
    assert revision.number == 2 and revision.author == person
    assert revision.changes == {"root_cause": ["", "A config typo"], "users_affected": [None, 1200]}
    assert timezone.now() - revision.at < timedelta(seconds=5)


def test_saving_the_same_text_adds_no_revision(ic, incident):
    postmortem = services.postmortem_start(incident=incident, actor=ic)
    services.postmortem_edit(
        postmortem=postmortem, actor=ic, values={"summary": postmortem.summary}, base_revision=1
    )
    assert postmortem.revisions.count() == 1


def test_an_edit_of_a_field_someone_saved_since_is_refused(ic, incident):
    postmortem = services.postmortem_start(incident=incident, actor=ic)
    services.postmortem_edit(
        postmortem=postmortem, actor=responder(), values={"root_cause": "DNS"}, base_revision=1
    )
    with pytest.raises(services.EditConflict, match="root cause"):
        services.postmortem_edit(
            postmortem=postmortem, actor=ic, values={"root_cause": "Config"}, base_revision=1
        )
    postmortem.refresh_from_db()
    assert postmortem.root_cause == "DNS"


def test_an_edit_of_other_fields_after_someone_saved_goes_through(ic, incident):
    postmortem = services.postmortem_start(incident=incident, actor=ic)
    services.postmortem_edit(
        postmortem=postmortem, actor=responder(), values={"root_cause": "DNS"}, base_revision=1
    )
    saved = services.postmortem_edit(
        postmortem=postmortem, actor=ic, values={"prevention": "Canary"}, base_revision=1
    )
    assert (saved.root_cause, saved.prevention) == ("DNS", "Canary")


def test_review_needs_summary_root_cause_and_resolution(ic, incident):
    postmortem = services.postmortem_start(incident=incident, actor=ic)
    with pytest.raises(DomainError, match="the root cause, the resolution"):
        services.postmortem_change_state(postmortem=postmortem, actor=ic, to_state="in_review")


def test_a_responder_sends_for_review_but_cannot_publish(ic, incident):
    postmortem = _written(services.postmortem_start(incident=incident, actor=ic), ic)
    person = responder()
    services.postmortem_change_state(postmortem=postmortem, actor=person, to_state="in_review")
    with pytest.raises(PermissionDenied, match="incident commander"):
        services.postmortem_change_state(postmortem=postmortem, actor=person, to_state="published")


def test_publishing_needs_the_incident_resolved(ic, roles):
    incident = resolved_incident(by=ic)
    postmortem = _written(services.postmortem_start(incident=incident, actor=ic), ic)
    services.postmortem_change_state(postmortem=postmortem, actor=ic, to_state="in_review")
    incident_services.incident_change_status(incident=incident, to_status="investigating", actor=ic)
    with pytest.raises(DomainError, match="Resolve the incident"):
        services.postmortem_change_state(postmortem=postmortem, actor=ic, to_state="published")


def test_publishing_records_who_and_when_and_writes_the_timeline(ic, incident):
    postmortem = _written(services.postmortem_start(incident=incident, actor=ic), ic)
    services.postmortem_change_state(postmortem=postmortem, actor=ic, to_state="in_review")
    published = services.postmortem_change_state(
        postmortem=postmortem, actor=ic, to_state="published"
    )
    assert published.published_by == ic and published.published_at is not None
    bodies = list(incident.timeline.filter(kind="postmortem").values_list("body", flat=True))
    assert bodies[-2:] == ["Post-mortem in review by ic", "Post-mortem published by ic"]
    assert published.revisions.first().changes == {"state": ["in_review", "published"]}


def test_a_draft_cannot_skip_review(ic, incident):
    postmortem = _written(services.postmortem_start(incident=incident, actor=ic), ic)
    with pytest.raises(DomainError, match="from Draft to Published"):
        services.postmortem_change_state(postmortem=postmortem, actor=ic, to_state="published")


def _published(ic, incident):
    postmortem = _written(services.postmortem_start(incident=incident, actor=ic), ic)
    services.postmortem_change_state(postmortem=postmortem, actor=ic, to_state="in_review")
    return services.postmortem_change_state(postmortem=postmortem, actor=ic, to_state="published")


def test_a_published_postmortem_refuses_edits_until_reopened(ic, incident):
    postmortem = _published(ic, incident)
    with pytest.raises(DomainError, match="published"):
        services.postmortem_edit(
            postmortem=postmortem, actor=ic, values={"prevention": "x"}, base_revision=99
        )
    reopened = services.postmortem_change_state(postmortem=postmortem, actor=ic, to_state="draft")
    assert reopened.published_at is None
    services.postmortem_edit(
        postmortem=postmortem, actor=ic, values={"prevention": "x"}, base_revision=99
    )


def test_only_a_commander_reopens_a_published_postmortem(ic, incident):
    postmortem = _published(ic, incident)
    with pytest.raises(PermissionDenied):
        services.postmortem_change_state(postmortem=postmortem, actor=responder(), to_state="draft")


def test_a_star_lives_beside_the_entry_which_stays_unchanged(ic, incident):
    postmortem = services.postmortem_start(incident=incident, actor=ic)
    note = incident.timeline.filter(kind="note").first()
    before = TimelineEntry.objects.filter(pk=note.pk).values().get()
    assert services.postmortem_star(postmortem=postmortem, entry=note, actor=ic, starred=True)
    assert TimelineStar.objects.filter(postmortem=postmortem, entry=note, starred_by=ic).exists()
    assert TimelineEntry.objects.filter(pk=note.pk).values().get() == before
    assert not services.postmortem_star(postmortem=postmortem, entry=note, actor=ic, starred=False)
    assert not TimelineStar.objects.filter(entry=note).exists()
    actions = list(postmortem.revisions.values_list("action", flat=True)[:2])
    assert actions == [RevisionAction.UNSTARRED, RevisionAction.STARRED]


def test_an_entry_of_another_incident_cannot_be_starred(ic, incident):
    postmortem = services.postmortem_start(incident=incident, actor=ic)
    other = resolved_incident(by=ic, title="Other")
    with pytest.raises(DomainError, match="another incident"):
        services.postmortem_star(
            postmortem=postmortem, entry=other.timeline.first(), actor=ic, starred=True
        )


def test_action_items_are_closed_and_reopened_with_who_and_when(ic, incident):
    postmortem = services.postmortem_start(incident=incident, actor=ic)
    owner = responder()
    item = services.action_item_add(
        postmortem=postmortem, actor=ic, title="Add a canary stage", owner=owner
    )
    closed = services.action_item_set_done(item=item, actor=owner, done=True)
    assert closed.done_by == owner and closed.done_at is not None
    reopened = services.action_item_set_done(item=item, actor=ic, done=False)
    assert reopened.done_at is None and reopened.done_by is None
    assert postmortem.revisions.count() == 4


def test_action_items_stay_tracked_after_publishing(ic, incident):
    postmortem = _published(ic, incident)
    item = services.action_item_add(postmortem=postmortem, actor=ic, title="Alert on p99")
    assert services.action_item_set_done(item=item, actor=ic, done=True).is_done


def test_an_action_item_needs_words(ic, incident):
    postmortem = services.postmortem_start(incident=incident, actor=ic)
    with pytest.raises(DomainError, match="what needs doing"):
        services.action_item_add(postmortem=postmortem, actor=ic, title="   ")
    assert not ActionItem.objects.exists()


def test_an_open_item_past_its_due_date_is_overdue(ic, incident):
    postmortem = services.postmortem_start(incident=incident, actor=ic)
    today = timezone.localdate()
    item = services.action_item_add(
        postmortem=postmortem, actor=ic, title="Runbook", due_on=today - timedelta(days=1)
    )
    assert item.is_overdue(today)
    assert not services.action_item_set_done(item=item, actor=ic, done=True).is_overdue(today)


def test_a_viewer_cannot_close_action_items(ic, incident):
    postmortem = services.postmortem_start(incident=incident, actor=ic)
    item = services.action_item_add(postmortem=postmortem, actor=ic, title="Runbook")
    with pytest.raises(PermissionDenied):
        services.action_item_set_done(item=item, actor=viewer(), done=True)


def test_only_incident_commanders_may_publish(roles):
    assert services.can_publish(commander("ic2")) and not services.can_publish(responder("r2"))
