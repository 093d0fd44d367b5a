"""The recovery clock and the decision helper.

The recovery clock measures the time since the incident was detected against its RTO. The
decision helper applies the runbook's rollback thresholds (DESIGN.md, "Runbook facts to encode
as defaults") to the signals the commander reads off the dashboards, and answers "roll back",
"watch", "fix forward", "toggle flag" or "hotfix" with the reason and the rule that decided.

`decide` is pure: the same signals, severity and thresholds give the same decision. The
thresholds and the order in which the rules are tried are data (`DecisionThresholds`), with
defaults from the runbook, overridable through `settings.DECISION_THRESHOLDS`.
`decision_record` writes a decision on the timeline; `room_context` is what the incident
room's two partials (`incidents/_recovery.html`, `incidents/_decision.html`) need.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol

from django import forms
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.utils import timezone

from incidents.errors import DomainError
from incidents.models import Incident, IncidentStatus, TimelineEntry, TimelineKind
from incidents.roles import User, require_role
from incidents.timeline import timeline_append

Verdict = Literal["roll back", "watch", "fix forward", "toggle flag", "hotfix"]
Trend = Literal["rising", "steady", "falling"]
ClockState = Literal["within", "close", "over"]

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
    overrides: Mapping[str, Any] = getattr(settings, "DECISION_THRESHOLDS", None) or {}
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


def _number(value: float) -> str:
    """9.5 → "9.5", 10.0 → "10", 12.345 → "12.35"."""
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
        f"Error rate {_number(s.error_rate)} % is above {_number(t.error_rate_critical)} %: "
        "roll back now.",
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
        f"{s.pods_failing} of {s.pods_total} pods ({_number(share * 100)} %) fail their health "
        f"checks, more than {_number(t.pods_failing_share * 100)} %: an automatic-rollback "
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
        f"p99 latency {_number(s.p99_ms)} ms is over {_number(limit)} ms, "
        f"{_number(t.latency_multiple)}× its {_number(s.p99_baseline_ms)} ms baseline: "
        "an automatic-rollback trigger. Roll back.",
        "",
    )


def _rule_memory(s: Signals, severity: str, t: DecisionThresholds) -> Decision | None:
    if s.memory_percent is None or s.memory_percent <= t.memory_percent:
        return None
    return Decision(
        "roll back",
        f"Memory at {_number(s.memory_percent)} % is above {_number(t.memory_percent)} %: "
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
        f"Error rate {_number(s.error_rate)} % has been above {_number(t.error_rate_watch)} % "
        f"for {_minutes(above)}, over {_minutes(t.sustained_minutes)}: an automatic-rollback "
        "trigger. Roll back.",
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
            f"Error rate {_number(s.error_rate)} % has been above "
            f"{_number(t.error_rate_watch)} % for {_minutes(above)}: the "
            f"{_minutes(t.investigate_minutes)} to investigate are up. Roll back.",
            "",
        )
    left = t.investigate_minutes - above
    return Decision(
        "watch",
        f"Error rate {_number(s.error_rate)} % is between {_number(t.error_rate_investigate)} "
        f"and {_number(t.error_rate_critical)} %: investigate for {_minutes(left)} more "
        f"({_minutes(above)} of {_minutes(t.investigate_minutes)} gone), then roll back.",
        "",
    )


def _rule_error_rate_watch(s: Signals, severity: str, t: DecisionThresholds) -> Decision | None:
    if not _in_watch_band(s, t):
        return None
    assert s.error_rate is not None
    band = f"between {_number(t.error_rate_watch)} and {_number(t.error_rate_investigate)} %"
    if s.error_trend == "rising":
        return Decision(
            "roll back",
            f"Error rate {_number(s.error_rate)} % is {band} and rising: roll back.",
            "",
        )
    above = s.minutes_above or 0.0
    if above > t.watch_minutes:
        return Decision(
            "roll back",
            f"Error rate {_number(s.error_rate)} % is still {band} after {_minutes(above)}, "
            f"past the {_minutes(t.watch_minutes)} watch: roll back.",
            "",
        )
    left = t.watch_minutes - above
    return Decision(
        "watch",
        f"Error rate {_number(s.error_rate)} % is {band} and {s.error_trend}: watch for "
        f"{_minutes(left)} more ({_minutes(above)} of {_minutes(t.watch_minutes)} gone); "
        "roll back if it starts rising.",
        "",
    )


def _rule_next_deploy(s: Signals, severity: str, t: DecisionThresholds) -> Decision | None:
    if s.error_rate is None:
        rate = "No error rate was given"
    else:
        rate = (
            f"Error rate {_number(s.error_rate)} % is at or below {_number(t.error_rate_watch)} %"
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


# -- the form the commander fills in -------------------------------------------------------


def _number_field(label: str, *, maximum: float, help_text: str = "") -> forms.FloatField:
    return forms.FloatField(
        label=label,
        required=False,
        min_value=0,
        max_value=maximum,
        help_text=help_text,
        widget=forms.NumberInput(attrs={"step": "any", "inputmode": "decimal"}),
    )


class SignalsForm(forms.Form):
    """The signals as the commander types them; blank means unknown."""

    error_rate = _number_field("Error rate (%)", maximum=100)
    error_trend = forms.ChoiceField(
        label="Trend", choices=[(trend, trend) for trend in TRENDS], initial="steady"
    )
    minutes_above = _number_field(
        "Above the watch level for (min)",
        maximum=7 * 24 * 60,
        help_text="How long the error rate has been above the lowest threshold",
    )
    p99_ms = _number_field("p99 latency (ms)", maximum=10**7)
    p99_baseline_ms = _number_field("p99 baseline (ms)", maximum=10**7)
    pods_failing = forms.IntegerField(
        label="Pods failing checks", required=False, min_value=0, max_value=100_000
    )
    pods_total = forms.IntegerField(
        label="Pods in total", required=False, min_value=1, max_value=100_000
    )
    memory_percent = _number_field("Memory (%)", maximum=100)
    all_checks_failing = forms.BooleanField(label="Every health check fails", required=False)
    flag_can_fix = forms.BooleanField(label="A feature-flag toggle would fix it", required=False)
    hotfix_minutes = _number_field(
        "Hotfix could be live in (min)", maximum=7 * 24 * 60, help_text="Blank: no hotfix ready"
    )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        limits = thresholds()
        rate, above = cleaned.get("error_rate"), cleaned.get("minutes_above")
        if rate is not None and rate > limits.error_rate_watch and above is None:
            self.add_error(
                "minutes_above",
                f"Say for how many minutes the error rate has been above "
                f"{_number(limits.error_rate_watch)} %.",
            )
        p99, baseline = cleaned.get("p99_ms"), cleaned.get("p99_baseline_ms")
        if p99 is not None and not baseline:
            self.add_error("p99_baseline_ms", "Give the p99 baseline (above 0) to compare with.")
        failing, total = cleaned.get("pods_failing"), cleaned.get("pods_total")
        if failing is not None and total is None:
            self.add_error("pods_total", "Give the number of pods, to compare the failing ones.")
        if failing is not None and total is not None and failing > total:
            self.add_error(
                "pods_failing", f"More pods failing ({failing}) than in total ({total})."
            )
        return cleaned

    def signals(self) -> Signals:
        """The cleaned form as Signals; call after is_valid(). Its fields are the Signals'."""
        return Signals(**{f.name: self.cleaned_data[f.name] for f in dataclasses.fields(Signals)})


