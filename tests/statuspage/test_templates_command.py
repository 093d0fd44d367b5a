"""`manage.py status_templates`: the templates page's operations from a terminal, through
the same services, with the same checks and role."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from statuspage import services
from statuspage.models import Component, Draft, UpdateTemplate
from tests.factories import UserFactory, incident_open

pytestmark = pytest.mark.django_db


def _run(*args: str) -> str:
    out = StringIO()
    call_command("status_templates", *args, stdout=out)
    return out.getvalue()


def _names() -> list[str]:
    return list(UpdateTemplate.objects.order_by("position").values_list("name", flat=True))


def test_list_shows_the_templates_in_order(db):
    lines = _run("list").splitlines()
    assert lines[0].startswith(" 1. Investigating (id ")
    assert "investigating: Service disruption: {components}" in lines[0]
    assert lines[3].endswith("marks the suggested components at operational")


def test_add_edit_order_and_remove_as_the_support_lead(support_lead, checkout_component, tmp_path):
    output = _run(
        "add", "Payments slow", "--title", "Slow: {components}",
        "--body", "Slow since {started_at}.", "--status", "identified", "--component", "Checkout",
        "--component-status", "degraded_performance", "--as", "sam",
    )  # fmt: skip
    assert output.startswith("Added the template Payments slow (id ")
    template = UpdateTemplate.objects.get(name="Payments slow")
    assert list(template.components.all()) == [checkout_component]
    assert (template.status, template.component_status) == ("identified", "degraded_performance")

    body = tmp_path / "update.md"
    body.write_text("支付 💳 خدمة\n\n**{components}** is slow.", encoding="utf-8")
    _run("edit", "Payments slow", "--body-file", str(body), "--no-components", "--as", "sam")
    template.refresh_from_db()
    assert template.body == "支付 💳 خدمة\n\n**{components}** is slow."
    assert list(template.components.all()) == []
    assert template.title == "Slow: {components}"  # what no option names is kept

    output = _run("order", "Payments slow", *_names()[:-1], "--as", "sam")
    assert output.splitlines()[0].startswith(" 1. Payments slow")
    _run("remove", str(template.pk), "--as", "sam")
    assert "Payments slow" not in _names()


def test_use_starts_the_incidents_draft_and_guards_the_version(support_lead, checkout_component):
    incident = incident_open(services=[checkout_component.service])
    output = _run("use", "Identified", "--incident", str(incident.pk), "--as", "sam")
    assert "started from Identified (version 1): Service disruption: Checkout" in output
    assert Draft.objects.get(incident=incident).status == "identified"

    services.draft_save(
        incident=incident,
        actor=support_lead,
        version=1,
        name="Mine",
        status="identified",
        impact="minor",
        body="My own text",
        component_statuses={},
    )
    with pytest.raises(CommandError, match="sam saved this draft"):
        _run("use", "Resolved", "--incident", str(incident.pk), "--version", "1", "--as", "sam")
    assert Draft.objects.get(incident=incident).body == "My own text"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["add", "X", "--title", "T", "--body", "{componets}"], "unknown placeholder {componets}"),
        (["add", "X", "--title", "T" * 201, "--body", "b"], "Title: at most 200 characters"),
        (["add", "X", "--title", "T\x1b", "--body", "b"], "Title: control characters"),
        (["add", "X", "--title", "T", "--body", "b", "--component", "Store"], "is a group"),
        (["add", "X", "--title", "T", "--body", "b", "--component", "Nope"], "none is named"),
        (["add", "investigating", "--title", "T", "--body", "b"], "Name: 'investigating' is"),
        (["edit", "Nope", "--title", "T"], "template: none is named 'Nope'"),
        (["edit", "Resolved", "--body", "b", "--body-file", "-"], "not both"),
        (["edit", "Resolved", "--body-file", "/nonexistent/x.md"], "--body-file: cannot read"),
        (["order", "Resolved"], "Order: name each template once"),
        (["use", "Resolved", "--incident", "999999"], "--incident: there is no incident"),
    ],
)
def test_bad_input_is_refused_naming_it_and_saves_nothing(support_lead, args, message):
    Component.objects.create(name="Store", is_group=True, position=1)
    before = list(UpdateTemplate.objects.order_by("pk").values_list("name", "title", "body"))
    with pytest.raises(CommandError, match=message.replace("{", r"\{").replace("(", r"\(")):
        _run(*args, "--as", "sam")
    after = list(UpdateTemplate.objects.order_by("pk").values_list("name", "title", "body"))
    assert after == before


def test_a_person_without_the_role_is_refused_naming_them(roles):
    UserFactory(username="ic", roles=["Incident Commander"])
    with pytest.raises(CommandError, match="--as ic: You do not have the role"):
        _run("remove", "Resolved", "--as", "ic")
    assert "Resolved" in _names()
    with pytest.raises(CommandError, match="--as: no active console user"):
        _run("remove", "Resolved", "--as", "nobody")
