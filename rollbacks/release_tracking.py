"""Releases seen and promoted without a pipeline (Celery beat, every RELEASE_TRACK_SECONDS).

- **Seen**: each service's live version is read through its backend; a value no release of
  the service names (by artifact or version) becomes a new release, shipped now, so the
  previous release is always known even when nobody registered the deploy. (Its pre-deploy
  backup could not be saved: the deploy has happened. Register releases from the pipeline
  to have one.) Where the platform records who changed it and when (Kubernetes: the
  Deployment's field manager and change-cause), the release says so and is dated then.
- **Promoted**: a service's newest release that is live, has been out for its
  `known_good_bake_minutes` (30 by default; 0 turns this off), is suspected by no open
  incident and passes every verification check of the service (none configured counts as
  passing) becomes known-good, recorded with no person: "automation", and the checks that
  passed as the reason.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field, replace
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from executors.base import CheckStatus, ConfigError, LiveChange
from executors.check_specs import CHECK_SCHEMAS, validate_checks
from executors.checks import run_check
from executors.url_credentials import mask_url_credentials
from incidents.errors import DomainError
from incidents.models import Release, Service
from incidents.selectors import release_suspected_by
from incidents.services import release_mark_known_good
from rollbacks import conf
from rollbacks.engine.backends import backend_for
from rollbacks.live_versions import live_versions_read

logger = logging.getLogger(__name__)

# A tag after the last ":" of an image reference (not a registry port, not a digest).
IMAGE_TAG = re.compile(r":([\w][\w.-]{0,99})$")
ARTIFACT_MAX = Release._meta.get_field("artifact").max_length or 500


@dataclass
class TrackReport:
    seen: list[str] = field(default_factory=list)
    promoted: list[str] = field(default_factory=list)
    unread: list[str] = field(default_factory=list)


def version_for(live: str) -> str:
    """A release version for a live value: an image's tag, a digest's first 12 hex digits,
    else the value (cut to fit)."""
    if "@sha256:" in live:
        return live.split("@", 1)[1][:19]
    found = IMAGE_TAG.search(live)
    if found and "/" not in found.group(1):
        return found.group(1)
    return live[-100:]


def names(release: Release, live: str) -> bool:
    """Whether `live` is what `release` ships: its artifact (as stored, cut to the field's
    length), its version, or the version release tracking would give the live value."""
    return live[:ARTIFACT_MAX] == release.artifact or release.version in (live, version_for(live))


def release_seen(service: Service, live: str) -> Release | None:
    """The release `live` names, created when there is none; None when it was known."""
    version = version_for(live)
    known = Release.objects.filter(service=service).filter(
        Q(artifact=live[:ARTIFACT_MAX]) | Q(version__in=[live[:100], version])
    )
    if known.exists():
        return None
    change = change_of(service)
    notes = "Seen live by release tracking; not registered by a pipeline."
    if change is not None:  # first: the releases page shows the notes' beginning
        notes = f"Changed by {change.describe()}, as the platform records it. {notes}"
    shipped = change.at if change is not None and change.at is not None else None
    try:
        with transaction.atomic():
            return Release.objects.create(
                service=service,
                version=version,
                artifact=live[:ARTIFACT_MAX],
                notes=notes[:2000],
                shipped_at=min(shipped, timezone.now()) if shipped else timezone.now(),
            )
    except IntegrityError:  # another tracker got there first
        return None


def change_of(service: Service) -> LiveChange | None:
    """Who changed the service's live version and when, if its platform says; a platform
    that cannot say now only leaves the release without it."""
    try:
        return backend_for(service, connections=conf.connections()).live_change()
    except Exception as error:  # the release is recorded all the same
        logger.info(
            "%s: who changed it is unknown: %s", service.name, mask_url_credentials(repr(error))
        )
        return None


# How long a person marking a release known-good waits for the service's checks at most.
BY_HAND_CHECKS_SECONDS = 15.0


def checks_pass(service: Service, version: str, *, settle: bool = True) -> tuple[bool, str]:
    """Whether every verification check of the service passes now, and what they said.
    Without `settle`, a check on the wrong side fails at once, with no retries or settling,
    and all of them together get BY_HAND_CHECKS_SECONDS (a person is waiting for the
    answer; a registered command's own timeout still bounds a smoke test)."""
    config = service.target_config if isinstance(service.target_config, dict) else {}
    if "checks" not in config:
        return True, "no verification checks configured"
    try:
        specs = validate_checks(config["checks"])
    except ConfigError as error:
        return False, mask_url_credentials(f"checks config: {error}")
    defaults = conf.verification_defaults()
    connections = conf.connections()
    said = []
    deadline = time.monotonic() + BY_HAND_CHECKS_SECONDS
    for spec in specs:
        if not settle:
            left = deadline - time.monotonic()
            if left <= 0:
                said.append(f"the checks took over {BY_HAND_CHECKS_SECONDS:g} s")
                return False, "; ".join(said)
            spec = {**spec, "settle_seconds": 0, "retries": 0}
            if "timeout" in CHECK_SCHEMAS[spec["kind"]]["properties"]:
                spec["timeout"] = min(float(spec.get("timeout", left)), left)
            defaults = replace(
                defaults,
                http_timeout=min(defaults.http_timeout, left),
                prometheus_timeout=min(defaults.prometheus_timeout, left),
                kube_timeout=min(defaults.kube_timeout, left),
            )
        try:
            result = run_check(spec, version=version, connections=connections, defaults=defaults)
        except Exception as error:  # a check that cannot run never promotes
            return False, mask_url_credentials(f"a check could not run: {error!r}")[:300]
        said.append(mask_url_credentials(f"{result.name}: {result.status}"))
        if result.status != CheckStatus.PASSED:
            return False, "; ".join(said)
    return True, "; ".join(said)


def promote(service: Service, live: str | None) -> Release | None:
    """Mark the service's newest release known-good when it has earned it (module doc)."""
    bake = service.known_good_bake_minutes
    newest = Release.objects.filter(service=service).order_by("-shipped_at", "-id").first()
    if not bake or newest is None or newest.known_good or not live:
        return None
    if not names(newest, live):
        return None
    if newest.shipped_at > timezone.now() - timedelta(minutes=bake):
        return None
    if release_suspected_by(newest) is not None:
        return None
    passed, said = checks_pass(service, newest.version)
    if not passed:
        logger.info("%s %s not promoted: %s", service.name, newest.version, said)
        return None
    reason = f"live {bake} min, {said}"[:500]
    try:
        with transaction.atomic():
            return release_mark_known_good(release=newest, actor=None, reason=reason)
    except DomainError as error:  # suspected meanwhile
        logger.info("%s %s not promoted: %s", service.name, newest.version, error)
        return None


def releases_track() -> TrackReport:
    report = TrackReport()
    services = list(Service.objects.order_by("pk"))
    live = live_versions_read(services, timeout=settings.RELEASE_TRACK_READ_SECONDS)
    for service in services:
        value, why = live.get(service.pk, (None, "not read"))
        if value is None:
            report.unread.append(f"{service.name}: {why}")
            continue
        seen = release_seen(service, value)
        if seen is not None:
            report.seen.append(f"{service.name} {seen.version}")
        promoted = promote(service, value)
        if promoted is not None:
            report.promoted.append(f"{service.name} {promoted.version}")
    return report


def known_good_by_hand_refusal(release: Release, reason: str) -> str | None:
    """An incidents.guards known-good guard: a person marking a release known-good while the
    service's checks fail for it must say why (the reason is kept with the mark)."""
    config = release.service.target_config
    if not isinstance(config, dict) or "checks" not in config or reason:
        return None
    passed, said = checks_pass(release.service, release.version, settle=False)
    if passed:
        return None
    return (
        f"The checks of {release.service.name} fail for {release.version} now ({said[:300]}); "
        "type a reason to mark it known-good anyway."
    )
