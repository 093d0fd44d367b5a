"""The errors every backend raises, and what a caller may do about each.

They live below `executors.base` so that modules the interface itself relies on (the schema
of a service's `checks` list) can raise them; backends and callers import them from
`executors.base`, with the rest of the interface.
"""

from __future__ import annotations

import datetime
import email.utils
import math
from typing import Any


class BackendError(Exception):
    """An operation failed. `retryable` says whether trying again may succeed."""

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


class ConfigError(BackendError):
    """The target config or rollback parameters are invalid; never retryable."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=False)


class DeadlineExceeded(BackendError):
    """The infrastructure did not settle before the step's deadline."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=False)


def internal_error(error: BaseException) -> str:
    """What a step or check records of an error no backend raised: its type only. Its text
    is not shown, since an unexpected error may carry what it was handling (an encoding
    error holds its whole input); the worker's log has the traceback."""
    return f"internal error ({type(error).__name__}); the worker's log has the details"


# The longest wait a server's Retry-After is taken at; a longer ask waits this long.
RETRY_AFTER_CAP = 3600.0


def parse_retry_after(value: Any) -> float | None:
    """A Retry-After header's wait in seconds: a number of seconds or an HTTP date (RFC 9110),
    at most RETRY_AFTER_CAP; None when absent or unreadable (never an error: the hint is only
    a hint)."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return min(max(0.0, seconds), RETRY_AFTER_CAP) if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    return min(
        max(0.0, (when - datetime.datetime.now(datetime.UTC)).total_seconds()), RETRY_AFTER_CAP
    )
