"""Forms of the maintenance pages and of the API (api.maintenances validates with them):
shape only; the rules live in statuspage.maintenances. Dates and times without an offset
are read in the console's time zone (TIME_ZONE)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.utils import timezone

from statuspage.maintenances import BODY_MAX, NAME_MAX
from statuspage.models import Component, MaintenanceImpact, MaintenanceStatus

DATETIME_INPUT = "%Y-%m-%dT%H:%M"
UPDATE_STATUSES = [
    (status.value, status.label)
    for status in (
        MaintenanceStatus.SCHEDULED,
        MaintenanceStatus.IN_PROGRESS,
        MaintenanceStatus.VERIFYING,
        MaintenanceStatus.COMPLETED,
    )
]


def zone_name() -> str:
    """The console's time zone, as the forms name it."""
    return timezone.get_current_timezone_name()


def _when(label: str) -> forms.DateTimeField:
    return forms.DateTimeField(
        label=label,
        input_formats=[DATETIME_INPUT, "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S"],
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format=DATETIME_INPUT),
    )


class MaintenanceForm(forms.Form):
    """Schedule (with `body`) or edit a maintenance."""

    name = forms.CharField(label="Name", max_length=NAME_MAX)
    scheduled_for = _when("Start")
    scheduled_until = _when("End")
    components = forms.TypedMultipleChoiceField(label="Components", coerce=int, required=False)
    impact = forms.ChoiceField(
        label="Impact", choices=MaintenanceImpact.choices, initial=MaintenanceImpact.MAINTENANCE
    )
    auto_start = forms.BooleanField(
        label="Start it automatically at its start time", required=False, initial=True
    )
    auto_complete = forms.BooleanField(
        label="Complete it automatically at its end time", required=False, initial=True
    )
    body = forms.CharField(
        label="First update (Markdown)",
        max_length=BODY_MAX,
        widget=forms.Textarea(attrs={"rows": 5}),
    )
    notify_subscribers = forms.BooleanField(label="Notify subscribers", required=False)

    def __init__(self, *args: Any, with_body: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Every component, groups too: the service refuses a group with its reason.
        components: Any = self.fields["components"]
        components.choices = [
            (pk, name) for pk, name in Component.objects.values_list("pk", "name")
        ]
        if not with_body:
            del self.fields["body"]
            del self.fields["notify_subscribers"]
        zone = zone_name()
        for key in ("scheduled_for", "scheduled_until"):
            self.fields[key].help_text = f"In the console's time zone, {zone}."

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        start, end = data.get("scheduled_for"), data.get("scheduled_until")
        if start and end and end <= start:
            self.add_error("scheduled_until", "The end must be after the start.")
        return data

    @staticmethod
    def initial_for(maintenance: Any) -> dict[str, Any]:
        return {
            "name": maintenance.name,
            "scheduled_for": timezone.localtime(maintenance.scheduled_for),
            "scheduled_until": timezone.localtime(maintenance.scheduled_until),
            "components": [c.pk for c in maintenance.components.all()],
            "impact": maintenance.impact,
            "auto_start": maintenance.auto_start,
            "auto_complete": maintenance.auto_complete,
        }


class MaintenanceUpdateForm(forms.Form):
    status = forms.ChoiceField(label="Status", choices=UPDATE_STATUSES)
    body = forms.CharField(
        label="Update (Markdown)", max_length=BODY_MAX, widget=forms.Textarea(attrs={"rows": 5})
    )
    notify_subscribers = forms.BooleanField(label="Notify subscribers", required=False)


class MaintenanceCancelForm(forms.Form):
    reason = forms.CharField(
        label="Why (optional, published)",
        required=False,
        max_length=BODY_MAX - 200,
        widget=forms.Textarea(attrs={"rows": 2}),
    )
    notify_subscribers = forms.BooleanField(label="Notify subscribers", required=False)
