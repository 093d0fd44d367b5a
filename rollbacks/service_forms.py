"""The forms that say what a service takes from an operator, used alike by its pages and
the API (which imports no view): the platform a discovery lists, the automatic rollback
policy, and the Prometheus queries the decision helper reads."""

from __future__ import annotations

from typing import Any

from django import forms
from django.utils.http import urlencode

from executors.discovery import PARAMETER_MAX_LENGTH, PARAMETERS, ParameterError, parameter_value
from incidents.decisions.readings import QUERY_MAX, SIGNALS
from incidents.models import Environment, Severity

SOURCE_LABELS = {
    "kubernetes": "Kubernetes namespace",
    "ecs": "ECS cluster",
    "rds": "RDS instances",
    "route53": "Route 53 records",
    "static": "S3 + CloudFront sites",
}


class SourceForm(forms.Form):
    source = forms.ChoiceField(choices=list(SOURCE_LABELS.items()))
    environment = forms.ChoiceField(choices=Environment.choices, initial=Environment.PRODUCTION)
    namespace = forms.CharField(
        max_length=PARAMETER_MAX_LENGTH["namespace"], required=False, help_text="Kubernetes"
    )
    selector = forms.CharField(
        max_length=PARAMETER_MAX_LENGTH["selector"],
        required=False,
        label="Label selector",
        help_text="e.g. tier=web",
    )
    cluster = forms.CharField(
        max_length=PARAMETER_MAX_LENGTH["cluster"], required=False, help_text="ECS"
    )
    zone = forms.CharField(
        max_length=PARAMETER_MAX_LENGTH["zone"],
        required=False,
        help_text="Route 53 zone (optional)",
    )

    def clean(self) -> dict[str, Any]:
        """Check the values the chosen source takes as its listing will, so that one it
        cannot use is an error on its own field (a listing never sees it)."""
        cleaned = super().clean() or {}
        required, optional = PARAMETERS.get(cleaned.get("source", ""), ((), ()))
        for name in (*required, *optional):
            if cleaned.get(name):
                try:
                    parameter_value(name, cleaned[name])
                except ParameterError as error:
                    self.add_error(name, error.problem)
        return cleaned

    def params(self) -> dict[str, str]:
        required, optional = PARAMETERS[self.cleaned_data["source"]]
        return {name: self.cleaned_data[name] for name in (*required, *optional)}

    def listing_query(self) -> str:
        """The query string that lists this source again: what it was asked with and
        nothing more (never the CSRF token, nor the names ticked)."""
        asked = {k: v for k, v in self.params().items() if v}
        source, environment = self.cleaned_data["source"], self.cleaned_data["environment"]
        return urlencode({"source": source, "environment": environment, **asked})


class SignalQueriesForm(forms.Form):
    """The PromQL the decision helper reads for this service, one query per signal."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        for key, label in SIGNALS.items():
            self.fields[key] = forms.CharField(
                label=label,
                max_length=QUERY_MAX,
                required=False,
                widget=forms.TextInput(attrs={"placeholder": "PromQL", "size": 60}),
            )


class AutoRollbackForm(forms.Form):
    """The service's automatic rollback policy (rollbacks.automation)."""

    enabled = forms.BooleanField(required=False, label="Roll back automatically on alerts")
    severities = forms.MultipleChoiceField(
        choices=Severity.choices, required=False, widget=forms.CheckboxSelectMultiple
    )
    max_release_age_hours = forms.IntegerField(
        min_value=1,
        max_value=720,
        initial=6,
        label="Only while the live release is younger than (h)",
    )
    start = forms.BooleanField(
        required=False, label="Start it when the approval policy asks no approver"
    )
