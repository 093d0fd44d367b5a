"""The second step of signing in: set up an authenticator app, or give its code
(accounts.two_factor). A refused code answers 400 and says so; django-otp slows down guessing
(each failure doubles the wait before the device accepts another try)."""

from __future__ import annotations

from django import forms
from django.contrib.auth import logout
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods
from django_otp import login as otp_login

from accounts.two_factor import confirmed_device, pending_device, qr_svg, secret_text

BAD_REQUEST = 400


class TokenForm(forms.Form):
    token = forms.RegexField(
        regex=r"^\s*\d{6}\s*$",
        max_length=12,
        label="Code from your authenticator app",
        error_messages={"invalid": "Enter the 6-digit code your app shows."},
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric"}),
    )


def _next(request: HttpRequest) -> str:
    wanted = request.POST.get("next") or request.GET.get("next") or ""
    if url_has_allowed_host_and_scheme(wanted, {request.get_host()}, request.is_secure()):
        return wanted
    return reverse("dashboard")


@never_cache  # the set-up page carries the device's key
@require_http_methods(["GET", "POST"])
def two_factor(request: HttpRequest) -> HttpResponse:
    """Set up the app (no confirmed device yet) or check its code, then go on to `next`."""
    if not request.user.is_authenticated:
        return HttpResponseRedirect(reverse("login"))
    device = confirmed_device(request.user)
    setting_up = device is None
    if device is None:
        device = pending_device(request.user)
    form = TokenForm(request.POST or None)
    status = 200
    if request.method == "POST":
        if form.is_valid() and device.verify_token(form.cleaned_data["token"].strip()):
            if setting_up:
                device.confirmed = True
                device.save(update_fields=["confirmed"])
            otp_login(request, device)
            return HttpResponseRedirect(_next(request))
        if form.is_valid():
            form.add_error("token", "That code is not right (or came too late). Try the next one.")
        status = BAD_REQUEST
    context = {"form": form, "setting_up": setting_up, "next": _next(request)}
    if setting_up:
        context |= {"qr_svg": qr_svg(device), "secret": secret_text(device)}
    return render(request, "accounts/two_factor.html", context, status=status)


@never_cache
@require_http_methods(["POST"])
def two_factor_cancel(request: HttpRequest) -> HttpResponse:
    """Sign out instead of giving a code."""
    logout(request)
    return HttpResponseRedirect(reverse("login"))
