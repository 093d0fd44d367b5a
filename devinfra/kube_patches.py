"""The three PATCH flavours of the Kubernetes API, applied to plain JSON objects.

- JSON patch (RFC 6902, `application/json-patch+json`) through the `jsonpatch` package.
- JSON merge patch (RFC 7386, `application/merge-patch+json`): maps merge, null deletes,
  lists are replaced whole.
- Strategic merge patch (`application/strategic-merge-patch+json`, what kubectl sends):
  like a merge patch, but lists of known kinds (containers, env, ports, volumes, ...) are
  merged element by element on their merge key, and the `$patch`, `$retainKeys`,
  `$setElementOrder/<list>` and `$deleteFromPrimitiveList/<list>` directives are honoured.
  The real server reads merge keys from the Go types; here they come from a table of the
  list fields that Deployments, ReplicaSets, Pods and Services use.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jsonpatch

from executors.json_docs import json_copy

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"


class PatchError(ValueError):
    """A patch the API server would reject (422 for bad content, 415 for its type)."""

    def __init__(self, message: str, *, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


# List field name → the key that identifies an element (patchMergeKey in the Go types).
# `ports` is container ports (containerPort) or service ports (port): see _merge_key().
MERGE_KEYS: dict[str, str] = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "imagePullSecrets": "name",
    "hostAliases": "ip",
    "conditions": "type",
    "ownerReferences": "uid",
    "topologySpreadConstraints": "topologyKey",
    "resourceClaims": "name",
    "readinessGates": "conditionType",
}
# Lists of scalars whose patch strategy is "merge" (set union) rather than replace.
PRIMITIVE_MERGE_LISTS = frozenset({"finalizers"})


def apply_patch(original: Mapping[str, Any], patch: Any, content_type: str) -> dict[str, Any]:
    """Apply `patch` of the given content type to a copy of `original`."""
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type == JSON_PATCH:
        if not isinstance(patch, list):
            raise PatchError("a JSON patch must be a list of operations", status=400)
        try:
            result = jsonpatch.apply_patch(json_copy(dict(original)), patch)
        except jsonpatch.JsonPatchTestFailed as error:
            raise PatchError(f"the test operation failed: {error}") from error
        except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as error:
            raise PatchError(f"the JSON patch could not be applied: {error}") from error
        if not isinstance(result, dict):
            raise PatchError("the JSON patch replaced the whole object with a non-object")
        return result
    if not isinstance(patch, Mapping):
        raise PatchError("a merge patch must be a JSON object", status=400)
    if media_type == MERGE_PATCH:
        return merge_patch(original, patch)
    if media_type == STRATEGIC_MERGE_PATCH:
        return strategic_merge_patch(original, patch)
    raise PatchError(f"the patch content type {media_type!r} is not supported", status=415)


def merge_patch(original: Any, patch: Any) -> Any:
    """RFC 7386: objects merge recursively, null removes a key, anything else replaces."""
    if not isinstance(patch, Mapping):
        return json_copy(patch)
    result = json_copy(dict(original)) if isinstance(original, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def strategic_merge_patch(original: Any, patch: Any) -> Any:
    """Apply a strategic merge patch as `kubectl apply/patch/set/rollout` produce them."""
    return _merge_map(original if isinstance(original, Mapping) else {}, patch)


def _merge_map(original: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any] | None:
    directive = patch.get("$patch")
    if directive == "delete":
        return None
    body = {key: value for key, value in patch.items() if key != "$patch"}
    if directive == "replace":
        return _strip_directives(body)

    result = json_copy(dict(original))
    retain = body.pop("$retainKeys", None)
    orders: dict[str, list[Any]] = {}
    removals: dict[str, list[Any]] = {}
    for key in list(body):
        if key.startswith("$setElementOrder/"):
            orders[key.split("/", 1)[1]] = body.pop(key)
        elif key.startswith("$deleteFromPrimitiveList/"):
            removals[key.split("/", 1)[1]] = body.pop(key)

    for key, value in body.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(result.get(key), Mapping):
            merged = _merge_map(result[key], value)
            if merged is None:
                result.pop(key, None)
            else:
                result[key] = merged
        elif isinstance(value, list) and isinstance(result.get(key), list):
            result[key] = _merge_list(key, result[key], value)
        elif isinstance(value, Mapping):
            merged = _merge_map({}, value)
            if merged is not None:
                result[key] = merged
        elif isinstance(value, list):
            result[key] = _merge_list(key, [], value)
        else:
            result[key] = value

    for key, values in removals.items():
        if isinstance(result.get(key), list):
            result[key] = [item for item in result[key] if item not in values]
    for key, order in orders.items():
        if isinstance(result.get(key), list):
            result[key] = _reorder(key, result[key], order)
    if retain is not None:
        result = {key: value for key, value in result.items() if key in retain}
    return result


def _merge_key(field: str, items: list[Any]) -> str | None:
    if field == "ports":
        dicts = [item for item in items if isinstance(item, Mapping)]
        if dicts and all("containerPort" in item for item in dicts):
            return "containerPort"
        return "port" if dicts and all("port" in item for item in dicts) else None
    return MERGE_KEYS.get(field)


def _merge_list(field: str, original: list[Any], patch: list[Any]) -> list[Any]:
    if any(isinstance(item, Mapping) and item.get("$patch") == "replace" for item in patch):
        return [
            _strip_directives(item)
            for item in patch
            if not (isinstance(item, Mapping) and "$patch" in item)
        ]
    if field in PRIMITIVE_MERGE_LISTS:
        return list(original) + [item for item in patch if item not in original]
    key = _merge_key(field, list(original) + list(patch))
    if key is None:
        return [_strip_directives(item) for item in patch]

    result = json_copy(list(original))
    for item in patch:
        if not isinstance(item, Mapping) or key not in item:
            continue
        position = next(
            (
                i
                for i, old in enumerate(result)
                if isinstance(old, Mapping) and old.get(key) == item[key]
            ),
            None,
        )
        if item.get("$patch") == "delete":
            if position is not None:
                del result[position]
        elif position is None:
            result.append(_strip_directives(item))
        else:
            merged = _merge_map(result[position], item)
            if merged is None:
                del result[position]
            else:
                result[position] = merged
    return result


def _reorder(field: str, items: list[Any], order: list[Any]) -> list[Any]:
    key = _merge_key(field, items)

    def identity(item: Any) -> Any:
        return item.get(key) if key and isinstance(item, Mapping) else item

    wanted = [identity(entry) if isinstance(entry, Mapping) else entry for entry in order]
    ranked = sorted(
        range(len(items)),
        key=lambda i: (
            wanted.index(identity(items[i])) if identity(items[i]) in wanted else len(wanted),
            i,
        ),
    )
    return [items[i] for i in ranked]


def _strip_directives(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {
            key: _strip_directives(item)
            for key, item in value.items()
            if not key.startswith("$") and item is not None
        }
    if isinstance(value, list):
        return [_strip_directives(item) for item in value]
    return value
