"""Releases registered from a pipeline (the API) or a terminal: the release recorded with
what its backend needs to undo it, read from the infrastructure when it is registered
(before the deploy changes it): a Deployment manifest, a Route 53 record set, an ECS task
definition, an RDS restore point. The plan builder offers that backup as a rollback target.
"""

from __future__ import annotations

import logging

from django.db import IntegrityError, transaction
from django.utils import timezone

from executors.errors import BackendError, ConfigError
from executors.url_credentials import mask_url_credentials
from incidents.errors import DomainError
from incidents.models import Release, Service
from incidents.roles import User, require_role
from rollbacks.engine.backends import backend_for

logger = logging.getLogger(__name__)

VERSION_MAX, ARTIFACT_MAX, NOTES_MAX = 100, 500, 5000


def release_latest_known_good(service: Service) -> Release | None:
    return (
        Release.objects.filter(service=service, known_good=True)
        .order_by("-shipped_at", "-id")
        .first()
    )


def release_register(
    *, service: Service, version: str, artifact: str, notes: str = "", actor: User
) -> tuple[Release, bool, str]:
    """Record `version` of `service` with its pre-deploy backup; return the release, whether
    it is new, and a line on the backup. Registering the same version with the same artifact
    again returns the first record (a pipeline may retry); with another artifact it is
    refused."""
    require_role(actor, "incidents.change_release", "register releases")
    version, artifact = version.strip(), artifact.strip()
    if not version or len(version) > VERSION_MAX:
        raise DomainError(f"A version is 1 to {VERSION_MAX} characters.")
    if not artifact or len(artifact) > ARTIFACT_MAX:
        raise DomainError(f"An artifact reference is 1 to {ARTIFACT_MAX} characters.")
    if len(notes) > NOTES_MAX:
        raise DomainError(f"Release notes are at most {NOTES_MAX} characters.")
    existing = Release.objects.filter(service=service, version=version).first()
    if existing is not None:
        return existing, False, same_release(existing, artifact)
    # Read before the transaction: the backend talks to the infrastructure.
    try:
        backup = backend_for(service).capture_backup()
        said = f"backup saved: {', '.join(sorted(backup))}" if backup else "nothing to save"
    except (BackendError, ConfigError) as error:
        backup, said = {}, f"no backup saved: {mask_url_credentials(str(error))[:300]}"
        logger.warning("release %s %s: %s", service.name, version, said)
    try:
        with transaction.atomic():
            release = Release.objects.create(
                service=service,
                version=version,
                artifact=artifact,
                notes=notes,
                backup=backup,
                backup_at=timezone.now() if backup else None,
            )
    except IntegrityError:  # registered meanwhile by a retry of the same call
        existing = Release.objects.get(service=service, version=version)
        return existing, False, same_release(existing, artifact)
    return release, True, said


def same_release(existing: Release, artifact: str) -> str:
    if existing.artifact != artifact:
        raise DomainError(
            f"{existing.service.name} {existing.version} is registered already, with another "
            f"artifact ({existing.artifact[:120]}); give the new build a new version."
        )
    return "registered already"
