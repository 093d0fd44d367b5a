"""Automatic retries of a step after a retryable backend error: the exception that says an
attempt ended that way, and how long to wait before the next (exponential backoff from
ROLLBACK_RETRY_BACKOFF_SECONDS, or longer when the server asked for it with Retry-After).

Who retries is the caller's business: step_execute's Celery task, or run_inline's loop.
"""

from __future__ import annotations

from collections.abc import Mapping

from executors.base import BackendError
from rollbacks import conf


class StepRetry(Exception):
    """A retryable backend error ended this attempt; the step is pending again.

    `retry_after` is the server's hint (Retry-After), in seconds, when it gave one.
    """

    def __init__(self, error: BackendError, *, retry_after: float | None) -> None:
        super().__init__(str(error))
        self.error = error
        self.retry_after = retry_after


def retry_after_hint(error: BaseException) -> float | None:
    """Seconds the server asked us to wait (an error's `retry_after`, or a Retry-After
    header on the HTTP error that caused it), or None."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        hint = getattr(current, "retry_after", None)
        if isinstance(hint, int | float) and hint >= 0:
            return float(hint)
        headers = getattr(current, "headers", None)
        if headers is None:
            response = getattr(current, "response", None)
            if isinstance(response, Mapping):
                headers = (response.get("ResponseMetadata") or {}).get("HTTPHeaders")
        if headers is not None:
            try:
                value = headers.get("Retry-After") or headers.get("retry-after")
                if value is not None:
                    return max(0.0, float(value))
            except (AttributeError, TypeError, ValueError):
                pass
        current = current.__cause__ or current.__context__
    return None


def retry_delay(retries_done: int, *, retry_after: float | None = None) -> float:
    """Seconds to wait before automatic retry number `retries_done + 1`."""
    backoff = min(60.0, conf.retry_backoff_seconds() * 2**retries_done)
    return max(backoff, retry_after or 0.0)
