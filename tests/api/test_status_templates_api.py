"""Update templates over the API: listed and read with `read`, created, changed, reordered
and deleted with `statuspage:write` by a Support Lead, and an incident's draft started from
one, through the templates page's form and services; every refusal names its field and
saves nothing, and a draft saved meanwhile answers 409."""

from __future__ import annotations

from typing import Any

import pytest

from statuspage import services
from statuspage.models import Component, Draft, UpdateTemplate
from tests.factories import ServiceFactory, UserFactory, incident_open

pytestmark = pytest.mark.django_db
LEAD = ["Support Lead"]
WRITE = "statuspage:write"
PATH = "/status-page/templates"


def _body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "Payments slow",
        "title": "Slow payments: {components}",
        "body": "Card payments are slow since {started_at}.",
        "status": "identified",
    }
    body.update(overrides)
    return body


def _snapshot() -> list[tuple[Any, ...]]:
    return [
        (t.pk, t.name, t.title, t.body, t.status, t.component_status, t.position)
        + (tuple(t.components.order_by("pk").values_list("pk", flat=True)),)
        for t in UpdateTemplate.objects.order_by("pk")
    ]


@pytest.fixture
def checkout_component(db) -> Component:
    """The component "Checkout", fed by the `checkout` service (its `.service` here)."""
    service = ServiceFactory(name="checkout")
    component = Component.objects.create(name="Checkout", position=1)
    component.services.add(service)
    component.service = service  # type: ignore[attr-defined]
    return component


@pytest.fixture
def lead_api(api_as):
    return api_as(LEAD, WRITE, "read", user=UserFactory(username="sam", roles=LEAD))


def test_any_role_with_read_lists_the_templates_in_order(api_as):
    response = api_as(["Viewer"], "read").call("get", PATH)
    assert response.status_code == 200, response.content
    listed = response.json()
    assert [t["name"] for t in listed[:4]] == [
        "Investigating",
        "Identified",
        "Monitoring",
        "Resolved",
    ]
    assert listed[3]["component_status"] == "operational" and listed[0]["position"] == 1
    one = api_as(["Viewer"], "read").call("get", f"{PATH}/{listed[1]['id']}").json()
    assert one["title"] == "Service disruption: {components}"


def test_the_support_lead_creates_a_template_with_components(lead_api, checkout_component):
    body = _body(
        name="支付 💳 خدمة", components=[checkout_component.pk], component_status="major_outage"
    )
    response = lead_api.call("post", PATH, body)
    assert response.status_code == 201, response.content
    created = response.json()
    assert created["components"] == [{"id": checkout_component.pk, "name": "Checkout"}]
    assert created["updated_by"] == "sam"
    assert UpdateTemplate.objects.get(pk=created["id"]).name == "支付 💳 خدمة"


def test_a_change_sets_the_fields_given_and_keeps_the_others(lead_api, checkout_component):
    template = UpdateTemplate.objects.get(name="Identified")
    template.components.set([checkout_component])
    response = lead_api.call("patch", f"{PATH}/{template.pk}", {"body": "Found it: {components}."})
    assert response.status_code == 200, response.content
    template.refresh_from_db()
    assert template.body == "Found it: {components}."
    assert template.title == "Service disruption: {components}"
    assert list(template.components.all()) == [checkout_component]
    response = lead_api.call("patch", f"{PATH}/{template.pk}", {"components": []})
    assert response.json()["components"] == []


def test_reorder_and_delete(lead_api):
    ids = [t.pk for t in UpdateTemplate.objects.order_by("position")]
    response = lead_api.call("put", f"{PATH}/order", {"order": list(reversed(ids))})
    assert response.status_code == 200, response.content
    assert [t["id"] for t in response.json()] == list(reversed(ids))
    response = lead_api.call("delete", f"{PATH}/{ids[0]}")
    assert response.status_code == 204
    assert not UpdateTemplate.objects.filter(pk=ids[0]).exists()
    assert lead_api.call("delete", f"{PATH}/{ids[0]}").status_code == 404


