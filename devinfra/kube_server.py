"""The Kubernetes stand-in's server (see devinfra.kube_standin for running it): kmock's
emulator with request parsing kmock lacks, injected faults, discovery and OpenAPI for
kubectl, the resource API (devinfra.kube_api) and the workload controllers."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import json
import re
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import aiohttp.web
import attrs
import kmock
from kmock._internal import dsl, enums, filtering, rendering

from devinfra.kube_api import KubeResourceApi
from devinfra.kube_controllers import WorkloadControllers
from devinfra.kube_objects import CRASH_LOOP_ANNOTATION
from devinfra.kube_resources import (
    ALL_VERBS,
    DEFAULT_NAMESPACES,
    FAULT_REASONS,
    IN_CATEGORY_ALL,
    RESOURCE_TYPES,
    SERVER_VERSION,
    Fault,
    api_error,
    group_version_path,
    parse_api_path,
    resource_type,
    status_body,
)
from executors.json_docs import json_copy

# How many requests the stand-in remembers for tests to inspect (a bench lowers it).
REQUESTS_KEPT = 2000


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
class KubeStandin(KubeResourceApi):
    """kmock's Kubernetes emulator with the API semantics and controllers rollbacks need."""

    status_delay: float = 0.2
    restart_interval: float = 1.0
    crash_loop_images: set[str] = attrs.field(factory=set)

    _faults: list[Fault] = attrs.field(factory=list, init=False)
    _faults_lock: threading.Lock = attrs.field(factory=threading.Lock, init=False)
    _stopping: asyncio.Event | None = attrs.field(default=None, init=False)
    _ticker: asyncio.Task[None] | None = attrs.field(default=None, init=False)
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
                verbs=set(ALL_VERBS),
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
                reason, message = FAULT_REASONS.get(fault.status, ("InternalError", "fault"))
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
            raise api_error(404, "NotFound", "the server could not find the requested resource")
        entries: list[dict[str, Any]] = []
        for rt in served:
            entries.append(
                {
                    "name": rt.plural,
                    "singularName": rt.kind.lower(),
                    "namespaced": rt.namespaced,
                    "kind": rt.kind,
                    "verbs": sorted(ALL_VERBS + ("deletecollection",)),
                    "shortNames": list(rt.short_names),
                    **({"categories": ["all"]} if rt.plural in IN_CATEGORY_ALL else {}),
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
                for gv in sorted({group_version_path(rt) for rt in RESOURCE_TYPES})
            }
        }

    def _serve_openapi_group_version(self, request: rendering.Request) -> rendering.Payload:
        # Only what kubectl reads to choose server-side field validation (apply, create,
        # replace): PATCH operations tagged with their kind and a fieldValidation parameter.
        # No schemas, so client-side validation and `kubectl explain` are not supported.
        wanted = request.url.path.removeprefix("/openapi/v3")
        served = [rt for rt in RESOURCE_TYPES if group_version_path(rt) == wanted]
        if not served:
            raise api_error(404, "NotFound", "the server could not find the requested resource")
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
