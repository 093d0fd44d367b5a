"""`metadata.managedFields` as the API server keeps it (Kubernetes 1.30, FieldsV1): one
entry per field manager and operation, with the time of its last change and the fields it
set. A client names its manager with the `fieldManager` query parameter; without one the
server takes its User-Agent up to the first "/" (the official Python client's is
"OpenAPI-Generator/<version>/python"). The stand-in records the fields a write changed,
which is what the console reads back: who last changed a Deployment's pod template."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from executors.json_docs import json_copy

SERVER_KEPT = ("managedFields", "resourceVersion", "generation", "uid", "creationTimestamp")


def manager_of(params: Mapping[str, str], headers: Mapping[str, str]) -> str:
    named = params.get("fieldManager", "")
    if named:
        return named[:128]
    agent = next((value for key, value in headers.items() if key.lower() == "user-agent"), "")
    return agent.split("/", 1)[0][:128] or "unknown"


def changed_fields(old: Any, new: Any) -> dict[str, Any]:
    """The FieldsV1 tree of what differs between two objects ({} marks a changed leaf)."""
    if not isinstance(old, dict) or not isinstance(new, dict):
        return {}
    tree: dict[str, Any] = {}
    for key in sorted(set(old) | set(new)):
        if old.get(key) != new.get(key):
            tree[f"f:{key}"] = changed_fields(old.get(key), new.get(key))
    return tree


def merged(into: dict[str, Any], more: Mapping[str, Any]) -> dict[str, Any]:
    for key, value in more.items():
        into[key] = merged(into.get(key) or {}, value) if value else into.get(key, {})
    return into


def record_write(
    old: Mapping[str, Any] | None, new: dict[str, Any], *, manager: str, api_version: str, at: str
) -> None:
    """Add the write `old` → `new` by `manager` to `new`'s managedFields, in place."""
    metadata = new.setdefault("metadata", {})
    before = {key: value for key, value in (old or {}).items() if key != "status"}
    after = {key: value for key, value in new.items() if key != "status"}
    for side in (before, after):
        if "metadata" in side:
            side["metadata"] = {
                key: value for key, value in side["metadata"].items() if key not in SERVER_KEPT
            }
    fields = changed_fields(before, after)
    if not fields:
        return
    entries = [dict(entry) for entry in (old or {}).get("metadata", {}).get("managedFields", [])]
    mine = next(
        (e for e in entries if e.get("manager") == manager and e.get("operation") == "Update"),
        None,
    )
    if mine is None:
        mine = {"manager": manager, "operation": "Update", "fieldsType": "FieldsV1"}
        entries.append(mine)
    mine["apiVersion"], mine["time"] = api_version, at
    mine["fieldsV1"] = merged(json_copy(mine.get("fieldsV1") or {}), fields)
    metadata["managedFields"] = entries
