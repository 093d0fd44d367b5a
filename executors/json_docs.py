"""Copying JSON documents (Kubernetes objects as the API serves them): faster than deepcopy."""

from __future__ import annotations

import copy

_SCALARS = (str, int, float, bool, type(None))


def json_copy[T](value: T) -> T:
    """A deep copy of a JSON document: dicts, lists and scalars are copied directly, about
    three times faster than copy.deepcopy (which was most of the Kubernetes stand-in's CPU
    under load, and much of the Kubernetes backend's); anything else goes through
    copy.deepcopy."""
    kind = type(value)
    if kind is dict:
        return {key: json_copy(item) for key, item in value.items()}  # type: ignore[attr-defined, return-value]
    if kind is list:
        return [json_copy(item) for item in value]  # type: ignore[attr-defined, return-value]
    if kind in _SCALARS:
        return value
    return copy.deepcopy(value)
