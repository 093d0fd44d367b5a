"""Update templates through their services (statuspage.update_templates): the limits, the
characters and placeholders refused, groups refused, the role, the order, and starting an
incident's draft from a template under the draft's version rule. Also the default drafts,
which now start from the first template of their status."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from incidents.errors import PermissionDenied
from statuspage import services, update_templates
from statuspage.models import Component, Draft, MessageTemplate, UpdateTemplate
from statuspage.update_templates import TemplateRefused
from tests.factories import UserFactory, incident_open

pytestmark = pytest.mark.django_db

CJK = "支付服务中断"
EMOJI = "💳🧑🏽‍💻"
RTL = "خدمة الدفع"


def _fields(**overrides: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "name": "Payments slow",
        "title": "Slow payments: {components}",
        "body": "Card payments take longer than usual since {started_at}.",
        "status": "identified",
        "component_ids": [],
        "component_status": "",
    }
    fields.update(overrides)
    return fields


def _create(actor: Any, **overrides: Any) -> UpdateTemplate:
    return update_templates.update_template_create(actor=actor, **_fields(**overrides))


def _snapshot() -> list[tuple[Any, ...]]:
    return [
        (t.pk, t.name, t.title, t.body, t.status, t.component_status, t.position)
        + (tuple(t.components.order_by("pk").values_list("pk", flat=True)),)
        for t in UpdateTemplate.objects.order_by("pk")
    ]


# -- the default texts became templates --------------------------------------------------------


def test_the_four_default_public_texts_are_templates_in_order():
    listed = update_templates.update_templates_listed()
    assert [(t.name, t.status, t.title) for t in listed[:4]] == [
        ("Investigating", "investigating", "Service disruption: {components}"),
        ("Identified", "identified", "Service disruption: {components}"),
        ("Monitoring", "monitoring", "Service disruption: {components}"),
        ("Resolved", "resolved", "Service disruption: {components}"),
    ]
    assert "{components}" in listed[0].body
    assert listed[3].component_status == "operational"
    assert not MessageTemplate.objects.filter(key__startswith="public_").exists()


def test_a_fresh_draft_starts_from_the_first_template_of_its_status(support_lead):
    incident = incident_open()
    first = _create(
        support_lead, name="Short", body="Short note: {components}.", status="investigating"
    )
    update_templates.update_templates_reorder(
        actor=support_lead,
        order=[first.pk, *UpdateTemplate.objects.exclude(pk=first.pk).values_list("pk", flat=True)],
    )
    draft = services.draft_get(incident)
    assert draft.body == "Short note: some of our services."
    assert draft.name == "Slow payments: some of our services"


def test_without_a_template_of_its_status_a_draft_starts_from_a_plain_text():
    UpdateTemplate.objects.filter(status="monitoring").delete()
    incident = incident_open()
    fields = services.draft_defaults(incident, status="monitoring")
    assert fields["status"] == "monitoring"
    assert fields["name"] == "Service disruption: some of our services"
    assert "some of our services" in fields["body"]


def test_a_postmortem_draft_starts_from_the_resolved_template_and_stays_a_postmortem():
    incident = incident_open()
    fields = services.draft_defaults(incident, status="postmortem")
    assert fields["status"] == "postmortem"
    assert fields["body"].startswith("This incident is over")


# -- creating, editing and the limits ----------------------------------------------------------


def test_support_lead_creates_a_template_last_in_the_order(support_lead, checkout_component):
    template = _create(
        support_lead, component_ids=[checkout_component.pk], component_status="partial_outage"
    )
    assert template.position == UpdateTemplate.objects.count()
    assert list(template.components.all()) == [checkout_component]
    assert template.updated_by == support_lead


@pytest.mark.parametrize(("field", "limit"), [("name", 100), ("title", 200), ("body", 10_000)])
def test_text_at_its_limit_is_kept_and_one_more_character_is_refused(support_lead, field, limit):
    fill = (CJK + EMOJI + RTL.replace(" ", "")) * limit
    at_limit = fill[:limit]
    if field != "name":
        at_limit = "{components}" + fill[: limit - len("{components}")]
    template = _create(support_lead, **{field: at_limit})
    assert getattr(template, field) == at_limit
    before = _snapshot()
    with pytest.raises(TemplateRefused, match=f"at most {limit:,} characters") as refused:
        _create(support_lead, **{"name": "Other", field: at_limit + "x"})
    assert refused.value.field == field
    assert _snapshot() == before


@pytest.mark.parametrize("field", ["name", "title", "body"])
def test_blank_text_is_refused(support_lead, field):
    with pytest.raises(TemplateRefused, match="cannot be blank") as refused:
        _create(support_lead, **{field: "  \n "})
    assert refused.value.field == field
    assert not UpdateTemplate.objects.filter(name="Payments slow").exists()


@pytest.mark.parametrize(
    ("field", "char"),
    [
        ("name", "\x00"),
        ("name", "\n"),
        ("title", "\x1b"),
        ("title", "\t"),
        ("body", "\x07"),
        ("body", "\x7f"),
        ("body", "\u202e"),
        ("title", "\u2066"),
        ("body", "\u2028"),
    ],
)
def test_control_and_direction_override_characters_are_refused(support_lead, field, char):
    value = f"before{char}after" + (" {components}" if field != "name" else "")
    with pytest.raises(TemplateRefused, match=f"U\\+{ord(char):04X}") as refused:
        _create(support_lead, **{field: value})
    assert refused.value.field == field
    assert not UpdateTemplate.objects.filter(title__startswith="before").exists()


def test_a_body_keeps_new_lines_tabs_cjk_emoji_and_right_to_left_text(support_lead):
    body = f"{CJK}\n\n- {EMOJI}\n\t- {RTL} \u200f{{components}}"
    template = _create(
        support_lead, name=f"{RTL} {EMOJI}", title=f"{CJK}: {{components}}", body=body
    )
    assert template.body == body
    assert template.name == f"{RTL} {EMOJI}"


def test_markup_is_kept_as_written_in_the_template_and_cleaned_when_published(
    support_lead, checkout_component
):
    body = '<script>alert(1)</script>**Slow** {components} <img src=x onerror="alert(2)">'
    template = _create(support_lead, body=body, component_ids=[checkout_component.pk])
    assert template.body == body
    incident = incident_open()
    update_templates.update_template_use(
        actor=support_lead, template=template, incident=incident, version=0
    )
    draft = Draft.objects.get(incident=incident)
    revision = services.draft_publish(
        incident=incident,
        actor=support_lead,
        version=draft.version,
        name=draft.name,
        status=draft.status,
        impact=draft.impact,
        body=draft.body,
        component_statuses=draft.component_statuses,
    )
    assert "<script" not in revision.body_html and "onerror" not in revision.body_html
    assert "<strong>Slow</strong> Checkout" in revision.body_html


@pytest.mark.parametrize(
    ("field", "text", "named"),
    [
        ("body", "Since {started_at}, {componets} fail.", "{componets}"),
        ("title", "Trouble: {Components}", "{Components}"),
        # Internal facts are not offered to the public.
        ("body", "{title} ({severity}) on {services}: {incident_url}", "{title}"),
        ("body", "Rollback {run} is {run_state}", "{run}"),
        ("body", "{components.__class__}", "{components.__class__}"),
    ],
)
def test_an_unknown_placeholder_is_refused_by_name(support_lead, field, text, named):
    with pytest.raises(TemplateRefused) as refused:
        _create(support_lead, **{field: text})
    assert refused.value.field == field
    assert f"unknown placeholder {named}" in str(refused.value)
    assert "{components}" in str(refused.value)  # the known ones are listed
    assert not UpdateTemplate.objects.filter(name="Payments slow").exists()


def test_braces_with_spaces_inside_are_text_not_placeholders(support_lead):
    template = _create(support_lead, body='Send us { "order": 12 } if {components} fails.')
    assert template.body.startswith("Send us {")


def test_a_group_is_refused_as_a_component(support_lead):
    group = Component.objects.create(name="Online store", is_group=True, position=1)
    with pytest.raises(TemplateRefused, match="Online store is a group") as refused:
        _create(support_lead, component_ids=[group.pk])
    assert refused.value.field == "components"
    assert not UpdateTemplate.objects.filter(name="Payments slow").exists()


def test_an_unknown_component_status_and_public_status_are_refused(support_lead):
    with pytest.raises(TemplateRefused) as refused:
        _create(support_lead, component_status="on_fire")
    assert refused.value.field == "component_status"
    with pytest.raises(TemplateRefused) as refused:
        _create(support_lead, status="panicking")
    assert refused.value.field == "status"


def test_a_name_is_unique_ignoring_case(support_lead):
    _create(support_lead)
    with pytest.raises(TemplateRefused, match="taken") as refused:
        _create(support_lead, name="PAYMENTS SLOW")
    assert refused.value.field == "name"
    assert UpdateTemplate.objects.filter(name__iexact="payments slow").count() == 1


def test_editing_changes_every_field_and_keeps_the_place(support_lead, checkout_component):
    template = _create(support_lead)
    place = template.position
    saved = update_templates.update_template_update(
        actor=support_lead,
        template=template,
        **_fields(
            name="Payments down",
            title="Payments down",
            body="No card payments go through.",
            status="investigating",
            component_ids=[checkout_component.pk],
            component_status="major_outage",
        ),
    )
    saved.refresh_from_db()
    assert (saved.name, saved.status, saved.component_status, saved.position) == (
        "Payments down",
        "investigating",
        "major_outage",
        place,
    )
    assert list(saved.components.all()) == [checkout_component]


def test_an_edit_that_is_refused_saves_nothing(support_lead, checkout_component):
    template = _create(support_lead, component_ids=[checkout_component.pk])
    before = _snapshot()
    with pytest.raises(TemplateRefused):
        update_templates.update_template_update(
            actor=support_lead,
            template=template,
            **_fields(name="Renamed", body="{nope}", component_ids=[]),
        )
    assert _snapshot() == before


# -- order and deleting -------------------------------------------------------------------------


def test_moving_and_deleting_renumber_the_templates(support_lead):
    template = _create(support_lead)
    update_templates.update_template_move(actor=support_lead, template=template, offset=-100)
    listed = update_templates.update_templates_listed()
    assert listed[0] == template
    assert [t.position for t in listed] == list(range(1, len(listed) + 1))
    update_templates.update_template_delete(actor=support_lead, template=listed[1])
    listed = update_templates.update_templates_listed()
    assert [t.position for t in listed] == list(range(1, len(listed) + 1))
    assert listed[0] == template


def test_a_reorder_naming_a_template_twice_or_leaving_one_out_is_refused(support_lead):
    ids = [t.pk for t in update_templates.update_templates_listed()]
    before = _snapshot()
    for order in (ids[:-1], [ids[0], *ids]):
        with pytest.raises(TemplateRefused) as refused:
            update_templates.update_templates_reorder(actor=support_lead, order=order)
        assert refused.value.field == "order"
    assert _snapshot() == before


def test_every_service_refuses_a_person_without_the_role(roles, checkout_component):
    viewer = UserFactory(roles=["Incident Commander"])
    template = UpdateTemplate.objects.order_by("position").first()
    incident = incident_open()
    before = _snapshot()
    calls = [
        lambda: _create(viewer),
        lambda: update_templates.update_template_update(
            actor=viewer, template=template, **_fields()
        ),
        lambda: update_templates.update_template_move(actor=viewer, template=template, offset=1),
        lambda: update_templates.update_templates_reorder(actor=viewer, order=[]),
        lambda: update_templates.update_template_delete(actor=viewer, template=template),
        lambda: update_templates.update_template_use(
            actor=viewer, template=template, incident=incident, version=0
        ),
    ]
    for call in calls:
        with pytest.raises(PermissionDenied):
            call()
    assert _snapshot() == before
    assert not Draft.objects.filter(incident=incident).exists()


# -- starting a draft from a template -----------------------------------------------------------


def test_using_a_template_fills_the_draft_from_the_incident(support_lead, checkout_component):
    search = Component.objects.create(name="Search", position=2)
    now = timezone.now()
    incident = incident_open(services=[checkout_component.service], severity="P1")
    incident.restored_at = now - timedelta(minutes=2)
    incident.save()
    template = _create(
        support_lead,
        title="Slow: {components}",
        body="Restored at {restored_at}; see {status_url}",
        status="monitoring",
        component_ids=[search.pk],
    )
    draft = update_templates.update_template_use(
        actor=support_lead, template=template, incident=incident, version=0
    )
    assert draft.name == "Slow: Search"
    assert draft.status == "monitoring"
    assert draft.impact == "major"
    assert f"{timezone.localtime(incident.restored_at):%H:%M}" in draft.body
    assert draft.body.endswith("/status/")
    # The template's components, at the state the P1 severity suggests.
    assert draft.component_statuses == {str(search.pk): "partial_outage"}
    assert draft.version == 1 and draft.updated_by == support_lead


def test_a_template_without_components_marks_those_the_incident_suggests_at_its_state(
    support_lead, checkout_component
):
    incident = incident_open(services=[checkout_component.service], severity="P0")
    template = _create(support_lead, component_status="degraded_performance")
    draft = update_templates.update_template_use(
        actor=support_lead, template=template, incident=incident, version=0
    )
    assert draft.component_statuses == {str(checkout_component.pk): "degraded_performance"}
    assert draft.name == "Slow payments: Checkout"


def test_a_resolved_template_sets_its_components_operational(support_lead, checkout_component):
    incident = incident_open(services=[checkout_component.service], severity="P0")
    resolved = UpdateTemplate.objects.get(name="Resolved")
    draft = update_templates.update_template_use(
        actor=support_lead, template=resolved, incident=incident, version=0
    )
    assert draft.status == "resolved"
    assert draft.component_statuses == {str(checkout_component.pk): "operational"}


def test_using_a_template_on_a_draft_saved_meanwhile_is_a_conflict_and_keeps_it(support_lead):
    incident = incident_open()
    other = UserFactory(username="alex", roles=["Support Lead"])
    template = _create(support_lead)
    services.draft_save(
        incident=incident,
        actor=other,
        version=0,
        name="Alex's name",
        status="investigating",
        impact="minor",
        body="Alex's wording",
        component_statuses={},
    )
    with pytest.raises(services.DraftConflict) as raised:
        update_templates.update_template_use(
            actor=support_lead, template=template, incident=incident, version=0
        )
    assert raised.value.draft.body == "Alex's wording"
    draft = Draft.objects.get(incident=incident)
    assert (draft.version, draft.body) == (1, "Alex's wording")
    update_templates.update_template_use(
        actor=support_lead, template=template, incident=incident, version=1
    )
    assert Draft.objects.get(incident=incident).version == 2


def test_a_long_list_of_components_cuts_the_title_instead_of_refusing_it(support_lead):
    components = [
        Component.objects.create(name=f"{CJK} component {n:02}", position=n) for n in range(1, 21)
    ]
    template = _create(support_lead, title="{components}", component_ids=[c.pk for c in components])
    draft = update_templates.update_template_use(
        actor=support_lead, template=template, incident=incident_open(), version=0
    )
    assert len(draft.name) == 200 and draft.name.endswith("…")
    assert len(draft.component_statuses) == 20
