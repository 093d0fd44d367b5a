"""Forms of the rollback pages: approval requests and decisions, the plan builder, and
the buttons of a run and its steps."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django import forms

from incidents.models import Incident, Release, Service
from rollbacks.models import ApprovalDecision, Scenario


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
