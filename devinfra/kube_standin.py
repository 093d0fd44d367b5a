"""A local Kubernetes API server stand-in for tests and demos, built on kmock.

No kube-apiserver can be installed on the development machines, so this serves the part
of the Kubernetes API that Backout's rollbacks use, over plain HTTP on 127.0.0.1, well
enough for both the official `kubernetes` Python client and `kubectl` (get, rollout
history / undo / status / restart, scale, set image, delete).

Built by subclassing `kmock.KubernetesEmulator` (PyPI kmock 0.8). What is kept from kmock:
the aiohttp server (`kmock.Server`), request recording (`standin.requests`), its DSL for
ad-hoc reactions (`standin['get /healthz'] << 200`), API discovery (`/api`, `/apis`,
`/apis/apps/v1`, ...) from declared resources, and the object store (`standin.objects`,
with each object's recent versions). What is replaced, because kmock 0.8 lacks it:

- request parsing (kmock's path parser raises on `/api/v1/namespaces`);
- the resource semantics: uid, resourceVersion, generation, creationTimestamp; label and
  field selectors on list and watch; PUT with resourceVersion preconditions (409);
  JSON, merge and strategic-merge patches (see devinfra.kube_patches); status and scale
  subresources; server-side dry run; cascading deletion by ownerReferences; lists with
  kind/apiVersion/resourceVersion; watch resuming from a resourceVersion and ending at
  `timeoutSeconds`; Status error bodies shaped like the real server's;
- controllers: a Deployment/ReplicaSet controller simulation with revisions, rollout
  status catching up after `status_delay` seconds, and crash-looping pods (see
  devinfra.kube_controllers);
- fault injection: answer the next N matching requests with 500/409/429/... or hang.

Use it in-process (tests)::

    handle = start_kube_standin(status_delay=0.05)
    handle.seed([{"namespace": "shop", "name": "web", "images": ["web:1", "web:2"]}])
    handle.fail_next(2, status=500, method="PATCH")
    ...
    handle.stop()

or as a process (demo)::

    python -m devinfra.kube_standin --port 8001 --seed demo --kubeconfig /tmp/standin.yaml
    kubectl --kubeconfig /tmp/standin.yaml -n storefront rollout history deploy/web
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import functools
import inspect
import json
import re
import secrets
import sys
import threading
import time
import traceback
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp.web
import attrs
import kmock
import yaml
from kmock._internal import dsl, enums, filtering, rendering

from devinfra.kube_controllers import (
    CRASH_LOOP_ANNOTATION,
    WorkloadControllers,
    now_rfc3339,
)
from devinfra.kube_fields import manager_of, record_write
from devinfra.kube_patches import APPLY_PATCH, PatchError, apply_patch
from devinfra.kube_selectors import (
    SelectorError,
    fields_match,
    labels_match,
    match_labels_selector,
    parse_field_selector,
    parse_label_selector,
)
from devinfra.kube_tables import table, wants_table
from executors.json_docs import json_copy

DEFAULT_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
SERVER_VERSION = {
    "major": "1",
    "minor": "32",
    "gitVersion": "v1.32.0+kube-standin",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2025-01-01T00:00:00Z",
    "goVersion": "go1.23.0",
    "compiler": "gc",
    "platform": "linux/amd64",
}
_OBJECT_VERSIONS_KEPT = 20
# How many requests the stand-in remembers for tests to inspect (a bench lowers it).
REQUESTS_KEPT = 2000
_EVENT_LOG_SIZE = 5000
_ALL_VERBS = ("create", "delete", "get", "list", "patch", "update", "watch")


@dataclass(frozen=True)
class ResourceType:
    """One resource the stand-in serves, with what discovery says about it."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    subresources: tuple[str, ...] = ()
    tracks_generation: bool = False

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_resource(self) -> str:
        """How error messages name the resource: `deployments.apps`, `pods`."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @functools.cached_property
    def resource(self) -> kmock.resource:
        # Built once: every list request asks each stored object's type for it.
        return kmock.resource(self.group, self.version, self.plural)


RESOURCE_TYPES: tuple[ResourceType, ...] = (
    ResourceType("", "v1", "namespaces", "Namespace", False, ("ns",), ("status",)),
    ResourceType("", "v1", "pods", "Pod", True, ("po",), ("status",)),
    ResourceType("", "v1", "configmaps", "ConfigMap", True, ("cm",)),
    ResourceType("", "v1", "services", "Service", True, ("svc",), ("status",)),
    ResourceType("", "v1", "events", "Event", True, ("ev",)),
    ResourceType(
        "apps", "v1", "deployments", "Deployment", True, ("deploy",), ("status", "scale"), True
    ),
    ResourceType(
        "apps", "v1", "replicasets", "ReplicaSet", True, ("rs",), ("status", "scale"), True
    ),
)
_TYPES_BY_PLURAL = {rt.plural: rt for rt in RESOURCE_TYPES}
_IN_CATEGORY_ALL = frozenset({"pods", "services", "deployments", "replicasets"})


def resource_type(plural: str) -> ResourceType:
    """The served resource type with this plural name (KeyError if not served)."""
    return _TYPES_BY_PLURAL[plural]


# -- errors ----------------------------------------------------------------------------------


def status_body(code: int, reason: str, message: str, details: Mapping[str, Any] | None = None):
    """A `Status` object as the API server returns it for failures."""
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "details": dict(details or {}),
        "code": code,
    }


def _error(code: int, reason: str, message: str, **details: Any) -> kmock.KubernetesError:
    return kmock.KubernetesError(status=code, reason=reason, message=message, details=details)


def _not_found(rt: ResourceType, name: str) -> kmock.KubernetesError:
    return _error(
        404,
        "NotFound",
        f'{rt.group_resource} "{name}" not found',
        name=name,
        group=rt.group,
        kind=rt.plural,
    )


def _conflict(rt: ResourceType, name: str) -> kmock.KubernetesError:
    return _error(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {rt.group_resource} "{name}": the object has been'
        " modified; please apply your changes to the latest version and try again",
        name=name,
        group=rt.group,
        kind=rt.plural,
    )


def _invalid(rt: ResourceType, name: str, field_path: str, problem: str) -> kmock.KubernetesError:
    return _error(
        422,
        "Invalid",
        f'{rt.kind}.{rt.group or "core"} "{name}" is invalid: {field_path}: {problem}'.replace(
            ".core ", " "
        ),
        name=name,
        group=rt.group,
        kind=rt.kind,
        causes=[{"reason": "FieldValueInvalid", "message": problem, "field": field_path}],
    )


_FAULT_REASONS = {
    400: ("BadRequest", "the server rejected our request for an unknown reason"),
    403: ("Forbidden", "forbidden: injected fault"),
    404: ("NotFound", "the server could not find the requested resource"),
    409: (
        "Conflict",
        "Operation cannot be fulfilled: the object has been modified; please apply your"
        " changes to the latest version and try again",
    ),
    422: ("Invalid", "the request is invalid"),
    429: ("TooManyRequests", "Too many requests, please try again later."),
    500: ("InternalError", "Internal error occurred: injected fault"),
    503: ("ServiceUnavailable", "the server is currently unable to handle the request"),
    504: ("Timeout", "the server was unable to return a response in the time allotted"),
}


# -- faults and watches ----------------------------------------------------------------------


@dataclass
class Fault:
    """Answer the next `remaining` matching requests badly.

    `status` answers with that HTTP status and a Status body (None: answer normally);
    `hang` first holds the request that many seconds (a client timeout fires first).
    `method` ("PATCH") and `path` (a regular expression searched in the URL path) narrow
    which requests the fault applies to.
    """

    remaining: int
    status: int | None = 500
    hang: float = 0.0
    method: str | None = None
    path: str | None = None
    retry_after: int | None = 1

    def applies_to(self, method: str, path: str) -> bool:
        if self.remaining <= 0:
            return False
        if self.method is not None and self.method.upper() != method.upper():
            return False
        return self.path is None or re.search(self.path, path) is not None


@dataclass(eq=False)
class _Watcher:
    rt: ResourceType
    namespace: str | None
    label_requirements: tuple
    field_requirements: tuple
    queue: asyncio.Queue[dict[str, Any] | None] = field(default_factory=asyncio.Queue)

    def selects(self, obj: Mapping[str, Any] | None) -> bool:
        if obj is None:
            return False
        metadata = obj.get("metadata") or {}
        if self.namespace is not None and metadata.get("namespace") != self.namespace:
            return False
        return labels_match(self.label_requirements, metadata.get("labels")) and fields_match(
            self.field_requirements, obj
        )

    def event_for(
        self, kind: str, old: Mapping[str, Any] | None, new: Mapping[str, Any]
    ) -> dict[str, Any] | None:
        """The event this watcher sees for a change, if any (objects leaving the selection
        are reported as DELETED, objects entering it as ADDED)."""
        if kind == "DELETED":
            return {"type": "DELETED", "object": new} if self.selects(new) else None
        was, now = self.selects(old), self.selects(new)
        if was and now:
            return {"type": "MODIFIED", "object": new}
        if now:
            return {"type": "ADDED", "object": new}
        if was:
            return {"type": "DELETED", "object": new}
        return None


@dataclass(frozen=True)
class _ApiPath:
    group: str | None
    version: str | None
    plural: str | None
    namespace: str | None
    name: str | None
    subresource: str | None


def parse_api_path(path: str) -> _ApiPath | None:
    """Split a Kubernetes API path; None for paths outside /api/<v> and /apis/<g>."""
    parts = [part for part in path.split("/") if part]
    if len(parts) < 2 or parts[0] not in ("api", "apis"):
        return None
    if parts[0] == "api":
        group, rest = "", parts[1:]
    else:
        group, rest = parts[1], parts[2:]
    version, rest = (rest[0], rest[1:]) if rest else (None, [])
    namespace = None
    # /api/v1/namespaces/<ns>/<plural>... but /api/v1/namespaces/<name>/status is the
    # namespace's own subresource.
    if len(rest) >= 3 and rest[0] == "namespaces" and rest[2] not in ("status", "finalize"):
        namespace, rest = rest[1], rest[2:]
    plural = rest[0] if rest else None
    name = rest[1] if len(rest) > 1 else None
    subresource = "/".join(rest[2:]) or None
    return _ApiPath(group, version, plural, namespace, name, subresource)


# -- the server ------------------------------------------------------------------------------


@functools.cache
def _takes_arguments(function: Callable[..., Any]) -> bool:
    return bool(inspect.signature(function).parameters)


def _criteria_accept(criteria: Any, request: rendering.Request) -> bool:
    """`criteria(request)`, with kmock's reading of a function's signature (to know whether
    to pass it the request) made once per function instead of on every request."""
    if type(criteria) is not filtering.FnCriteria:
        return bool(criteria(request))
    function: Callable[..., Any] = criteria.fn
    result = function(request) if _takes_arguments(function) else function()
    guessed = filtering.Criteria.guess(result)
    return bool(guessed(request)) if guessed is not None else False


@attrs.define(kw_only=True)
class KubeStandin(kmock.KubernetesEmulator):
    """kmock's Kubernetes emulator with the API semantics and controllers rollbacks need."""

    status_delay: float = 0.2
    restart_interval: float = 1.0
    crash_loop_images: set[str] = attrs.field(factory=set)

    controllers: WorkloadControllers = attrs.field(init=False)
    _resource_version: int = attrs.field(default=0, init=False)
    _watchers: set[_Watcher] = attrs.field(factory=set, init=False)
    _event_log: collections.deque = attrs.field(
        factory=lambda: collections.deque(maxlen=_EVENT_LOG_SIZE), init=False
    )
    _faults: list[Fault] = attrs.field(factory=list, init=False)
    _faults_lock: threading.Lock = attrs.field(factory=threading.Lock, init=False)
    _stopping: asyncio.Event | None = attrs.field(default=None, init=False)
    _ticker: asyncio.Task[None] | None = attrs.field(default=None, init=False)
    # The stored objects' keys by kind and namespace: a list reads its namespace's
    # objects only, as the API server reads one key prefix, not the whole store.
    _keys_by_scope: dict[tuple[Any, str | None], dict[str, tuple]] = attrs.field(
        factory=dict, init=False
    )
    # (ids of the reactions as registered, the reactions in serving order)
    _sorted_payloads: tuple[list[int], list[Any]] | None = attrs.field(default=None, init=False)

    def __attrs_post_init__(self) -> None:
        # kmock's emulator registers merge-only CRUD handlers; skip them and register one
        # dispatcher for resource requests after kmock's discovery handlers.
        kmock.KubernetesScaffold.__attrs_post_init__(self)
        for rt in RESOURCE_TYPES:
            self.resources[rt.resource] = kmock.ResourceInfo(
                namespaced=rt.namespaced,
                kind=rt.kind,
                singular=rt.kind.lower(),
                verbs=set(_ALL_VERBS),
                shortnames=set(rt.short_names),
                subresources=set(rt.subresources),
            )
        self.fallback[self._is_resource_request] << self._serve_resource
        self.fallback["get /openapi/v3"] << self._serve_openapi_root
        self.fallback[re.compile(r"/openapi/v3/.+")] << self._serve_openapi_group_version
        self.controllers = WorkloadControllers(
            store=self,
            schedule=self._call_later,
            clock=time.monotonic,
            status_delay=self.status_delay,
            crash_loop_images=self.crash_loop_images,
        )
        for namespace in DEFAULT_NAMESPACES:
            self._create_namespace(namespace)

    async def __aenter__(self) -> KubeStandin:
        await super().__aenter__()
        self._stopping = asyncio.Event()
        self._ticker = asyncio.create_task(self._tick_forever())
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        self.stop_streams()
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        await super().__aexit__(*exc_info)

    def stop_streams(self) -> None:
        """End every open watch and hanging request (before the HTTP server shuts down)."""
        if self._stopping is not None:
            self._stopping.set()
        for watcher in list(self._watchers):
            watcher.queue.put_nowait(None)

    def set_status_delay(self, seconds: float) -> None:
        """How long a rollout takes from the spec change to a complete status."""
        self.status_delay = seconds
        self.controllers.status_delay = seconds

    def _call_later(self, delay: float, callback: Any) -> object:
        return asyncio.get_running_loop().call_later(delay, callback)

    async def _tick_forever(self) -> None:
        while True:
            await asyncio.sleep(self.restart_interval)
            try:
                self.controllers.tick()
            except Exception:  # a controller bug must not stop the clock
                traceback.print_exc()

    # -- faults ------------------------------------------------------------------------------

    def inject_fault(self, fault: Fault) -> None:
        """Answer the next matching requests badly (thread-safe)."""
        with self._faults_lock:
            self._faults.append(fault)

    def clear_faults(self) -> None:
        """Forget every pending fault (thread-safe)."""
        with self._faults_lock:
            self._faults.clear()

    def _take_fault(self, method: str, path: str) -> Fault | None:
        with self._faults_lock:
            for fault in self._faults:
                if fault.applies_to(method, path):
                    fault.remaining -= 1
                    self._faults = [f for f in self._faults if f.remaining > 0]
                    return fault
        return None

    # -- request entry -----------------------------------------------------------------------

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        # Replaces kmock's entry point: its path parser cannot split /api/v1/namespaces.
        request = await self._parse_request(raw_request)
        self._requests.append(request)
        if len(self._requests) > REQUESTS_KEPT:
            del self._requests[: REQUESTS_KEPT // 2]

        fault = self._take_fault(raw_request.method, raw_request.path)
        if fault is not None:
            if fault.hang > 0 and self._stopping is not None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), fault.hang)
            if fault.status is not None:
                reason, message = _FAULT_REASONS.get(fault.status, ("InternalError", "fault"))
                headers = {}
                if fault.status == 429 and fault.retry_after is not None:
                    headers["Retry-After"] = str(fault.retry_after)
                return aiohttp.web.json_response(
                    status_body(fault.status, reason, message),
                    status=fault.status,
                    headers=headers,
                )

        raw_response: aiohttp.web.StreamResponse | None = None
        try:
            try:
                return await self._handle(request)
            except rendering.StreamingError as error:
                raw_response = error.args[0]
                raise error.__cause__ or error from None
        except kmock.KubernetesError as error:
            if raw_response is None or not raw_response.prepared:
                return await self._render_error(error)
            await self._stream_error(error, raw_response)
            await raw_response.write_eof()
            return raw_response
        except Exception as error:
            traceback.print_exc()
            if raw_response is None or not raw_response.prepared:
                return await self._render_error(error)
            await self._stream_error(error, raw_response)
            await raw_response.write_eof()
            return raw_response

    async def _parse_request(self, raw_request: aiohttp.web.BaseRequest) -> rendering.Request:
        body = await raw_request.read()
        text = body.decode("utf-8", errors="replace")
        try:
            data = json.loads(text) if text.strip() else None
        except ValueError:
            data = None
        parsed = parse_api_path(raw_request.path)
        resource = namespace = name = subresource = action = None
        if parsed is not None:
            resource = kmock.resource(
                group=parsed.group, version=parsed.version, plural=parsed.plural
            )
            namespace, name, subresource = parsed.namespace, parsed.name, parsed.subresource
            method = raw_request.method.upper()
            if method == "GET" and raw_request.query.get("watch") in ("true", "1"):
                action = enums.action.WATCH
            elif method == "GET":
                action = enums.action.FETCH if name else enums.action.LIST
            elif method == "POST" and not name:
                action = enums.action.CREATE
            elif method in ("PATCH", "PUT") and name:
                action = enums.action.UPDATE
            elif method == "DELETE" and name:
                action = enums.action.DELETE
        return rendering.Request(
            id=len(self._requests),
            raw_request=raw_request,
            url=raw_request.url,
            method=raw_request.method,
            params=dict(raw_request.query),
            headers=dict(raw_request.headers),
            cookies=dict(raw_request.cookies),
            data=data,
            body=body,
            text=text,
            action=action,
            resource=resource,
            namespace=namespace,
            name=name,
            subresource=subresource,
        )

    async def _render_error(self, exc: Exception) -> aiohttp.web.StreamResponse:
        if isinstance(exc, kmock.KubernetesError):
            body = status_body(
                exc.status, exc.reason or "InternalError", exc.message or "", exc.details
            )
            return aiohttp.web.json_response(body, status=exc.status)
        body = status_body(500, "InternalError", f"Internal error occurred: {exc!r}")
        return aiohttp.web.json_response(body, status=500)

    async def _stream_error(self, exc: Exception, raw_response: aiohttp.web.StreamResponse) -> None:
        code = exc.status if isinstance(exc, kmock.KubernetesError) else 500
        message = exc.message if isinstance(exc, kmock.KubernetesError) else repr(exc)
        event = {"type": "ERROR", "object": status_body(code, "InternalError", message or "")}
        await raw_response.write(json.dumps(event).encode() + b"\n")

    async def _handle(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        # Replaces KubernetesEmulator._handle, which stores writes with merge-only semantics
        # before dispatching (here the resource dispatcher does all writes itself), and
        # kmock's reaction lookup, which finds out whether a reaction's filters accept the
        # request by scanning the whole request log once per reaction: milliseconds per
        # request with the log kept long, and most of the stand-in's CPU under load.
        for payload in self._payloads_by_priority():
            if payload._disabled.is_set() or not self._accepts(payload._source, request):
                continue
            try:
                return await payload(request)
            except rendering.ReactionMismatchError:  # it no longer matches, or ran out
                payload._disabled.set()
            except NotImplementedError:  # it matched but has nothing to answer with
                pass
        raise NotImplementedError(f"no reaction serves {request.method} {request.url}")

    def _payloads_by_priority(self) -> list[Any]:
        """The reactions, highest priority first, in registration order within one
        priority (kmock's order: shorter priority tuples are padded with zeros). Sorted
        again only when reactions were added or replaced."""
        payloads = list(self._payloads)
        registered = [id(payload) for payload in payloads]
        if self._sorted_payloads is not None and self._sorted_payloads[0] == registered:
            return self._sorted_payloads[1]
        width = max((len(payload.priorities) for payload in payloads), default=0)

        def rank(payload: Any) -> tuple[float, ...]:
            padding = (0,) * (width - len(payload.priorities))
            return tuple(-priority for priority in payload.priorities) + padding

        ordered = sorted(payloads, key=rank)
        self._sorted_payloads = (registered, ordered)
        return ordered

    def _accepts(self, view: Any, request: rendering.Request) -> bool:
        """Whether the request being served is among `view`'s requests. Filters and
        priorities are followed down to this server by testing the request alone; any
        other kind of view (slices, unions, exclusions) is asked the way kmock asks."""
        while view is not self:
            if type(view) is dsl.Filter:
                if not _criteria_accept(view.criteria, request):
                    return False
            elif type(view) is not dsl.Priority:
                return request in view
            view = view._source
        return True

    async def _serve_server_version(self, request: rendering.Request) -> rendering.Payload:
        return dict(SERVER_VERSION)

    async def _serve_version(self, request: rendering.Request) -> rendering.Payload:
        # kmock names the core group "/v1" and gives subresources their parent's kind;
        # kubectl's scale and rollout commands read these entries.
        assert request.resource is not None
        group, version = request.resource.group, request.resource.version
        served = [rt for rt in RESOURCE_TYPES if (rt.group, rt.version) == (group, version)]
        if not served:
            raise _error(404, "NotFound", "the server could not find the requested resource")
        entries: list[dict[str, Any]] = []
        for rt in served:
            entries.append(
                {
                    "name": rt.plural,
                    "singularName": rt.kind.lower(),
                    "namespaced": rt.namespaced,
                    "kind": rt.kind,
                    "verbs": sorted(_ALL_VERBS + ("deletecollection",)),
                    "shortNames": list(rt.short_names),
                    **({"categories": ["all"]} if rt.plural in _IN_CATEGORY_ALL else {}),
                }
            )
            for subresource in rt.subresources:
                scale = subresource == "scale"
                entries.append(
                    {
                        "name": f"{rt.plural}/{subresource}",
                        "singularName": "",
                        "namespaced": rt.namespaced,
                        "kind": "Scale" if scale else rt.kind,
                        "verbs": ["get", "patch", "update"],
                        **({"group": "autoscaling", "version": "v1"} if scale else {}),
                    }
                )
        return {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": f"{group}/{version}" if group else version,
            "resources": entries,
        }

    def _serve_openapi_root(self) -> rendering.Payload:
        return {
            "paths": {
                gv.lstrip("/"): {"serverRelativeURL": f"/openapi/v3{gv}"}
                for gv in sorted({_group_version_path(rt) for rt in RESOURCE_TYPES})
            }
        }

    def _serve_openapi_group_version(self, request: rendering.Request) -> rendering.Payload:
        # Only what kubectl reads to choose server-side field validation (apply, create,
        # replace): PATCH operations tagged with their kind and a fieldValidation parameter.
        # No schemas, so client-side validation and `kubectl explain` are not supported.
        wanted = request.url.path.removeprefix("/openapi/v3")
        served = [rt for rt in RESOURCE_TYPES if _group_version_path(rt) == wanted]
        if not served:
            raise _error(404, "NotFound", "the server could not find the requested resource")
        paths = {}
        for rt in served:
            scope = "/namespaces/{namespace}" if rt.namespaced else ""
            paths[f"{wanted}{scope}/{rt.plural}/{{name}}"] = {
                "patch": {
                    "x-kubernetes-action": "patch",
                    "x-kubernetes-group-version-kind": {
                        "group": rt.group,
                        "version": rt.version,
                        "kind": rt.kind,
                    },
                    "parameters": [
                        {"name": name, "in": "query", "schema": {"type": "string"}}
                        for name in ("dryRun", "fieldManager", "fieldValidation", "force")
                    ],
                    "responses": {"200": {"description": "OK"}},
                }
            }
        return {
            "openapi": "3.0.0",
            "info": {"title": "Kubernetes", "version": SERVER_VERSION["gitVersion"]},
            "paths": paths,
            "components": {"schemas": {}},
        }

    def _is_resource_request(self, request: rendering.Request) -> bool:
        return request.resource is not None and request.resource.plural is not None

    # -- storage (the ObjectStore the controllers use) ---------------------------------------

    def _key(self, rt: ResourceType, namespace: str | None, name: str) -> tuple:
        return (rt.resource, namespace if rt.namespaced else None, name)

    def get_object(self, plural: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        """A copy of the stored object, or None."""
        key = self._key(resource_type(plural), namespace, name)
        if key not in self._objects or self._objects[key].deleted:
            return None
        return json_copy(self._objects[key].raw)

    def peek_object(self, plural: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        """The stored object itself, not a copy (read it, never change it), or None."""
        key = self._key(resource_type(plural), namespace, name)
        if key not in self._objects or self._objects[key].deleted:
            return None
        return self._objects[key].raw

    def list_objects(self, plural: str, namespace: str | None = None) -> list[dict[str, Any]]:
        """Copies of the stored objects of a kind, in one namespace or all, sorted by name."""
        return [json_copy(raw) for raw in self._stored(plural, namespace)]

    def peek_objects(self, plural: str, namespace: str | None = None) -> list[dict[str, Any]]:
        """list_objects without the copies: the stored objects themselves (read them, never
        change them)."""
        return self._stored(plural, namespace)

    def _stored(self, plural: str, namespace: str | None) -> list[dict[str, Any]]:
        rt = resource_type(plural)
        if namespace is not None or not rt.namespaced:
            scopes = [self._keys_by_scope.get((rt.resource, namespace if rt.namespaced else None))]
        else:
            scopes = [
                keys for (kind, _), keys in self._keys_by_scope.items() if kind == rt.resource
            ]
        found = sorted(
            ((key[1] or "", key[2]), self._objects[key])
            for keys in scopes
            if keys
            for key in keys.values()
        )
        return [obj.raw for _, obj in found if not obj.deleted]

    def put_object(self, plural: str, obj: dict[str, Any]) -> dict[str, Any]:
        """Store a new version of `obj` (create or replace), with a new resourceVersion."""
        rt = resource_type(plural)
        obj = json_copy(obj)
        metadata = obj.setdefault("metadata", {})
        namespace = metadata.get("namespace") if rt.namespaced else None
        key = self._key(rt, namespace, metadata["name"])
        old = self.peek_object(plural, namespace, metadata["name"])  # kept as it was stored
        obj["apiVersion"], obj["kind"] = rt.api_version, rt.kind
        metadata.setdefault("uid", str(uuid.uuid4()))
        metadata.setdefault("creationTimestamp", now_rfc3339())
        if rt.tracks_generation:
            metadata.setdefault("generation", 1)
        self._resource_version += 1
        metadata["resourceVersion"] = str(self._resource_version)
        if old is None:
            self._objects[key] = obj
            self._keys_by_scope.setdefault(key[:2], {})[key[2]] = key
        else:
            history = self._objects[key].history
            history.append(obj)
            if len(history) > _OBJECT_VERSIONS_KEPT:
                del history[:-_OBJECT_VERSIONS_KEPT]
        self._emit(rt, "MODIFIED" if old is not None else "ADDED", old, obj)
        return json_copy(obj)

    def remove_object(self, plural: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        """Delete an object (no cascade); returns its last state with a new resourceVersion."""
        rt = resource_type(plural)
        old = self.get_object(plural, namespace, name)
        if old is None:
            return None
        key = self._key(rt, namespace, name)
        del self._objects[key]
        scope = self._keys_by_scope.get(key[:2])
        if scope is not None:
            scope.pop(key[2], None)
            if not scope:
                del self._keys_by_scope[key[:2]]
        self._resource_version += 1
        old["metadata"]["resourceVersion"] = str(self._resource_version)
        self._emit(rt, "DELETED", old, json_copy(old))  # the caller gets `old` to keep
        return old

    def _emit(
        self, rt: ResourceType, kind: str, old: Mapping[str, Any] | None, new: Mapping[str, Any]
    ) -> None:
        # `new` is as stored (stored objects are replaced, never changed): kept uncopied.
        self._event_log.append((self._resource_version, rt, kind, old, new))
        for watcher in list(self._watchers):
            if watcher.rt == rt and (event := watcher.event_for(kind, old, new)) is not None:
                watcher.queue.put_nowait(json_copy(event))

    # -- the API -----------------------------------------------------------------------------

    def _serve_resource(self, request: rendering.Request) -> rendering.Payload:
        assert request.resource is not None
        rt = _TYPES_BY_PLURAL.get(request.resource.plural or "")
        if rt is None or (rt.group, rt.version) != (
            request.resource.group,
            request.resource.version,
        ):
            raise _error(404, "NotFound", "the server could not find the requested resource")
        if request.namespace is not None and not rt.namespaced:
            raise _error(404, "NotFound", "the server could not find the requested resource")
        if request.subresource is not None and request.subresource not in rt.subresources:
            raise _error(404, "NotFound", "the server could not find the requested resource")
        method = str(request.method.value).upper()
        params = request.params
        dry_run = params.get("dryRun") == "All"
        content_type = request.headers.get("Content-Type", "application/json")
        if (
            method in ("POST", "PUT", "PATCH")
            and "json" not in content_type
            and "yaml" not in content_type
        ):
            raise _error(
                415,
                "UnsupportedMediaType",
                f"the stand-in accepts JSON bodies only, not {content_type}",
            )
        if method == "GET" and params.get("watch") in ("true", "1"):
            return kmock.Response(
                status=200,
                headers={"Content-Type": "application/json"},
                payload=self._watch(
                    rt, request, as_table=wants_table(request.headers.get("Accept"))
                ),
            )
        as_table = wants_table(request.headers.get("Accept")) and request.subresource is None
        if method == "GET" and request.name is None:
            if as_table:
                rows = self._selected(rt, request)
                return kmock.Response(
                    status=200, payload=table(rt.plural, rows, str(self._resource_version))
                )
            return kmock.Response(status=200, payload=self._list_response(rt, request))
        if method == "GET":
            obj = self._read(rt, request)
            if as_table:
                obj = table(rt.plural, [obj], obj["metadata"]["resourceVersion"])
            return kmock.Response(status=200, payload=obj)
        if method == "POST" and request.name is None:
            return kmock.Response(status=201, payload=self._create(rt, request, dry_run=dry_run))
        if method == "PUT" and request.name is not None:
            return kmock.Response(status=200, payload=self._replace(rt, request, dry_run=dry_run))
        if method == "PATCH" and request.name is not None:
            return kmock.Response(status=200, payload=self._patch(rt, request, dry_run=dry_run))
        if method == "DELETE" and request.name is not None:
            return kmock.Response(status=200, payload=self._delete(rt, request, dry_run=dry_run))
        raise _error(405, "MethodNotAllowed", f"the server does not allow this method ({method})")

    def _require_namespace(self, rt: ResourceType, namespace: str | None) -> None:
        if rt.namespaced and (
            namespace is None or self.get_object("namespaces", None, namespace) is None
        ):
            raise _error(
                404,
                "NotFound",
                f'namespaces "{namespace}" not found',
                name=namespace,
                kind="namespaces",
            )

    def _existing(self, rt: ResourceType, request: rendering.Request) -> dict[str, Any]:
        assert request.name is not None
        if rt.namespaced and request.namespace is None:
            raise _error(404, "NotFound", "the server could not find the requested resource")
        obj = self.get_object(rt.plural, request.namespace, request.name)
        if obj is None:
            raise _not_found(rt, request.name)
        return obj

    def _selected(self, rt: ResourceType, request: rendering.Request) -> list[dict[str, Any]]:
        try:
            label_requirements = parse_label_selector(request.params.get("labelSelector"))
            field_requirements = parse_field_selector(request.params.get("fieldSelector"))
        except SelectorError as error:
            raise _error(400, "BadRequest", str(error)) from error
        return [
            obj
            for obj in self.list_objects(rt.plural, request.namespace)
            if labels_match(label_requirements, obj["metadata"].get("labels"))
            and fields_match(field_requirements, obj)
        ]

    def _list_response(self, rt: ResourceType, request: rendering.Request) -> dict[str, Any]:
        return {
            "kind": f"{rt.kind}List",
            "apiVersion": rt.api_version,
            "metadata": {"resourceVersion": str(self._resource_version)},
            "items": self._selected(rt, request),
        }

    def _read(self, rt: ResourceType, request: rendering.Request) -> dict[str, Any]:
        obj = self._existing(rt, request)
        if request.subresource == "scale":
            return _scale_of(obj)
        return obj

    def _create(self, rt: ResourceType, request: rendering.Request, *, dry_run: bool):
        if rt.namespaced and request.namespace is None:
            raise _error(404, "NotFound", "the server could not find the requested resource")
        if request.subresource is not None or not isinstance(request.data, dict):
            raise _error(400, "BadRequest", "the request body must be a JSON object")
        obj = json_copy(request.data)
        metadata = obj.setdefault("metadata", {})
        if rt.namespaced:
            if metadata.get("namespace") not in (None, request.namespace):
                raise _error(
                    400,
                    "BadRequest",
                    "the namespace of the provided object does not match the namespace sent"
                    " on the request",
                )
            metadata["namespace"] = request.namespace
        if not metadata.get("name") and metadata.get("generateName"):
            metadata["name"] = f"{metadata['generateName']}{secrets.token_hex(3)[:5]}"
        if not metadata.get("name"):
            raise _invalid(
                rt, "", "metadata.name", "Required value: name or generateName is required"
            )
        return self.create_object(rt, obj, dry_run=dry_run, manager=_manager(request))

    def create_object(
        self,
        rt: ResourceType,
        obj: dict[str, Any],
        *,
        dry_run: bool = False,
        manager: str | None = None,
    ) -> dict[str, Any]:
        """Create as a client's POST does: defaults, validation, controllers."""
        metadata = obj["metadata"]
        namespace = metadata.get("namespace") if rt.namespaced else None
        self._require_namespace(rt, namespace)
        if self.get_object(rt.plural, namespace, metadata["name"]) is not None:
            raise _error(
                409,
                "AlreadyExists",
                f'{rt.group_resource} "{metadata["name"]}" already exists',
                name=metadata["name"],
                group=rt.group,
                kind=rt.plural,
            )
        for server_field in ("uid", "resourceVersion", "creationTimestamp", "generation"):
            metadata.pop(server_field, None)
        obj.pop("status", None)
        metadata.pop("managedFields", None)
        _apply_defaults(rt, obj)
        _validate(rt, obj, None)
        if manager is not None:
            record_write(None, obj, manager=manager, api_version=rt.api_version, at=now_rfc3339())
        if dry_run:
            return _with_server_fields(rt, obj)
        stored = self.put_object(rt.plural, obj)
        if rt.plural == "deployments":
            self.controllers.deployment_written(None, stored)
        return self.get_object(rt.plural, namespace, metadata["name"]) or stored

    def _replace(self, rt: ResourceType, request: rendering.Request, *, dry_run: bool):
        old = self._existing(rt, request)
        if not isinstance(request.data, dict):
            raise _error(400, "BadRequest", "the request body must be a JSON object")
        body = json_copy(request.data)
        wanted_version = (body.get("metadata") or {}).get("resourceVersion")
        if wanted_version and wanted_version != old["metadata"]["resourceVersion"]:
            raise _conflict(rt, old["metadata"]["name"])
        if request.subresource == "scale":
            return _scale_of(self._scale_to(rt, old, body, dry_run=dry_run))
        if request.subresource == "status":
            return self.update_object(
                rt, old, {**old, "status": body.get("status")}, dry_run=dry_run, status_only=True
            )
        return self.update_object(rt, old, body, dry_run=dry_run, manager=_manager(request))

    def _patch(self, rt: ResourceType, request: rendering.Request, *, dry_run: bool):
        old = self._existing(rt, request)
        content_type = request.headers.get("Content-Type", "")
        if content_type.split(";")[0].strip() == APPLY_PATCH:
            raise _error(
                415, "UnsupportedMediaType", "server-side apply is not supported by the stand-in"
            )
        base = _scale_of(old) if request.subresource == "scale" else old
        try:
            patched = apply_patch(base, request.data, content_type)
        except PatchError as error:
            reason = {400: "BadRequest", 415: "UnsupportedMediaType"}.get(error.status, "Invalid")
            raise _error(error.status, reason, str(error)) from error
        wanted_version = (patched.get("metadata") or {}).get("resourceVersion")
        if wanted_version and wanted_version != old["metadata"]["resourceVersion"]:
            raise _conflict(rt, old["metadata"]["name"])
        if request.subresource == "scale":
            return _scale_of(self._scale_to(rt, old, patched, dry_run=dry_run))
        if request.subresource == "status":
            return self.update_object(
                rt, old, {**old, "status": patched.get("status")}, dry_run=dry_run, status_only=True
            )
        return self.update_object(rt, old, patched, dry_run=dry_run, manager=_manager(request))

    def _scale_to(
        self, rt: ResourceType, old: dict[str, Any], scale: Mapping[str, Any], *, dry_run: bool
    ):
        replicas = (scale.get("spec") or {}).get("replicas")
        if not isinstance(replicas, int) or replicas < 0:
            raise _invalid(
                rt, old["metadata"]["name"], "spec.replicas", "must be a non-negative integer"
            )
        new = json_copy(old)
        new["spec"]["replicas"] = replicas
        return self.update_object(rt, old, new, dry_run=dry_run)

    def update_object(
        self,
        rt: ResourceType,
        old: dict[str, Any],
        new: dict[str, Any],
        *,
        dry_run: bool = False,
        status_only: bool = False,
        manager: str | None = None,
    ) -> dict[str, Any]:
        """Replace `old` with `new` as a client's PUT/PATCH does: server-owned fields are
        kept, status only changes through the status subresource, generation counts spec
        changes, `manager` (a client's write) is recorded in managedFields, and an update
        that changes nothing writes nothing."""
        new = json_copy(new)
        metadata = new.setdefault("metadata", {})
        for kept in ("name", "namespace", "uid", "creationTimestamp", "resourceVersion"):
            if kept in old["metadata"]:
                metadata[kept] = old["metadata"][kept]
        metadata.pop("generation", None)
        if "generation" in old["metadata"]:
            metadata["generation"] = old["metadata"]["generation"]
        new["apiVersion"], new["kind"] = rt.api_version, rt.kind
        if status_only:
            new = {**old, "status": new.get("status")}
            if new["status"] is None:
                new.pop("status")
        else:
            if "status" in rt.subresources:
                new.pop("status", None)
                if "status" in old:
                    new["status"] = old["status"]
            _apply_defaults(rt, new)
            _validate(rt, new, old)
            if rt.tracks_generation and new.get("spec") != old.get("spec"):
                metadata["generation"] = old["metadata"].get("generation", 1) + 1
            if manager is not None:
                metadata.pop("managedFields", None)
                if "managedFields" in old["metadata"]:
                    metadata["managedFields"] = old["metadata"]["managedFields"]
                record_write(
                    old, new, manager=manager, api_version=rt.api_version, at=now_rfc3339()
                )
        if new == old:
            return old
        if dry_run:
            return new
        stored = self.put_object(rt.plural, new)
        if rt.plural == "deployments" and not status_only:
            self.controllers.deployment_written(old, stored)
        return self.get_object(rt.plural, metadata.get("namespace"), metadata["name"]) or stored

    def _delete(self, rt: ResourceType, request: rendering.Request, *, dry_run: bool):
        obj = self._existing(rt, request)
        options = request.data if isinstance(request.data, dict) else {}
        policy = request.params.get("propagationPolicy") or options.get("propagationPolicy")
        if not dry_run:
            self.delete_object(rt, obj, orphan=policy == "Orphan")
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Success",
            "details": {
                "name": obj["metadata"]["name"],
                "group": rt.group,
                "kind": rt.plural,
                "uid": obj["metadata"]["uid"],
            },
        }

    def delete_object(
        self, rt: ResourceType, obj: Mapping[str, Any], *, orphan: bool = False
    ) -> None:
        """Delete an object and (unless orphaning) everything it owns, recursively."""
        metadata = obj["metadata"]
        removed = self.remove_object(rt.plural, metadata.get("namespace"), metadata["name"])
        if removed is None:
            return
        if rt.plural == "namespaces":
            for other in RESOURCE_TYPES:
                if other.namespaced:
                    for child in self.list_objects(other.plural, metadata["name"]):
                        self.delete_object(other, child)
        for other in RESOURCE_TYPES:
            if not other.namespaced:
                continue
            for child in self.list_objects(other.plural, metadata.get("namespace")):
                references = child["metadata"].get("ownerReferences") or []
                if not any(ref.get("uid") == metadata["uid"] for ref in references):
                    continue
                if orphan:
                    child["metadata"]["ownerReferences"] = [
                        ref for ref in references if ref.get("uid") != metadata["uid"]
                    ]
                    self.put_object(other.plural, child)
                else:
                    self.delete_object(other, child)
        self.controllers.object_deleted(rt.plural, removed)

    async def _watch(
        self, rt: ResourceType, request: rendering.Request, *, as_table: bool = False
    ) -> AsyncIterator[Any]:
        params = request.params
        try:
            watcher = _Watcher(
                rt,
                request.namespace,
                parse_label_selector(params.get("labelSelector")),
                parse_field_selector(params.get("fieldSelector")),
            )
        except SelectorError as error:
            raise _error(400, "BadRequest", str(error)) from error
        timeout = float(params.get("timeoutSeconds") or 1800)
        since = params.get("resourceVersion") or "0"
        initial: list[dict[str, Any]] = []
        if since == "0":
            initial = [
                {"type": "ADDED", "object": obj}
                for obj in self.list_objects(rt.plural, request.namespace)
                if watcher.selects(obj)
            ]
        else:
            try:
                since_number = int(since)
            except ValueError:
                since_number = -1
            oldest = self._event_log[0][0] if self._event_log else self._resource_version + 1
            if since_number < oldest - 1 and since_number < self._resource_version:
                initial = [
                    {
                        "type": "ERROR",
                        "object": status_body(410, "Expired", f"too old resource version: {since}"),
                    }
                ]
            else:
                for version, event_rt, kind, old, new in self._event_log:
                    if version <= since_number or event_rt != rt:
                        continue
                    if (event := watcher.event_for(kind, old, new)) is not None:
                        initial.append(json_copy(event))
        # Registered before the first await: no change can fall between replay and follow.
        self._watchers.add(watcher)
        first = True

        def shaped(event: dict[str, Any]) -> dict[str, Any]:
            # `kubectl get -w` wants each object as a one-row Table, headers in the first.
            nonlocal first
            if not as_table or event["type"] == "ERROR":
                return event
            rows = table(
                rt.plural, [event["object"]], event["object"]["metadata"]["resourceVersion"]
            )
            if not first:
                rows["columnDefinitions"] = []
            first = False
            return {"type": event["type"], "object": rows}

        try:
            yield b""  # sends the headers now, as the real server does
            for event in initial:
                yield shaped(event)
                if event["type"] == "ERROR":
                    return
            deadline = asyncio.get_running_loop().time() + timeout
            while True:
                remaining = deadline - asyncio.get_running_loop().time()
                if remaining <= 0:
                    return
                try:
                    event = await asyncio.wait_for(watcher.queue.get(), remaining)
                except TimeoutError:
                    return
                if event is None:
                    return
                yield shaped(event)
        finally:
            self._watchers.discard(watcher)

    # -- seeding -----------------------------------------------------------------------------

    def _create_namespace(self, name: str) -> None:
        if self.get_object("namespaces", None, name) is None:
            self.put_object(
                "namespaces",
                {
                    "metadata": {"name": name, "labels": {"kubernetes.io/metadata.name": name}},
                    "spec": {"finalizers": ["kubernetes"]},
                    "status": {"phase": "Active"},
                },
            )

    def seed_deployment(self, spec: Mapping[str, Any]) -> dict[str, Any]:
        """Create a Deployment with a rollout history, settled (see `seed` for the format)."""
        namespace = spec.get("namespace", "default")
        name = spec["name"]
        images = list(spec.get("images") or [])
        if not images:
            raise ValueError(f"seed for {namespace}/{name}: 'images' needs at least one image")
        container = spec.get("container", name)
        labels = dict(spec.get("labels") or {"app": name})
        self._create_namespace(namespace)
        annotations = dict(spec.get("annotations") or {})
        if spec.get("crash_loop"):
            annotations[CRASH_LOOP_ANNOTATION] = "true"
        manifest: dict[str, Any] = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "labels": labels,
                "annotations": annotations,
            },
            "spec": {
                "replicas": spec.get("replicas", 2),
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "containers": [
                            {
                                "name": container,
                                "image": images[0],
                                "ports": [{"containerPort": spec.get("port", 8080)}],
                            }
                        ]
                    },
                },
            },
        }
        rt = resource_type("deployments")
        existing = self.get_object("deployments", namespace, name)
        if existing is not None:
            self.delete_object(rt, existing)
        self.create_object(rt, json_copy(manifest))
        self.controllers.settle(namespace, name)
        for image in images[1:]:
            old = self.get_object("deployments", namespace, name)
            assert old is not None
            new = json_copy(old)
            new["spec"]["template"]["spec"]["containers"][0]["image"] = image
            self.update_object(rt, old, new)
            self.controllers.settle(namespace, name)
        result = self.get_object("deployments", namespace, name)
        assert result is not None
        return result

    def seed(self, specs: Iterable[Mapping[str, Any]]) -> None:
        """Create settled Deployments with rollout histories.

        Each spec: {"namespace": "shop", "name": "web", "images": ["web:1.0", "web:1.1"],
        "replicas": 2, "container": "web", "labels": {"app": "web"}, "port": 8080,
        "annotations": {...}, "crash_loop": false}. `images` is the rollout history,
        oldest first: each becomes a revision and the last one is live. Only `name` and
        `images` are required. A spec with only `namespace` creates that namespace.
        """
        for spec in specs:
            if "name" not in spec:
                self._create_namespace(spec["namespace"])
                continue
            self.seed_deployment(spec)