# -- recording -----------------------------------------------------------------------------


@transaction.atomic
def decision_record(*, incident: Incident, signals: Signals, actor: User) -> TimelineEntry:
    """Decide on the signals and write the decision, with the signals, on the timeline."""
    require_role(actor, "incidents.command_incident", "record a rollback decision")
    locked = Incident.objects.select_for_update(no_key=True).get(pk=incident.pk)
    if locked.status == IncidentStatus.RESOLVED:
        raise DomainError("The incident is resolved; reopen it before deciding again.")
    decision = decide(signals, locked)
    return timeline_append(
        incident=locked,
        kind=TimelineKind.DECISION,
        body=f"Decision helper: {decision.verdict}. {decision.reason}",
        actor=actor,
        payload={
            "verdict": decision.verdict,
            "reason": decision.reason,
            "rule": decision.rule,
            "severity": locked.severity,
            "signals": signals.as_payload(),
        },
    )


def decision_latest(incident: Incident) -> TimelineEntry | None:
    """The incident's most recent recorded decision, if any."""
    return (
        TimelineEntry.objects.filter(incident=incident, kind=TimelineKind.DECISION)
        .select_related("actor")
        .order_by("-id")
        .first()
    )


# -- the recovery clock --------------------------------------------------------------------

# The clock turns "close" once this share of the RTO is gone.
RTO_CLOSE_SHARE = 0.8


