"""The rollbacks app's settings, typed and read when asked.

Every value and its default is written once, in console/settings.py (from the environment).
These functions read `django.conf.settings` at each call rather than at import, so that a
test's `settings` fixture, or a worker's own settings module, takes effect at once.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

from executors.base import Connections
from executors.checks import VerificationDefaults

# -- the engine ------------------------------------------------------------------------------


def heartbeat_seconds() -> float:
    """How often a worker marks its running steps alive (ROLLBACK_HEARTBEAT_SECONDS)."""
    return float(settings.ROLLBACK_HEARTBEAT_SECONDS)


def stale_after_seconds() -> float:
    """How long a running step may go without a heartbeat before another worker takes it
    (ROLLBACK_STALE_AFTER_SECONDS)."""
    return float(settings.ROLLBACK_STALE_AFTER_SECONDS)


def recovery_interval_seconds() -> float:
    """How often each worker sweeps for stalled work; 0 turns the sweep off
    (ROLLBACK_RECOVERY_INTERVAL_SECONDS)."""
    return float(settings.ROLLBACK_RECOVERY_INTERVAL_SECONDS)


def max_step_retries() -> int:
    """Automatic retries of a step after a retryable backend error
    (ROLLBACK_STEP_MAX_RETRIES)."""
    return int(settings.ROLLBACK_STEP_MAX_RETRIES)


def retry_backoff_seconds() -> float:
    """The first automatic retry's delay; each further retry doubles it (capped at 60 s)
    (ROLLBACK_RETRY_BACKOFF_SECONDS)."""
    return float(settings.ROLLBACK_RETRY_BACKOFF_SECONDS)


def log_max_lines() -> int:
    """Log lines kept per step; later lines are counted, not stored
    (ROLLBACK_STEP_LOG_MAX_LINES)."""
    return int(settings.ROLLBACK_STEP_LOG_MAX_LINES)


def steps_per_message() -> int:
    """How many steps of a parallel group one task message carries (ROLLBACK_STEPS_PER_MESSAGE).

    A message's steps are claimed together and run on threads of the worker that takes
    it: more per message starts a large group sooner, fewer spreads it over more workers.
    """
    return max(1, int(settings.ROLLBACK_STEPS_PER_MESSAGE))


def step_threads() -> int:
    """Threads per worker process for the steps of a several-step message
    (ROLLBACK_STEP_THREADS); steps beyond it wait for a thread."""
    return max(1, int(settings.ROLLBACK_STEP_THREADS))


def backend_options(kind: str) -> dict[str, Any]:
    """Keyword arguments for the constructor of backend `kind` (ROLLBACK_BACKEND_OPTIONS,
    e.g. {"kubernetes": {"poll_interval": 0.5}})."""
    return dict(settings.ROLLBACK_BACKEND_OPTIONS.get(kind, {}))


def live_read_seconds(kind: str) -> float:
    """How long the pages wait for backend `kind` to say what runs now or what a step may
    choose (ROLLBACK_LIVE_READ_SECONDS, per kind, with "default")."""
    limits = settings.ROLLBACK_LIVE_READ_SECONDS
    return float(limits.get(kind, limits["default"]))


def connections() -> Connections:
    """Where the infrastructure is; credentials stay with the SDKs."""
    return Connections(
        aws_endpoint_url=settings.AWS_ENDPOINT_URL,
        aws_region=settings.AWS_REGION,
        kube_host=settings.KUBE_HOST,
        kubeconfig=settings.KUBECONFIG,
        kube_context=settings.KUBE_CONTEXT,
        redis_url=settings.FLAGS_REDIS_URL or settings.REDIS_URL,
        registered_commands=settings.REGISTERED_COMMANDS,
    )


# -- verification ----------------------------------------------------------------------------


def verify_timeout_seconds() -> float:
    """The time a verification round may take before it counts as lost and is handed out
    again (and the Celery task's soft limit, less a margin) (VERIFY_TIMEOUT_SECONDS)."""
    return float(settings.VERIFY_TIMEOUT_SECONDS)


def verification_defaults() -> VerificationDefaults:
    """What a check spec may leave out: Prometheus' address (PROMETHEUS_URL) and each
    kind's request timeout (VERIFY_HTTP/PROMETHEUS/KUBE_TIMEOUT_SECONDS)."""
    return VerificationDefaults(
        prometheus_url=settings.PROMETHEUS_URL or "",
        http_timeout=float(settings.VERIFY_HTTP_TIMEOUT_SECONDS),
        prometheus_timeout=float(settings.VERIFY_PROMETHEUS_TIMEOUT_SECONDS),
        kube_timeout=float(settings.VERIFY_KUBE_TIMEOUT_SECONDS),
    )
