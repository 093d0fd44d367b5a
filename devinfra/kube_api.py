"""The Kubernetes stand-in's resource API: list, read, create, replace, patch and delete
(with dry runs, the status and scale subresources, resourceVersion preconditions, JSON, merge
and strategic-merge patches, and cascading deletion by ownerReferences), and watches, as
the API server answers them."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any

import attrs
import kmock
from kmock._internal import rendering

from devinfra.kube_fields import manager_of, record_write
from devinfra.kube_objects import now_rfc3339
from devinfra.kube_patches import APPLY_PATCH, PatchError, apply_patch
from devinfra.kube_resources import (
    RESOURCE_TYPES,
    ResourceType,
    api_error,
    apply_defaults,
    conflict,
    invalid,
    not_found,
    scale_of,
    served_type,
    validate,
    with_server_fields,
)
from devinfra.kube_selectors import (
    SelectorError,
    fields_match,
    labels_match,
    parse_field_selector,
    parse_label_selector,
)
from devinfra.kube_store import KubeObjectStore
from devinfra.kube_tables import table, wants_table
from executors.json_docs import json_copy


@attrs.define(kw_only=True)
class KubeResourceApi(KubeObjectStore):
    """The object store behind the resource paths (`/api/v1/...`, `/apis/apps/v1/...`)."""

    def _serve_resource(self, request: rendering.Request) -> rendering.Payload:
        assert request.resource is not None
        rt = served_type(request.resource.plural or "")
        if rt is None or (rt.group, rt.version) != (
            request.resource.group,
            request.resource.version,
        ):
            raise api_error(404, "NotFound", "the server could not find the requested resource")
        if request.namespace is not None and not rt.namespaced:
            raise api_error(404, "NotFound", "the server could not find the requested resource")
        if request.subresource is not None and request.subresource not in rt.subresources:
            raise api_error(404, "NotFound", "the server could not find the requested resource")
        method = str(request.method.value).upper()
        params = request.params
        dry_run = params.get("dryRun") == "All"
        content_type = request.headers.get("Content-Type", "application/json")
        if (
            method in ("POST", "PUT", "PATCH")
            and "json" not in content_type
            and "yaml" not in content_type
        ):
            raise api_error(
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
        raise api_error(
            405, "MethodNotAllowed", f"the server does not allow this method ({method})"
        )

    def _require_namespace(self, rt: ResourceType, namespace: str | None) -> None:
        if rt.namespaced and (
            namespace is None or self.get_object("namespaces", None, namespace) is None
        ):
            raise api_error(
                404,
                "NotFound",
                f'namespaces "{namespace}" not found',
                name=namespace,
                kind="namespaces",
            )

    def _existing(self, rt: ResourceType, request: rendering.Request) -> dict[str, Any]:
        assert request.name is not None
        if rt.namespaced and request.namespace is None:
            raise api_error(404, "NotFound", "the server could not find the requested resource")
        obj = self.get_object(rt.plural, request.namespace, request.name)
        if obj is None:
            raise not_found(rt, request.name)
        return obj

    def _selected(self, rt: ResourceType, request: rendering.Request) -> list[dict[str, Any]]:
        try:
            label_requirements = parse_label_selector(request.params.get("labelSelector"))
            field_requirements = parse_field_selector(request.params.get("fieldSelector"))
        except SelectorError as error:
            raise api_error(400, "BadRequest", str(error)) from error
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
            return scale_of(obj)
        return obj

    def _create(self, rt: ResourceType, request: rendering.Request, *, dry_run: bool):
        if rt.namespaced and request.namespace is None:
            raise api_error(404, "NotFound", "the server could not find the requested resource")
        if request.subresource is not None or not isinstance(request.data, dict):
            raise api_error(400, "BadRequest", "the request body must be a JSON object")
        obj = json_copy(request.data)
        metadata = obj.setdefault("metadata", {})
        if rt.namespaced:
            if metadata.get("namespace") not in (None, request.namespace):
                raise api_error(
                    400,
                    "BadRequest",
                    "the namespace of the provided object does not match the namespace sent"
                    " on the request",
                )
            metadata["namespace"] = request.namespace
        if not metadata.get("name") and metadata.get("generateName"):
            metadata["name"] = f"{metadata['generateName']}{secrets.token_hex(3)[:5]}"
        if not metadata.get("name"):
            raise invalid(
                rt, "", "metadata.name", "Required value: name or generateName is required"
            )
        return self.create_object(rt, obj, dry_run=dry_run, manager=request_manager(request))

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
            raise api_error(
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
        apply_defaults(rt, obj)
        validate(rt, obj, None)
        if manager is not None:
            record_write(None, obj, manager=manager, api_version=rt.api_version, at=now_rfc3339())
        if dry_run:
            return with_server_fields(rt, obj)
        stored = self.put_object(rt.plural, obj)
        if rt.plural == "deployments":
            self.controllers.deployment_written(None, stored)
        return self.get_object(rt.plural, namespace, metadata["name"]) or stored

    def _replace(self, rt: ResourceType, request: rendering.Request, *, dry_run: bool):
        old = self._existing(rt, request)
        if not isinstance(request.data, dict):
            raise api_error(400, "BadRequest", "the request body must be a JSON object")
        body = json_copy(request.data)
        wanted_version = (body.get("metadata") or {}).get("resourceVersion")
        if wanted_version and wanted_version != old["metadata"]["resourceVersion"]:
            raise conflict(rt, old["metadata"]["name"])
        if request.subresource == "scale":
            return scale_of(self._scale_to(rt, old, body, dry_run=dry_run))
        if request.subresource == "status":
            return self.update_object(
                rt, old, {**old, "status": body.get("status")}, dry_run=dry_run, status_only=True
            )
        return self.update_object(rt, old, body, dry_run=dry_run, manager=request_manager(request))

    def _patch(self, rt: ResourceType, request: rendering.Request, *, dry_run: bool):
        old = self._existing(rt, request)
        content_type = request.headers.get("Content-Type", "")
        if content_type.split(";")[0].strip() == APPLY_PATCH:
            raise api_error(
                415, "UnsupportedMediaType", "server-side apply is not supported by the stand-in"
            )
        base = scale_of(old) if request.subresource == "scale" else old
        try:
            patched = apply_patch(base, request.data, content_type)
        except PatchError as error:
            reason = {400: "BadRequest", 415: "UnsupportedMediaType"}.get(error.status, "Invalid")
            raise api_error(error.status, reason, str(error)) from error
        wanted_version = (patched.get("metadata") or {}).get("resourceVersion")
        if wanted_version and wanted_version != old["metadata"]["resourceVersion"]:
            raise conflict(rt, old["metadata"]["name"])
        if request.subresource == "scale":
            return scale_of(self._scale_to(rt, old, patched, dry_run=dry_run))
        if request.subresource == "status":
            return self.update_object(
                rt, old, {**old, "status": patched.get("status")}, dry_run=dry_run, status_only=True
            )
        return self.update_object(
            rt, old, patched, dry_run=dry_run, manager=request_manager(request)
        )

    def _scale_to(
        self, rt: ResourceType, old: dict[str, Any], scale: Mapping[str, Any], *, dry_run: bool
    ):
        replicas = (scale.get("spec") or {}).get("replicas")
        if not isinstance(replicas, int) or replicas < 0:
            raise invalid(
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
            apply_defaults(rt, new)
            validate(rt, new, old)
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


def request_manager(request: rendering.Request) -> str:
    """The field manager a client's write names (devinfra.kube_fields)."""
    return manager_of(request.params or {}, request.headers or {})