@dataclass(frozen=True)
class RecoveryClock:
    """Time since detection (or since the incident was opened) against the RTO."""

    since: datetime
    since_label: str  # "detection" or "opening"
    stopped_at: datetime | None  # when the clock stopped: service restored, or resolved
    stopped_label: str
    now: datetime
    elapsed: timedelta
    rto: timedelta
    close_after: timedelta
    state: ClockState

    @property
    def remaining(self) -> timedelta:
        """Time left before the RTO; negative once over it."""
        return self.rto - self.elapsed

    @property
    def overrun(self) -> timedelta:
        return -self.remaining

    @property
    def running(self) -> bool:
        return self.stopped_at is None

    @property
    def state_label(self) -> str:
        return CLOCK_STATE_LABELS[self.state]


CLOCK_STATE_LABELS: dict[ClockState, str] = {
    "within": "within RTO",
    "close": "close to RTO",
    "over": "over RTO",
}


def clock_state(elapsed: timedelta, rto: timedelta, close_after: timedelta) -> ClockState:
    """Over once past the RTO (exactly the RTO still meets it), close from `close_after`."""
    if elapsed > rto:
        return "over"
    if elapsed >= close_after:
        return "close"
    return "within"


def recovery_clock(incident: Incident, *, now: datetime | None = None) -> RecoveryClock:
    """The clock for `incident` at `now`. It runs from the detected instant (the opening
    instant when none was recorded) until service is restored, or the incident resolved."""
    now = now or timezone.now()
    if incident.detected_at is not None:
        since, since_label = incident.detected_at, "detection"
    else:
        since, since_label = incident.created_at, "opening"
    if incident.restored_at is not None:
        stopped_at, stopped_label = incident.restored_at, "service restored"
    elif incident.resolved_at is not None:
        stopped_at, stopped_label = incident.resolved_at, "resolved"
    else:
        stopped_at, stopped_label = None, ""
    elapsed = max((stopped_at or now) - since, timedelta(0))
    share = float(getattr(settings, "RECOVERY_CLOCK_CLOSE_SHARE", RTO_CLOSE_SHARE))
    close_after = incident.rto * share
    return RecoveryClock(
        since=since,
        since_label=since_label,
        stopped_at=stopped_at,
        stopped_label=stopped_label,
        now=now,
        elapsed=elapsed,
        rto=incident.rto,
        close_after=close_after,
        state=clock_state(elapsed, incident.rto, close_after),
    )


# Where each recovery phase starts, so the phase under way can tick in the page.
_PHASE_STARTS = {
    "time_to_detect": "started_at",
    "time_to_decide": "detected_at",
    "time_to_rollback": "rollback_started_at",
    "time_to_verify": "restored_at",
    "total_recovery": "started_at",
}


def recovery_phases(incident: Incident, *, now: datetime | None = None) -> list[dict[str, Any]]:
    """The incident's recovery metrics with their targets; a phase that has begun but not
    ended carries `running_since` and its `running` duration so far."""
    now = now or timezone.now()
    rows = []
    for row in incident.recovery_metrics():
        began = getattr(incident, _PHASE_STARTS[row["name"]])
        running = row["value"] is None and began is not None and incident.is_open
        rows.append(
            row
            | {
                "running_since": began if running else None,
                "running": max(now - began, timedelta(0)) if running else None,
            }
        )
    return rows


def room_context(incident: Incident) -> dict[str, Any]:
    """What `_recovery.html` and `_decision.html` render from, besides `incident`,
    `can_command` and the request's CSRF token, which the room already provides."""
    now = timezone.now()
    latest = decision_latest(incident)
    initial = latest.payload.get("signals", {}) if latest is not None else {}
    return {
        "recovery_clock": recovery_clock(incident, now=now),
        "recovery_phases": recovery_phases(incident, now=now),
        "decision_latest": latest,
        "decision_form": SignalsForm(initial=initial),
        "decision_thresholds": thresholds(),
    }
