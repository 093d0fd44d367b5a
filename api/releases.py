"""Releases over the API: a pipeline registers each deploy (its backup saved on the way),
and marks releases known-good or not; the same services as the dashboard."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.shortcuts import get_object_or_404
from ninja import Router, Status

from api.auth import scope
from api.models import READ, RELEASES_WRITE
from api.schemas import ERRORS, KnownGoodIn, ReleaseIn, ReleaseOut, ReleaseRegistered
from api.validation import validated
from incidents import services as incident_services
from incidents.forms import KnownGoodForm
from incidents.models import Environment, Release, Service
from incidents.roles import require_role
from rollbacks.services.releases import release_register

router = Router(tags=["releases"])


def release_out(release: Release) -> dict[str, Any]:
    return {
        "id": release.pk,
        "service": release.service.name,
        "environment": release.service.environment,
        "version": release.version,
        "artifact": release.artifact,
        "shipped_at": release.shipped_at,
        "known_good": release.known_good,
        "known_good_reason": release.known_good_reason,
        "backup_saved": sorted(release.backup or {}),
    }


def service_named(name: str, environment: str) -> Service:
    return get_object_or_404(Service, name=name, environment=environment)


@router.post(
    "/services/{service}/releases",
    response={201: ReleaseRegistered, 200: ReleaseRegistered, **ERRORS},
    auth=scope(RELEASES_WRITE),
)
def release_create(
    request: HttpRequest,
    service: str,
    payload: ReleaseIn,
    environment: str = Environment.PRODUCTION,
) -> Status:
    """Register a release of `service` before (or as) it deploys. What its backend needs to
    undo it is read from the infrastructure now. The same version and artifact again answers
    200 with the first record; another artifact under the same version, 400."""
    release, created, said = release_register(
        service=service_named(service, environment),
        version=payload.version,
        artifact=payload.artifact,
        notes=payload.notes,
        actor=request.user,
    )
    return Status(
        201 if created else 200, {**release_out(release), "created": created, "backup": said}
    )


@router.get(
    "/services/{service}/releases", response={200: list[ReleaseOut], **ERRORS}, auth=scope(READ)
)
def release_list(
    request: HttpRequest, service: str, environment: str = Environment.PRODUCTION
) -> list[dict[str, Any]]:
    """The service's 50 newest releases, newest first."""
    require_role(request.user, "incidents.view_release", "read releases")
    found = service_named(service, environment)
    newest = found.releases.select_related("service").order_by("-shipped_at", "-id")[:50]
    return [release_out(release) for release in newest]


@router.put(
    "/releases/{release_id}/known-good",
    response={200: ReleaseOut, **ERRORS},
    auth=scope(RELEASES_WRITE),
)
def release_known_good(
    request: HttpRequest, release_id: int, payload: KnownGoodIn
) -> dict[str, Any]:
    """Mark (`known_good: true`) or unmark a release, with a reason; refused for the release
    an open incident suspects."""
    release = get_object_or_404(Release.objects.select_related("service"), pk=release_id)
    cleaned = validated(
        KnownGoodForm,
        {"known_good": "1" if payload.known_good else "0", "reason": payload.reason},
    )
    marked = incident_services.release_mark_known_good(
        release=release,
        actor=request.user,
        known_good=cleaned["known_good"],
        reason=cleaned["reason"],
    )
    return release_out(marked)
