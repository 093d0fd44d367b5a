"""Settings for the Celery workers the engine's tests start as subprocesses: the console's
settings, with heartbeats, stall detection and polls shortened to fit a test."""

from console.settings import *  # noqa: F403

ROLLBACK_HEARTBEAT_SECONDS = 0.2
ROLLBACK_STALE_AFTER_SECONDS = 1.5
ROLLBACK_RECOVERY_INTERVAL_SECONDS = 0.3
ROLLBACK_RETRY_BACKOFF_SECONDS = 0.1
ROLLBACK_BACKEND_OPTIONS = {
    "kubernetes": {"poll_interval": 0.05, "request_timeout": 5.0},
    **{
        kind: {"poll_interval": 0.1}
        for kind in ("ecs", "static_frontend", "database", "dns", "feature_flag")
    },
}
