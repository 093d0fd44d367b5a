"""The signals form: what the commander reads off the dashboards, as typed."""

from __future__ import annotations

import dataclasses
from typing import Any

from django import forms

from incidents.decisions.rules import TRENDS, Signals, number_text, thresholds


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
                f"{number_text(limits.error_rate_watch)} %.",
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
