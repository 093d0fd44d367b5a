"""boto3 plumbing shared by every AWS backend: clients built from Connections, errors mapped.

`aws_client(connections, "ecs")` builds a client for the configured endpoint (a moto server in
tests and the demo, AWS itself otherwise) and region, with botocore's standard retry mode, three
attempts and bounded timeouts. Credentials come from the environment, as the SDK reads them.

`aws_errors(doing)` is a context manager, and `aws_call(doing, method, **kwargs)` one call
inside it, that turn botocore failures into BackendErrors whose message starts with `doing`:

- a ClientError becomes an AwsError carrying the service's error `code` (for callers to branch
  on, e.g. a missing resource into a ConfigError); it is retryable when the code means "slow
  down" or "try again" (RETRYABLE_CODES) or the HTTP status is 5xx;
- an unreachable endpoint, a dropped connection or a read timeout is retryable;
- any other botocore failure (bad parameters, missing credentials...) is permanent.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError

from executors.base import BackendError, Connections

CLIENT_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 3}, connect_timeout=5, read_timeout=30
)

# Error codes that mean "slow down" or "try again": botocore's standard retry mode's list,
# plus the service-specific ones the backends meet.
RETRYABLE_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "RequestThrottled",
        "SlowDown",
        "PriorRequestNotComplete",
        "RequestTimeout",
        "RequestTimeoutException",
        "TooManyInvalidationsInProgress",  # CloudFront
        "TooManyUpdates",  # SSM PutParameter on one parameter in quick succession
    }
)
# boto3's default session, which boto3.client() builds from, is not thread-safe.
_client_lock = threading.Lock()


class AwsError(BackendError):
    """A failed AWS call; `code` is the service's error code for callers to branch on."""

    def __init__(self, message: str, *, code: str, retryable: bool) -> None:
        super().__init__(message, retryable=retryable)
        self.code = code


def aws_client(connections: Connections, service_name: str) -> Any:
    """A boto3 client for `service_name` at the endpoint and region of `connections`.

    Safe to call from several threads: clients are, but building one from boto3's shared
    default session is not, so building is serialised.
    """
    with _client_lock:
        return boto3.client(
            service_name,
            endpoint_url=connections.aws_endpoint_url,
            region_name=connections.aws_region,
            config=CLIENT_CONFIG,
        )


@contextmanager
def aws_errors(doing: str) -> Iterator[None]:
    """Turn botocore failures inside the block into BackendErrors prefixed with `doing`."""
    try:
        yield
    except ClientError as error:
        code = str(error.response.get("Error", {}).get("Code", ""))
        message = error.response.get("Error", {}).get("Message") or str(error)
        status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        retryable = code in RETRYABLE_CODES or status >= 500
        raise AwsError(f"{doing}: {code}: {message}", code=code, retryable=retryable) from error
    except (BotoConnectionError, HTTPClientError) as error:
        raise BackendError(f"{doing}: AWS did not answer: {error}", retryable=True) from error
    except BotoCoreError as error:
        raise BackendError(f"{doing}: {error}") from error


def aws_call[T](doing: str, method: Callable[..., T], /, **kwargs: Any) -> T:
    """Call a boto3 method (or any callable making AWS calls) inside `aws_errors(doing)`."""
    with aws_errors(doing):
        return method(**kwargs)
