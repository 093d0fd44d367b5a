"""Pages of the console. Each view parses input with a form, calls one service, renders.

Every view is behind login (LoginRequiredMiddleware) and checks the permission its action
needs; domain refusals become 4xx responses carrying the service's message.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django import forms
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import permission_required
from django.contrib.auth.forms import AuthenticationForm
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HttpResponseClientRedirect

from executors.base import BackendError
from incidents import room, selectors, services
from incidents.decisions import selectors as decision_selectors
from incidents.errors import DomainError, PermissionDenied
from incidents.forms import (
    ChecklistItemForm,
    CommanderForm,
    IncidentCreateForm,
    IncidentFilterForm,
    InstantForm,
    KnownGoodForm,
    NoteForm,
    SeverityChangeForm,
    StatusChangeForm,
    form_errors_text,
)
from incidents.models import ChecklistItem, Incident, Release
from incidents.pagination import ListPage, PageError, page_of
from incidents.roles import COMMAND_PERMISSION as COMMAND
from incidents.roles import VIEW_PERMISSION as VIEW

NUMBER = re.compile(r"[0-9]{1,18}")  # ASCII digits only: int() also reads "²" and "٣"

BAD_REQUEST, FORBIDDEN = 400, 403


def is_htmx(request: HttpRequest) -> bool:
    """Whether htmx sent the request (it then wants a fragment, not a whole page)."""
    return bool(getattr(request, "htmx", False))


def signed_in_person(request: HttpRequest) -> User:
    """The signed-in user; LoginRequiredMiddleware keeps anonymous visitors out of views."""
    if not isinstance(request.user, User):
        raise DjangoPermissionDenied
    return request.user


# Timeline rows the room renders at once; earlier ones load as the reader scrolls up.
TIMELINE_PAGE = 200


def incident_or_404(incident_id: int) -> Incident:
    """The incident with its commander and creator, or a 404 response."""
    return get_object_or_404(
        Incident.objects.select_related("commander", "created_by"), pk=incident_id
    )


@require_GET
@permission_required(VIEW, raise_exception=True)
def dashboard(request: HttpRequest) -> HttpResponse:
    """Open incidents and each service's releases, under the cards later apps registered
    (incidents.room), such as the requests awaiting the viewer's approval."""
    sections = room.dashboard_sections()
    context: dict[str, Any] = {
        "open_incidents": selectors.incidents_open(),
        "services": selectors.services_with_releases(),
        "dashboard_sections": sections,
    }
    for section in sections:
        context |= section.context(request)
    return render(request, "incidents/dashboard.html", context)


@require_GET
@permission_required(VIEW, raise_exception=True)
def incident_list(request: HttpRequest) -> HttpResponse:
    data = request.GET if request.GET else {"state": "open"}
    form = IncidentFilterForm(data)
    status = 200
    if form.is_valid():
        filters = form.cleaned_data
        incidents = selectors.incidents_filtered(
            state=filters["state"],
            severity=filters["severity"],
            environment=filters["environment"],
            service=filters["service"],
            text=filters["q"],
        )
    else:
        incidents, status = selectors.incidents_filtered().none(), BAD_REQUEST
    page_error = ""
    try:
        listing = page_of(request, incidents)
    except PageError as error:
        listing, page_error, status = ListPage.empty(), str(error), BAD_REQUEST
    template = "incidents/incident_list.html"
    if is_htmx(request):
        template += "#results"
    context = {"form": form, "incidents": listing, "listing": listing, "page_error": page_error}
    return render(request, template, context, status=status)


@permission_required("incidents.add_incident", raise_exception=True)
def incident_create(request: HttpRequest) -> HttpResponse:
    form = IncidentCreateForm(request.POST or None)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            data = form.cleaned_data
            try:
                incident = services.incident_open(
                    title=data["title"],
                    severity=data["severity"],
                    environment=data["environment"],
                    opened_by=request.user,
                    commander=data["commander"] or signed_in_person(request),
                    services=data["services"],
                    summary=data["summary"],
                    started_at=data["started_at"],
                    detected_at=data["detected_at"],
                    rto=timedelta(minutes=data["rto_minutes"]),
                    rpo=timedelta(minutes=data["rpo_minutes"]),
                )
            except DomainError as error:
                form.add_error(None, str(error))
            else:
                url = reverse("incident_room", args=[incident.pk])
                if is_htmx(request):
                    return HttpResponseClientRedirect(url)
                return redirect(url)
        status = BAD_REQUEST
    return render(request, "incidents/incident_create.html", {"form": form}, status=status)


