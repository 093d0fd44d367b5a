"""Kubernetes label and field selectors, parsed and matched as the API server does.

Label selectors accept the equality forms (`app=web`, `app==web`, `app!=web`) and the
set forms (`tier in (web,api)`, `tier notin (db)`, `canary`, `!canary`), comma-joined.
Field selectors accept `path=value`, `path==value` and `path!=value` on dotted paths
(`metadata.name`, `status.phase`, `spec.nodeName`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


class SelectorError(ValueError):
    """A selector string the API server would reject with 400 Bad Request."""


@dataclass(frozen=True)
class Requirement:
    """One comma-separated term of a label selector."""

    key: str
    operator: str  # "=", "!=", "in", "notin", "exists", "!"
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        match self.operator:
            case "=" | "in":
                return present and value in self.values
            case "!=" | "notin":
                return not present or value not in self.values
            case "exists":
                return present
            case "!":
                return not present
        raise SelectorError(f"unknown operator {self.operator!r}")


_LABEL_KEY = r"[A-Za-z0-9]([-A-Za-z0-9_./]*[A-Za-z0-9])?"
_SET_TERM = re.compile(rf"^\s*({_LABEL_KEY})\s+(in|notin)\s*\(([^)]*)\)\s*$")
_EQUALITY_TERM = re.compile(rf"^\s*({_LABEL_KEY})\s*(==|=|!=)\s*([-A-Za-z0-9_.]*)\s*$")
_EXISTS_TERM = re.compile(rf"^\s*(!?)\s*({_LABEL_KEY})\s*$")


def _split_terms(selector: str) -> list[str]:
    """Split on commas that are not inside the parentheses of a set term."""
    terms: list[str] = []
    depth = 0
    current: list[str] = []
    for char in selector:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            terms.append("".join(current))
            current = []
        else:
            current.append(char)
    terms.append("".join(current))
    return [term for term in terms if term.strip()]


def parse_label_selector(selector: str | None) -> tuple[Requirement, ...]:
    """Parse a label selector string into requirements; an empty selector selects all."""
    if not selector:
        return ()
    requirements: list[Requirement] = []
    for term in _split_terms(selector):
        if found := _SET_TERM.match(term):
            values = frozenset(v.strip() for v in found.group(4).split(",") if v.strip())
            requirements.append(Requirement(found.group(1), found.group(3), values))
        elif found := _EQUALITY_TERM.match(term):
            operator = "!=" if found.group(3) == "!=" else "="
            requirements.append(Requirement(found.group(1), operator, frozenset([found.group(4)])))
        elif found := _EXISTS_TERM.match(term):
            operator = "!" if found.group(1) else "exists"
            requirements.append(Requirement(found.group(2), operator))
        else:
            raise SelectorError(f"unable to parse requirement: {term.strip()!r}")
    return tuple(requirements)


def labels_match(requirements: tuple[Requirement, ...], labels: Mapping[str, str] | None) -> bool:
    """Whether an object with `labels` satisfies every requirement."""
    labels = labels or {}
    return all(requirement.matches(labels) for requirement in requirements)


def match_labels_selector(selector: Mapping[str, Any] | None) -> str:
    """Render a `LabelSelector` object (matchLabels, matchExpressions) as a selector string."""
    if not selector:
        return ""
    terms = [f"{key}={value}" for key, value in sorted((selector.get("matchLabels") or {}).items())]
    for expression in selector.get("matchExpressions") or []:
        key, operator = expression["key"], expression["operator"]
        values = ",".join(expression.get("values") or [])
        if operator == "In":
            terms.append(f"{key} in ({values})")
        elif operator == "NotIn":
            terms.append(f"{key} notin ({values})")
        elif operator == "Exists":
            terms.append(key)
        elif operator == "DoesNotExist":
            terms.append(f"!{key}")
    return ",".join(terms)


@dataclass(frozen=True)
class FieldRequirement:
    """One term of a field selector: the value at a dotted path equals (or not) a string."""

    path: tuple[str, ...]
    value: str
    negated: bool

    def matches(self, obj: Mapping[str, Any]) -> bool:
        current: Any = obj
        for part in self.path:
            current = current.get(part) if isinstance(current, Mapping) else None
        actual = "" if current is None else _field_text(current)
        return (actual != self.value) if self.negated else (actual == self.value)


def _field_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


_FIELD_TERM = re.compile(r"^\s*([A-Za-z0-9_.]+)\s*(==|=|!=)\s*(.*?)\s*$")


def parse_field_selector(selector: str | None) -> tuple[FieldRequirement, ...]:
    """Parse a field selector string; an empty selector selects all."""
    if not selector:
        return ()
    requirements: list[FieldRequirement] = []
    for term in selector.split(","):
        if not term.strip():
            continue
        found = _FIELD_TERM.match(term)
        if not found:
            raise SelectorError(f"invalid field selector: {term.strip()!r}")
        path = tuple(found.group(1).split("."))
        requirements.append(FieldRequirement(path, found.group(3), found.group(2) == "!="))
    return tuple(requirements)


def fields_match(requirements: tuple[FieldRequirement, ...], obj: Mapping[str, Any]) -> bool:
    """Whether `obj` satisfies every field requirement."""
    return all(requirement.matches(obj) for requirement in requirements)
