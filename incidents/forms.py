"""Forms parse and validate what people type; the services enforce the domain rules."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django import forms
from django.utils import timezone

from incidents.models import (
    INCIDENT_INSTANTS,
    Environment,
    Incident,
    IncidentStatus,
    Release,
    Service,
    Severity,
)
from incidents.selectors import commanders
from rollbacks.models import ApprovalDecision, Scenario


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
        self.fields["to_status"].choices = [  # type: ignore[attr-defined]
            (value, label) for value, label in IncidentStatus.choices if value in allowed
        ]


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


class ApprovalRequestForm(forms.Form):
    scenario = forms.ChoiceField(choices=Scenario.choices, initial=Scenario.ANY)
    reason = forms.CharField(
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 2, "placeholder": "Why roll back, and to what"}),
    )


class ApprovalDecisionForm(forms.Form):
    decision = forms.ChoiceField(choices=ApprovalDecision.choices)
    role = forms.CharField(max_length=100, required=False)
    comment = forms.CharField(max_length=2000, required=False)


def form_errors_text(form: forms.Form) -> str:
    """All of a form's errors as one sentence-per-field message."""
    parts = []
    for field, errors in form.errors.items():
        label = form.fields[field].label or field.replace("_", " ") if field in form.fields else ""
        text = " ".join(str(error) for error in errors)
        parts.append(f"{str(label).capitalize()}: {text}" if label else text)
    return " ".join(parts)


PREVIOUS = "previous"


class RollbackPlanForm(forms.Form):
    """One target choice per service of the incident's environment: skip, the previous
    revision, or one of its releases (known-good ones marked)."""

    scenario = forms.ChoiceField(choices=Scenario.choices, initial=Scenario.ANY)
    reason = forms.CharField(
        max_length=2000,
        required=False,
        widget=forms.TextInput(attrs={"placeholder": "Why roll back (optional)"}),
    )
    parallel = forms.BooleanField(
        required=False, initial=True, label="Roll the chosen services back in parallel"
    )

    def __init__(self, *args: Any, incident: Incident, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.services = list(
            Service.objects.filter(environment=incident.environment).prefetch_related("releases")
        )
        affected = {service.pk for service in incident.services.all()}
        self.affected = affected
        for service in self.services:
            releases = sorted(service.releases.all(), key=lambda r: r.shipped_at, reverse=True)
            choices = [("", "— leave as it is —"), (PREVIOUS, "previous revision")]
            choices += [
                (str(r.pk), f"{r.version}{' (known-good)' if r.known_good else ''}")
                for r in releases
            ]
            known_good = next((r for r in releases if r.known_good), None)
            initial = str(known_good.pk) if known_good and service.pk in affected else ""
            self.fields[self.field_name(service)] = forms.ChoiceField(
                choices=choices, required=False, label=service.name, initial=initial
            )

    @staticmethod
    def field_name(service: Service) -> str:
        return f"target_{service.pk}"

    def target_fields(self) -> list[forms.BoundField]:
        return [self[self.field_name(service)] for service in self.services]

    def rows(self, live: Mapping[int, tuple[str, str]] | None = None) -> list[VersionRow]:
        """One row per service for the side-by-side view: live (from `live`, a service id
        to (version, error) map, when the infrastructure was asked), previous and
        known-good versions, and the target field."""
        return [
            version_row(service, self[self.field_name(service)], self.affected, live)
            for service in self.services
        ]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if self.services and not any(cleaned.get(self.field_name(s)) for s in self.services):
            raise forms.ValidationError("Choose a target for at least one service.")
        return cleaned

    def chosen_targets(self) -> list[tuple[Service, Release | None, bool]]:
        """(service, release or None, previous?) for every service given a target."""
        chosen: list[tuple[Service, Release | None, bool]] = []
        for service in self.services:
            value = self.cleaned_data.get(self.field_name(service))
            if not value:
                continue
            if value == PREVIOUS:
                chosen.append((service, None, True))
            else:
                release = next(r for r in service.releases.all() if str(r.pk) == value)
                chosen.append((service, release, False))
        return chosen


class RunConfirmForm(forms.Form):
    confirmation = forms.CharField(
        max_length=200, widget=forms.TextInput(attrs={"autocomplete": "off"})
    )


class ReasonForm(forms.Form):
    reason = forms.CharField(max_length=2000, required=False)


class SkipForm(forms.Form):
    reason = forms.CharField(max_length=2000, label="Why skip it")


@dataclass
class VersionRow:
    service: Service
    field: forms.BoundField
    affected: bool
    known_good: Release | None
    previous: Release | None
    live: str = ""
    live_error: str = ""
    checked: bool = False


def version_row(
    service: Service,
    field: forms.BoundField,
    affected: set[int],
    live: Mapping[int, tuple[str, str]] | None,
) -> VersionRow:
    """A service's versions side by side. Without the live version the latest release is
    taken as live; with it, the release matching it (by artifact or version) is, and
    "previous" is the release shipped before that one."""
    releases = sorted(service.releases.all(), key=lambda r: (r.shipped_at, r.pk), reverse=True)
    known_good = next((r for r in releases if r.known_good), None)
    row = VersionRow(service, field, service.pk in affected, known_good, None)
    current = 0
    if live is not None and service.pk in live:
        row.live, row.live_error = live[service.pk]
        row.checked = True
        matching = [i for i, r in enumerate(releases) if row.live in (r.artifact, r.version)]
        current = matching[0] if matching else -1
    if current >= 0 and current + 1 < len(releases):
        row.previous = releases[current + 1]
    return row
