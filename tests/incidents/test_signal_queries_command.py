"""`manage.py signal_queries`: the PromQL the decision helper reads for a service, from a
terminal, through the service the page's form calls, with the same validation and role."""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from incidents.decisions.readings import QUERY_MAX
from tests.factories import ServiceFactory, UserFactory

pytestmark = pytest.mark.django_db

KEPT = {"error_rate": "sum(rate(http_errors_total[5m])) * 100", "pods_total": "count(up)"}


def signal_queries(*args: Any) -> str:
    out = StringIO()
    call_command("signal_queries", *[str(arg) for arg in args], stdout=out, stderr=StringIO())
    return out.getvalue()


@pytest.fixture
def checkout(roles):
    UserFactory(username="ic", roles=["Incident Commander"])
    return ServiceFactory(name="checkout", signal_queries=dict(KEPT))


def test_a_commander_sets_queries_and_the_others_are_kept(checkout):
    output = signal_queries(
        "set", "checkout", "--p99-ms", ' histogram_quantile(0.99, x{s="結帳"}) ', "--as", "ic"
    )

    checkout.refresh_from_db()
    assert checkout.signal_queries == {**KEPT, "p99_ms": 'histogram_quantile(0.99, x{s="結帳"})'}
    assert output.splitlines() == [
        "Saved the signal queries of checkout.",
        "service: checkout (production)",
        f"error_rate: {KEPT['error_rate']}",
        'p99_ms: histogram_quantile(0.99, x{s="結帳"})',
        "p99_baseline_ms: (not set)",
        "pods_failing: (not set)",
        f"pods_total: {KEPT['pods_total']}",
        "memory_percent: (not set)",
    ]


@pytest.mark.parametrize("how", [["--clear", "pods_total"], ["--clear", "pods-total"]])
def test_clear_forgets_a_signal(checkout, how):
    signal_queries("set", "checkout", *how, "--as", "ic")

    checkout.refresh_from_db()
    assert checkout.signal_queries == {"error_rate": KEPT["error_rate"]}


def test_an_empty_query_clears_its_signal_as_a_blank_field_does(checkout):
    signal_queries("set", "checkout", "--error-rate", "  ", "--as", "ic")

    checkout.refresh_from_db()
    assert checkout.signal_queries == {"pods_total": KEPT["pods_total"]}


def test_a_query_of_the_longest_length_is_kept(checkout):
    longest = "x" * QUERY_MAX
    signal_queries("set", "checkout", "--memory-percent", longest, "--as", "ic")

    checkout.refresh_from_db()
    assert checkout.signal_queries["memory_percent"] == longest


def test_a_stray_stored_key_is_dropped_as_the_page_drops_it(checkout):
    checkout.signal_queries = {**KEPT, "cpu": "up"}
    checkout.save()

    signal_queries("set", "checkout", "--clear", "error_rate", "--as", "ic")

    checkout.refresh_from_db()
    assert checkout.signal_queries == {"pods_total": KEPT["pods_total"]}


def test_show_escapes_control_characters_of_a_stored_query(checkout):
    checkout.signal_queries = {"error_rate": "up\x1b[2J\nrate(x[5m])\u202e"}
    checkout.save()

    output = signal_queries("show", "checkout")

    assert "error_rate: up\\x1b[2J\\nrate(x[5m])\\u202e" in output.splitlines()
    assert "\x1b" not in output and "\u202e" not in output


@pytest.mark.parametrize(
    ("options", "field"),
    [
        (["--error-rate", "x" * (QUERY_MAX + 1)], "error_rate: a query is at most 2000"),
        (["--memory-percent", "up\x00"], "memory_percent: a query is at most 2000"),
        (["--p99-ms", "up", "--pods-failing", "y" * 2001], "pods_failing: a query is at most"),
        (["--error-rate", "up", "--clear", "error_rate"], "error_rate: give a query or --clear"),
        (["--clear", "cpu"], "argument --clear: invalid choice: 'cpu'"),
        (["--clear", "錯誤率"], "argument --clear: invalid choice"),
        ([], "Nothing to set"),
    ],
)
def test_a_bad_query_is_refused_by_name_and_nothing_is_saved(checkout, options, field):
    with pytest.raises(CommandError, match=field):
        signal_queries("set", "checkout", *options, "--as", "ic")

    checkout.refresh_from_db()
    assert checkout.signal_queries == KEPT


@pytest.mark.parametrize("role", ["Viewer", "Approver", "Responder"])
def test_only_a_commander_sets_the_queries(checkout, role):
    UserFactory(username="someone", roles=[role])

    with pytest.raises(CommandError, match="--as someone: You do not have the role needed"):
        signal_queries("set", "checkout", "--error-rate", "up", "--as", "someone")

    checkout.refresh_from_db()
    assert checkout.signal_queries == KEPT


@pytest.mark.parametrize("username", ["nobody", "ic\x00", "指揮官", "🧑‍🚒", "מפקד"])
def test_an_unknown_actor_is_refused(checkout, username):
    with pytest.raises(CommandError, match="--as: no active console user named"):
        signal_queries("set", "checkout", "--error-rate", "up", "--as", username)

    checkout.refresh_from_db()
    assert checkout.signal_queries == KEPT


@pytest.mark.parametrize("name", ["nope", "結帳", "🛒", "\u202etuokcehc", "קופה", "checkout\x00"])
@pytest.mark.parametrize("action", [["show"], ["set", "--error-rate", "up", "--as", "ic"]])
def test_an_unknown_service_is_refused_by_name(checkout, name, action):
    verb, *options = action
    with pytest.raises(CommandError, match="service: no production service named") as refused:
        signal_queries(verb, name, *options)

    assert repr(name) in str(refused.value)
    checkout.refresh_from_db()
    assert checkout.signal_queries == KEPT
