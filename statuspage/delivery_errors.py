"""The two errors a notice's send can end in, shared by `statuspage.comms` and the channel
modules it dispatches to (`statuspage.pagerduty`), which could not import them from comms
without a cycle."""

from __future__ import annotations


class DeliveryError(Exception):
    """A send that did not go through; `retryable` says whether trying again may help, and
    `retry_after` how many seconds the other side asked us to wait first (None: our backoff)."""

    def __init__(self, message: str, *, retryable: bool, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after


class DeliveryRetry(Exception):
    """Raised to the Celery task so that it retries the delivery with backoff, or after
    `retry_after` seconds when the channel's server asked for that wait."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after
