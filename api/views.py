"""The console's page for API tokens: each person makes, sees and revokes their own; a new
token's text is shown once, on the page that made it, and never again."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from api import tokens
from api.auth import person_of
from api.models import SCOPES, ApiToken
from incidents.errors import DomainError

BAD_REQUEST = 400


class TokenForm(forms.Form):
    name = forms.CharField(max_length=tokens.NAME_MAX, label="What will use it")
    scopes = forms.MultipleChoiceField(
        choices=list(SCOPES.items()), widget=forms.CheckboxSelectMultiple
    )
    days = forms.IntegerField(
        min_value=1,
        max_value=tokens.MAX_DAYS,
        required=False,
        label="Expires after (days)",
        help_text="Empty: until revoked",
    )


@never_cache  # the page that made a token shows its text
@require_http_methods(["GET", "POST"])
def token_list(request: HttpRequest) -> HttpResponse:
    form = TokenForm(request.POST or None)
    created_text, status = "", 200
    if request.method == "POST":
        if form.is_valid():
            try:
                _, created_text = tokens.token_create(
                    user=person_of(request),
                    name=form.cleaned_data["name"],
                    scopes=form.cleaned_data["scopes"],
                    days=form.cleaned_data["days"],
                )
            except DomainError as error:
                form.add_error(None, str(error))
        if not created_text:
            status = BAD_REQUEST
        else:
            form = TokenForm()
    held = ApiToken.objects.filter(user=person_of(request)).order_by("revoked_at", "-created_at")
    context = {"form": form, "tokens": held[:100], "created_text": created_text, "scopes": SCOPES}
    return render(request, "api/tokens.html", context, status=status)


@require_POST
def token_revoke(request: HttpRequest, token_id: int) -> HttpResponse:
    token = get_object_or_404(ApiToken, pk=token_id, user=request.user)
    tokens.token_revoke(token=token, actor=person_of(request))
    messages.success(request, f"Revoked {token.name} ({token.prefix}…).")
    return redirect("api_tokens")
