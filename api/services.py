"""A service over the API: read it, and change its automatic rollback policy
(rollbacks.automation) and the PromQL its signals are read with (incidents.decisions.readings),
through the services and the forms of the service's page. A change names only what it
changes, as `manage.py auto_rollback set` and `manage.py signal_queries set` do, and is
kept whole or not at all."""

from __future__ import annotations

from typing import Any

from django import forms
from django.db import transaction
from django.http import HttpRequest
from django.urls import reverse
from ninja import Router

from api.auth import scope
from api.models import READ, SERVICES_WRITE
from api.releases import service_named
from api.schemas import ERRORS, AutoRollbackChange, ServiceChange, ServiceOut
from api.validation import InputError, validated
from incidents.decisions.readings import SIGNALS
from incidents.models import Environment, Service
from incidents.roles import COMMAND_PERMISSION, require_role
from incidents.services import service_signals_set
from rollbacks.automation import auto_rollback_set, clean_policy
from rollbacks.service_forms import AutoRollbackForm, SignalQueriesForm

router = Router(tags=["services"])
# What a policy nobody has set holds (rollbacks.automation.clean_policy's defaults).
POLICY_UNSET = clean_policy({})


def stored_queries(service: Service) -> dict[str, str]:
    """The service's queries of the known signals, as the page's form shows them."""
    queries = service.signal_queries if isinstance(service.signal_queries, dict) else {}
    return {key: str(queries[key]) for key in SIGNALS if queries.get(key)}


def service_out(request: HttpRequest, service: Service) -> dict[str, Any]:
    try:
        policy, ignored = clean_policy(service.auto_rollback or {}), ""
    except ValueError as error:  # set in the admin against the rules: the automation ignores it
        policy, ignored = POLICY_UNSET, str(error)
    return {
        "id": service.pk,
        "url": request.build_absolute_uri(reverse("service_releases", args=[service.pk])),
        "name": service.name,
        "environment": service.environment,
        "backend": service.backend,
        "description": service.description,
        "auto_rollback": policy,
        "auto_rollback_ignored": ignored,
        "signal_queries": stored_queries(service),
    }


def validated_part(part: str, form_class: type[forms.Form], data: dict[str, Any]) -> dict[str, Any]:
    """`data` through the page's form, a refused field named within `part` of the body
    (auto_rollback.severities)."""
    try:
        return validated(form_class, data)
    except InputError as error:
        raise InputError(
            {
                part if field == "input" else f"{part}.{field}": messages
                for field, messages in error.errors.items()
            }
        ) from None


def policy_changed(service: Service, change: AutoRollbackChange) -> dict[str, Any]:
    """The service's policy with the fields `change` gives, checked as the page checks it."""
    stored = service.auto_rollback if isinstance(service.auto_rollback, dict) else {}
    given = {key: value for key, value in change.dict().items() if value is not None}
    return validated_part("auto_rollback", AutoRollbackForm, {**POLICY_UNSET, **stored, **given})


def queries_changed(service: Service, change: dict[str, str]) -> dict[str, str]:
    """The service's queries with the signals `change` names, checked as the page checks
    them; an empty query forgets its signal."""
    unknown = [key for key in change if key not in SIGNALS]
    if unknown:
        shown = ", ".join(repr(key[:40]) for key in unknown[:5])
        raise InputError(
            {"signal_queries": [f"Not a signal: {shown}; the signals are {', '.join(SIGNALS)}."]}
        )
    wanted = {**stored_queries(service), **change}
    return validated_part("signal_queries", SignalQueriesForm, wanted)


@router.get("/services/{service}", response={200: ServiceOut, **ERRORS}, auth=scope(READ))
def service_read(
    request: HttpRequest, service: str, environment: str = Environment.PRODUCTION
) -> dict[str, Any]:
    """The service, its automatic rollback policy and its signal queries."""
    require_role(request.user, "incidents.view_service", "read services")
    return service_out(request, service_named(service, environment))


@router.patch(
    "/services/{service}", response={200: ServiceOut, **ERRORS}, auth=scope(SERVICES_WRITE)
)
def service_change(
    request: HttpRequest,
    service: str,
    payload: ServiceChange,
    environment: str = Environment.PRODUCTION,
) -> dict[str, Any]:
    """Change the automatic rollback policy and/or signal queries: the fields given, the
    others kept. Both are checked before either is saved."""
    actor = require_role(
        request.user, COMMAND_PERMISSION, "set automatic rollback policies and signal queries"
    )
    found = service_named(service, environment)
    if payload.auto_rollback is None and payload.signal_queries is None:
        raise InputError({"input": ["Give auto_rollback or signal_queries to change."]})
    with transaction.atomic():  # both changes, or neither
        locked = Service.objects.select_for_update().get(pk=found.pk)
        policy = queries = None
        if payload.auto_rollback is not None:
            policy = policy_changed(locked, payload.auto_rollback)
        if payload.signal_queries is not None:
            queries = queries_changed(locked, payload.signal_queries)
        if policy is not None:
            locked = auto_rollback_set(service=locked, policy=policy, actor=actor)
        if queries is not None:
            locked = service_signals_set(service=locked, queries=queries, actor=actor)
    return service_out(request, locked)
