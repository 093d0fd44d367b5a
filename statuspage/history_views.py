"""The public page's past: a page per published incident with all its updates, the history
by month, and Statuspage's incidents.json and incidents/unresolved.json. No login; only
published text; served on the console's /status/ and at the status host's root alike."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time
from typing import Any

from django import forms
from django.contrib.auth.decorators import login_not_required
from django.http import Http404, HttpRequest, HttpResponse
from django.template.loader import render_to_string
from django.utils import timezone
from django.views.decorators.http import require_safe

from incidents.forms import form_errors_text
from statuspage import branding, conf, selectors
from statuspage.models import ComponentStatus, PublicIncident, Revision
from statuspage.views import (
    public_base_url,
    public_headers,
    public_json_response,
)

FIRST_YEAR, LAST_YEAR = 1970, 9998


class MonthForm(forms.Form):
    """`?month=YYYY-MM`; this month when it is left out."""

    month = forms.RegexField(
        regex=r"\A[0-9]{4}-[0-9]{2}\Z",
        required=False,
        strip=False,
        error_messages={"invalid": "Give the month as YYYY-MM, e.g. month=2026-03."},
    )

    def clean_month(self) -> date:
        given = self.cleaned_data["month"]
        if not given:
            return timezone.localdate().replace(day=1)
        year, month = (int(part) for part in given.split("-"))
        if not 1 <= month <= 12:
            raise forms.ValidationError("The month must be from 01 to 12 (YYYY-MM).")
        if not FIRST_YEAR <= year <= LAST_YEAR:
            raise forms.ValidationError(f"The year must be from {FIRST_YEAR} to {LAST_YEAR}.")
        return date(year, month, 1)


def _next_month(first: date) -> date:
    return date(first.year + first.month // 12, first.month % 12 + 1, 1)


def _previous_month(first: date) -> date:
    return date(first.year - (first.month == 1), (first.month - 2) % 12 + 1, 1)


def _local_midnight(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=timezone.get_default_timezone())


@dataclass(frozen=True)
class AffectedComponent:
    name: str
    status: str

    @property
    def status_label(self) -> str:
        return str(ComponentStatus(self.status).label)


@dataclass(frozen=True)
class UpdateView:
    """A published update with the component states it set, in page order."""

    revision: Revision
    affected: list[AffectedComponent]


def _updates(incident: PublicIncident) -> list[UpdateView]:
    components = list(incident.components.all())  # prefetched, page order
    return [
        UpdateView(
            revision=revision,
            affected=[
                AffectedComponent(c.name, revision.component_statuses[str(c.pk)])
                for c in components
                if str(c.pk) in revision.component_statuses
            ],
        )
        for revision in incident.revisions.all()  # prefetched, newest first
    ]


def _html(body: str) -> HttpResponse:
    response = HttpResponse(body)
    response["Content-Security-Policy"] = branding.public_page_policy()
    return public_headers(response)


@login_not_required
@require_safe
def incident_page(request: HttpRequest, incident_id: int) -> HttpResponse:
    """One incident as published: every update, newest first, and what it affected."""

    def page() -> str:
        incident = selectors.published_incident(incident_id)
        if incident is None:
            raise Http404("No published incident has this id.")
        context = {
            "incident": incident,
            "updates": _updates(incident),
            "page_name": conf.page_name(),
            "month": timezone.localdate(incident.created_at).strftime("%Y-%m"),
        }
        return render_to_string("statuspage/incident.html", context, request=request)

    return _html(selectors.cached_public(f"incident {incident_id} {request.get_host()}", page))


@login_not_required
@require_safe
def history_page(request: HttpRequest) -> HttpResponse:
    """The incidents first published in a month (?month=YYYY-MM), newest first, with links
    to the months before and after. A month before the first incident's or after this one
    is not found (this month always is)."""
    form = MonthForm(request.GET)
    if not form.is_valid():
        return public_headers(
            HttpResponse(form_errors_text(form), status=400, content_type="text/plain")
        )
    first: date = form.cleaned_data["month"]

    def page() -> str:
        this_month = timezone.localdate().replace(day=1)
        earliest = selectors.first_incident_at()
        earliest_month = (
            timezone.localdate(earliest).replace(day=1) if earliest is not None else this_month
        )
        if first != this_month and not earliest_month <= first <= this_month:
            raise Http404("No incident history for this month.")
        after = _next_month(first)
        context = {
            "incidents": selectors.incidents_in_month(
                _local_midnight(first), _local_midnight(after)
            ),
            "month": first,
            "previous": _previous_month(first) if earliest_month < first else None,
            "next": after if after <= this_month else None,
            "page_name": conf.page_name(),
        }
        return render_to_string("statuspage/history.html", context, request=request)

    name = f"history {first:%Y-%m} {request.get_host()}"
    return _html(selectors.cached_public(name, page))


@login_not_required
@require_safe
def incidents_json(request: HttpRequest) -> HttpResponse:
    """incidents.json: the 50 most recent incidents, resolved or not, newest first."""
    base = public_base_url(request)
    body = selectors.cached_public(
        f"incidents {base}",
        lambda: selectors.incidents_json(
            selectors.public_state(), base, selectors.recent_incidents()
        ),
    )
    return public_json_response(body)


@login_not_required
@require_safe
def unresolved_json(request: HttpRequest) -> HttpResponse:
    """incidents/unresolved.json: the incidents that are neither resolved nor postmortem,
    newest first (as incidents.json)."""
    base = public_base_url(request)

    def unresolved() -> dict[str, Any]:
        state = selectors.public_state()
        active = sorted(state.active, key=lambda i: (i.created_at, i.pk), reverse=True)
        return selectors.incidents_json(state, base, active)

    return public_json_response(selectors.cached_public(f"unresolved {base}", unresolved))
