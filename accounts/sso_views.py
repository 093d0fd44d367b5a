"""The two ends of an SSO sign-in (accounts.sso): off to the provider, and back. Both are
open to signed-out visitors and answer 404 while SSO is not configured. A sign-in that does
not complete (the provider refuses or does not answer, its answer cannot be verified, the
account is deactivated) goes back to the sign-in page saying so; it is never a 500."""

from __future__ import annotations

import logging
from typing import Any

import jwt
import requests
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import SuspiciousOperation
from django.db import DatabaseError
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils.decorators import method_decorator
from mozilla_django_oidc.views import (
    OIDCAuthenticationCallbackView,
    OIDCAuthenticationRequestView,
)

from accounts.two_factor import SSO_SECOND_FACTOR_KEY

logger = logging.getLogger(__name__)

# The most of a provider's error code shown back to the visitor.
ERROR_SHOWN = 60


def sso_enabled() -> None:
    if not settings.SSO_ENABLED:
        raise Http404("Single sign-on is not configured.")


@method_decorator(login_not_required, name="dispatch")
class SsoStartView(OIDCAuthenticationRequestView):  # type: ignore[misc]
    def get(self, request: HttpRequest) -> HttpResponse:
        sso_enabled()
        response: HttpResponse = super().get(request)
        return response


@method_decorator(login_not_required, name="dispatch")
class SsoCallbackView(OIDCAuthenticationCallbackView):  # type: ignore[misc]
    failure_message = (
        "Single sign-on did not sign you in: the sign-in link expired or was used already, "
        "or your account here is deactivated or locked. Start again, or ask an administrator."
    )

    def failed(self, message: str) -> HttpResponse:
        messages.error(self.request, message)
        return HttpResponseRedirect(reverse("login"))

    def login_failure(self) -> HttpResponse:
        return self.failed(self.failure_message)

    def login_success(self) -> HttpResponse:
        response: HttpResponse = super().login_success()
        second_factor = bool(getattr(self.request, "sso_second_factor", False))
        self.request.session[SSO_SECOND_FACTOR_KEY] = second_factor
        return response

    def get(self, request: HttpRequest) -> HttpResponse:
        sso_enabled()
        refused = request.GET.get("error", "")
        if refused:
            shown = "".join(c for c in refused[:ERROR_SHOWN] if c.isprintable())
            self.failure_message = f"The identity provider refused the sign-in ({shown})."
            # Only an answer to a sign-in this browser started may sign it out (the
            # library's error path does): another site's link does nothing.
            if request.GET.get("state", "") not in request.session.get("oidc_states", {}):
                return self.failed(self.failure_message)
        try:
            response: HttpResponse = super().get(request)
        except requests.RequestException as error:
            status = getattr(error.response, "status_code", None)
            logger.warning(
                "SSO: the identity provider failed: %s%s",
                type(error).__name__,
                f" (HTTP {status})" if status else "",
            )
            if status is not None and 400 <= status < 500 and status != 429:
                # The token endpoint refused the code: used already, expired, or not ours.
                return self.failed(self.failure_message)
            return self.failed(
                "The identity provider did not answer as expected. Try again in a minute."
            )
        except (
            SuspiciousOperation,
            jwt.PyJWTError,
            ValueError,
            KeyError,
            TypeError,
            AttributeError,
            DatabaseError,
        ) as error:
            logger.warning("SSO: an answer could not be verified: %s", error)
            return self.failed("The identity provider's answer could not be verified.")
        return response


def sso_context(request: HttpRequest) -> dict[str, Any]:
    """For the sign-in page: whether to offer SSO, and its button's words."""
    return {"sso_enabled": settings.SSO_ENABLED, "sso_label": settings.SSO_BUTTON_LABEL}
