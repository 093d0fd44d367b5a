"""Services imported from what a platform runs (executors.discovery): list the candidates
beside the console's services (new, the same, or changed), and import those a person ticks,
in one transaction. The candidates are listed again at import, so what is imported is what
the platform says, never what a form sent back.

Names: a candidate's slug may be taken, by another candidate of the same listing (an A and
an AAAA record of one name, `cart.v2` and `cart-v2`) or by a console service that is
something else (a Kubernetes `checkout` when ECS lists `checkout`). The listing then gives
it the first free `name-2`, `name-3`..., in an order fixed by the targets themselves, so the
name ticked on the page is the name the import finds; an import never writes over a service
that is not the candidate's own.

Changes: re-importing a changed service writes only the keys the platform says
(`Candidate.owned`); what a person added (its checks, a container, options) stays.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from django.db import IntegrityError, transaction

from executors.discovery import Candidate, discover, suffixed
from executors.errors import BackendError, ConfigError
from executors.registry import backend_class
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
    # For a changed one: the values it has now under the keys an import would write.
    was: Mapping[str, object] | None = None


def may_discover(actor: User) -> bool:
    """Whether `actor` may list platforms and import services (Incident Commanders, staff)."""
    return bool(actor.is_authenticated and (actor.is_staff or actor.has_perm(COMMAND_PERMISSION)))


def _config(service: Service) -> dict[str, Any]:
    return service.target_config if isinstance(service.target_config, dict) else {}


def covers(service: Service, candidate: Candidate) -> bool:
    """Whether `service` targets what `candidate` is, as the platform says it (its config
    may say more, or differ in what discovery only suggests: checks, a mode...)."""
    config = _config(service)
    return service.backend == candidate.backend and all(
        config.get(key) == value for key, value in candidate.owned.items()
    )


def is_moved(service: Service, candidate: Candidate) -> bool:
    """Whether `service`, which has the candidate's name but does not cover it, is the same
    thing changed on the platform (same backend, same values under its identity keys: a
    Deployment of the same namespace), rather than something else of that name."""
    config = _config(service)
    keys = candidate.identity or tuple(candidate.target_config)
    return service.backend == candidate.backend and all(
        config.get(key) == candidate.target_config.get(key) for key in keys
    )


def merged_config(config: Mapping[str, Any], candidate: Candidate) -> dict[str, Any]:
    """A service's target config after re-importing `candidate`: the keys the platform says
    as listed now, the suggested ones only where it had none, everything else kept."""
    suggested = {k: v for k, v in candidate.target_config.items() if k in candidate.suggested}
    return {**suggested, **config, **candidate.owned}


def config_problem(backend: str, config: Mapping[str, Any]) -> str:
    """Why `backend` would refuse `config`; empty when it takes it."""
    try:
        backend_class(backend).validate_config(config)
    except ConfigError as error:
        return str(error)
    return ""


def _listing_order(candidate: Candidate) -> tuple[str, str, str]:
    # By the target, not by the platform's order: the same listing names alike every time.
    config = json.dumps(candidate.target_config, sort_keys=True, default=str)
    return candidate.name, candidate.backend, config


def _free_name(name: str, *taken: set[str]) -> str:
    number, free = 1, name
    while any(free in names for names in taken):
        number += 1
        free = suffixed(name, str(number))
    return free


def discovery_rows(
    candidates: Iterable[Candidate], services: Iterable[Service]
) -> list[DiscoveryRow]:
    """Each candidate beside the console's `services` (of one environment): the same as the
    service already on its target, changed from the service of its name that is the same
    thing moved, or new, under a name no service and no other row has."""
    ordered = sorted(candidates, key=_listing_order)
    services = list(services)
    by_name = {service.name: service for service in services}
    service_names = set(by_name)
    claimed: set[int] = set()
    # First every service already on a candidate's target, then the moved ones: a service
    # that still has its own target on the platform is never another candidate's "changed".
    found: dict[int, DiscoveryRow] = {}
    for index, candidate in enumerate(ordered):
        covering = next((s for s in services if s.pk not in claimed and covers(s, candidate)), None)
        if covering is not None:
            claimed.add(covering.pk)
            found[index] = DiscoveryRow(candidate, SAME, covering)
    for index, candidate in enumerate(ordered):
        named = by_name.get(candidate.name)
        if index in found or named is None or named.pk in claimed:
            continue
        if is_moved(named, candidate):
            claimed.add(named.pk)
            config = _config(named)
            was = {k: config.get(k) for k, v in candidate.owned.items() if config.get(k) != v}
            # What would be saved is the merge: judge that, not the listing alone.
            problem = config_problem(candidate.backend, merged_config(config, candidate))
            updated = replace(candidate, problem=problem)
            found[index] = DiscoveryRow(updated, CHANGED, named, was)
    taken = {row.candidate.name for row in found.values() if row.state == CHANGED}
    rows = []
    for index, candidate in enumerate(ordered):
        row = found.get(index)
        if row is None:
            # A new one may take no service's name; one already there is only shown (and
            # has nothing to import, so nothing in the way of an import).
            name = _free_name(candidate.name, taken, service_names)
            row = DiscoveryRow(replace(candidate, name=name), NEW)
        elif row.state == SAME:
            shown = replace(candidate, name=_free_name(candidate.name, taken), problem="")
            row = replace(row, candidate=shown)
        taken.add(row.candidate.name)
        rows.append(row)
    return rows


def discovery_scan(
    *, source: str, params: Mapping[str, str], environment: str, actor: User
) -> list[DiscoveryRow]:
    """The candidates of `source`, each new, the same as, or changed from a service of
    `environment`, under names unique among them (see discovery_rows)."""
    if not may_discover(actor):
        raise DomainError("Only Incident Commanders and staff may import services.")
    if environment not in Environment.values:
        raise DomainError(f"Unknown environment {environment!r}.")
    try:
        candidates = discover(source, conf.connections(), **params)
    except (ConfigError, BackendError) as error:
        raise DomainError(str(error)) from error
    return discovery_rows(candidates, Service.objects.filter(environment=environment))


def _service_update(row: DiscoveryRow) -> Service:
    """The changed service, merged with the listing (merged_config) as it is now, locked."""
    candidate = row.candidate
    assert row.service is not None
    service = Service.objects.select_for_update().filter(pk=row.service.pk).first()
    if service is None or service.name != candidate.name or service.backend != candidate.backend:
        raise DomainError(f"{candidate.name} was changed in the console meanwhile; list again.")
    config = merged_config(_config(service), candidate)
    problem = config_problem(candidate.backend, config)
    if problem:
        raise DomainError(f"Cannot import {candidate.name}: {problem}"[:400])
    service.target_config = config
    # A description someone wrote is theirs; discovery only fills an empty one.
    service.description = service.description or candidate.description[:200]
    service.save(update_fields=["target_config", "description"])
    return service


def _service_create(row: DiscoveryRow, environment: str) -> Service:
    candidate = row.candidate
    try:
        with transaction.atomic():  # a savepoint: the failed insert is ours to report
            return Service.objects.create(
                name=candidate.name,
                environment=environment,
                backend=candidate.backend,
                target_config=dict(candidate.target_config),
                description=candidate.description[:200],
            )
    except IntegrityError as error:  # added since the listing, by someone else
        raise DomainError(
            f"A service named {candidate.name} was added meanwhile; list again."
        ) from error


def discovery_import(
    *,
    source: str,
    params: Mapping[str, str],
    environment: str,
    names: Iterable[str],
    actor: User,
) -> list[Service]:
    """Create the new services named and update the changed ones, as listed now; nothing
    if any of them cannot be (all in one transaction)."""
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
            if row.state == CHANGED:
                imported.append(_service_update(row))
            elif row.state == NEW:
                imported.append(_service_create(row, environment))
    logger.info(
        "%s imported from %s: %s",
        actor.get_username(),
        source,
        ", ".join(service.name for service in imported) or "nothing changed",
    )
    return imported
