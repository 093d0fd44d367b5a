"""Forms of the status desk: shape only; the rules live in the services."""

from __future__ import annotations

from typing import Any

from django import forms
from django.core.validators import validate_email

from incidents.models import Environment, Service
from statuspage.models import Component, ComponentStatus, Impact, PublicStatus
from statuspage.services import MAX_BODY_CHARS

NOT_AFFECTED = ""


class DraftForm(forms.Form):
    """The draft editor. `version` is the draft version the editor started from."""

    version = forms.IntegerField(min_value=0, widget=forms.HiddenInput)
    name = forms.CharField(label="Public name", max_length=200)
    status = forms.ChoiceField(label="Public status", choices=PublicStatus.choices)
    impact = forms.ChoiceField(choices=Impact.choices)
    body = forms.CharField(
        label="Update (Markdown)",
        required=False,
        max_length=MAX_BODY_CHARS,
        widget=forms.Textarea(attrs={"rows": 8}),
    )
    # Read on publishing only (statuspage.services.draft_publish); a draft does not keep it.
    notify_subscribers = forms.BooleanField(
        required=False, label="Notify subscribers by email when publishing"
    )

    def __init__(self, *args: Any, components: list[Component], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.components = components
        for component in components:
            self.fields[f"component_{component.pk}"] = forms.ChoiceField(
                label=component.name,
                required=False,
                choices=[(NOT_AFFECTED, "not affected"), *ComponentStatus.choices],
            )

    @staticmethod
    def initial_for(draft: Any) -> dict[str, Any]:
        initial = {
            "version": draft.version,
            "name": draft.name,
            "status": draft.status,
            "impact": draft.impact,
            "body": draft.body,
        }
        for key, value in (draft.component_statuses or {}).items():
            initial[f"component_{key}"] = value
        return initial

    def component_fields(self) -> list[forms.BoundField]:
        return [self[f"component_{component.pk}"] for component in self.components]

    def component_statuses(self) -> dict[str, str]:
        return {
            str(component.pk): self.cleaned_data[f"component_{component.pk}"]
            for component in self.components
            if self.cleaned_data.get(f"component_{component.pk}")
        }

    def draft_fields(self) -> dict[str, Any]:
        data = self.cleaned_data
        return {
            "version": data["version"],
            "name": data["name"],
            "status": data["status"],
            "impact": data["impact"],
            "body": data["body"],
            "component_statuses": self.component_statuses(),
        }


class PreviewForm(forms.Form):
    name = forms.CharField(required=False, max_length=200)
    status = forms.ChoiceField(required=False, choices=PublicStatus.choices)
    body = forms.CharField(required=False, max_length=MAX_BODY_CHARS)


class VersionForm(forms.Form):
    version = forms.IntegerField(min_value=0)


class StartFromIncidentForm(VersionForm):
    status = forms.ChoiceField(
        required=False, choices=[("", "as the incident stands"), *PublicStatus.choices]
    )


class RecipientsField(forms.CharField):
    """Email addresses separated by commas, spaces or new lines."""

    def to_python(self, value: Any) -> list[str]:  # type: ignore[override]
        text = super().to_python(value) or ""
        return [part for part in text.replace(",", " ").split() if part]

    def validate(self, value: Any) -> None:
        if self.required and not value:
            raise forms.ValidationError("Name at least one recipient.")
        for address in value:
            try:
                validate_email(address)
            except forms.ValidationError:
                raise forms.ValidationError(f"{address} is not an email address.") from None


class CustomerNoticeForm(forms.Form):
    recipients = RecipientsField(
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Email addresses, separated by commas or new lines",
    )
    subject = forms.CharField(max_length=200)
    body = forms.CharField(
        label="Text", max_length=MAX_BODY_CHARS, widget=forms.Textarea(attrs={"rows": 8})
    )
    confirm = forms.BooleanField(
        required=False, label="I have checked this notice; send it to these customers"
    )
    # One per filled-in form, so that a double submit sends the notice once.
    token = forms.UUIDField(widget=forms.HiddenInput)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Its own ids: the draft form on the same desk has a `body` field too.
        kwargs.setdefault("auto_id", "customer_%s")
        super().__init__(*args, **kwargs)


def _production_services() -> list[tuple[int, str]]:
    return [
        (service.pk, service.name)
        for service in Service.objects.filter(environment=Environment.PRODUCTION).order_by("name")
    ]


class ComponentForm(forms.Form):
    """A component or group on the components page. The group comes from the request's
    `group` values (statuspage.components.one_group); names, lengths and characters are
    the service's to check, so every way in refuses alike."""

    name = forms.CharField(required=False, strip=False)
    description = forms.CharField(required=False, strip=False)
    only_show_if_degraded = forms.BooleanField(
        required=False,
        label="Only show if degraded",
        help_text="Listed on the public page only while not operational",
    )
    services = forms.TypedMultipleChoiceField(
        required=False,
        coerce=int,
        label="Fed by services",
        help_text="Production services behind it; their incidents suggest it as affected",
        widget=forms.CheckboxSelectMultiple,
    )

    def __init__(self, *args: Any, prefix_ids: str = "component", **kwargs: Any) -> None:
        # Two of these can share a page (add a component, add a group): their own ids.
        kwargs.setdefault("auto_id", f"{prefix_ids}_%s")
        super().__init__(*args, **kwargs)
        services = self.fields["services"]
        assert isinstance(services, forms.TypedMultipleChoiceField)
        services.choices = _production_services()

    @staticmethod
    def initial_for(component: Component) -> dict[str, Any]:
        return {
            "name": component.name,
            "description": component.description,
            "only_show_if_degraded": component.only_show_if_degraded,
            "services": [service.pk for service in component.services.all()],
        }


class MoveForm(forms.Form):
    direction = forms.ChoiceField(choices=[("up", "up"), ("down", "down")])


class UpdateTemplateForm(forms.Form):
    """An update template on the templates page and in the API. Lengths, characters,
    placeholders, groups and names taken are the service's to check
    (statuspage.update_templates), so every way in refuses alike."""

    name = forms.CharField(required=False, strip=False)
    title = forms.CharField(required=False, strip=False)
    body = forms.CharField(required=False, strip=False, widget=forms.Textarea(attrs={"rows": 8}))
    status = forms.ChoiceField(label="Public status", choices=PublicStatus.choices)
    components = forms.TypedMultipleChoiceField(
        required=False, coerce=int, widget=forms.CheckboxSelectMultiple
    )
    component_status = forms.ChoiceField(
        required=False,
        label="Their state",
        choices=[("", "as the incident's severity suggests"), *ComponentStatus.choices],
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("auto_id", "template_%s")
        super().__init__(*args, **kwargs)
        components = self.fields["components"]
        assert isinstance(components, forms.TypedMultipleChoiceField)
        # Groups too, so that choosing one is refused by the service with its reason.
        components.choices = [(c.pk, c.name) for c in Component.objects.order_by("pk")]

    @staticmethod
    def initial_for(template: Any) -> dict[str, Any]:
        return {
            "name": template.name,
            "title": template.title,
            "body": template.body,
            "status": template.status,
            "components": [component.pk for component in template.components.all()],
            "component_status": template.component_status,
        }

    def template_fields(self) -> dict[str, Any]:
        data = self.cleaned_data
        return {
            "name": data["name"],
            "title": data["title"],
            "body": data["body"],
            "status": data["status"],
            "component_ids": data["components"],
            "component_status": data["component_status"],
        }


class StartFromTemplateForm(VersionForm):
    """The desk's "Start from template": which template, from which draft version."""

    template = forms.IntegerField(min_value=1, max_value=2**31 - 1)
