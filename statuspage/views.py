"""The support lead's desk (behind login) and the public status page with its feeds (no
login). Views parse a form, call one service, render; refusals answer 4xx with the
service's sentence (409 for a draft someone else saved meanwhile)."""

from __future__ import annotations

import uuid
from typing import Any

from django.contrib.auth.decorators import login_not_required, permission_required
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse, QueryDict
from django.shortcuts import get_object_or_404, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from incidents.errors import DomainError, PermissionDenied
from incidents.forms import form_errors_text
from incidents.models import Incident
from statuspage import (
    branding,
    comms,
    conf,
    markup,
    selectors,
    services,
    subscriptions,
    texts,
    update_templates,
    uptime,
)
from statuspage.forms import (
    CustomerNoticeForm,
    DraftForm,
    PreviewForm,
    StartFromIncidentForm,
    StartFromTemplateForm,
    VersionForm,
)
from statuspage.models import Component, Delivery, Draft, PublicStatus, Revision, UpdateTemplate

VIEW = "incidents.view_incident"
EDIT = services.EDIT_PERMISSION
BAD_REQUEST, FORBIDDEN, CONFLICT = 400, 403, 409
# The public pages run no script at all.
PUBLIC_PAGE_POLICY = "default-src 'self'; script-src 'none'; object-src 'none'"


def _is_htmx(request: HttpRequest) -> bool:
    return bool(getattr(request, "htmx", False))


def _incident(incident_id: int) -> Incident:
    return get_object_or_404(Incident.objects.select_related("commander"), pk=incident_id)


def _components() -> list[Component]:
    """What a draft may set: components (a group shows its members' worst), in page order."""
    listed = Component.objects.filter(is_group=False).select_related("group")
    return sorted(listed, key=texts.page_order)


