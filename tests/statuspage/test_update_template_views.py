"""The update templates page and the desk's "Start from template", through Django's test
client: every role against every view, adding, editing, moving and deleting templates,
starting a draft from one (and the version conflict), and bad input refused with a 400
naming the field, nothing saved."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from html import unescape
from typing import Any

import pytest
from django.urls import reverse

from statuspage import services
from statuspage.models import Component, Draft, UpdateTemplate
from tests.factories import UserFactory, incident_open
from tests.permissions import assert_reached_only_if_allowed, assert_sent_to_login

pytestmark = pytest.mark.django_db

ROLES = ["Viewer", "Responder", "Support Lead", "Approver", "Incident Commander"]


@pytest.fixture
def lead_client(client, support_lead):
    client.force_login(support_lead)
    return client


def _post(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "Payments slow",
        "title": "Slow payments: {components}",
        "body": "Card payments are slow since {started_at}.",
        "status": "identified",
        "component_status": "",
    }
    data.update(overrides)
    return data


def _snapshot() -> list[tuple[Any, ...]]:
    return [
        (t.pk, t.name, t.title, t.body, t.status, t.component_status, t.position)
        + (tuple(t.components.order_by("pk").values_list("pk", flat=True)),)
        for t in UpdateTemplate.objects.order_by("pk")
    ]


def _first() -> UpdateTemplate:
    return UpdateTemplate.objects.order_by("position").first()  # type: ignore[return-value]


# -- every role, every view --------------------------------------------------------------------


@dataclass
class Case:
    name: str
    request: Callable[[], tuple[str, str, dict[str, Any]]]

    def __str__(self) -> str:
        return self.name


CASES = [
    Case("status_templates", lambda: ("get", reverse("status_templates"), {})),
    Case("status_template_create", lambda: ("post", reverse("status_template_create"), _post())),
    Case(
        "status_template_edit_form",
        lambda: ("get", reverse("status_template_edit", args=[_first().pk]), {}),
    ),
    Case(
        "status_template_edit",
        lambda: ("post", reverse("status_template_edit", args=[_first().pk]), _post()),
    ),
    Case(
        "status_template_move",
        lambda: ("post", reverse("status_template_move", args=[_first().pk]), {"direction": "up"}),
    ),
    Case(
        "status_template_delete",
        lambda: ("post", reverse("status_template_delete", args=[_first().pk]), {}),
    ),
    Case(
        "status_draft_start_template",
        lambda: (
            "post",
            reverse("status_draft_start_template", args=[incident_open().pk]),
            {"template": _first().pk, "version": 0},
        ),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_anonymous_visitor_is_sent_to_login(client, roles, case):
    assert_sent_to_login(client, *case.request())


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("case", CASES, ids=str)
def test_only_the_support_lead_reaches_the_templates_page_and_uses_them(client, roles, case, role):
    client.force_login(UserFactory(roles=[role]))
    before = _snapshot()
    method, url, data = case.request()
    allowed = role == "Support Lead"
    assert_reached_only_if_allowed(client, method, url, data, allowed=allowed)
    if not allowed:
        assert _snapshot() == before
        assert not Draft.objects.exists()


def test_the_console_links_the_templates_page_for_the_support_lead_only(client, roles):
    client.force_login(UserFactory(roles=["Support Lead"]))
    assert reverse("status_templates") in client.get(reverse("dashboard")).content.decode()
    client.force_login(UserFactory(roles=["Incident Commander"]))
    assert reverse("status_templates") not in client.get(reverse("dashboard")).content.decode()


# -- the page ------------------------------------------------------------------------------------


def test_the_page_lists_the_templates_in_order_with_the_placeholders_offered(lead_client):
    page = lead_client.get(reverse("status_templates")).content.decode()
    assert page.index(">Investigating<") < page.index(">Identified<") < page.index(">Resolved<")
    assert "{components}" in page and "{restored_at}" in page
    assert "{incident_url}" not in page


def test_the_support_lead_adds_a_template_with_components_grouped_as_on_the_page(lead_client, db):
    group = Component.objects.create(name="Online store", is_group=True, position=1)
    checkout = Component.objects.create(name="Checkout", group=group, position=1)
    page = lead_client.get(reverse("status_templates")).content.decode()
    assert f'value="{group.pk}"' not in page  # a group is a heading, not a choice
    assert f'name="components" value="{checkout.pk}"' in page

    response = lead_client.post(
        reverse("status_template_create"),
        _post(components=[checkout.pk], component_status="partial_outage"),
    )
    assert response.status_code == 302
    template = UpdateTemplate.objects.get(name="Payments slow")
    assert list(template.components.all()) == [checkout]
    assert template.component_status == "partial_outage"
    assert "Template Payments slow added." in lead_client.get(response["Location"]).content.decode()


def test_an_htmx_post_answers_with_the_list_fragment(lead_client):
    response = lead_client.post(
        reverse("status_template_create"), _post(), headers={"HX-Request": "true"}
    )
    assert response.status_code == 200
    body = response.content.decode()
    assert body.lstrip().startswith('<div id="templates"') and "<html" not in body
    assert "Template Payments slow added." in body


def test_editing_shows_the_template_and_saves_it(lead_client):
    template = _first()
    form = lead_client.get(reverse("status_template_edit", args=[template.pk])).content.decode()
    assert "Service disruption: {components}" in unescape(form)
    response = lead_client.post(
        reverse("status_template_edit", args=[template.pk]),
        _post(name="First look", status="investigating"),
    )
    assert response.status_code == 302
    template.refresh_from_db()
    assert (template.name, template.title) == ("First look", "Slow payments: {components}")


def test_moving_and_deleting_a_template(lead_client):
    last = UpdateTemplate.objects.order_by("-position").first()
    lead_client.post(reverse("status_template_move", args=[last.pk]), {"direction": "up"})
    last.refresh_from_db()
    assert last.position == UpdateTemplate.objects.count() - 1
    response = lead_client.post(
        reverse("status_template_delete", args=[last.pk]), headers={"HX-Request": "true"}
    )
    assert "Template Resolved deleted." in response.content.decode()
    assert not UpdateTemplate.objects.filter(pk=last.pk).exists()


# -- bad input: 400 naming the field, nothing saved ----------------------------------------------


def _bad_posts() -> list[tuple[str, dict[str, Any], str]]:
    group = Component.objects.create(name="Online store", is_group=True, position=9)
    return [
        ("blank name", _post(name="  "), "Name: give it one"),
        ("taken name", _post(name="investigating"), "Name: 'investigating' is taken"),
        ("over-long name", _post(name="n" * 101), "Name: at most 100 characters"),
        ("over-long title", _post(title="t" * 201), "Title: at most 200 characters"),
        ("over-long body", _post(body="b" * 10_001), "Body: at most 10,000 characters"),
        ("escape in the title", _post(title="Slow\x1b[31m"), "Title: control characters"),
        ("NUL in the body", _post(body="a\x00b"), "Null characters are not allowed"),
        ("unknown placeholder", _post(body="{componets} slow"), "unknown placeholder {componets}"),
        ("internal placeholder", _post(title="{title}"), "Title: unknown placeholder {title}"),
        ("a group", _post(components=[group.pk]), "Components: Online store is a group"),
        ("an unknown component", _post(components=[999999]), "Select a valid choice"),
        ("a component that is no number", _post(components=["x"]), "Select a valid choice"),
        ("an unknown status", _post(status="panicking"), "Select a valid choice"),
        ("an unknown state", _post(component_status="on_fire"), "Select a valid choice"),
    ]


@pytest.mark.parametrize("index", range(14))
def test_bad_input_answers_400_naming_the_field_and_saves_nothing(lead_client, index):
    label, data, message = _bad_posts()[index]
    before = _snapshot()
    response = lead_client.post(reverse("status_template_create"), data)
    assert response.status_code == 400, label
    assert message in unescape(response.content.decode()), label
    assert _snapshot() == before


def test_a_refused_edit_keeps_the_typed_text_and_saves_nothing(lead_client):
    template = _first()
    before = _snapshot()
    response = lead_client.post(
        reverse("status_template_edit", args=[template.pk]), _post(body="Hi {nope} ✓")
    )
    assert response.status_code == 400
    page = unescape(response.content.decode())
    assert "Body: unknown placeholder {nope}" in page and "Hi {nope} ✓" in page
    assert _snapshot() == before


def test_a_bad_move_is_refused(lead_client):
    response = lead_client.post(
        reverse("status_template_move", args=[_first().pk]), {"direction": "sideways"}
    )
    assert response.status_code == 400


# -- the desk ------------------------------------------------------------------------------------


def test_the_desk_offers_the_templates_and_starts_the_draft_from_one(
    lead_client, checkout_component
):
    incident = incident_open(services=[checkout_component.service], severity="P1")
    desk = lead_client.get(reverse("status_desk", args=[incident.pk])).content.decode()
    assert 'id="start-from-template"' in desk and ">Identified (identified)<" in desk
    identified = UpdateTemplate.objects.get(name="Identified")
    response = lead_client.post(
        reverse("status_draft_start_template", args=[incident.pk]),
        {"template": identified.pk, "version": 0},
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 200
    assert "Draft started from the template Identified (version 1)." in response.content.decode()
    draft = Draft.objects.get(incident=incident)
    assert (draft.status, draft.name) == ("identified", "Service disruption: Checkout")
    assert draft.component_statuses == {str(checkout_component.pk): "partial_outage"}


def test_starting_from_a_template_over_a_draft_saved_meanwhile_answers_409(
    lead_client, support_lead
):
    incident = incident_open()
    services.draft_save(
        incident=incident,
        actor=UserFactory(username="alex", roles=["Support Lead"]),
        version=0,
        name="Alex's",
        status="investigating",
        impact="minor",
        body="Alex's wording",
        component_statuses={},
    )
    response = lead_client.post(
        reverse("status_draft_start_template", args=[incident.pk]),
        {"template": _first().pk, "version": 0},
    )
    assert response.status_code == 409
    assert "alex saved this draft" in unescape(response.content.decode())
    assert Draft.objects.get(incident=incident).body == "Alex's wording"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"version": 0}, "This field is required"),
        ({"template": "x", "version": 0}, "Enter a whole number"),
        ({"template": 999999, "version": 0}, "Template: it was deleted meanwhile"),
        ({"template": 10**30, "version": 0}, "less than or equal to"),
        ({"template": 1}, "This field is required"),
    ],
)
def test_starting_from_a_bad_template_choice_answers_400(lead_client, data, message):
    incident = incident_open()
    response = lead_client.post(reverse("status_draft_start_template", args=[incident.pk]), data)
    assert response.status_code == 400
    assert message in unescape(response.content.decode())
    assert not Draft.objects.filter(incident=incident).exists()


def test_markup_in_a_template_is_shown_as_text_on_the_page_and_the_desk(lead_client):
    lead_client.post(
        reverse("status_template_create"),
        _post(name="<script>alert(1)</script>", title="<b>{components}</b>", body="<i>x</i>"),
    )
    page = lead_client.get(reverse("status_templates")).content.decode()
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "&lt;b&gt;{components}" in page
    desk = lead_client.get(reverse("status_desk", args=[incident_open().pk])).content.decode()
    assert "<script>alert(1)" not in desk and "&lt;script&gt;alert(1)" in desk
