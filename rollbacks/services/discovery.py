"""Services imported from what a platform runs (executors.discovery): list the candidates
beside the console's services (new, the same, or changed), and import those a person ticks,
in one transaction. The candidates are listed again at import, so what is imported is what
the platform says, never what a form sent back."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from django.db import transaction

from executors.discovery import Candidate, discover
from executors.errors import BackendError, ConfigError
from incidents.errors import DomainError
from incidents.models import Environment, Service
from incidents.roles import COMMAND_PERMISSION, User
from rollbacks import conf

logger = logging.getLogger(__name__)

NEW, SAME, CHANGED = "new", "same", "changed"


@dataclass(frozen=True)
class DiscoveryRow:
    candidate: Candidate
    state: str
    service: Service | None = None
    was: Mapping[str, object] | None = None


def may_discover(actor: User) -> bool:
    return bool(actor.is_authenticated and (actor.is_staff or actor.has_perm(COMMAND_PERMISSION)))


def covers(service: Service, candidate: Candidate) -> bool:
    """Whether `service` targets what `candidate` is (its config may say more: checks...)."""
    config = service.target_config if isinstance(service.target_config, dict) else {}
    return service.backend == candidate.backend and all(
        config.get(key) == value for key, value in candidate.target_config.items()
    )


def discovery_scan(
    *, source: str, params: Mapping[str, str], environment: str, actor: User
) -> list[DiscoveryRow]:
    """The candidates of `source`, each new, the same as, or changed from the service of that
    name in `environment`."""
    if not may_discover(actor):
        raise DomainError("Only Incident Commanders and staff may import services.")
    if environment not in Environment.values:
        raise DomainError(f"Unknown environment {environment!r}.")
    try:
        candidates = discover(source, conf.connections(), **params)
    except (ConfigError, BackendError) as error:
        raise DomainError(str(error)) from error
    services = list(Service.objects.filter(environment=environment))
    existing = {service.name: service for service in services}
    rows = []
    for candidate in candidates:
        # A service already pointing at the same target, under any name, is that one.
        covering = next((s for s in services if covers(s, candidate)), None)
        if covering is not None:
            rows.append(DiscoveryRow(candidate, SAME, covering))
            continue
        service = existing.get(candidate.name)
        if service is None:
            rows.append(DiscoveryRow(candidate, NEW))
        elif (
            service.backend == candidate.backend
            and service.target_config == candidate.target_config
        ):
            rows.append(DiscoveryRow(candidate, SAME, service))
        else:
            was = {"backend": service.backend, "target_config": service.target_config}
            rows.append(DiscoveryRow(candidate, CHANGED, service, was))
    return rows


def discovery_import(
    *,
    source: str,
    params: Mapping[str, str],
    environment: str,
    names: Iterable[str],
    actor: User,
) -> list[Service]:
    """Create (or update the target of) the services named, as listed now."""
    wanted = set(names)
    if not wanted:
        raise DomainError("Tick at least one service to import.")
    rows = {
        row.candidate.name: row
        for row in discovery_scan(
            source=source, params=params, environment=environment, actor=actor
        )
    }
    gone = sorted(wanted - set(rows))
    if gone:
        raise DomainError(f"Not found on the platform any more: {', '.join(gone)[:300]}.")
    incomplete = [
        f"{name} ({rows[name].candidate.problem})"
        for name in sorted(wanted)
        if rows[name].candidate.problem
    ]
    if incomplete:
        raise DomainError(f"Cannot import as listed: {'; '.join(incomplete)[:400]}.")
    imported = []
    with transaction.atomic():
        for name in sorted(wanted):
            row = rows[name]
            if row.state == SAME:
                continue
            candidate = row.candidate
            service, _ = Service.objects.update_or_create(
                name=candidate.name,
                environment=environment,
                defaults={
                    "backend": candidate.backend,
                    "target_config": candidate.target_config,
                    "description": candidate.description[:200],
                },
            )
            imported.append(service)
    logger.info(
        "%s imported from %s: %s",
        actor.get_username(),
        source,
        ", ".join(service.name for service in imported) or "nothing changed",
    )
    return imported
