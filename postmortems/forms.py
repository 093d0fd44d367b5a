"""Forms for post-mortem pages: they check shape; postmortems.services checks the rules."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth import get_user_model

from postmortems.models import NARRATIVE_FIELDS, Postmortem, PostmortemState


class PostmortemForm(forms.ModelForm):
    """The narrative fields, plus the revision the editor started from."""

    base_revision = forms.IntegerField(min_value=0, widget=forms.HiddenInput)

    class Meta:
        model = Postmortem
        fields = list(NARRATIVE_FIELDS)
        widgets = {
            "summary": forms.Textarea(attrs={"rows": 4}),
            "data_loss": forms.Textarea(attrs={"rows": 2}),
            "root_cause": forms.Textarea(attrs={"rows": 5}),
            "resolution": forms.Textarea(attrs={"rows": 4}),
            "prevention": forms.Textarea(attrs={"rows": 4}),
            "lessons_learned": forms.Textarea(attrs={"rows": 4}),
        }
        labels = {
            "users_affected": "Users affected",
            "failed_requests": "Failed requests",
            "revenue_impact": "Revenue impact",
            "revenue_currency": "Currency",
            "timeline_filter": "Timeline in the report",
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk and "base_revision" not in self.initial:
            self.initial["base_revision"] = self.instance.revision
        self.fields["revenue_currency"].widget.attrs.update({"size": 4, "pattern": "[A-Za-z]{3}"})

    def clean_base_revision(self) -> int:
        # A revision the post-mortem has not reached would skip the check for edits saved
        # since the page was loaded.
        revision = int(self.cleaned_data["base_revision"])
        if revision > self.instance.revision:
            raise forms.ValidationError(
                f"This page names revision {revision}, but the post-mortem is at revision "
                f"{self.instance.revision}; reload the page."
            )
        return revision

    def clean_revenue_currency(self) -> str:
        currency = str(self.cleaned_data["revenue_currency"]).strip().upper()
        if len(currency) != 3 or not currency.isalpha():
            raise forms.ValidationError("Use a three-letter currency code such as USD or EUR.")
        return currency

    def narrative(self) -> dict[str, Any]:
        return {field: self.cleaned_data[field] for field in NARRATIVE_FIELDS}


class StateForm(forms.Form):
    """Move the post-mortem to another state. Publishing, and reopening a published
    post-mortem, need the confirmation box ticked."""

    to_state = forms.ChoiceField(choices=PostmortemState.choices)
    confirm = forms.BooleanField(required=False)

    def __init__(self, *args: Any, current_state: str = "", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.current_state = current_state

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        publishing = data.get("to_state") == PostmortemState.PUBLISHED
        reopening = self.current_state == PostmortemState.PUBLISHED
        if (publishing or reopening) and not data.get("confirm"):
            doing = "publishing" if publishing else "reopening the published post-mortem"
            raise forms.ValidationError(f"Tick the box to confirm {doing}.")
        return data


class StarForm(forms.Form):
    starred = forms.BooleanField(required=False)


class ActionItemForm(forms.Form):
    title = forms.CharField(max_length=300, label="Action")
    owner = forms.ModelChoiceField(
        queryset=get_user_model().objects.filter(is_active=True).order_by("username"),
        required=False,
        empty_label="nobody yet",
    )
    due_on = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    ticket_url = forms.URLField(required=False, max_length=200, label="Tracked at (URL)")


class ActionItemDoneForm(forms.Form):
    done = forms.BooleanField(required=False)


class TimelineChoiceForm(forms.Form):
    """?timeline=all|starred on the page and the exports."""

    timeline = forms.ChoiceField(choices=[("all", "all"), ("starred", "starred")], required=False)
