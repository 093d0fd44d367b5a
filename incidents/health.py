"""Liveness and readiness endpoints for load balancers and orchestrators (no login)."""

from __future__ import annotations

import time
from collections.abc import Callable

import redis
from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from kombu import Connection


@require_GET
@never_cache
@login_not_required
def healthz(request: HttpRequest) -> JsonResponse:
    """The process is up and serving requests; touches nothing else."""
    return JsonResponse({"status": "ok"})


def _database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def _redis() -> None:
    client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
    try:
        client.ping()
    finally:
        client.close()


def _broker() -> None:
    with Connection(settings.CELERY_BROKER_URL, connect_timeout=2) as broker:
        broker.ensure_connection(max_retries=1, timeout=2)


READINESS_CHECKS: dict[str, Callable[[], None]] = {
    "database": _database,
    "redis": _redis,
    "broker": _broker,
}


@require_GET
@never_cache
@login_not_required
def readyz(request: HttpRequest) -> JsonResponse:
    """Ready to work: PostgreSQL, Redis and the Celery broker all answer. 503 otherwise."""
    checks: dict[str, dict[str, object]] = {}
    for name, check in READINESS_CHECKS.items():
        began = time.perf_counter()
        try:
            check()
        except Exception as error:  # noqa: BLE001 - any failure means not ready
            checks[name] = {"ok": False, "error": type(error).__name__}
        else:
            checks[name] = {"ok": True}
        checks[name]["ms"] = round((time.perf_counter() - began) * 1000, 1)
    ready = all(result["ok"] for result in checks.values())
    return JsonResponse(
        {"status": "ready" if ready else "unavailable", "checks": checks},
        status=200 if ready else 503,
    )