def _room_context(request: HttpRequest, incident: Incident) -> dict[str, Any]:
    """Everything the whole room renders: its own parts, then each card later apps
    registered (incidents.room) with what that card needs."""
    page = selectors.timeline_page(incident, limit=TIMELINE_PAGE)
    timeline = page.entries
    main, side = room.room_sections("main"), room.room_sections("side")
    context = {
        "incident": incident,
        "timeline": timeline,
        "earlier": page.earlier,
        "first_entry_id": timeline[0].pk if timeline else 0,
        "last_entry_id": timeline[-1].pk if timeline else 0,
        "checklists": selectors.incident_checklists(incident),
        "status_form": StatusChangeForm(incident=incident),
        "severity_form": SeverityChangeForm(initial={"severity": incident.severity}),
        "commander_form": CommanderForm(initial={"commander": incident.commander_id}),
        "instant_form": InstantForm(),
        "note_form": NoteForm(),
        "can_command": request.user.has_perm(COMMAND),
        "can_note": request.user.has_perm("incidents.add_note"),
        "can_tick": request.user.has_perm("incidents.tick_checklist"),
        "room_main": main,
        "room_side": side,
    } | decision_selectors.room_context(incident)
    for section in main + side:
        context |= section.context(request, incident)
    return context


def render_room(
    request: HttpRequest, incident: Incident, *, error: str = "", status: int = 200
) -> HttpResponse:
    """The incident room, whole or (for htmx) its `#room` fragment, with `error` shown in
    its alert line: what every action posted from the room answers with."""
    context = _room_context(request, incident) | {"error": error}
    template = "incidents/incident_room.html"
    if is_htmx(request):
        template += "#room"
    return render(request, template, context, status=status)


@require_GET
@permission_required(VIEW, raise_exception=True)
def incident_room(request: HttpRequest, incident_id: int) -> HttpResponse:
    return render_room(request, incident_or_404(incident_id))


@require_GET
@permission_required(VIEW, raise_exception=True)
def incident_timeline(request: HttpRequest, incident_id: int) -> HttpResponse:
    """Timeline rows after `after` (an entry id), for the room's polling; or, with `before`,
    the TIMELINE_PAGE rows before that entry (the room shows the latest ones and loads
    earlier ones as the reader scrolls up), with the row that loads the page before them."""
    incident = incident_or_404(incident_id)
    before = request.GET.get("before")
    if before is not None:
        if not NUMBER.fullmatch(before) or "after" in request.GET:
            return HttpResponse(
                "before must be a timeline entry id, without after", status=BAD_REQUEST
            )
        page = selectors.timeline_page(incident, before=int(before), limit=TIMELINE_PAGE)
        return render(
            request,
            "incidents/incident_room.html#timeline-earlier-page",
            {
                "incident": incident,
                "timeline": page.entries,
                "earlier": page.earlier,
                "first_entry_id": page.entries[0].pk if page.entries else 0,
            },
        )
    after = request.GET.get("after", "0")
    if not NUMBER.fullmatch(after):
        return HttpResponse("after must be a timeline entry id", status=BAD_REQUEST)
    entries = selectors.incident_timeline(incident, after=int(after))
    return render(
        request,
        "incidents/incident_room.html#timeline-update",
        {"incident": incident, "timeline": entries},
    )


def room_action(
    request: HttpRequest,
    incident: Incident,
    form: forms.Form,
    perform: Callable[[dict[str, Any]], object],
) -> HttpResponse:
    """Validate `form`, run `perform` with its data, and answer with the refreshed room.

    Invalid input or a refused operation answers 400 (403 for a missing role) with the
    message, and changes nothing: each service runs in one transaction.
    """
    if not form.is_valid():
        return render_room(request, incident, error=form_errors_text(form), status=BAD_REQUEST)
    try:
        perform(form.cleaned_data)
    except PermissionDenied as error:
        return render_room(request, incident, error=str(error), status=FORBIDDEN)
    except DomainError as error:
        return render_room(request, incident, error=str(error), status=BAD_REQUEST)
    except BackendError as error:
        # A backend that cannot be reached while planning: the request was fine, the
        # infrastructure was not.
        return render_room(request, incident, error=f"Infrastructure: {error}", status=502)
    incident.refresh_from_db()
    if is_htmx(request):
        return render_room(request, incident)
    return HttpResponseRedirect(reverse("incident_room", args=[incident.pk]))


@require_POST
@permission_required(COMMAND, raise_exception=True)
def incident_status(request: HttpRequest, incident_id: int) -> HttpResponse:
    incident = incident_or_404(incident_id)
    return room_action(
        request,
        incident,
        StatusChangeForm(request.POST, incident=incident),
        lambda data: services.incident_change_status(
            incident=incident,
            to_status=data["to_status"],
            actor=request.user,
            reason=data["reason"],
        ),
    )


@require_POST
@permission_required(COMMAND, raise_exception=True)
def incident_severity(request: HttpRequest, incident_id: int) -> HttpResponse:
    incident = incident_or_404(incident_id)
    return room_action(
        request,
        incident,
        SeverityChangeForm(request.POST),
        lambda data: services.incident_change_severity(
            incident=incident, severity=data["severity"], actor=request.user, reason=data["reason"]
        ),
    )


