"""Drafts, publishing, revisions and restoring, through the services."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from incidents.errors import DomainError, PermissionDenied
from incidents.models import TimelineKind
from statuspage import services
from statuspage.models import (
    Component,
    Draft,
    MessageTemplate,
    PublicIncident,
    Revision,
    UpdateTemplate,
)
from statuspage.selectors import revision_history
from tests.factories import UserFactory, incident_open

pytestmark = pytest.mark.django_db


def _fields(**overrides):
    fields = {
        "name": "Checkout problems",
        "status": "investigating",
        "impact": "major",
        "body": "We are looking into failed payments.",
        "component_statuses": {},
    }
    fields.update(overrides)
    return fields


def test_default_texts_exist_for_every_public_status_and_notice():
    keys = set(MessageTemplate.objects.values_list("key", flat=True))
    assert {"rollback_started", "rollback_progress", "rollback_finished", "customer_notice"} <= keys
    # The public ones are update templates now (migration 0007), one text per purpose.
    assert not keys & {"public_investigating", "public_identified", "public_resolved"}
    statuses = set(UpdateTemplate.objects.values_list("status", flat=True))
    assert {"investigating", "identified", "monitoring", "resolved"} <= statuses


def test_first_save_creates_the_draft_at_version_one(support_lead):
    incident = incident_open()
    draft = services.draft_save(incident=incident, actor=support_lead, version=0, **_fields())
    assert draft.version == 1
    assert draft.updated_by == support_lead


def test_saving_from_a_stale_version_raises_a_conflict_carrying_the_other_text(support_lead):
    incident = incident_open()
    other = UserFactory(username="alex", roles=["Support Lead"])
    services.draft_save(incident=incident, actor=support_lead, version=0, **_fields())
    services.draft_save(incident=incident, actor=other, version=1, **_fields(body="Alex's wording"))
    with pytest.raises(services.DraftConflict) as raised:
        services.draft_save(
            incident=incident, actor=support_lead, version=1, **_fields(body="Sam's wording")
        )
    assert raised.value.draft.body == "Alex's wording"
    assert "alex saved this draft" in str(raised.value)
    assert Draft.objects.get(incident=incident).body == "Alex's wording"


def test_two_first_saves_do_not_overwrite_each_other(support_lead):
    incident = incident_open()
    services.draft_save(incident=incident, actor=support_lead, version=0, **_fields())
    with pytest.raises(services.DraftConflict):
        services.draft_save(
            incident=incident, actor=support_lead, version=0, **_fields(body="second")
        )


def test_only_the_support_lead_role_edits_the_draft(roles):
    commander = UserFactory(roles=["Incident Commander"])
    incident = incident_open()
    with pytest.raises(PermissionDenied):
        services.draft_save(incident=incident, actor=commander, version=0, **_fields())


def test_unknown_component_is_refused(support_lead):
    incident = incident_open()
    with pytest.raises(DomainError, match="Unknown component"):
        services.draft_save(
            incident=incident,
            actor=support_lead,
            version=0,
            **_fields(component_statuses={"999": "major_outage"}),
        )


def test_publishing_keeps_a_revision_updates_components_and_writes_the_timeline(
    support_lead, checkout_component
):
    incident = incident_open()
    revision = services.draft_publish(
        incident=incident,
        actor=support_lead,
        version=0,
        **_fields(component_statuses={str(checkout_component.pk): "major_outage"}),
    )
    assert revision.number == 1
    assert revision.published_by == support_lead
    assert "<p>We are looking into failed payments.</p>" in revision.body_html
    public = PublicIncident.objects.get(incident=incident)
    assert (public.name, public.status, public.impact) == (
        "Checkout problems",
        "investigating",
        "major",
    )
    checkout_component.refresh_from_db()
    assert checkout_component.status == "major_outage"
    entry = incident.timeline.filter(kind=TimelineKind.COMMS_PUBLISHED).get()
    assert entry.actor == support_lead
    assert entry.payload["revision"] == revision.pk
    assert "Checkout → major outage" in entry.body


def test_publishing_an_empty_update_is_refused_and_publishes_nothing(support_lead):
    incident = incident_open()
    with pytest.raises(DomainError, match="Write the update"):
        services.draft_publish(
            incident=incident, actor=support_lead, version=0, **_fields(body="  ")
        )
    assert not Revision.objects.exists()
    assert not Draft.objects.exists()


def test_each_revision_shows_its_diff_and_field_changes(support_lead):
    incident = incident_open()
    services.draft_publish(incident=incident, actor=support_lead, version=0, **_fields())
    services.draft_publish(
        incident=incident,
        actor=support_lead,
        version=1,
        **_fields(status="identified", body="We found the cause: a bad release."),
    )
    newest, oldest = revision_history(incident)
    assert newest.revision.number == 2
    assert "-We are looking into failed payments." in newest.diff
    assert "+We found the cause: a bad release." in newest.diff
    assert newest.changes == ["status: investigating → identified"]
    assert oldest.changes == []


def test_a_revision_restores_into_the_draft_and_republishes(support_lead):
    incident = incident_open()
    first = services.draft_publish(incident=incident, actor=support_lead, version=0, **_fields())
    services.draft_publish(
        incident=incident, actor=support_lead, version=1, **_fields(body="Second text")
    )
    draft = services.revision_restore(revision=first, actor=support_lead, version=2)
    assert draft.body == first.body and draft.version == 3
    third = services.draft_publish(
        incident=incident,
        actor=support_lead,
        version=3,
        **{
            k: getattr(draft, k) for k in ("name", "status", "impact", "body", "component_statuses")
        },
    )
    assert third.number == 3 and third.body == first.body
    assert Revision.objects.count() == 3


def test_published_revisions_cannot_be_changed_or_deleted(support_lead):
    incident = incident_open()
    revision = services.draft_publish(incident=incident, actor=support_lead, version=0, **_fields())
    revision.body = "rewritten"
    with pytest.raises(Exception, match="kept as they were published"):
        revision.save()
    with pytest.raises(Exception, match="kept as they were published"):
        revision.delete()


def test_draft_started_from_the_verified_incident_names_restore_and_verification(
    support_lead, checkout_component
):
    now = timezone.now()
    incident = incident_open(services=[checkout_component.service])
    incident.restored_at = now - timedelta(minutes=3)
    incident.verified_at = now - timedelta(minutes=1)
    incident.status = "monitoring"
    incident.save()
    draft = services.draft_start_from_incident(incident=incident, actor=support_lead, version=0)
    assert draft.status == "monitoring"
    assert "Checkout" in draft.body
    assert f"{timezone.localtime(incident.verified_at):%H:%M}" in draft.body
    assert "not yet" not in draft.body
    assert draft.component_statuses == {str(checkout_component.pk): "degraded_performance"}


def test_draft_started_as_resolved_sets_components_operational(support_lead, checkout_component):
    incident = incident_open(services=[checkout_component.service], severity="P0")
    draft = services.draft_start_from_incident(
        incident=incident, actor=support_lead, version=0, status="resolved"
    )
    assert draft.status == "resolved"
    assert draft.impact == "critical"
    assert draft.component_statuses == {str(checkout_component.pk): "operational"}


def test_resolving_publishes_resolved_at_and_moves_the_incident_to_history(support_lead):
    incident = incident_open()
    services.draft_publish(incident=incident, actor=support_lead, version=0, **_fields())
    services.draft_publish(
        incident=incident, actor=support_lead, version=1, **_fields(status="resolved")
    )
    public = PublicIncident.objects.get(incident=incident)
    assert public.resolved_at is not None
    assert not public.is_active


def test_component_status_changes_only_through_a_publish(support_lead, checkout_component):
    incident = incident_open()
    services.draft_save(
        incident=incident,
        actor=support_lead,
        version=0,
        **_fields(component_statuses={str(checkout_component.pk): "major_outage"}),
    )
    assert Component.objects.get(pk=checkout_component.pk).status == "operational"
