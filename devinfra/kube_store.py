"""The Kubernetes stand-in's object store: versions of each object (kmock's store) found
through an index by kind and namespace, resourceVersions, and the change events that watches
replay and follow. `KubeObjectStore` is the ObjectStore the controllers
(devinfra.kube_controllers) read and write."""

from __future__ import annotations

import asyncio
import collections
import uuid
from collections.abc import AsyncIterator, Mapping
from typing import Any

import attrs
import kmock
from kmock._internal import rendering

from devinfra.kube_controllers import WorkloadControllers
from devinfra.kube_objects import now_rfc3339
from devinfra.kube_resources import (
    OBJECT_VERSIONS_KEPT,
    ResourceType,
    Watcher,
    api_error,
    resource_type,
    status_body,
)
from devinfra.kube_selectors import SelectorError, parse_field_selector, parse_label_selector
from devinfra.kube_tables import table
from executors.json_docs import json_copy

_EVENT_LOG_SIZE = 5000


@attrs.define(kw_only=True)
class KubeObjectStore(kmock.KubernetesEmulator):
    """kmock's emulator with the API server's storage: resourceVersions, an index of keys
    by kind and namespace, and watch events."""

    controllers: WorkloadControllers = attrs.field(init=False)
    _resource_version: int = attrs.field(default=0, init=False)
    _watchers: set[Watcher] = attrs.field(factory=set, init=False)
    _event_log: collections.deque = attrs.field(
        factory=lambda: collections.deque(maxlen=_EVENT_LOG_SIZE), init=False
    )
    # The stored objects' keys by kind and namespace: a list reads its namespace's
    # objects only, as the API server reads one key prefix, not the whole store.
    _keys_by_scope: dict[tuple[Any, str | None], dict[str, tuple]] = attrs.field(
        factory=dict, init=False
    )

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
            if len(history) > OBJECT_VERSIONS_KEPT:
                del history[:-OBJECT_VERSIONS_KEPT]
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

    async def _watch(
        self, rt: ResourceType, request: rendering.Request, *, as_table: bool = False
    ) -> AsyncIterator[Any]:
        params = request.params
        try:
            watcher = Watcher(
                rt,
                request.namespace,
                parse_label_selector(params.get("labelSelector")),
                parse_field_selector(params.get("fieldSelector")),
            )
        except SelectorError as error:
            raise api_error(400, "BadRequest", str(error)) from error
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
