"""The decision helper's rules and thresholds.

The decision helper applies the runbook's rollback thresholds (DESIGN.md, "Runbook facts to
encode as defaults") to the signals the commander reads off the dashboards, and answers
"roll back", "watch", "fix forward", "toggle flag" or "hotfix" with the reason and the rule
that decided.

`decide` is pure: the same signals, severity and thresholds give the same decision. The
thresholds and the order in which the rules are tried are data (`DecisionThresholds`), with
defaults from the runbook, overridable through `settings.DECISION_THRESHOLDS`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

Verdict = Literal["roll back", "watch", "fix forward", "toggle flag", "hotfix"]
Trend = Literal["rising", "steady", "falling"]

VERDICTS: tuple[Verdict, ...] = ("roll back", "watch", "fix forward", "toggle flag", "hotfix")
TRENDS: tuple[Trend, ...] = ("rising", "steady", "falling")


# -- thresholds ------------------------------------------------------------------------------

# The rules, in the runbook's order. Hard limits come first: every health check failing and
# an error rate above the critical level mean "roll back at once"; the automatic-rollback
# triggers follow, since automation would already be rolling back on them. Then the cheaper
# remedies (a flag toggle, a quick hotfix), then severity, then the error-rate bands that
# buy time to investigate or watch, and finally "watch and fix in the next deploy".
DEFAULT_ORDER: tuple[str, ...] = (
    "all-checks-failing",
    "error-rate-critical",
    "pods-failing",
    "latency",
    "memory",
    "error-rate-sustained",
    "flag-toggle",
    "hotfix",
    "severity",
    "error-rate-investigate",
    "error-rate-watch",
    "next-deploy",
)


@dataclass(frozen=True)
class DecisionThresholds:
    """The runbook's numbers. Every comparison is strict: "above 5 %" means more than 5."""

    # Error rate, percent of requests.
    error_rate_critical: float = 20.0  # above: roll back at once
    error_rate_investigate: float = 10.0  # above (up to critical): investigate, then roll back
    error_rate_watch: float = 5.0  # above (up to investigate): watch, roll back if rising
    # Minutes the error rate may stay above `error_rate_watch` before the automatic trigger
    # fires; also the investigation window of the 10-20 % band.
    sustained_minutes: float = 5.0
    investigate_minutes: float = 5.0
    watch_minutes: float = 15.0
    # Other automatic-rollback triggers.
    latency_multiple: float = 2.0  # p99 above this many times its baseline
    pods_failing_share: float = 0.5  # more than this share of pods failing health checks
    memory_percent: float = 90.0  # memory use above this
    # Remedies and severity.
    hotfix_minutes: float = 10.0  # a hotfix that lands in under this many minutes
    roll_back_severities: tuple[str, ...] = ("P0", "P1")
    order: tuple[str, ...] = field(default=DEFAULT_ORDER)

    def __post_init__(self) -> None:
        unknown = [name for name in self.order if name not in RULES]
        if unknown:
            raise ImproperlyConfigured(
                f"DECISION_THRESHOLDS order names unknown rules: {', '.join(unknown)}; "
                f"choose from {', '.join(RULES)}."
            )
        if "next-deploy" not in self.order:
            raise ImproperlyConfigured(
                "DECISION_THRESHOLDS order must end with next-deploy, the rule that always answers."
            )
        numbers = {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name not in ("order", "roll_back_severities")
        }
        for name, value in numbers.items():
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
                or value < 0
            ):
                raise ImproperlyConfigured(
                    f"DECISION_THRESHOLDS {name} must be a number of at least 0."
                )
        if not (self.error_rate_watch <= self.error_rate_investigate <= self.error_rate_critical):
            raise ImproperlyConfigured(
                "DECISION_THRESHOLDS error rates must rise: watch ≤ investigate ≤ critical."
            )


