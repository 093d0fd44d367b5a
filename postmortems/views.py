"""Post-mortem pages and exports. Views parse input with a form, call one service (or the
report selector), render. Reading needs the Viewer permission; the services refuse edits
from anyone but incident commanders and responders, and those refusals answer 403."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from asgiref.sync import sync_to_async
from django.contrib.auth.decorators import permission_required
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from incidents.errors import DomainError, PermissionDenied
from incidents.forms import form_errors_text
from incidents.models import Environment, Incident, TimelineEntry
from incidents.pagination import PageError, page_of
from postmortems import charts, selectors, services
from postmortems.exports import EXPORT_FORMATS
from postmortems.forms import (
    ActionItemDoneForm,
    ActionItemForm,
    PostmortemForm,
    StarForm,
    StateForm,
    TimelineChoiceForm,
)
from postmortems.models import ActionItem, Postmortem, PostmortemState

VIEW = "incidents.view_incident"
BAD_REQUEST, FORBIDDEN, CONFLICT = 400, 403, 409

# The page lists at most this many timeline rows; the exports always carry every entry.
PAGE_TIMELINE_LIMIT = 1000


def _is_htmx(request: HttpRequest) -> bool:
    return bool(getattr(request, "htmx", False))


def _incident(incident_id: int) -> Incident:
    return get_object_or_404(Incident, pk=incident_id)


def _postmortem(incident_id: int) -> Postmortem:
    return get_object_or_404(Postmortem.objects.select_related("incident"), incident_id=incident_id)


def _page_url(incident_id: int) -> str:
    return reverse("postmortem", args=[incident_id])


def _timeline_choice(request: HttpRequest) -> str | None:
    form = TimelineChoiceForm(request.GET)
    if not form.is_valid():
        raise ValueError(form_errors_text(form))
    return form.cleaned_data["timeline"] or None


def _render_page(
    request: HttpRequest,
    incident_id: int,
    *,
    error: str = "",
    status: int = 200,
    form: PostmortemForm | None = None,
    action_form: ActionItemForm | None = None,
    timeline: str | None = None,
) -> HttpResponse:
    _incident(incident_id)
    report = selectors.postmortem_report(incident_id, timeline=timeline)
    postmortem = report.postmortem
    can_edit = services.can_edit(request.user)
    editable = can_edit and postmortem is not None and postmortem.state != PostmortemState.PUBLISHED
    next_states = []
    if postmortem is not None and can_edit:
        for state in PostmortemState:
            if postmortem.can_become(state):
                needs_command = state == PostmortemState.PUBLISHED or (
                    postmortem.state == PostmortemState.PUBLISHED
                )
                if not needs_command or services.can_publish(request.user):
                    next_states.append(state)
    context: dict[str, Any] = {
        "incident": report.incident,
        "report": report,
        "postmortem": postmortem,
        "timeline_rows": report.timeline[:PAGE_TIMELINE_LIMIT],
        "timeline_cut": max(0, len(report.timeline) - PAGE_TIMELINE_LIMIT),
        "can_edit": can_edit,
        "editable": editable,
        "can_star": editable,
        "next_states": next_states,
        "form": form or (PostmortemForm(instance=postmortem) if editable else None),
        "action_form": action_form or ActionItemForm(),
        "error": error,
        "today": timezone.localdate(),
    }
    template = "postmortems/postmortem.html"
    if _is_htmx(request):
        template += "#page"
    return render(request, template, context, status=status)


def _after_change(request: HttpRequest, incident_id: int) -> HttpResponse:
    if _is_htmx(request):
        return _render_page(request, incident_id)
    return HttpResponseRedirect(_page_url(incident_id))


def _refusal_status(error: DomainError) -> int:
    if isinstance(error, PermissionDenied):
        return FORBIDDEN
    if isinstance(error, services.EditConflict):
        return CONFLICT
    return BAD_REQUEST


@require_GET
@permission_required(VIEW, raise_exception=True)
def postmortem_page(request: HttpRequest, incident_id: int) -> HttpResponse:
    try:
        timeline = _timeline_choice(request)
    except ValueError as error:
        return HttpResponse(f"Timeline: {error}", status=BAD_REQUEST, content_type="text/plain")
    return _render_page(request, incident_id, timeline=timeline)


@require_POST
@permission_required(VIEW, raise_exception=True)
def postmortem_start(request: HttpRequest, incident_id: int) -> HttpResponse:
    incident = _incident(incident_id)
    try:
        services.postmortem_start(incident=incident, actor=request.user)
    except DomainError as error:
        return _render_page(request, incident_id, error=str(error), status=_refusal_status(error))
    return _after_change(request, incident_id)


@require_POST
@permission_required(VIEW, raise_exception=True)
def postmortem_edit(request: HttpRequest, incident_id: int) -> HttpResponse:
    postmortem = _postmortem(incident_id)
    if not services.can_edit(request.user):
        return _render_page(
            request,
            incident_id,
            error="Only incident commanders and responders can edit post-mortems.",
            status=FORBIDDEN,
        )
    form = PostmortemForm(request.POST, instance=postmortem)
    if not form.is_valid():
        return _render_page(
            request,
            incident_id,
            error=form_errors_text(form),  # type: ignore[arg-type]
            status=BAD_REQUEST,
            form=form,
        )
    try:
        services.postmortem_edit(
            postmortem=postmortem,
            actor=request.user,
            values=form.narrative(),
            base_revision=form.cleaned_data["base_revision"],
        )
    except DomainError as error:
        return _render_page(
            request, incident_id, error=str(error), status=_refusal_status(error), form=form
        )
    return _after_change(request, incident_id)


@require_POST
@permission_required(VIEW, raise_exception=True)
def postmortem_state(request: HttpRequest, incident_id: int) -> HttpResponse:
    postmortem = _postmortem(incident_id)
    form = StateForm(request.POST, current_state=postmortem.state)
    if not form.is_valid():
        status = FORBIDDEN if not services.can_edit(request.user) else BAD_REQUEST
        return _render_page(request, incident_id, error=form_errors_text(form), status=status)
    try:
        services.postmortem_change_state(
            postmortem=postmortem, actor=request.user, to_state=form.cleaned_data["to_state"]
        )
    except DomainError as error:
        return _render_page(request, incident_id, error=str(error), status=_refusal_status(error))
    return _after_change(request, incident_id)


@require_POST
@permission_required(VIEW, raise_exception=True)
def timeline_star(request: HttpRequest, incident_id: int, entry_id: int) -> HttpResponse:
    """Star or unstar one timeline entry; htmx swaps just its row."""
    postmortem = _postmortem(incident_id)
    entry = get_object_or_404(
        TimelineEntry.objects.select_related("actor"), pk=entry_id, incident_id=incident_id
    )
    form = StarForm(request.POST)
    error, status = "", 200
    starred = postmortem.stars.filter(entry=entry).exists()
    if not form.is_valid():
        error, status = form_errors_text(form), BAD_REQUEST
    else:
        try:
            starred = services.postmortem_star(
                postmortem=postmortem,
                entry=entry,
                actor=request.user,
                starred=form.cleaned_data["starred"],
            )
        except DomainError as refused:
            error, status = str(refused), _refusal_status(refused)
    if not _is_htmx(request):
        if status != 200:
            return _render_page(request, incident_id, error=error, status=status)
        return HttpResponseRedirect(_page_url(incident_id) + f"#entry-{entry.pk}")
    row = selectors.TimelineRow(
        id=entry.pk,
        at=entry.created_at,
        kind=entry.kind,
        who=entry.who,
        body=entry.body,
        starred=starred,
    )
    return render(
        request,
        "postmortems/postmortem.html#timeline-row",
        {
            "row": row,
            "incident": postmortem.incident,
            "can_star": services.can_edit(request.user)
            and postmortem.state != PostmortemState.PUBLISHED,
            "row_error": error,
        },
        status=status,
    )


@require_POST
@permission_required(VIEW, raise_exception=True)
def action_item_create(request: HttpRequest, incident_id: int) -> HttpResponse:
    postmortem = _postmortem(incident_id)
    form = ActionItemForm(request.POST)
    if not services.can_edit(request.user):
        return _render_page(
            request,
            incident_id,
            error="Only incident commanders and responders can add action items.",
            status=FORBIDDEN,
        )
    if not form.is_valid():
        return _render_page(
            request, incident_id, error=form_errors_text(form), status=BAD_REQUEST, action_form=form
        )
    data = form.cleaned_data
    try:
        services.action_item_add(
            postmortem=postmortem,
            actor=request.user,
            title=data["title"],
            owner=data["owner"],
            due_on=data["due_on"],
            ticket_url=data["ticket_url"],
        )
    except DomainError as error:
        return _render_page(
            request, incident_id, error=str(error), status=_refusal_status(error), action_form=form
        )
    return _after_change(request, incident_id)


@require_POST
@permission_required(VIEW, raise_exception=True)
def action_item_done(request: HttpRequest, incident_id: int, item_id: int) -> HttpResponse:
    item = get_object_or_404(ActionItem, pk=item_id, postmortem__incident_id=incident_id)
    form = ActionItemDoneForm(request.POST)
    if not form.is_valid():
        return _render_page(request, incident_id, error=form_errors_text(form), status=BAD_REQUEST)
    try:
        services.action_item_set_done(item=item, actor=request.user, done=form.cleaned_data["done"])
    except DomainError as error:
        return _render_page(request, incident_id, error=str(error), status=_refusal_status(error))
    return _after_change(request, incident_id)


@require_GET
@permission_required(VIEW, raise_exception=True)
def postmortem_history(request: HttpRequest, incident_id: int) -> HttpResponse:
    postmortem = _postmortem(incident_id)
    revisions = postmortem.revisions.select_related("author")
    return render(
        request,
        "postmortems/history.html",
        {"incident": postmortem.incident, "postmortem": postmortem, "revisions": revisions},
    )


def _gather(incident_id: int, timeline: str | None) -> selectors.PostmortemReport:
    _incident(incident_id)
    return selectors.postmortem_report(incident_id, timeline=timeline)


@require_GET
@permission_required(VIEW, raise_exception=True)
async def postmortem_export(request: HttpRequest, incident_id: int, fmt: str) -> HttpResponse:
    """/incidents/<id>/postmortem.md, .pdf or .json; ?timeline=starred for starred entries
    only. Works before a post-mortem is started: the facts come from the record.

    The report is gathered in Django's thread for database work, then rendered in a worker
    thread of its own: a long PDF takes seconds, and under ASGI every other synchronous
    view waits for that one thread. Rendering reads no database (tested).
    """
    export = EXPORT_FORMATS.get(fmt)
    if export is None:
        raise Http404("No such export format.")
    try:
        timeline = _timeline_choice(request)
    except ValueError as error:
        return HttpResponse(f"Timeline: {error}", status=BAD_REQUEST, content_type="text/plain")
    report = await sync_to_async(_gather)(incident_id, timeline)
    body = await sync_to_async(export.render, thread_sensitive=False)(report)
    response = HttpResponse(body, content_type=export.content_type)
    name = f"{'drill' if report.kind == 'drill' else 'postmortem'}-incident-{incident_id}.{fmt}"
    disposition = "inline" if fmt in ("pdf", "json") else "attachment"
    response["Content-Disposition"] = f'{disposition}; filename="{name}"'
    return response


RANGES = {"30": 30, "90": 90, "365": 365, "all": None}


@require_GET
@permission_required(VIEW, raise_exception=True)
def recovery_metrics(request: HttpRequest) -> HttpResponse:
    """Recovery figures across incidents, with charts."""
    days_key = request.GET.get("days", "90")
    environment = request.GET.get("environment", "")
    if days_key not in RANGES or environment not in ("", *Environment.values):
        return HttpResponse(
            "Choose days from 30, 90, 365 or all, and a known environment.",
            status=BAD_REQUEST,
            content_type="text/plain",
        )
    days = RANGES[days_key]
    since = timezone.now() - timedelta(days=days) if days else None
    overview = selectors.recovery_overview(since=since, environment=environment)
    return render(
        request,
        "postmortems/metrics.html",
        {
            "overview": overview,
            "days": days_key,
            "environment": environment,
            "environments": Environment.choices,
            "ranges": list(RANGES),
            "charts": charts.overview_charts(overview),
        },
    )


@require_GET
@permission_required(VIEW, raise_exception=True)
def postmortem_list(request: HttpRequest) -> HttpResponse:
    """Post-mortems, and every action item still open across them, each a page at a time
    (`page` and `items`)."""
    try:
        postmortems = page_of(request, selectors.postmortems_recent())
        open_items = page_of(request, selectors.action_items_open(), parameter="items")
    except PageError as error:
        return HttpResponse(str(error), status=BAD_REQUEST, content_type="text/plain")
    return render(
        request,
        "postmortems/postmortem_list.html",
        {"postmortems": postmortems, "open_items": open_items, "today": timezone.localdate()},
    )