def _desk_context(
    request: HttpRequest,
    incident: Incident,
    *,
    form: DraftForm | None = None,
    conflict: Draft | None = None,
    customer_form: CustomerNoticeForm | None = None,
    error: str = "",
    flash: str = "",
) -> dict[str, Any]:
    draft = services.draft_get(incident)
    suggestions = selectors.desk_components(incident)
    if form is None:
        form = DraftForm(
            initial=DraftForm.initial_for(draft), components=[s.component for s in suggestions]
        )
    body = form["body"].value() or ""
    if customer_form is None:
        subject, text = comms.customer_notice_draft(incident)
        customer_form = CustomerNoticeForm(
            initial={
                "subject": subject,
                "body": text,
                "recipients": ", ".join(conf.customer_email_to()),
                "token": uuid.uuid4(),
            }
        )
    return {
        "incident": incident,
        "draft": draft,
        "form": form,
        "version": form["version"].value(),
        "preview_html": markup.render(str(body)),
        "preview_name": form["name"].value(),
        "preview_status": form["status"].value(),
        "component_rows": [
            {"field": form[f"component_{item.component.pk}"], "item": item}
            for item in suggestions
            if f"component_{item.component.pk}" in form.fields
        ],
        "conflict": conflict,
        "conflict_html": markup.render(conflict.body) if conflict else "",
        "revisions": selectors.revision_history(incident),
        "notices": selectors.incident_notices(incident),
        "customer_form": customer_form,
        "customer_notice_due": comms.customer_notice_due(incident),
        "customer_notice_minutes": int(comms.customer_notice_threshold().total_seconds() // 60),
        "outage_minutes": int(texts.outage_duration(incident).total_seconds() // 60),
        "overdue_since": comms.update_overdue_since(incident),
        "cadence_minutes": int(comms.cadence().total_seconds() // 60),
        "public_statuses": PublicStatus.choices,
        "subscriber_counts": subscriptions.subscriber_counts(),
        "update_templates": update_templates.update_templates_listed(),
        "can_edit": request.user.has_perm(EDIT),
        "error": error,
        "flash": flash,
    }


def _render_desk(
    request: HttpRequest, incident: Incident, *, status: int = 200, **kwargs: Any
) -> HttpResponse:
    template = "statuspage/desk.html"
    if _is_htmx(request):
        template += "#desk"
    return render(request, template, _desk_context(request, incident, **kwargs), status=status)


def _done(request: HttpRequest, incident: Incident, flash: str) -> HttpResponse:
    if _is_htmx(request):
        return _render_desk(request, incident, flash=flash)
    return HttpResponseRedirect(reverse("status_desk", args=[incident.pk]))


def _refused(
    request: HttpRequest, incident: Incident, error: DomainError, **kwargs: Any
) -> HttpResponse:
    """The desk again with the service's sentence: 409 beside the other person's draft for a
    conflict, 403 for a missing role, else 400."""
    if isinstance(error, services.DraftConflict):
        return _render_desk(
            request, incident, status=CONFLICT, conflict=error.draft, error=str(error), **kwargs
        )
    status = FORBIDDEN if isinstance(error, PermissionDenied) else BAD_REQUEST
    return _render_desk(request, incident, status=status, error=str(error), **kwargs)


@require_GET
@permission_required(VIEW, raise_exception=True)
def desk(request: HttpRequest, incident_id: int) -> HttpResponse:
    return _render_desk(request, _incident(incident_id))


@require_POST
@permission_required(EDIT, raise_exception=True)
def draft_submit(request: HttpRequest, incident_id: int) -> HttpResponse:
    """Save the draft, or save and publish it (`action=publish`)."""
    incident = _incident(incident_id)
    action = request.POST.get("action", "save")
    form = DraftForm(request.POST, components=_components())
    if action not in ("save", "publish"):
        return _render_desk(
            request, incident, form=form, status=BAD_REQUEST, error="Unknown action."
        )
    if not form.is_valid():
        return _render_desk(
            request, incident, form=form, status=BAD_REQUEST, error=form_errors_text(form)
        )
    try:
        if action == "publish":
            revision = services.draft_publish(
                incident=incident,
                actor=request.user,
                notify_subscribers=form.cleaned_data["notify_subscribers"],
                **form.draft_fields(),
            )
            flash = f"Revision {revision.number} is live on the public status page."
            if revision.notify_subscribers:
                flash += " " + subscriptions.revision_emailing_text(revision=revision)
        else:
            draft = services.draft_save(
                incident=incident, actor=request.user, **form.draft_fields()
            )
            flash = f"Draft saved (version {draft.version})."
    except services.DraftConflict as conflict:
        # Keep this person's text in the editor, now based on the other person's version:
        # saving again is a deliberate choice made with both texts in view.
        data: QueryDict = request.POST.copy()
        data["version"] = str(conflict.draft.version)
        return _refused(request, incident, conflict, form=DraftForm(data, components=_components()))
    except DomainError as error:
        return _refused(request, incident, error, form=form)
    return _done(request, incident, flash)


@require_POST
@permission_required(EDIT, raise_exception=True)
def preview(request: HttpRequest, incident_id: int) -> HttpResponse:
    """The draft as the public page would show it, rendered and sanitised."""
    incident = _incident(incident_id)
    form = PreviewForm(request.POST)
    if not form.is_valid():
        return HttpResponse(form_errors_text(form), status=BAD_REQUEST, content_type="text/plain")
    return render(
        request,
        "statuspage/desk.html#preview",
        {
            "incident": incident,
            "preview_html": markup.render(form.cleaned_data["body"]),
            "preview_name": form.cleaned_data["name"],
            "preview_status": form.cleaned_data["status"],
        },
    )


@require_POST
@permission_required(EDIT, raise_exception=True)
def draft_start(request: HttpRequest, incident_id: int) -> HttpResponse:
    """Replace the draft with the default text for a status, from the incident's facts."""
    incident = _incident(incident_id)
    form = StartFromIncidentForm(request.POST)
    if not form.is_valid():
        return _render_desk(request, incident, status=BAD_REQUEST, error=form_errors_text(form))
    try:
        draft = services.draft_start_from_incident(
            incident=incident,
            actor=request.user,
            version=form.cleaned_data["version"],
            status=form.cleaned_data["status"] or None,
        )
    except DomainError as error:
        return _refused(request, incident, error)
    return _done(
        request, incident, f"Draft started from the incident's facts (version {draft.version})."
    )


@require_POST
@permission_required(EDIT, raise_exception=True)
def draft_start_template(request: HttpRequest, incident_id: int) -> HttpResponse:
    """Replace the draft with an update template filled from the incident's facts."""
    incident = _incident(incident_id)
    form = StartFromTemplateForm(request.POST)
    if not form.is_valid():
        return _render_desk(request, incident, status=BAD_REQUEST, error=form_errors_text(form))
    template = UpdateTemplate.objects.filter(pk=form.cleaned_data["template"]).first()
    if template is None:
        return _render_desk(
            request,
            incident,
            status=BAD_REQUEST,
            error="Template: it was deleted meanwhile; choose another.",
        )
    try:
        draft = update_templates.update_template_use(
            actor=request.user,
            template=template,
            incident=incident,
            version=form.cleaned_data["version"],
        )
    except DomainError as error:
        return _refused(request, incident, error)
    flash = f"Draft started from the template {template.name} (version {draft.version})."
    return _done(request, incident, flash)


@require_POST
@permission_required(EDIT, raise_exception=True)
def revision_restore(request: HttpRequest, incident_id: int, revision_id: int) -> HttpResponse:
    incident = _incident(incident_id)
    revision = get_object_or_404(
        Revision.objects.select_related("public_incident__incident"),
        pk=revision_id,
        public_incident__incident=incident,
    )
    form = VersionForm(request.POST)
    if not form.is_valid():
        return _render_desk(request, incident, status=BAD_REQUEST, error=form_errors_text(form))
    try:
        services.revision_restore(
            revision=revision, actor=request.user, version=form.cleaned_data["version"]
        )
    except DomainError as error:
        return _refused(request, incident, error)
    return _done(
        request,
        incident,
        f"Revision {revision.number} is back in the draft; publish it to make it live.",
    )


@require_POST
@permission_required(EDIT, raise_exception=True)
def customer_notice(request: HttpRequest, incident_id: int) -> HttpResponse:
    incident = _incident(incident_id)
    form = CustomerNoticeForm(request.POST)
    if not form.is_valid():
        return _render_desk(
            request, incident, customer_form=form, status=BAD_REQUEST, error=form_errors_text(form)
        )
    data = form.cleaned_data
    try:
        notice = comms.customer_notice_send(
            incident=incident,
            actor=request.user,
            subject=data["subject"],
            body=data["body"],
            recipients=data["recipients"],
            confirmed=data["confirm"],
            token=data["token"].hex,
        )
    except DomainError as error:
        return _refused(request, incident, error, customer_form=form)
    return _done(
        request, incident, f"Customer notice queued for {len(notice.recipients)} recipient(s)."
    )


@require_POST
@permission_required(EDIT, raise_exception=True)
def delivery_retry(request: HttpRequest, incident_id: int, delivery_id: int) -> HttpResponse:
    incident = _incident(incident_id)
    delivery = get_object_or_404(Delivery, pk=delivery_id, notice__incident=incident)
    try:
        comms.delivery_retry(delivery=delivery, actor=request.user)
    except DomainError as error:
        return _refused(request, incident, error)
    return _done(request, incident, "Sending again.")


# -- public, no login ---------------------------------------------------------------------------


def public_base_url(request: HttpRequest) -> str:
    """The public page's absolute address: STATUS_PAGE_URL, else this request's host with
    the page's path (/status/ on the console's host, / on the status host)."""
    configured = conf.page_url()
    return configured or request.build_absolute_uri(reverse("status_page"))


def public_headers(response: HttpResponse) -> HttpResponse:
    """The headers of every public response: short public caching and open CORS."""
    response["Cache-Control"] = f"public, max-age={selectors.PUBLIC_CACHE_SECONDS}"
    response["Access-Control-Allow-Origin"] = "*"
    response["X-Content-Type-Options"] = "nosniff"
    return response


def public_json_response(body: dict[str, Any]) -> HttpResponse:
    """A public JSON document, its text as it is (not \\u-escaped), with `public_headers`."""
    return public_headers(JsonResponse(body, json_dumps_params={"ensure_ascii": False}))


@login_not_required
@require_GET
def public_page(request: HttpRequest) -> HttpResponse:
    def page() -> str:
        context = {
            "state": selectors.public_state(),
            "uptime": uptime.page_uptime(),
            "page_name": conf.page_name(),
            "now": timezone.now(),
        }
        return render_to_string("statuspage/public.html", context, request=request)

    response = HttpResponse(selectors.cached_public(f"page {request.get_host()}", page))
    # PUBLIC_PAGE_POLICY, with images also from the logo's origin (statuspage.branding).
    response["Content-Security-Policy"] = branding.public_page_policy()
    return public_headers(response)


@login_not_required
@require_GET
def summary_json(request: HttpRequest) -> HttpResponse:
    base = public_base_url(request)
    summary = selectors.cached_public(
        f"summary {base}", lambda: selectors.summary_json(selectors.public_state(), base)
    )
    return public_json_response(summary)


@login_not_required
@require_GET
def components_json(request: HttpRequest) -> HttpResponse:
    base = public_base_url(request)

    def components() -> dict[str, Any]:
        state = selectors.public_state()
        return {
            "page": selectors.page_json(state, base),
            "components": selectors.components_json(state),
        }

    body = selectors.cached_public(f"components {base}", components)
    return public_json_response(body)


@login_not_required
@require_GET
def status_json(request: HttpRequest) -> HttpResponse:
    base = public_base_url(request)

    def status() -> dict[str, Any]:
        state = selectors.public_state()
        return {"page": selectors.page_json(state, base), "status": selectors.status_json(state)}

    return public_headers(JsonResponse(selectors.cached_public(f"status {base}", status)))