def thresholds() -> DecisionThresholds:
    """The runbook defaults with `settings.DECISION_THRESHOLDS` (a dict) laid over them."""
    overrides: Mapping[str, Any] = settings.DECISION_THRESHOLDS or {}
    if not isinstance(overrides, Mapping):
        raise ImproperlyConfigured("DECISION_THRESHOLDS must be a JSON object (a dict).")
    names = {f.name for f in dataclasses.fields(DecisionThresholds)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ImproperlyConfigured(
            f"DECISION_THRESHOLDS has unknown keys: {', '.join(unknown)}; "
            f"known: {', '.join(sorted(names))}."
        )
    values = dict(overrides)
    for name in ("order", "roll_back_severities"):
        if name in values:
            if isinstance(values[name], str) or not isinstance(values[name], list | tuple):
                raise ImproperlyConfigured(f"DECISION_THRESHOLDS {name} must be a list.")
            values[name] = tuple(values[name])
    return DecisionThresholds(**values)


# -- signals and decisions -----------------------------------------------------------------


@dataclass(frozen=True)
class Signals:
    """What the commander reads off the dashboards. Unknown numbers are None."""

    error_rate: float | None = None  # percent of requests failing
    error_trend: Trend = "steady"
    minutes_above: float | None = None  # how long the error rate has been above the watch level
    p99_ms: float | None = None
    p99_baseline_ms: float | None = None
    pods_failing: int | None = None  # pods failing their health checks
    pods_total: int | None = None
    memory_percent: float | None = None
    all_checks_failing: bool = False
    flag_can_fix: bool = False  # a feature-flag toggle would stop the harm
    hotfix_minutes: float | None = None  # how soon a hotfix could be live

    def as_payload(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    reason: str
    rule: str


class HasSeverity(Protocol):
    severity: str


def number_text(value: float) -> str:
    """A threshold or reading as the helper writes it: 9.5 → "9.5", 10.0 → "10",
    12.345 → "12.35". The signals form words its messages with it too."""
    return f"{round(value, 2):g}"


def _minutes(value: float) -> str:
    """A span in minutes as people say it: "5 min", "2 min 30 s", "45 s"."""
    seconds = max(0, round(value * 60))
    whole, rest = divmod(seconds, 60)
    if whole and rest:
        return f"{whole} min {rest} s"
    if whole:
        return f"{whole} min"
    return f"{rest} s"


def _rule_all_checks_failing(s: Signals, severity: str, t: DecisionThresholds) -> Decision | None:
    if not s.all_checks_failing:
        return None
    return Decision("roll back", "Every health check is failing: roll back now.", "")


def _rule_error_rate_critical(s: Signals, severity: str, t: DecisionThresholds) -> Decision | None:
    if s.error_rate is None or s.error_rate <= t.error_rate_critical:
        return None
    return Decision(
        "roll back",
        f"Error rate {number_text(s.error_rate)} % is above "
        f"{number_text(t.error_rate_critical)} %: roll back now.",
        "",
    )


def _rule_pods_failing(s: Signals, severity: str, t: DecisionThresholds) -> Decision | None:
    if not s.pods_failing or not s.pods_total:
        return None
    share = s.pods_failing / s.pods_total
    if share <= t.pods_failing_share:
        return None
    return Decision(
        "roll back",
        f"{s.pods_failing} of {s.pods_total} pods ({number_text(share * 100)} %) fail their health "
        f"checks, more than {number_text(t.pods_failing_share * 100)} %: an automatic-rollback "
        "trigger. Roll back.",
        "",
    )


def _rule_latency(s: Signals, severity: str, t: DecisionThresholds) -> Decision | None:
    if s.p99_ms is None or not s.p99_baseline_ms:
        return None
    limit = s.p99_baseline_ms * t.latency_multiple
    if s.p99_ms <= limit:
        return None
    return Decision(
        "roll back",
        f"p99 latency {number_text(s.p99_ms)} ms is over {number_text(limit)} ms, "
        f"{number_text(t.latency_multiple)}× its {number_text(s.p99_baseline_ms)} ms baseline: "
        "an automatic-rollback trigger. Roll back.",
        "",
    )


def _rule_memory(s: Signals, severity: str, t: DecisionThresholds) -> Decision | None:
    if s.memory_percent is None or s.memory_percent <= t.memory_percent:
        return None
    return Decision(
        "roll back",
        f"Memory at {number_text(s.memory_percent)} % is above {number_text(t.memory_percent)} %: "
        "an automatic-rollback trigger. Roll back.",
        "",
    )


def _in_watch_band(s: Signals, t: DecisionThresholds) -> bool:
    return (
        s.error_rate is not None and t.error_rate_watch < s.error_rate <= t.error_rate_investigate
    )


def _rule_error_rate_sustained(s: Signals, severity: str, t: DecisionThresholds) -> Decision | None:
    if s.error_rate is None or s.error_rate <= t.error_rate_watch:
        return None
    above = s.minutes_above or 0.0
    if above <= t.sustained_minutes:
        return None
    # The runbook gives a steady or falling error rate in the lowest band a longer watch
    # (error-rate-watch); the trigger stands for everything above it and for a rising rate.
    if _in_watch_band(s, t) and s.error_trend != "rising":
        return None
    return Decision(
        "roll back",
        f"Error rate {number_text(s.error_rate)} % has been above "
        f"{number_text(t.error_rate_watch)} % for {_minutes(above)}, over "
        f"{_minutes(t.sustained_minutes)}: an automatic-rollback trigger. Roll back.",
        "",
    )


def _rule_flag_toggle(s: Signals, severity: str, t: DecisionThresholds) -> Decision | None:
    if not s.flag_can_fix:
        return None
    return Decision(
        "toggle flag",
        "A feature-flag toggle can stop the harm: toggle the flag, then watch the error rate "
        "and latency.",
        "",
    )


def _rule_hotfix(s: Signals, severity: str, t: DecisionThresholds) -> Decision | None:
    if s.hotfix_minutes is None or s.hotfix_minutes >= t.hotfix_minutes:
        return None
    return Decision(
        "hotfix",
        f"A hotfix can be live in {_minutes(s.hotfix_minutes)}, under "
        f"{_minutes(t.hotfix_minutes)}: ship the hotfix and watch it land.",
        "",
    )


def _rule_severity(s: Signals, severity: str, t: DecisionThresholds) -> Decision | None:
    if severity not in t.roll_back_severities:
        return None
    flag = "a flag toggle can fix it" if s.flag_can_fix else "no flag toggle fixes it"
    if s.hotfix_minutes is None:
        hotfix = "no hotfix is in sight"
    else:
        hotfix = f"a hotfix needs {_minutes(s.hotfix_minutes)}"
    return Decision(
        "roll back",
        f"This is a {severity} incident, {flag} and {hotfix}: "
        f"{' and '.join(t.roll_back_severities)} incidents roll back.",
        "",
    )


def _rule_error_rate_investigate(
    s: Signals, severity: str, t: DecisionThresholds
) -> Decision | None:
    if s.error_rate is None or not (
        t.error_rate_investigate < s.error_rate <= t.error_rate_critical
    ):
        return None
    above = s.minutes_above or 0.0
    if above > t.investigate_minutes:
        return Decision(
            "roll back",
            f"Error rate {number_text(s.error_rate)} % has been above "
            f"{number_text(t.error_rate_watch)} % for {_minutes(above)}: the "
            f"{_minutes(t.investigate_minutes)} to investigate are up. Roll back.",
            "",
        )
    left = t.investigate_minutes - above
    return Decision(
        "watch",
        f"Error rate {number_text(s.error_rate)} % is between "
        f"{number_text(t.error_rate_investigate)} and {number_text(t.error_rate_critical)} %: "
        f"investigate for {_minutes(left)} more ({_minutes(above)} of "
        f"{_minutes(t.investigate_minutes)} gone), then roll back.",
        "",
    )


def _rule_error_rate_watch(s: Signals, severity: str, t: DecisionThresholds) -> Decision | None:
    if not _in_watch_band(s, t):
        return None
    assert s.error_rate is not None
    band = (
        f"between {number_text(t.error_rate_watch)} and {number_text(t.error_rate_investigate)} %"
    )
    if s.error_trend == "rising":
        return Decision(
            "roll back",
            f"Error rate {number_text(s.error_rate)} % is {band} and rising: roll back.",
            "",
        )
    above = s.minutes_above or 0.0
    if above > t.watch_minutes:
        return Decision(
            "roll back",
            f"Error rate {number_text(s.error_rate)} % is still {band} after {_minutes(above)}, "
            f"past the {_minutes(t.watch_minutes)} watch: roll back.",
            "",
        )
    left = t.watch_minutes - above
    return Decision(
        "watch",
        f"Error rate {number_text(s.error_rate)} % is {band} and {s.error_trend}: watch for "
        f"{_minutes(left)} more ({_minutes(above)} of {_minutes(t.watch_minutes)} gone); "
        "roll back if it starts rising.",
        "",
    )


def _rule_next_deploy(s: Signals, severity: str, t: DecisionThresholds) -> Decision | None:
    if s.error_rate is None:
        rate = "No error rate was given"
    else:
        rate = (
            f"Error rate {number_text(s.error_rate)} % is at or below "
            f"{number_text(t.error_rate_watch)} %"
        )
    return Decision(
        "fix forward",
        f"{rate}, no rollback trigger fired and {severity or 'the severity'} does not call for "
        "a rollback: watch, and fix it in the next deploy.",
        "",
    )


Rule = Callable[[Signals, str, DecisionThresholds], Decision | None]

RULES: dict[str, Rule] = {
    "all-checks-failing": _rule_all_checks_failing,
    "error-rate-critical": _rule_error_rate_critical,
    "pods-failing": _rule_pods_failing,
    "latency": _rule_latency,
    "memory": _rule_memory,
    "error-rate-sustained": _rule_error_rate_sustained,
    "flag-toggle": _rule_flag_toggle,
    "hotfix": _rule_hotfix,
    "severity": _rule_severity,
    "error-rate-investigate": _rule_error_rate_investigate,
    "error-rate-watch": _rule_error_rate_watch,
    "next-deploy": _rule_next_deploy,
}


def decide(
    signals: Signals, incident: HasSeverity, limits: DecisionThresholds | None = None
) -> Decision:
    """Apply the rules in `limits.order` to the signals and the incident's severity; the
    first rule that answers decides. `limits` defaults to `thresholds()`."""
    limits = limits or thresholds()
    for name in limits.order:
        decision = RULES[name](signals, incident.severity, limits)
        if decision is not None:
            return dataclasses.replace(decision, rule=name)
    # Unreachable while the order holds next-deploy (DecisionThresholds checks it).
    raise AssertionError("no decision rule answered")