@require_POST
@permission_required(COMMAND, raise_exception=True)
def incident_commander(request: HttpRequest, incident_id: int) -> HttpResponse:
    incident = incident_or_404(incident_id)
    return room_action(
        request,
        incident,
        CommanderForm(request.POST),
        lambda data: services.incident_assign_commander(
            incident=incident, commander=data["commander"], actor=request.user
        ),
    )


@require_POST
@permission_required(COMMAND, raise_exception=True)
def incident_instant(request: HttpRequest, incident_id: int) -> HttpResponse:
    incident = incident_or_404(incident_id)
    return room_action(
        request,
        incident,
        InstantForm(request.POST),
        lambda data: services.incident_record_instant(
            incident=incident, instant=data["instant"], at=data["at"], actor=request.user
        ),
    )


@require_POST
@permission_required("incidents.add_note", raise_exception=True)
def note_create(request: HttpRequest, incident_id: int) -> HttpResponse:
    incident = incident_or_404(incident_id)
    return room_action(
        request,
        incident,
        NoteForm(request.POST),
        lambda data: services.note_add(incident=incident, author=request.user, body=data["body"]),
    )


@require_POST
@permission_required("incidents.tick_checklist", raise_exception=True)
def checklist_item_toggle(request: HttpRequest, incident_id: int, item_id: int) -> HttpResponse:
    """Tick or untick one item; htmx swaps just that item."""
    item = get_object_or_404(
        ChecklistItem.objects.select_related("checklist", "done_by"),
        pk=item_id,
        checklist__incident_id=incident_id,
    )
    form = ChecklistItemForm(request.POST)
    error, status = "", 200
    if not form.is_valid():
        error, status = form_errors_text(form), BAD_REQUEST
    else:
        try:
            item = services.checklist_item_set(
                item=item, done=form.cleaned_data["done"], actor=request.user
            )
        except DomainError as refused:
            error, status = str(refused), BAD_REQUEST
    if not is_htmx(request):
        if status != 200:
            return render_room(request, item.checklist.incident, error=error, status=status)
        return HttpResponseRedirect(reverse("incident_room", args=[incident_id]))
    return render(
        request,
        "incidents/incident_room.html#checklist-item",
        {"item": item, "incident": item.checklist.incident, "can_tick": True, "error": error},
        status=status,
    )


@require_POST
@permission_required("incidents.change_release", raise_exception=True)
def release_known_good(request: HttpRequest, release_id: int) -> HttpResponse:
    """Mark or unmark a release known-good from the dashboard."""
    release = get_object_or_404(Release, pk=release_id)
    form = KnownGoodForm(request.POST)
    if not form.is_valid():
        return HttpResponse(form_errors_text(form), status=BAD_REQUEST)
    try:
        services.release_mark_known_good(
            release=release,
            actor=request.user,
            known_good=form.cleaned_data["known_good"],
            reason=form.cleaned_data["reason"],
        )
    except DomainError as error:
        return HttpResponse(str(error), status=BAD_REQUEST, content_type="text/plain")
    back = request.POST.get("next", "")
    if back and url_has_allowed_host_and_scheme(back, {request.get_host()}, request.is_secure()):
        return redirect(back)
    return redirect("dashboard")


class SignInView(auth_views.LoginView):
    """Django's login, answering 400 (not 200) when the credentials are refused."""

    def form_invalid(self, form: AuthenticationForm) -> HttpResponse:
        response = super().form_invalid(form)
        response.status_code = BAD_REQUEST
        return response


def _section_context(request: HttpRequest, incident: Incident, section: str) -> dict[str, Any]:
    """Only what one of the room's own parts renders: every watcher fetches it on each change."""
    if section == "headline":
        return {"incident": incident}
    return {
        "incident": incident,
        "checklists": selectors.incident_checklists(incident),
        "can_tick": request.user.has_perm("incidents.tick_checklist"),
    }


# The room's own parts fetched alone; later apps add theirs (incidents.room.room_part).
ROOM_SECTIONS = ("headline", "checklists")


@require_GET
@permission_required(VIEW, raise_exception=True)
def incident_section(request: HttpRequest, incident_id: int, section: str) -> HttpResponse:
    """One part of the room, re-rendered for this viewer when the live stream says it
    changed (its controls depend on who is looking, so the stream cannot carry it)."""
    if section in ROOM_SECTIONS:
        context = _section_context(request, incident_or_404(incident_id), section)
        return render(request, f"incidents/incident_room.html#{section}", context)
    registered = room.room_part(section)
    if registered is None:
        return HttpResponse("No such part of the room.", status=404)
    incident = incident_or_404(incident_id)
    context = {"incident": incident, **registered.context(request, incident)}
    return render(request, registered.template, context)
