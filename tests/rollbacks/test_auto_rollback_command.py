"""`manage.py auto_rollback`: a service's automatic rollback policy from a terminal, through
the service the page's form calls, with the same validation and role."""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from incidents.models import Environment
from tests.factories import ServiceFactory, UserFactory

pytestmark = pytest.mark.django_db

KEPT = {"enabled": True, "severities": ["P1"], "max_release_age_hours": 6, "start": False}


def auto_rollback(*args: Any) -> str:
    out = StringIO()
    call_command("auto_rollback", *[str(arg) for arg in args], stdout=out, stderr=StringIO())
    return out.getvalue()


@pytest.fixture
def web(roles):
    UserFactory(username="ic", roles=["Incident Commander"])
    return ServiceFactory(name="web", auto_rollback=dict(KEPT))


def test_a_commander_sets_every_field_of_the_policy(web):
    typed = "set web --disabled --severities P2,P0 --max-release-age-hours 12 --start --as ic"
    output = auto_rollback(*typed.split())

    web.refresh_from_db()
    assert web.auto_rollback == {
        "enabled": False,
        "severities": ["P0", "P2"],
        "max_release_age_hours": 12,
        "start": True,
    }
    assert output.splitlines() == [
        "Saved the automatic rollback policy of web.",
        "service: web (production)",
        "enabled: no",
        "severities: P0, P2",
        "max_release_age_hours: 12",
        "start: yes",
    ]


def test_set_changes_only_the_fields_it_is_given(web):
    auto_rollback("set", "web", "--severities", " P2 , P1 ", "--as", "ic")

    web.refresh_from_db()
    assert web.auto_rollback == {**KEPT, "severities": ["P1", "P2"]}


def test_an_empty_severities_list_leaves_the_policy_acting_on_none(web):
    auto_rollback("set", "web", "--severities", "", "--as", "ic")

    web.refresh_from_db()
    assert web.auto_rollback["severities"] == []


def test_show_prints_an_unset_policy_as_its_defaults(roles):
    ServiceFactory(name="cart", environment=Environment.STAGING, auto_rollback={})

    output = auto_rollback("show", "cart", "--environment", "staging")

    assert output.splitlines() == [
        "service: cart (staging)",
        "enabled: no",
        "severities: none",
        "max_release_age_hours: 6",
        "start: no",
    ]


def test_show_says_a_malformed_stored_policy_is_ignored(web):
    web.auto_rollback = {"enabled": True, "severities": ["P7"]}
    web.save()

    output = auto_rollback("show", "web")

    assert "ignored: auto_rollback.severities: some of P0, P1, P2, P3" in output
    assert '"P7"' in output


@pytest.mark.parametrize(
    ("options", "field"),
    [
        (["--severities", "P9"], "auto_rollback.severities"),
        (["--severities", "p1"], "auto_rollback.severities"),
        (["--severities", "P1,P\x00"], "auto_rollback.severities"),
        (["--severities", "P1,\x1b[31mP2"], "auto_rollback.severities"),
        (["--enabled", "--severities", "P1,緊急"], "auto_rollback.severities"),
        (["--max-release-age-hours", "0"], "auto_rollback.max_release_age_hours"),
        (["--max-release-age-hours", "721"], "auto_rollback.max_release_age_hours"),
        (["--max-release-age-hours", "six"], "--max-release-age-hours"),
        (["--enabled", "--disabled"], "--disabled"),
        ([], "Nothing to set"),
    ],
)
def test_a_bad_field_is_refused_by_name_and_nothing_is_saved(web, options, field):
    with pytest.raises(CommandError, match=field):
        auto_rollback("set", "web", *options, "--as", "ic")

    web.refresh_from_db()
    assert web.auto_rollback == KEPT


@pytest.mark.parametrize("role", ["Viewer", "Approver", "Responder"])
def test_only_a_commander_sets_the_policy(web, role):
    UserFactory(username="someone", roles=[role])

    with pytest.raises(CommandError, match="--as someone: You do not have the role needed"):
        auto_rollback("set", "web", "--disabled", "--as", "someone")

    web.refresh_from_db()
    assert web.auto_rollback == KEPT


@pytest.mark.parametrize("username", ["nobody", "ic\x00", "指揮官", "🧑‍🚒", "מפקד"])
def test_an_unknown_actor_is_refused(web, username):
    with pytest.raises(CommandError, match="--as: no active console user named"):
        auto_rollback("set", "web", "--disabled", "--as", username)

    web.refresh_from_db()
    assert web.auto_rollback == KEPT


def test_an_inactive_commander_is_refused(web):
    UserFactory(username="gone", roles=["Incident Commander"], is_active=False)

    with pytest.raises(CommandError, match="--as: no active console user named 'gone'"):
        auto_rollback("set", "web", "--disabled", "--as", "gone")


@pytest.mark.parametrize(
    "name", ["nope", "結帳", "🚀", "\u202ebew", "שירות", "web\x00", "web\x1b[2J", "WEB"]
)
def test_an_unknown_service_is_refused_by_name(web, name):
    with pytest.raises(CommandError, match="service: no production service named") as refused:
        auto_rollback("set", name, "--disabled", "--as", "ic")

    assert repr(name) in str(refused.value)  # control and direction characters escaped
    web.refresh_from_db()
    assert web.auto_rollback == KEPT


def test_a_service_of_another_environment_is_not_found(web):
    with pytest.raises(CommandError, match="service: no staging service named 'web'"):
        auto_rollback("show", "web", "--environment", "staging")
