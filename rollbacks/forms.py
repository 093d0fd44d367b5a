"""Forms of the rollback pages: approval requests and decisions, the plan builder, and
the buttons of a run and its steps."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
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
OPTIONS_ONLY = "options"
OPTION_PREFIX = "opt-"
MAX_PLAN_SERVICES = 200


class RollbackPlanForm(forms.Form):
    """One target choice per service shown: the incident's affected services, then those
    the commander added (by search) — never every service of the environment, which may be
    hundreds. A target is skip, the previous revision, one of its releases (known-good ones
    marked), or "as the options say" (a restart, a scale); each service's step options come
    as `opt-<service id>-<option name>` fields, validated by the backend's declaration."""

    scenario = forms.ChoiceField(choices=Scenario.choices, initial=Scenario.ANY)
    reason = forms.CharField(
        max_length=2000,
        required=False,
        widget=forms.TextInput(attrs={"placeholder": "Why roll back (optional)"}),
    )
    parallel = forms.BooleanField(
        required=False, initial=True, label="Roll the chosen services back in parallel"
    )

    def __init__(
        self, *args: Any, incident: Incident, added: Iterable[int] = (), **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        affected = {service.pk for service in incident.services.all()}
        self.affected = affected
        wanted = list(affected) + [pk for pk in added if pk not in affected]
        if self.is_bound:
            wanted += [pk for pk in self.submitted_service_ids() if pk not in wanted]
        shown = Service.objects.filter(
            environment=incident.environment, pk__in=wanted[:MAX_PLAN_SERVICES]
        ).prefetch_related("releases")
        # Affected services by name, then the added ones in the order they were added.
        self.services = sorted(
            shown,
            key=lambda s: (
                s.pk not in affected,
                s.name if s.pk in affected else "",
                wanted.index(s.pk),
            ),
        )
        self.services_dropped = len(wanted) > MAX_PLAN_SERVICES
        for service in self.services:
            self.fields[self.field_name(service)] = target_field(
                service, affected=service.pk in affected
            )

    def ids_by_kind(self) -> list[tuple[str, list[int]]]:
        """The shown services' ids per backend kind: the page asks each kind's live versions
        with a request of its own, so a slow kind never holds the others' rows."""
        kinds: dict[str, list[int]] = {}
        for service in self.services:
            kinds.setdefault(service.backend, []).append(service.pk)
        return list(kinds.items())

    def submitted_service_ids(self) -> list[int]:
        """The services whose target field the submitted form carries."""
        ids = []
        for key in self.data:
            number = key.removeprefix("target_")
            if key.startswith("target_") and number.isdigit() and len(number) < 10:
                ids.append(int(number))
        return ids

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
        if self.services_dropped:
            raise forms.ValidationError(f"A plan takes at most {MAX_PLAN_SERVICES} services.")
        if not any(cleaned.get(self.field_name(s)) for s in self.services):
            raise forms.ValidationError("Choose a target for at least one service.")
        return cleaned

    def step_options(self, service: Service) -> dict[str, str]:
        """The options typed or chosen for `service`: its non-empty `opt-` fields."""
        prefix = f"{OPTION_PREFIX}{service.pk}-"
        return {
            key.removeprefix(prefix): value
            for key, value in self.data.items()
            if key.startswith(prefix) and isinstance(value, str) and value.strip()
        }

    def chosen_targets(self) -> list[ChosenTarget]:
        """What to do to every service given a target."""
        chosen: list[ChosenTarget] = []
        for service in self.services:
            value = self.cleaned_data.get(self.field_name(service))
            if not value:
                continue
            release = None
            if value not in (PREVIOUS, OPTIONS_ONLY):
                release = next(r for r in service.releases.all() if str(r.pk) == value)
            chosen.append(
                ChosenTarget(service, release, value == PREVIOUS, self.step_options(service))
            )
        return chosen


@dataclass(frozen=True)
class ChosenTarget:
    service: Service
    release: Release | None
    previous: bool
    options: dict[str, str]


def target_field(service: Service, *, affected: bool) -> forms.ChoiceField:
    """Skip, previous, "as the options say", or a release; the known-good one preselected
    for an affected service."""
    releases = sorted(service.releases.all(), key=lambda r: r.shipped_at, reverse=True)
    choices = [
        ("", "— leave as it is —"),
        (PREVIOUS, "previous revision"),
        (OPTIONS_ONLY, "as the options say"),
    ]
    choices += [
        (str(r.pk), f"{r.version}{' (known-good)' if r.known_good else ''}") for r in releases
    ]
    known_good = next((r for r in releases if r.known_good), None)
    initial = str(known_good.pk) if known_good and affected else ""
    return forms.ChoiceField(choices=choices, required=False, label=service.name, initial=initial)


class ServiceSearchForm(forms.Form):
    q = forms.CharField(max_length=80, required=False, strip=True)


SUPERSEDE_LABEL = "Supersede: cancel other runs in flight on these services"


class RunConfirmForm(forms.Form):
    confirmation = forms.CharField(
        max_length=200, widget=forms.TextInput(attrs={"autocomplete": "off"})
    )
    supersede = forms.BooleanField(required=False, label=SUPERSEDE_LABEL)


class ReasonForm(forms.Form):
    reason = forms.CharField(max_length=2000, required=False)


class ApprovalAskForm(ReasonForm):
    supersede = forms.BooleanField(required=False, label=SUPERSEDE_LABEL)


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