def _group_version_path(rt: ResourceType) -> str:
    return f"/apis/{rt.group}/{rt.version}" if rt.group else f"/api/{rt.version}"


def _scale_of(obj: Mapping[str, Any]) -> dict[str, Any]:
    metadata = obj["metadata"]
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            key: metadata[key]
            for key in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
            if key in metadata
        },
        "spec": {"replicas": obj["spec"].get("replicas", 0)},
        "status": {
            "replicas": (obj.get("status") or {}).get("replicas", 0),
            "selector": match_labels_selector(obj["spec"].get("selector")),
        },
    }


def _manager(request: rendering.Request) -> str:
    return manager_of(request.params or {}, request.headers or {})


def _with_server_fields(rt: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
    obj = json_copy(obj)
    obj["apiVersion"], obj["kind"] = rt.api_version, rt.kind
    obj["metadata"].setdefault("uid", str(uuid.uuid4()))
    obj["metadata"].setdefault("creationTimestamp", now_rfc3339())
    if rt.tracks_generation:
        obj["metadata"].setdefault("generation", 1)
    return obj


def _apply_defaults(rt: ResourceType, obj: dict[str, Any]) -> None:
    """The defaults the real API server fills in (the ones visible in rollouts)."""
    if rt.plural == "deployments":
        spec = obj.setdefault("spec", {})
        spec.setdefault("replicas", 1)
        spec.setdefault("revisionHistoryLimit", 10)
        spec.setdefault("progressDeadlineSeconds", 600)
        strategy = spec.setdefault("strategy", {})
        strategy.setdefault("type", "RollingUpdate")
        if strategy["type"] == "RollingUpdate":
            rolling = strategy.setdefault("rollingUpdate", {})
            rolling.setdefault("maxSurge", "25%")
            rolling.setdefault("maxUnavailable", "25%")
        template = spec.setdefault("template", {})
        template.setdefault("metadata", {}).setdefault("creationTimestamp", None)
        _default_pod_spec(template.setdefault("spec", {}))
    elif rt.plural == "replicasets":
        template = obj.setdefault("spec", {}).setdefault("template", {})
        _default_pod_spec(template.setdefault("spec", {}))
    elif rt.plural == "pods":
        _default_pod_spec(obj.setdefault("spec", {}))
        obj.setdefault("status", {"phase": "Pending"})
    elif rt.plural == "namespaces":
        obj.setdefault("spec", {"finalizers": ["kubernetes"]})
        obj.setdefault("status", {"phase": "Active"})


def _default_pod_spec(spec: dict[str, Any]) -> None:
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("securityContext", {})
    for container in (spec.get("containers") or []) + (spec.get("initContainers") or []):
        image = str(container.get("image", ""))
        tagged = ":" in image.rsplit("/", 1)[-1] or "@" in image
        pull = "IfNotPresent" if tagged and not image.endswith(":latest") else "Always"
        container.setdefault("imagePullPolicy", pull)
        container.setdefault("terminationMessagePath", "/dev/termination-log")
        container.setdefault("terminationMessagePolicy", "File")
        container.setdefault("resources", {})
        for port in container.get("ports") or []:
            port.setdefault("protocol", "TCP")


def _validate(rt: ResourceType, obj: Mapping[str, Any], old: Mapping[str, Any] | None) -> None:
    if rt.plural != "deployments":
        return
    name = obj["metadata"]["name"]
    spec = obj.get("spec") or {}
    selector = spec.get("selector") or {}
    if not selector.get("matchLabels") and not selector.get("matchExpressions"):
        raise _invalid(rt, name, "spec.selector", "Required value")
    labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    if not labels_match(parse_label_selector(match_labels_selector(selector)), labels):
        raise _invalid(
            rt,
            name,
            "spec.template.metadata.labels",
            f"Invalid value: {json.dumps(labels)}: `selector` does not match template `labels`",
        )
    if not ((spec.get("template") or {}).get("spec") or {}).get("containers"):
        raise _invalid(rt, name, "spec.template.spec.containers", "Required value")
    replicas = spec.get("replicas", 1)
    if not isinstance(replicas, int) or replicas < 0:
        raise _invalid(rt, name, "spec.replicas", "must be greater than or equal to 0")
    if old is not None and (old.get("spec") or {}).get("selector") != selector:
        raise _invalid(rt, name, "spec.selector", "field is immutable")


# -- running it ------------------------------------------------------------------------------


@dataclass
class KubeStandinHandle:
    """A stand-in served from a background thread; every method is thread-safe."""

    url: str
    port: int
    standin: KubeStandin
    _loop: asyncio.AbstractEventLoop
    _thread: threading.Thread
    _stop: asyncio.Event

    @property
    def thread_id(self) -> int:
        """The operating system's id of the thread that serves (for its CPU priority)."""
        assert self._thread.native_id is not None  # started before the handle is made
        return self._thread.native_id

    def call(self, function: Any, *args: Any, **kwargs: Any) -> Any:
        """Run `function` on the server's event loop thread and return its result."""

        async def run() -> Any:
            return function(*args, **kwargs)

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout=30)

    def seed(self, specs: str | Iterable[Mapping[str, Any]]) -> None:
        """Create settled Deployments: "demo", a JSON file path, or specs (see KubeStandin.seed)."""
        self.call(self.standin.seed, load_seed(specs))

    def create(self, manifest: Mapping[str, Any]) -> dict[str, Any]:
        """Create an object from a manifest as a client would (the rollout is not settled)."""
        plural = _plural_for(manifest)
        return self.call(
            self.standin.create_object, resource_type(plural), json_copy(dict(manifest))
        )

    def get(self, plural: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        """A stored object, e.g. `get("deployments", "shop", "web")`."""
        return self.call(self.standin.get_object, plural, namespace, name)

    def list(self, plural: str, namespace: str | None = None) -> list[dict[str, Any]]:
        """Stored objects of one kind, e.g. `list("replicasets", "shop")`."""
        return self.call(self.standin.list_objects, plural, namespace)

    def settle(self, namespace: str, name: str) -> None:
        """Complete a Deployment's rollout now instead of after the status delay."""
        self.call(self.standin.controllers.settle, namespace, name)

    def set_status_delay(self, seconds: float) -> None:
        """How long rollouts take to report complete from now on."""
        self.call(self.standin.set_status_delay, seconds)

    def crash_loop_image(self, image: str, crashing: bool = True) -> None:
        """Make pods running `image` crash-loop (or stop doing so for new pods)."""

        def update() -> None:
            if crashing:
                self.standin.crash_loop_images.add(image)
            else:
                self.standin.crash_loop_images.discard(image)

        self.call(update)

    def fail_next(
        self,
        count: int = 1,
        *,
        status: int = 500,
        method: str | None = None,
        path: str | None = None,
        retry_after: int | None = 1,
    ) -> None:
        """Answer the next `count` matching requests with `status` and a Status body.

        `method` ("PATCH") and `path` (a regular expression searched in the URL path)
        narrow the requests; 429 answers carry `Retry-After: retry_after`.
        """
        self.standin.inject_fault(
            Fault(count, status=status, method=method, path=path, retry_after=retry_after)
        )

    def hang_next(
        self,
        count: int = 1,
        *,
        seconds: float = 30.0,
        method: str | None = None,
        path: str | None = None,
        then_status: int | None = None,
    ) -> None:
        """Hold the next `count` matching requests for `seconds` before answering
        (normally, or with `then_status`); a client with a shorter timeout gives up."""
        self.standin.inject_fault(
            Fault(count, status=then_status, hang=seconds, method=method, path=path)
        )

    def clear_faults(self) -> None:
        """Forget faults that have not fired yet."""
        self.standin.clear_faults()

    def reset(self) -> None:
        """Delete everything but the default namespaces; forget faults and crashing images."""

        def wipe() -> None:
            self.standin.clear_faults()
            self.standin.crash_loop_images.clear()
            for created in self.standin.list_objects("namespaces"):
                if created["metadata"]["name"] not in DEFAULT_NAMESPACES:
                    self.standin.delete_object(resource_type("namespaces"), created)
            for namespace in DEFAULT_NAMESPACES:
                for rt in RESOURCE_TYPES:
                    if rt.namespaced:
                        for obj in self.standin.list_objects(rt.plural, namespace):
                            self.standin.delete_object(rt, obj)

        self.call(wipe)

    def write_kubeconfig(self, path: str | Path, *, namespace: str = "default") -> Path:
        """Write a kubeconfig for kubectl and the Python client pointing at this stand-in."""
        return write_kubeconfig(path, self.url, namespace=namespace)

    def stop(self) -> None:
        """Close watches and hanging requests, stop the server and its thread."""
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(timeout=15)


def _plural_for(manifest: Mapping[str, Any]) -> str:
    for rt in RESOURCE_TYPES:
        if rt.kind == manifest.get("kind") and rt.api_version == manifest.get("apiVersion"):
            return rt.plural
    raise ValueError(
        f"the stand-in does not serve {manifest.get('apiVersion')}/{manifest.get('kind')}"
    )


def start_kube_standin(
    port: int | None = None,
    *,
    host: str = "127.0.0.1",
    status_delay: float = 0.2,
    restart_interval: float = 1.0,
    crash_loop_images: Iterable[str] = (),
    seed: str | Iterable[Mapping[str, Any]] | None = None,
) -> KubeStandinHandle:
    """Serve a stand-in from a daemon thread; returns once it accepts connections.

    `port=None` picks a free port. `status_delay` is how long a rollout takes to report
    complete; `restart_interval` how often crash-looping containers restart.
    """
    started = threading.Event()
    box: dict[str, Any] = {}

    async def serve() -> None:
        stop = asyncio.Event()
        standin = KubeStandin(
            status_delay=status_delay,
            restart_interval=restart_interval,
            crash_loop_images=set(crash_loop_images),
        )
        async with standin:
            if seed is not None:
                # Seeded before the port opens: whoever connects first sees the whole seed.
                standin.seed(load_seed(seed))
            async with kmock.Server(standin, host=host, port=port, user_agent="") as server:
                box.update(
                    loop=asyncio.get_running_loop(), stop=stop, standin=standin, port=server.port
                )
                started.set()
                await stop.wait()
                standin.stop_streams()

    def run() -> None:
        try:
            asyncio.run(serve())
        except BaseException as error:  # reported to the starting thread
            box["error"] = error
            started.set()

    thread = threading.Thread(target=run, name="kube-standin", daemon=True)
    thread.start()
    if not started.wait(timeout=15) or "error" in box:
        raise RuntimeError(f"the Kubernetes stand-in did not start: {box.get('error')!r}")
    return KubeStandinHandle(
        url=f"http://{host}:{box['port']}",
        port=box["port"],
        standin=box["standin"],
        _loop=box["loop"],
        _thread=thread,
        _stop=box["stop"],
    )


def write_kubeconfig(
    path: str | Path, url: str, *, namespace: str = "default", context: str = "kube-standin"
) -> Path:
    """Write a kubeconfig whose current context points at `url` without credentials."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "kube-standin", "cluster": {"server": url}}],
        "users": [{"name": "kube-standin", "user": {}}],
        "contexts": [
            {
                "name": context,
                "context": {
                    "cluster": "kube-standin",
                    "user": "kube-standin",
                    "namespace": namespace,
                },
            }
        ],
        "current-context": context,
        "preferences": {},
    }
    path = Path(path)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


DEMO_SEED: tuple[dict[str, Any], ...] = (
    {
        "namespace": "storefront",
        "name": "web",
        "replicas": 3,
        "images": [
            "registry.example.com/storefront/web:v2.3.0",
            "registry.example.com/storefront/web:v2.4.0",
            "registry.example.com/storefront/web:v2.4.1",
        ],
    },
    {
        "namespace": "storefront",
        "name": "api",
        "replicas": 3,
        "images": [
            "registry.example.com/storefront/api:v1.8.2",
            "registry.example.com/storefront/api:v1.9.0",
        ],
    },
    {
        "namespace": "storefront",
        "name": "worker",
        "replicas": 2,
        "images": [
            "registry.example.com/storefront/worker:v1.8.2",
            "registry.example.com/storefront/worker:v1.9.0",
        ],
    },
    {
        "namespace": "payments",
        "name": "payments-api",
        "replicas": 2,
        "images": [
            "registry.example.com/payments/api:v3.1.0",
            "registry.example.com/payments/api:v3.2.0",
        ],
    },
)


def load_seed(seed: str | Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Seed specs from "demo", a JSON file path, or already-parsed specs."""
    if isinstance(seed, str):
        if seed == "demo":
            return [json_copy(spec) for spec in DEMO_SEED]
        loaded = json.loads(Path(seed).read_text())
        return list(loaded["deployments"] if isinstance(loaded, dict) else loaded)
    return list(seed)


def main(argv: list[str] | None = None) -> int:
    """`python -m devinfra.kube_standin`: serve until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--seed", help='"demo" or a JSON file with a list of deployment specs')
    parser.add_argument("--status-delay", type=float, default=2.0, help="seconds per rollout")
    parser.add_argument("--restart-interval", type=float, default=5.0)
    parser.add_argument(
        "--crash-loop-image", action="append", default=[], help="pods with this image crash-loop"
    )
    parser.add_argument("--kubeconfig", help="write a kubeconfig for this server to this path")
    options = parser.parse_args(argv)

    if options.kubeconfig:
        # Written before the port opens, so a client that sees the port finds the file.
        path = write_kubeconfig(options.kubeconfig, f"http://{options.host}:{options.port}")
        print(f"kubeconfig: kubectl --kubeconfig {path} get deploy -A", flush=True)
    handle = start_kube_standin(
        options.port,
        host=options.host,
        status_delay=options.status_delay,
        restart_interval=options.restart_interval,
        crash_loop_images=options.crash_loop_image,
        seed=options.seed,
    )
    print(f"Kubernetes stand-in serving on {handle.url}", flush=True)
    try:
        while handle._thread.is_alive():
            handle._thread.join(timeout=1)
    except KeyboardInterrupt:
        pass
    finally:
        handle.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
