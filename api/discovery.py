"""Services from what a platform runs, over the API: list a source's candidates beside the
console's services (new, the same, or changed) and import those named, through the services
and the form of the console's Import services page (rollbacks.discovery_views). Both are for
Incident Commanders and staff, and need the services:write scope: a listing asks the
platform with the console's own credentials, and is the first half of an import."""

from __future__ import annotations

import re
from typing import Any

from django.contrib.auth.models import User
from django.http import HttpRequest
from django.urls import reverse
from ninja import Query, Router, Schema

from api.auth import person_of, scope
from api.models import SERVICES_WRITE
from api.schemas import ERRORS, DiscoveryImportIn, DiscoveryOut, ImportedOut
from api.validation import InputError, validated
from executors.discovery import MAX_CANDIDATES, NAME_MAX, PARAMETERS
from incidents.errors import PermissionDenied
from incidents.models import Environment
from rollbacks.service_forms import SourceForm
from rollbacks.services.discovery import (
    SAME,
    DiscoveryRow,
    discovery_import,
    discovery_scan,
    may_discover,
)

router = Router(tags=["services"])
# What a listing names services (executors.discovery.slug, with its -2, -a suffixes).
LISTED_NAME = re.compile(rf"[a-z0-9-]{{1,{NAME_MAX}}}")


class DiscoveryQuery(Schema):
    """What narrows a listing: Kubernetes needs `namespace` (and takes `selector`), ECS
    `cluster`; Route 53 takes `zone`."""

    namespace: str = ""
    selector: str = ""
    cluster: str = ""
    zone: str = ""
    environment: str = Environment.PRODUCTION


class Listing:
    """A source and what narrows it, checked as the page's form checks them: each value
    that no platform would take is refused by its field before any platform is asked."""

    def __init__(self, request: HttpRequest, source: str, asked: dict[str, str]) -> None:
        self.actor: User = person_of(request)
        if not may_discover(self.actor):
            raise PermissionDenied("Only Incident Commanders and staff import services.")
        cleaned = validated(SourceForm, {"source": source, **asked})
        self.source: str = cleaned["source"]
        self.environment: str = cleaned["environment"]
        required, optional = PARAMETERS[self.source]
        missing = [name for name in required if not cleaned[name]]
        if missing:
            raise InputError({name: [f"Required to list {self.source}."] for name in missing})
        self.params: dict[str, str] = {name: cleaned[name] for name in (*required, *optional)}

    def rows(self) -> list[DiscoveryRow]:
        return discovery_scan(
            source=self.source, params=self.params, environment=self.environment, actor=self.actor
        )


def candidate_out(row: DiscoveryRow) -> dict[str, Any]:
    candidate = row.candidate
    return {
        "name": candidate.name,
        "state": row.state,
        "importable": row.state != SAME and not candidate.problem,
        "backend": candidate.backend,
        "target_config": candidate.target_config,
        "description": candidate.description,
        "live": candidate.live,
        "notes": candidate.notes,
        "problem": candidate.problem,
        "service": row.service.name if row.service is not None else None,
        "was": dict(row.was) if row.was is not None else None,
    }


def names_checked(names: list[str]) -> list[str]:
    """The names asked for, each once; refused by `names` if none, too many, or one that
    no listing gives (so the platform is not asked for it)."""
    wanted = list(dict.fromkeys(names))
    if not wanted:
        raise InputError({"names": ["Name at least one service of the listing to import."]})
    if len(wanted) > MAX_CANDIDATES:
        raise InputError({"names": [f"At most {MAX_CANDIDATES} names at once."]})
    odd = [name for name in wanted if not LISTED_NAME.fullmatch(name)]
    if odd:
        shown = ", ".join(repr(name[:60]) for name in odd[:5])
        refusal = f"Not a name a listing gives (a-z, 0-9, '-'; at most {NAME_MAX}): {shown}."
        raise InputError({"names": [refusal]})
    return wanted


@router.get(
    "/discovery/{source}", response={200: DiscoveryOut, **ERRORS}, auth=scope(SERVICES_WRITE)
)
def discovery_list(
    request: HttpRequest, source: str, query: Query[DiscoveryQuery]
) -> dict[str, Any]:
    """What `source` (kubernetes, ecs, rds, route53, static) runs, each beside the console's
    services of `environment`: new, the same, or changed (and what it was). Kubernetes needs
    `namespace` (and takes `selector`), ECS `cluster`; Route 53 takes `zone`."""
    listing = Listing(request, source, query.dict())
    return {
        "source": listing.source,
        "environment": listing.environment,
        "candidates": [candidate_out(row) for row in listing.rows()],
    }


@router.post(
    "/discovery/{source}/import",
    response={200: ImportedOut, **ERRORS},
    auth=scope(SERVICES_WRITE),
)
def discovery_import_named(
    request: HttpRequest,
    source: str,
    payload: DiscoveryImportIn,
    query: Query[DiscoveryQuery],
) -> dict[str, Any]:
    """Import the candidates named, from the listing the same query gives: new ones are
    created, changed ones updated where the platform says (what was set by hand stays).
    All or nothing; the platform is listed again, so what is imported is what it says now."""
    listing = Listing(request, source, query.dict())
    wanted = names_checked(payload.names)
    # Listed here first so a name it does not give, or cannot import, is refused by field.
    rows = {row.candidate.name: row for row in listing.rows()}
    absent = [name for name in wanted if name not in rows]
    if absent:
        raise InputError({"names": [f"Not in the listing: {', '.join(absent[:10])}."]})
    refused = [
        f"{name} ({rows[name].candidate.problem})"
        for name in wanted
        if rows[name].candidate.problem
    ]
    if refused:
        raise InputError({"names": [f"Cannot import as listed: {'; '.join(refused)}"[:600]]})
    imported = discovery_import(
        source=listing.source,
        params=listing.params,
        environment=listing.environment,
        names=wanted,
        actor=listing.actor,
    )
    return {
        "imported": [
            {
                "id": service.pk,
                "url": request.build_absolute_uri(reverse("service_releases", args=[service.pk])),
                "name": service.name,
                "environment": service.environment,
                "backend": service.backend,
            }
            for service in imported
        ]
    }
