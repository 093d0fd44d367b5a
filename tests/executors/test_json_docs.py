"""Copying the stand-in's JSON documents."""

from __future__ import annotations

from datetime import date
from typing import Any

from executors.json_docs import json_copy


def test_a_copy_shares_no_dict_or_list_with_the_original() -> None:
    original: dict[str, Any] = {"spec": {"containers": [{"name": "app", "ports": [80]}]}}

    copied = json_copy(original)
    copied["spec"]["containers"][0]["ports"].append(443)
    copied["spec"]["containers"].append({"name": "sidecar"})

    assert original == {"spec": {"containers": [{"name": "app", "ports": [80]}]}}


def test_values_that_are_not_json_are_deep_copied_as_they_are() -> None:
    original: dict[str, Any] = {"when": date(2026, 11, 30), "pair": ({"a": 1},)}

    copied = json_copy(original)

    assert copied == original and isinstance(copied["pair"], tuple)
    assert copied["pair"][0] is not original["pair"][0]
