"""The backends a step acts through, and what a step and a live value mean to them.

Building a backend validates its target config and, for Kubernetes or AWS, makes a client;
`reusable_backend_for` keeps one for a minute per thread so a worker's next step on the
same target does not pay for it again. `warm_up` loads every backend before a worker's first
step.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import asdict

from django.db.models import Q

from executors.base import Backend, ConfigError, Connections, RollbackTarget
from executors.registry import BACKENDS, backend_class
from incidents.models import Release, Service
from rollbacks import conf
from rollbacks.models import Step

logger = logging.getLogger(__name__)


def backend_for(service: Service, *, connections: Connections | None = None) -> Backend:
    """The backend that acts on `service`, with the options settings give its kind
    (ROLLBACK_BACKEND_OPTIONS, e.g. {"kubernetes": {"poll_interval": 0.5}})."""
    try:
        cls = backend_class(service.backend)
    except KeyError:
        raise ConfigError(f"unknown backend {service.backend!r}") from None
    options = conf.backend_options(service.backend)
    return cls(service.target_config, connections or conf.connections(), **options)


_BACKEND_REUSE_SECONDS = 60.0
_reusable = threading.local()


def reusable_backend_for(service: Service) -> Backend:
    """backend_for, kept for a minute per thread and per (backend, config, connections,
    options): a worker's next step on the same target skips config validation and reuses
    the client's connections. Short-lived, so rotated credentials and edited settings take
    effect soon."""
    connections = conf.connections()
    options = conf.backend_options(service.backend)
    key = json.dumps(
        [service.backend, service.target_config, asdict(connections), options],
        sort_keys=True,
        default=str,
    )
    cache: dict[str, tuple[float, Backend]] = getattr(_reusable, "backends", None) or {}
    _reusable.backends = cache
    now = time.monotonic()
    for stale in [k for k, (made, _) in cache.items() if now - made > _BACKEND_REUSE_SECONDS]:
        del cache[stale]
    if key not in cache:
        cache[key] = (now, backend_for(service, connections=connections))
    return cache[key][1]


def target_for(step: Step) -> RollbackTarget:
    """The RollbackTarget a step describes."""
    return RollbackTarget(
        version=step.to_version or None,
        artifact=step.to_artifact or None,
        previous=step.to_previous,
        params=dict(step.params),
    )


def release_label(service: Service, live: str | None) -> str:
    """The release label for a live version or artifact, else the live value itself."""
    if not live:
        return ""
    return release_labels([(service.pk, live)])[(service.pk, live)]


def release_labels(pairs: Iterable[tuple[int, str]]) -> dict[tuple[int, str], str]:
    """For each (service id, live version or artifact): the version of the newest release of
    that service it names, else the live value itself; all in one query.

    The query asks for the services' releases naming any of the values, and the pairs are
    matched here: an OR of one condition per pair cost a group's shared write (25 steps)
    more CPU to build than the query took to run."""
    wanted = {(service_id, live) for service_id, live in pairs if live}
    if not wanted:
        return {}
    lives = {live for _, live in wanted}
    named = Release.objects.filter(service_id__in={service_id for service_id, _ in wanted}).filter(
        Q(artifact__in=lives) | Q(version__in=lives)
    )
    found: dict[tuple[int, str], str] = {}
    rows = named.order_by("-shipped_at", "-id").values_list("service_id", "artifact", "version")
    for service_id, artifact, version in rows:
        for live in (artifact, version):  # the newest match wins
            found.setdefault((service_id, live), version)
    return {pair: found.get(pair, pair[1]) for pair in wanted}


def warm_up() -> None:
    """Import every backend and the API classes the Kubernetes client loads lazily (about
    1.5 s on first use), so that a worker's first step does not pay for it."""
    for kind in list(BACKENDS):
        try:
            backend_class(kind)
        except Exception:  # a backend that cannot load fails its own steps, loudly
            logger.warning("rollback backend %s cannot be loaded", kind, exc_info=True)
    try:
        from kubernetes import client as kube_client

        kube_client.AppsV1Api, kube_client.CoreV1Api  # noqa: B018
    except ImportError:
        pass
