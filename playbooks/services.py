"""Saving playbooks and drafting plans from them.

`playbook_save` checks a YAML document and saves it as the playbook's next version (a new
playbook at version 1); `playbook_draft` fills a version's parameters in and drafts its
groups as a rollback plan through rollbacks.services.run_create, which checks each step's
options against its backend. A draft that cannot be made drafts nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from django.db import transaction

import rollbacks.services
from incidents.errors import DomainError
from incidents.models import Incident, Release, Service
from incidents.roles import COMMAND_PERMISSION, User, require_role
from playbooks.documents import (
    Parameter,
    PlaybookError,
    document_parse,
    parameters_of,
    reference_of,
)
from playbooks.models import Playbook, PlaybookRun, PlaybookVersion
from rollbacks.models import Run, Scenario
from rollbacks.services import StepSpec

MAX_PARAMETER_CHARS = 2000
# A step's service named in the playbook itself rather than by a parameter.
NAMED_SERVICE = Parameter("service", "Service", "service", (), True, None, "")


class PlaybookParameterError(DomainError):
    """A parameter that cannot be accepted; `parameter` names it."""

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(f"{parameter}: {message}")
        self.parameter = parameter


@transaction.atomic
def playbook_save(
    *, source: str, actor: User, comment: str = "", built_in: bool = False
) -> PlaybookVersion:
    """Save `source` as the next version of the playbook it names (creating the playbook).
    DomainError (from PlaybookError, saying where) for a document that cannot be accepted."""
    require_role(actor, COMMAND_PERMISSION, "edit playbooks")
    try:
        document = document_parse(source)
    except PlaybookError as error:
        raise DomainError(str(error)) from error
    playbook, _ = Playbook.objects.select_for_update().get_or_create(
        name=document["name"], defaults={"built_in": built_in}
    )
    latest = playbook.versions.order_by("-number").first()
    if latest is not None and latest.document == document:
        raise DomainError(f"{playbook.name}: nothing changed since version {latest.number}.")
    return PlaybookVersion.objects.create(
        playbook=playbook,
        number=(latest.number + 1) if latest else 1,
        title=document["title"],
        document=document,
        source=source,
        comment=comment.strip()[:500],
        created_by=cast(Any, actor) if actor.is_authenticated else None,
    )


def playbook_archive(*, playbook: Playbook, actor: User, archived: bool = True) -> Playbook:
    require_role(actor, COMMAND_PERMISSION, "archive playbooks")
    playbook.archived = archived
    playbook.save(update_fields=["archived"])
    return playbook


def _service_named(incident: Incident, parameter: Parameter, name: str) -> Service:
    service = Service.objects.filter(environment=incident.environment, name=name).first()
    if service is None:
        raise PlaybookParameterError(
            parameter.name, f"no {incident.environment} service is named {name[:80]!r}"
        )
    if parameter.backends and service.backend not in parameter.backends:
        raise PlaybookParameterError(
            parameter.name,
            f"{name} is a {service.backend} service; this parameter takes "
            f"{' or '.join(parameter.backends)}",
        )
    return service


def parameter_values(
    incident: Incident, parameters: list[Parameter], given: Mapping[str, Any]
) -> dict[str, Any]:
    """Each parameter's value (services as Service rows), or None when not given and not
    required; PlaybookParameterError naming the first that cannot be accepted."""
    known = {parameter.name for parameter in parameters}
    for name in given:
        if name not in known:
            raise PlaybookParameterError(str(name)[:80], "this playbook has no such parameter")
    values: dict[str, Any] = {}
    for parameter in parameters:
        raw = given.get(parameter.name, parameter.default)
        if isinstance(raw, list):
            raw = ",".join(str(item) for item in raw)
        text = "" if raw is None else str(raw).strip()
        if len(text) > MAX_PARAMETER_CHARS:
            raise PlaybookParameterError(
                parameter.name, f"at most {MAX_PARAMETER_CHARS} characters"
            )
        if not text:
            if parameter.required:
                raise PlaybookParameterError(parameter.name, "is required")
            values[parameter.name] = None
            continue
        if parameter.type == "service":
            values[parameter.name] = _service_named(incident, parameter, text)
        elif parameter.type == "services":
            names = [part.strip() for part in text.split(",") if part.strip()]
            values[parameter.name] = [_service_named(incident, parameter, n) for n in names]
        elif parameter.type == "integer":
            if not text.lstrip("-").isdigit():
                raise PlaybookParameterError(parameter.name, "must be a whole number")
            values[parameter.name] = int(text)
        else:
            values[parameter.name] = text
    return values


def _release(service: Service, which: str | None) -> tuple[Release | None, bool]:
    if which == "previous":
        return None, True
    if which == "known_good":
        release = service.releases.filter(known_good=True).order_by("-shipped_at").first()
        if release is None:
            raise DomainError(f"{service.name} has no known-good release to roll back to.")
        return release, False
    return None, False


def playbook_steps(
    incident: Incident, version: PlaybookVersion, given: Mapping[str, Any]
) -> tuple[list[StepSpec], dict[str, Any]]:
    """The plan's steps with the parameters filled in, and the parameters as recorded."""
    document = version.document
    values = parameter_values(incident, parameters_of(document), given)
    specs: list[StepSpec] = []
    for number, group in enumerate(document["groups"], start=1):
        for step in group["steps"]:
            if step.get("when") and values.get(step["when"]) in (None, [], ""):
                continue
            reference = reference_of(step["service"])
            if reference is None:  # a service named outright
                services = [_service_named(incident, NAMED_SERVICE, step["service"])]
            else:
                chosen = values[reference]
                services = chosen if isinstance(chosen, list) else [chosen] if chosen else []
            options = {}
            for name, value in (step.get("options") or {}).items():
                ref = reference_of(value)
                filled = values.get(ref) if ref else value
                if filled is None:
                    continue
                options[name] = filled.name if isinstance(filled, Service) else filled
            for service in services:
                release, previous = _release(service, step.get("release"))
                specs.append(
                    StepSpec(
                        service=service,
                        release=release,
                        previous=previous,
                        group=number,
                        group_label=group.get("label", ""),
                        params=options,
                        timeout_seconds=int(
                            step.get("timeout_seconds", rollbacks.services.DEFAULT_STEP_TIMEOUT)
                        ),
                    )
                )
    recorded = {
        name: (
            [service.name for service in value]
            if isinstance(value, list)
            else value.name
            if isinstance(value, Service)
            else value
        )
        for name, value in values.items()
    }
    return specs, recorded


