"""Forms of the playbook pages: a playbook's YAML, and the parameters of a draft."""

from __future__ import annotations

from typing import Any

from django import forms

from incidents.models import Incident, Service
from playbooks.documents import MAX_SOURCE_BYTES, Parameter, parameters_of
from playbooks.models import Playbook, PlaybookVersion
from rollbacks.models import Scenario


class PlaybookSourceForm(forms.Form):
    source = forms.CharField(
        label="Playbook (YAML)",
        max_length=MAX_SOURCE_BYTES,
        widget=forms.Textarea(attrs={"rows": 30, "spellcheck": "false", "class": "code"}),
    )
    comment = forms.CharField(max_length=500, required=False, label="What changed")


class PlaybookImportForm(forms.Form):
    file = forms.FileField(required=False, label="YAML file")
    source = forms.CharField(
        required=False,
        max_length=MAX_SOURCE_BYTES,
        label="…or paste it",
        widget=forms.Textarea(attrs={"rows": 12, "spellcheck": "false", "class": "code"}),
    )
    comment = forms.CharField(max_length=500, required=False, label="What changed")

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        upload = cleaned.get("file")
        if upload is not None:
            if upload.size > MAX_SOURCE_BYTES:
                raise forms.ValidationError(f"file: at most {MAX_SOURCE_BYTES // 1000} KB")
            try:
                cleaned["source"] = upload.read().decode("utf-8")
            except UnicodeDecodeError:
                raise forms.ValidationError("file: not UTF-8 text") from None
        if not cleaned.get("source"):
            raise forms.ValidationError("source: upload a YAML file or paste one")
        return cleaned


class PlaybookChoiceForm(forms.Form):
    playbook = forms.ModelChoiceField(
        queryset=Playbook.objects.filter(archived=False), to_field_name="name"
    )


class PlaybookDraftForm(forms.Form):
    """The parameters of one playbook version, as fields: services as selects of the
    incident environment's services of the kinds allowed (affected ones first)."""

    scenario = forms.ChoiceField(choices=Scenario.choices, initial=Scenario.ANY)
    reason = forms.CharField(max_length=2000, required=False)

    def __init__(
        self, *args: Any, incident: Incident, version: PlaybookVersion, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.parameters = parameters_of(version.document)
        affected = set(incident.services.values_list("pk", flat=True))
        for parameter in self.parameters:
            self.fields[f"param_{parameter.name}"] = parameter_field(parameter, incident, affected)

    def parameter_values(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for parameter in self.parameters:
            value = self.cleaned_data.get(f"param_{parameter.name}")
            if isinstance(value, list):
                value = ",".join(value)
            if value not in (None, ""):
                values[parameter.name] = value
        return values


def parameter_field(parameter: Parameter, incident: Incident, affected: set[int]) -> forms.Field:
    common: dict[str, Any] = {
        "label": parameter.label,
        "help_text": parameter.help,
        "required": False,  # the service says which are missing, naming them
    }
    if parameter.type in ("service", "services"):
        services = Service.objects.filter(environment=incident.environment).order_by("name")
        if parameter.backends:
            services = services.filter(backend__in=parameter.backends)
        ordered = sorted(services, key=lambda s: (s.pk not in affected, s.name))
        choices = [
            (s.name, f"{s.name}{' (affected)' if s.pk in affected else ''}") for s in ordered
        ]
        if parameter.type == "services":
            return forms.MultipleChoiceField(
                choices=choices,
                widget=forms.SelectMultiple(attrs={"size": min(8, max(2, len(choices)))}),
                **common,
            )
        return forms.ChoiceField(choices=[("", "—"), *choices], **common)
    initial = parameter.default if parameter.default is not None else None
    return forms.CharField(max_length=2000, initial=initial, **common)
