"""The errors every backend raises, and what a caller may do about each.

They live below `executors.base` so that modules the interface itself relies on (the schema
of a service's `checks` list) can raise them; backends and callers import them from
`executors.base`, with the rest of the interface.
"""

from __future__ import annotations


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
