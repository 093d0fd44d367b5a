"""decide() across every rule and every boundary of the runbook's thresholds."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured

from incidents.decisions.rules import VERDICTS, DecisionThresholds, Signals, decide, thresholds
from incidents.models import Incident


@dataclass
class Row:
    name: str
    signals: dict[str, Any]
    verdict: str
    rule: str
    severity: str = "P2"
    mentions: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return self.name


ROWS = [
    # Roll back at once.
    Row("every check failing", {"all_checks_failing": True}, "roll back", "all-checks-failing"),
    Row(
        "every check failing beats a flag toggle",
        {"all_checks_failing": True, "flag_can_fix": True},
        "roll back",
        "all-checks-failing",
    ),
    Row(
        "error rate just above 20 %",
        {"error_rate": 20.01, "minutes_above": 0},
        "roll back",
        "error-rate-critical",
        mentions=["20.01 %", "above 20 %"],
    ),
    Row(
        "error rate above 20 % beats a flag toggle",
        {"error_rate": 35, "minutes_above": 1, "flag_can_fix": True},
        "roll back",
        "error-rate-critical",
    ),
    Row(
        "error rate exactly 20 % is investigated, not rolled back at once",
        {"error_rate": 20, "minutes_above": 1},
        "watch",
        "error-rate-investigate",
        mentions=["20 %", "4 min more", "then roll back"],
    ),
    # Automatic-rollback triggers.
    Row(
        "more than half the pods failing",
        {"pods_failing": 6, "pods_total": 10},
        "roll back",
        "pods-failing",
        mentions=["6 of 10 pods", "60 %", "50 %"],
    ),
    Row(
        "exactly half the pods failing",
        {"pods_failing": 5, "pods_total": 10},
        "fix forward",
        "next-deploy",
    ),
    Row(
        "p99 just above twice its baseline",
        {"p99_ms": 601, "p99_baseline_ms": 300},
        "roll back",
        "latency",
        mentions=["601 ms", "over 600 ms", "2× its 300 ms baseline"],
    ),
    Row(
        "p99 exactly twice its baseline",
        {"p99_ms": 600, "p99_baseline_ms": 300},
        "fix forward",
        "next-deploy",
    ),
    Row(
        "memory above 90 %",
        {"memory_percent": 90.5},
        "roll back",
        "memory",
        mentions=["90.5 %", "90 %"],
    ),
    Row("memory exactly 90 %", {"memory_percent": 90}, "fix forward", "next-deploy"),
    Row(
        "error rate above 5 % for over 5 minutes, rising",
        {"error_rate": 7, "minutes_above": 5.01, "error_trend": "rising"},
        "roll back",
        "error-rate-sustained",
        mentions=["7 %", "5 min 1 s", "over 5 min"],
    ),
    Row(
        "error rate 10-20 % for over 5 minutes",
        {"error_rate": 15, "minutes_above": 6},
        "roll back",
        "error-rate-sustained",
        mentions=["15 %", "6 min"],
    ),
    Row(
        "error rate 10-20 % for exactly 5 minutes is still investigated",
        {"error_rate": 15, "minutes_above": 5},
        "watch",
        "error-rate-investigate",
        mentions=["0 s more", "5 min of 5 min"],
    ),
    Row(
        "automatic trigger beats a flag toggle",
        {"memory_percent": 95, "flag_can_fix": True},
        "roll back",
        "memory",
    ),
    # Remedies.
    Row(
        "a flag toggle fixes it",
        {"flag_can_fix": True, "error_rate": 12, "minutes_above": 2},
        "toggle flag",
        "flag-toggle",
    ),
    Row(
        "a flag toggle beats severity",
        {"flag_can_fix": True},
        "toggle flag",
        "flag-toggle",
        severity="P1",
    ),
    Row(
        "a hotfix in under 10 minutes",
        {"hotfix_minutes": 9.5},
        "hotfix",
        "hotfix",
        severity="P1",
        mentions=["9 min 30 s", "under 10 min"],
    ),
    Row(
        "a hotfix in exactly 10 minutes is too slow",
        {"hotfix_minutes": 10},
        "roll back",
        "severity",
        severity="P1",
        mentions=["P1", "hotfix needs 10 min"],
    ),
    # Severity.
    Row("P0 rolls back", {}, "roll back", "severity", severity="P0", mentions=["P0"]),
    Row("P1 rolls back", {}, "roll back", "severity", severity="P1", mentions=["P1"]),
    Row(
        "P1 rolls back before the watch bands",
        {"error_rate": 7, "minutes_above": 1},
        "roll back",
        "severity",
        severity="P1",
    ),
    # Error-rate bands (P2 and P3).
    Row(
        "error rate just above 10 % is investigated",
        {"error_rate": 10.5, "minutes_above": 2},
        "watch",
        "error-rate-investigate",
        mentions=["10.5 %", "3 min more", "then roll back"],
    ),
    Row(
        "error rate exactly 10 % is watched",
        {"error_rate": 10, "minutes_above": 2, "error_trend": "steady"},
        "watch",
        "error-rate-watch",
        mentions=["10 %", "13 min more"],
    ),
    Row(
        "error rate 5-10 % and rising rolls back",
        {"error_rate": 7, "minutes_above": 1, "error_trend": "rising"},
        "roll back",
        "error-rate-watch",
        mentions=["7 %", "rising"],
    ),
    Row(
        "error rate 5-10 % and steady past 5 minutes is still watched",
        {"error_rate": 7, "minutes_above": 14, "error_trend": "steady"},
        "watch",
        "error-rate-watch",
        mentions=["1 min more", "14 min of 15 min"],
    ),
    Row(
        "error rate 5-10 % for exactly 15 minutes is still watched",
        {"error_rate": 7, "minutes_above": 15, "error_trend": "falling"},
        "watch",
        "error-rate-watch",
    ),
    Row(
        "error rate 5-10 % past the 15-minute watch rolls back",
        {"error_rate": 7, "minutes_above": 15.5, "error_trend": "falling"},
        "roll back",
        "error-rate-watch",
        mentions=["15 min 30 s", "past the 15 min watch"],
    ),
    Row(
        "error rate just above 5 % is watched",
        {"error_rate": 5.01, "minutes_above": 3},
        "watch",
        "error-rate-watch",
        mentions=["5.01 %", "12 min more"],
    ),
    Row(
        "error rate exactly 5 % for a long time triggers nothing",
        {"error_rate": 5, "minutes_above": 60},
        "fix forward",
        "next-deploy",
        mentions=["5 % is at or below 5 %"],
    ),
    # Otherwise.
    Row("P3 with nothing wrong", {}, "fix forward", "next-deploy", severity="P3"),
    Row(
        "P2 with a low error rate",
        {"error_rate": 1.2, "p99_ms": 310, "p99_baseline_ms": 300},
        "fix forward",
        "next-deploy",
        mentions=["1.2 %", "P2"],
    ),
]


@pytest.mark.parametrize("row", ROWS, ids=str)
def test_decide_applies_the_runbook_rule(row):
    decision = decide(Signals(**row.signals), Incident(severity=row.severity), DecisionThresholds())
    assert (decision.verdict, decision.rule) == (row.verdict, row.rule), decision.reason
    assert decision.verdict in VERDICTS
    for text in row.mentions:
        assert text in decision.reason


def test_every_rule_is_reached_by_some_row():
    reached = {row.rule for row in ROWS}
    assert reached == set(DecisionThresholds().order)


def test_changed_thresholds_change_the_decision():
    signals = Signals(error_rate=25, minutes_above=1)
    relaxed = DecisionThresholds(error_rate_critical=30)
    decision = decide(signals, Incident(severity="P2"), relaxed)
    assert decision.rule == "error-rate-investigate"
    assert "between 10 and 30 %" in decision.reason


def test_investigation_window_rolls_back_when_it_ends_before_the_trigger():
    # With a slower sustained trigger, the 10-20 % band's own 5 minutes decide.
    limits = DecisionThresholds(sustained_minutes=10)
    decision = decide(Signals(error_rate=15, minutes_above=6), Incident(severity="P2"), limits)
    assert (decision.verdict, decision.rule) == ("roll back", "error-rate-investigate")
    assert "15 %" in decision.reason and "6 min" in decision.reason


def test_changed_order_changes_the_decision():
    order = tuple(name for name in DecisionThresholds().order if name != "flag-toggle")
    signals = Signals(flag_can_fix=True)
    decision = decide(signals, Incident(severity="P1"), DecisionThresholds(order=order))
    assert decision.rule == "severity"


def test_settings_override_the_defaults(settings):
    settings.DECISION_THRESHOLDS = {"memory_percent": 80, "roll_back_severities": ["P0"]}
    limits = thresholds()
    assert limits.memory_percent == 80
    assert limits.roll_back_severities == ("P0",)
    assert decide(Signals(memory_percent=85), Incident(severity="P2")).rule == "memory"
    assert decide(Signals(), Incident(severity="P1")).verdict == "fix forward"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"memory_pct": 80}, "unknown keys: memory_pct"),
        ({"order": ["all-checks-failing", "guess"]}, "unknown rules: guess"),
        ({"order": ["all-checks-failing"]}, "must end with next-deploy"),
        ({"watch_minutes": -1}, "at least 0"),
        ({"latency_multiple": "two"}, "at least 0"),
        ({"error_rate_critical": 4}, "must rise"),
        ({"order": "next-deploy"}, "must be a list"),
    ],
)
def test_bad_settings_are_refused_with_a_message(settings, overrides, message):
    settings.DECISION_THRESHOLDS = overrides
    with pytest.raises(ImproperlyConfigured, match=message):
        thresholds()


def test_a_wrong_thresholds_setting_is_reported_by_the_system_checks(settings):
    from incidents.apps import check_decision_thresholds

    settings.DECISION_THRESHOLDS = {"no_such_threshold": 1}
    errors = check_decision_thresholds()
    assert [error.id for error in errors] == ["incidents.E001"]
    assert "no_such_threshold" in errors[0].msg
