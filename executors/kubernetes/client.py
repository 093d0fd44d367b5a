"""Connecting to the cluster, and what the API server's answers mean for a rollback.

Responses are read as plain JSON (not the client's models) so that templates compare
exactly as kubectl compares them. 5xx, 429 and network timeouts are retryable
BackendErrors; a 409 is a ConflictError (retryable: re-read and write again) and a 404 a
NotFoundError; any other 4xx is permanent.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import urllib3
from kubernetes import client as kube_client
from kubernetes import config as kube_config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from executors.base import BackendError, ConfigError, Connections


class ConflictError(BackendError):
    """A 409 from the API server: someone else changed the object first."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=True)


class NotFoundError(BackendError):
    """A 404 from the API server."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=False)


def kube_api_client(
    connections: Connections, *, connect_retries: int, pool_size: int | None = None
) -> kube_client.ApiClient:
    """An ApiClient for the cluster `connections` names: an explicit host, else a kubeconfig
    (file and/or context), else in-cluster settings, else the default kubeconfig file.

    Only failed connects are retried (`connect_retries` times); everything else is the
    caller's decision. `pool_size` is the most connections kept open per host (the
    client's default is five per CPU). Raises ConfigError when no settings can be loaded.
    """
    configuration = kube_client.Configuration()
    try:
        if connections.kube_host:
            configuration.host = connections.kube_host
        elif connections.kubeconfig or connections.kube_context:
            kube_config.load_kube_config(
                config_file=connections.kubeconfig,
                context=connections.kube_context,
                client_configuration=configuration,
                persist_config=False,
            )
        else:
            try:
                kube_config.load_incluster_config(client_configuration=configuration)
            except ConfigException:
                kube_config.load_kube_config(
                    client_configuration=configuration, persist_config=False
                )
    except (ConfigException, OSError) as error:
        raise ConfigError(f"cannot load the Kubernetes connection settings: {error}") from error
    configuration.retries = urllib3.Retry(
        total=connect_retries, connect=connect_retries, read=0, status=0, redirect=0, other=0
    )
    if pool_size is not None:
        configuration.connection_pool_maxsize = pool_size
    return kube_client.ApiClient(configuration)


# A worker runs many steps on one cluster at once (a parallel group is one thread per
# step): they share one client, so each step skips building one (a few milliseconds of
# CPU that a burst of steps would spend one after another) and reuses its connections.
_SHARED_CLIENT_SECONDS = 60.0
_SHARED_POOL_SIZE = 64
_shared_lock = threading.Lock()
_shared_clients: dict[tuple[Any, ...], tuple[float, kube_client.ApiClient]] = {}


def shared_kube_api_client(
    connections: Connections, *, connect_retries: int
) -> kube_client.ApiClient:
    """kube_api_client, shared by this process's threads for a minute per cluster setting
    (so a rotated kubeconfig takes effect soon), with a connection pool large enough for
    a parallel group. urllib3's pools are thread-safe; the client holds no other state
    that requests change."""
    key = (
        os.getpid(),
        connections.kube_host,
        connections.kubeconfig,
        connections.kube_context,
        connect_retries,
    )
    now = time.monotonic()
    with _shared_lock:
        made = _shared_clients.get(key)
        if made is None or now - made[0] > _SHARED_CLIENT_SECONDS:
            client = kube_api_client(
                connections, connect_retries=connect_retries, pool_size=_SHARED_POOL_SIZE
            )
            made = _shared_clients[key] = (now, client)
        return made[1]


def api_json(
    what: str, method: Callable[..., Any], *args: Any, request_timeout: float, **kwargs: Any
) -> Any:
    """Call an API method and return the response body as JSON, mapping failures to
    BackendErrors (`what` says what was being done)."""
    try:
        response = method(*args, _preload_content=False, _request_timeout=request_timeout, **kwargs)
        return json.loads(response.data)
    except ApiException as error:
        raise api_error(what, error) from error
    except urllib3.exceptions.HTTPError as error:
        raise BackendError(f"{what}: {error}", retryable=True) from error
    except ValueError as error:
        raise BackendError(f"{what}: unreadable response: {error}", retryable=True) from error


def api_error(what: str, error: ApiException) -> BackendError:
    """The BackendError an API server's error answer stands for, retryable or not."""
    status = int(error.status or 0)
    message = error.reason or "error"
    try:
        body = json.loads(error.body or "{}")
        message = body.get("message") or message
    except (TypeError, ValueError):
        pass
    text = f"{what}: HTTP {status}: {message}"
    if status == 409:
        return ConflictError(text)
    if status == 404:
        return NotFoundError(text)
    if status == 429 or status >= 500 or status in (0, 408):
        return BackendError(text, retryable=True)
    return BackendError(text, retryable=False)
