"""The playbook pages: the list, one playbook (rendered, with its versions), editing and
importing YAML (each save is a new version), export, and drafting one in the incident room.

Editing and drafting need the Incident Commander role; reading needs the viewer's.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.decorators import permission_required
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from incidents.errors import DomainError, PermissionDenied
from incidents.roles import COMMAND_PERMISSION as COMMAND
from incidents.roles import VIEW_PERMISSION as VIEW
from incidents.views import BAD_REQUEST, NUMBER, incident_or_404, room_action
from playbooks import services
from playbooks.documents import document_parse, parameters_of
from playbooks.forms import PlaybookDraftForm, PlaybookImportForm, PlaybookSourceForm
from playbooks.models import Playbook, PlaybookVersion


def _version(playbook: Playbook, raw: str | None) -> PlaybookVersion:
    if raw is None:
        version = playbook.current()
    elif NUMBER.fullmatch(raw):
        version = playbook.versions.filter(number=int(raw)).first()
    else:
        version = None
    if version is None:
        raise Http404("No such version")
    return version


@require_GET
@permission_required(VIEW, raise_exception=True)
def playbook_list(request: HttpRequest) -> HttpResponse:
    playbooks = Playbook.objects.prefetch_related("versions").order_by("archived", "name")
    rows = [(playbook, playbook.current()) for playbook in playbooks]
    return render(
        request,
        "playbooks/list.html",
        {"rows": rows, "can_command": request.user.has_perm(COMMAND)},
    )


@require_GET
@permission_required(VIEW, raise_exception=True)
def playbook_detail(request: HttpRequest, name: str) -> HttpResponse:
    playbook = get_object_or_404(Playbook, name=name)
    version = _version(playbook, request.GET.get("version"))
    return render(
        request,
        "playbooks/detail.html",
        {
            "playbook": playbook,
            "version": version,
            "parameters": parameters_of(version.document),
            "groups": version.document["groups"],
            "versions": playbook.versions.select_related("created_by"),
            "can_command": request.user.has_perm(COMMAND),
        },
    )


@require_GET
@permission_required(VIEW, raise_exception=True)
def playbook_export(request: HttpRequest, name: str) -> HttpResponse:
    playbook = get_object_or_404(Playbook, name=name)
    version = _version(playbook, request.GET.get("version"))
    response = HttpResponse(version.source, content_type="application/yaml; charset=utf-8")
    filename = f"{playbook.name}-v{version.number}.yaml"
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


def _saved(request: HttpRequest, form: Any, template: str, context: dict[str, Any]) -> HttpResponse:
    """Save the form's YAML as a new version; the page again with the error (400) if not."""
    error = ""
    if form.is_valid():
        try:
            version = services.playbook_save(
                source=form.cleaned_data["source"],
                actor=request.user,
                comment=form.cleaned_data["comment"],
            )
        except PermissionDenied as denied:
            return HttpResponse(str(denied), status=403)
        except DomainError as refused:
            error = str(refused)
        else:
            return HttpResponseRedirect(
                reverse("playbook_detail", args=[version.playbook.name])
                + f"?version={version.number}"
            )
    else:
        error = "; ".join(
            f"{field}: {' '.join(messages)}" if field != "__all__" else " ".join(messages)
            for field, messages in form.errors.items()
        )
    return render(request, template, {**context, "form": form, "error": error}, status=BAD_REQUEST)


@require_http_methods(["GET", "POST"])
@permission_required(COMMAND, raise_exception=True)
def playbook_edit(request: HttpRequest, name: str) -> HttpResponse:
    playbook = get_object_or_404(Playbook, name=name)
    current = playbook.current()
    context = {"playbook": playbook, "version": current}
    if request.method == "GET":
        form = PlaybookSourceForm(initial={"source": current.source if current else ""})
        return render(request, "playbooks/edit.html", {**context, "form": form})
    form = PlaybookSourceForm(request.POST)
    if form.is_valid():
        try:
            named = document_parse(form.cleaned_data["source"]).get("name")
        except ValueError:
            named = playbook.name  # the save reports what is wrong with it
        if named != playbook.name:
            form.add_error(
                "source",
                f"name: this is playbook {playbook.name}; import the YAML to make {named!s:.80}",
            )
    return _saved(request, form, "playbooks/edit.html", context)


@require_http_methods(["GET", "POST"])
@permission_required(COMMAND, raise_exception=True)
def playbook_import(request: HttpRequest) -> HttpResponse:
    if request.method == "GET":
        return render(request, "playbooks/import.html", {"form": PlaybookImportForm()})
    form = PlaybookImportForm(request.POST, request.FILES)
    return _saved(request, form, "playbooks/import.html", {})


@require_POST
@permission_required(COMMAND, raise_exception=True)
def playbook_archive(request: HttpRequest, name: str) -> HttpResponse:
    playbook = get_object_or_404(Playbook, name=name)
    services.playbook_archive(
        playbook=playbook, actor=request.user, archived=request.POST.get("archived") != "0"
    )
    return HttpResponseRedirect(reverse("playbook_detail", args=[playbook.name]))


@require_GET
@permission_required(COMMAND, raise_exception=True)
def incident_playbook_form(request: HttpRequest, incident_id: int) -> HttpResponse:
    """The parameters of the playbook chosen in the room (`?playbook=name`)."""
    incident = incident_or_404(incident_id)
    name = request.GET.get("playbook", "")
    playbook = Playbook.objects.filter(name=name, archived=False).first()
    if playbook is None or playbook.current() is None:
        return render(request, "playbooks/_room_card.html#parameters", {"incident": incident})
    version = playbook.current()
    assert version is not None
    form = PlaybookDraftForm(incident=incident, version=version)
    context = {"incident": incident, "version": version, "draft_form": form}
    return render(request, "playbooks/_room_card.html#parameters", context)


@require_POST
@permission_required(COMMAND, raise_exception=True)
def incident_playbook_draft(request: HttpRequest, incident_id: int, name: str) -> HttpResponse:
    """Draft the playbook's version (`version`, else the current one) as a plan."""
    incident = incident_or_404(incident_id)
    playbook = get_object_or_404(Playbook, name=name)
    version = _version(playbook, request.POST.get("version"))
    form = PlaybookDraftForm(request.POST, incident=incident, version=version)

    def draft(data: dict[str, Any]) -> object:
        return services.playbook_draft(
            incident=incident,
            version=version,
            parameters=form.parameter_values(),
            actor=request.user,
            reason=data["reason"],
            scenario=data["scenario"],
        )

    return room_action(request, incident, form, draft)