def _group() -> int:
    return Component.objects.create(name="Online store", is_group=True, position=9).pk


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        (_body(name=""), "name", "Name: give it one"),
        (_body(name="n" * 101), "name", "at most 100 characters"),
        (_body(title="t" * 201), "title", "at most 200 characters"),
        (_body(body="b" * 10_001), "body", "at most 10,000 characters"),
        (_body(body="{componets}"), "body", "unknown placeholder {componets}"),
        (_body(title="{severity} {components}"), "title", "unknown placeholder {severity}"),
        (_body(title="a\u202eb"), "title", "control characters are not allowed (U+202E)"),
        (_body(body="a\x1b[31mb"), "body", "control characters are not allowed (U+001B)"),
        (_body(name="RESOLVED"), "name", "'RESOLVED' is taken"),
        (_body(status="panicking"), "status", "Select a valid choice"),
        (_body(component_status="on_fire"), "component_status", "Select a valid choice"),
        (_body(components=[999999]), "components", "Select a valid choice"),
        ("group", "components", "Online store is a group"),
    ],
)
def test_bad_input_answers_400_naming_the_field_and_saves_nothing(lead_api, body, field, message):
    if body == "group":
        body = _body(components=[_group()])
    before = _snapshot()
    response = lead_api.call("post", PATH, body)
    assert response.status_code == 400, response.content
    assert any(message in text for text in response.json()["errors"][field]), response.json()
    assert _snapshot() == before


def test_input_of_the_wrong_shape_or_with_a_nul_is_refused(lead_api):
    before = _snapshot()
    response = lead_api.call("post", PATH, {"name": "x"})
    assert response.status_code == 400 and "title" in str(response.json()["errors"])
    response = lead_api.call("post", PATH, _body(body="a\x00b"))
    assert response.status_code == 400 and response.json()["errors"]["body"]
    response = lead_api.call("put", f"{PATH}/order", {"order": [1, 1]})
    assert response.status_code == 400 and "order" in response.json()["errors"]
    assert lead_api.call("patch", f"{PATH}/{before[0][0]}", {}).status_code == 400
    assert _snapshot() == before


def test_scope_and_role_are_both_needed_to_write(api_as, roles):
    before = _snapshot()
    assert api_as(LEAD, "read").call("post", PATH, _body()).status_code == 403
    demoted = api_as(LEAD, WRITE).demote("Incident Commander")
    response = demoted.call("post", PATH, _body(body="{nope}"))
    assert response.status_code == 403
    assert "role" in response.json()["detail"]
    template = UpdateTemplate.objects.first()
    assert demoted.call("delete", f"{PATH}/{template.pk}").status_code == 403
    assert api_as(LEAD, WRITE).call("get", PATH).status_code == 403  # no read scope
    assert _snapshot() == before


def test_a_draft_is_started_from_a_template_and_guarded_by_its_version(
    lead_api, checkout_component
):
    incident = incident_open(services=[checkout_component.service], severity="P0")
    template = UpdateTemplate.objects.get(name="Investigating")
    path = f"/incidents/{incident.pk}/status-draft/from-template"
    response = lead_api.call("post", path, {"template": template.pk, "version": 0})
    assert response.status_code == 200, response.content
    draft = response.json()
    assert (draft["version"], draft["status"], draft["impact"]) == (1, "investigating", "critical")
    assert draft["name"] == "Service disruption: Checkout"
    assert draft["component_statuses"] == {str(checkout_component.pk): "major_outage"}

    services.draft_save(
        incident=incident,
        actor=UserFactory(username="alex", roles=LEAD),
        version=1,
        name="Alex's",
        status="identified",
        impact="major",
        body="Alex's wording",
        component_statuses={},
    )
    response = lead_api.call("post", path, {"template": template.pk, "version": 1})
    assert response.status_code == 409
    conflict = response.json()
    assert "alex saved this draft" in conflict["detail"]
    assert (conflict["draft"]["version"], conflict["draft"]["body"]) == (2, "Alex's wording")
    assert Draft.objects.get(incident=incident).body == "Alex's wording"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"template": 999999, "version": 0}, "template"),
        ({"template": 2**40, "version": 0}, "template"),
        ({"template": 1, "version": -1}, "version"),
    ],
)
def test_starting_from_an_unknown_template_is_refused_naming_it(lead_api, body, field):
    incident = incident_open()
    response = lead_api.call("post", f"/incidents/{incident.pk}/status-draft/from-template", body)
    assert response.status_code == 400, response.content
    assert field in response.json()["errors"]
    assert not Draft.objects.filter(incident=incident).exists()