def playbook_draft(
    *,
    incident: Incident,
    version: PlaybookVersion,
    parameters: Mapping[str, Any],
    actor: User,
    reason: str = "",
    scenario: str = Scenario.ANY,
    dry_run: bool = False,
) -> Run:
    """Draft the playbook version as a plan of the incident, its parameters filled in."""
    require_role(actor, COMMAND_PERMISSION, "draft rollback plans")
    if version.playbook.archived:
        raise DomainError(f"Playbook {version.playbook.name} is archived.")
    specs, recorded = playbook_steps(incident, version, parameters)
    if not specs:
        raise DomainError("With these parameters the playbook has no steps.")
    why = reason.strip() or f"Playbook {version.playbook.name} v{version.number}"
    with transaction.atomic():
        run = rollbacks.services.run_create(
            incident=incident,
            steps=specs,
            actor=actor,
            reason=why,
            scenario=scenario,
            dry_run=dry_run,
        )
        PlaybookRun.objects.create(run=run, version=version, parameters=recorded)
    return run


def playbook_draft_by_name(
    *,
    incident: Incident,
    name: str,
    parameters: Mapping[str, Any],
    actor: User,
    reason: str = "",
    dry_run: bool = False,
) -> Run:
    """playbook_draft of the current version of the playbook `name` (the terminal's way)."""
    playbook = Playbook.objects.filter(name=name).first()
    version = playbook.current() if playbook else None
    if playbook is None or version is None:
        known = ", ".join(Playbook.objects.filter(archived=False).values_list("name", flat=True))
        raise DomainError(f"No playbook is named {name[:80]!r} (known: {known or 'none'}).")
    return playbook_draft(
        incident=incident,
        version=version,
        parameters=parameters,
        actor=actor,
        reason=reason,
        dry_run=dry_run,
    )
