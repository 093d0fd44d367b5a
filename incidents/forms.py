"""Forms parse and validate what people type; the services enforce the domain rules."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django import forms
from django.utils import timezone

from incidents.models import (
    INCIDENT_INSTANTS,
    Environment,
    Incident,
    IncidentStatus,
    Service,
    Severity,
)
from incidents.selectors import commanders


class DateTimeLocalInput(forms.DateTimeInput):
    input_type = "datetime-local"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(format="%Y-%m-%dT%H:%M:%S", **kwargs)


def _not_in_future(value: Any) -> None:
    if value is not None and value > timezone.now() + timedelta(minutes=1):
        raise forms.ValidationError("This cannot be in the future.")


class IncidentFilterForm(forms.Form):
    state = forms.ChoiceField(
        required=False,
        choices=[("open", "Open"), ("", "Any state"), *IncidentStatus.choices],
    )
    severity = forms.ChoiceField(required=False, choices=[("", "Any severity"), *Severity.choices])
    environment = forms.ChoiceField(
        required=False, choices=[("", "Any environment"), *Environment.choices]
    )
    service = forms.ModelChoiceField(
        required=False, queryset=Service.objects.all(), empty_label="Any service"
    )
    q = forms.CharField(required=False, max_length=200, label="Title contains")


class IncidentCreateForm(forms.Form):
    title = forms.CharField(max_length=200)
    severity = forms.ChoiceField(choices=Severity.choices)
    environment = forms.ChoiceField(choices=Environment.choices, initial=Environment.PRODUCTION)
    services = forms.ModelMultipleChoiceField(
        queryset=Service.objects.all(),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="Services affected or suspected",
    )
    commander = forms.ModelChoiceField(
        queryset=commanders(), required=False, empty_label="I will command it"
    )
    summary = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False)
    started_at = forms.DateTimeField(
        required=False,
        widget=DateTimeLocalInput(),
        validators=[_not_in_future],
        help_text="When impact began; defaults to the detection time",
    )
    detected_at = forms.DateTimeField(
        required=False,
        widget=DateTimeLocalInput(),
        validators=[_not_in_future],
        help_text="When it was noticed; defaults to now",
    )
    rto_minutes = forms.IntegerField(min_value=1, max_value=7 * 24 * 60, initial=15, label="RTO")
    rpo_minutes = forms.IntegerField(min_value=0, max_value=7 * 24 * 60, initial=5, label="RPO")

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        started, detected = cleaned.get("started_at"), cleaned.get("detected_at")
        if started and started > (detected or timezone.now()):
            self.add_error("started_at", "Impact cannot start after it was detected.")
        environment = cleaned.get("environment")
        services = cleaned.get("services") or []
        elsewhere = [s.name for s in services if s.environment != environment]
        if elsewhere:
            self.add_error(
                "services", f"Not in the {environment} environment: {', '.join(elsewhere)}."
            )
        return cleaned


def _reason_field() -> forms.CharField:
    return forms.CharField(
        max_length=500,
        required=False,
        widget=forms.TextInput(attrs={"placeholder": "Why (optional)"}),
    )


class StatusChangeForm(forms.Form):
    to_status = forms.ChoiceField(choices=IncidentStatus.choices, label="New status")
    reason = _reason_field()

    def __init__(self, *args: Any, incident: Incident, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        allowed = set(incident.allowed_next_statuses())
        moves = [(value, label) for value, label in IncidentStatus.choices if value in allowed]
        # The status it has now comes first and is what the select shows, so the panel
        # never reads as if the incident were already in the first status it may move to.
        now = ("", f"{incident.get_status_display()} (now)")
        self.fields["to_status"].choices = [now, *moves] if moves else []  # type: ignore[attr-defined]


class SeverityChangeForm(forms.Form):
    severity = forms.ChoiceField(choices=Severity.choices)
    reason = _reason_field()


class CommanderForm(forms.Form):
    commander = forms.ModelChoiceField(queryset=commanders(), empty_label=None)


INSTANT_CHOICES = [(name, name.removesuffix("_at").replace("_", " ")) for name in INCIDENT_INSTANTS]


class InstantForm(forms.Form):
    instant = forms.ChoiceField(choices=INSTANT_CHOICES)
    at = forms.DateTimeField(widget=DateTimeLocalInput(), validators=[_not_in_future])


class NoteForm(forms.Form):
    body = forms.CharField(
        max_length=5000,
        widget=forms.Textarea(
            attrs={"rows": 2, "placeholder": "What do you see? Notes go on the timeline."}
        ),
        label="Note",
        strip=True,
    )


def _yes_no_field() -> forms.TypedChoiceField:
    return forms.TypedChoiceField(choices=[("1", "yes"), ("0", "no")], coerce=lambda v: v == "1")


class ChecklistItemForm(forms.Form):
    done = _yes_no_field()


class KnownGoodForm(forms.Form):
    known_good = _yes_no_field()
    reason = forms.CharField(max_length=500, required=False)


def form_errors_text(form: forms.Form) -> str:
    """All of a form's errors as one sentence-per-field message."""
    parts = []
    for field, errors in form.errors.items():
        label = form.fields[field].label or field.replace("_", " ") if field in form.fields else ""
        text = " ".join(str(error) for error in errors)
        parts.append(f"{str(label).capitalize()}: {text}" if label else text)
    return " ".join(parts)
