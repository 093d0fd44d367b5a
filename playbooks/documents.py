"""A playbook as written: YAML, checked against its schema and for what the schema cannot
say (every `{parameter}` a step names is declared, a `when` names a parameter), with errors
that give the place (`groups[2].steps[0].service`) or, for YAML itself, the line.

    name: database-recovery
    title: Database recovery
    description: …
    parameters:
      - name: database          # referred to as {database}
        label: Database
        type: service           # service | services | string | datetime | integer
        backends: [database]    # for service(s): the backend kinds allowed
        required: true
        help: …
    groups:                     # one after another; a group's steps run side by side
      - label: Stop the writers
        steps:
          - service: "{writers}"         # a services parameter: one step per service
            options: {operation: scale, replicas: 0}
          - service: orders-db           # or a service named outright
            release: known_good          # known_good | previous (default: none)
            options: {restore_time: "{restore_time}"}
            when: restore_time           # only when that parameter is given
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import jsonschema
import yaml

from executors.schemas import validate_fixed_schema

MAX_SOURCE_BYTES = 100_000
MAX_GROUPS = 50
MAX_STEPS = 200
PARAMETER_TYPES = ("service", "services", "string", "datetime", "integer")
REFERENCE = re.compile(r"^\{([a-z][a-z0-9_]{0,39})\}$")
NAME = r"^[a-z][a-z0-9_]{0,39}$"

SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["name", "title", "groups"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "pattern": r"^[a-z0-9][a-z0-9-]{0,79}$"},
        "title": {"type": "string", "minLength": 1, "maxLength": 200},
        "description": {"type": "string", "maxLength": 10_000},
        "parameters": {
            "type": "array",
            "maxItems": 30,
            "items": {
                "type": "object",
                "required": ["name", "type"],
                "additionalProperties": False,
                "properties": {
                    "name": {"type": "string", "pattern": NAME},
                    "label": {"type": "string", "maxLength": 200},
                    "type": {"enum": list(PARAMETER_TYPES)},
                    "backends": {
                        "type": "array",
                        "items": {"type": "string", "minLength": 1},
                        "minItems": 1,
                    },
                    "required": {"type": "boolean"},
                    "default": {"type": ["string", "integer"]},
                    "help": {"type": "string", "maxLength": 2000},
                },
            },
        },
        "groups": {
            "type": "array",
            "minItems": 1,
            "maxItems": MAX_GROUPS,
            "items": {
                "type": "object",
                "required": ["steps"],
                "additionalProperties": False,
                "properties": {
                    "label": {"type": "string", "maxLength": 200},
                    "steps": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "object",
                            "required": ["service"],
                            "additionalProperties": False,
                            "properties": {
                                "service": {"type": "string", "minLength": 1, "maxLength": 80},
                                "label": {"type": "string", "maxLength": 200},
                                "release": {"enum": ["known_good", "previous"]},
                                "options": {
                                    "type": "object",
                                    "additionalProperties": {
                                        "type": ["string", "integer", "boolean"]
                                    },
                                },
                                "when": {"type": "string", "pattern": NAME},
                                "timeout_seconds": {
                                    "type": "integer",
                                    "minimum": 1,
                                    "maximum": 3600,
                                },
                            },
                        },
                    },
                },
            },
        },
    },
}


class PlaybookError(ValueError):
    """A playbook that cannot be accepted; `where` says where (a path, or a line)."""

    def __init__(self, where: str, message: str) -> None:
        super().__init__(f"{where}: {message}")
        self.where = where
        self.reason = message


@dataclass(frozen=True)
class Parameter:
    name: str
    label: str
    type: str
    backends: tuple[str, ...]
    required: bool
    default: str | int | None
    help: str


def document_parse(source: str) -> dict[str, Any]:
    """The playbook written in `source` (YAML), validated; PlaybookError saying where not."""
    if len(source.encode()) > MAX_SOURCE_BYTES:
        raise PlaybookError("yaml", f"a playbook is at most {MAX_SOURCE_BYTES // 1000} KB")
    try:
        document = yaml.safe_load(source)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark
        line = f"line {mark.line + 1}" if mark is not None else "yaml"
        raise PlaybookError(line, str(error.problem or error)) from None
    except yaml.YAMLError as error:
        raise PlaybookError("yaml", str(error)) from None
    document_check(document)
    return document  # type: ignore[no-any-return]


def document_check(document: Any) -> None:
    """Validate a parsed playbook; PlaybookError with the path of the first problem."""
    try:
        validate_fixed_schema(document, SCHEMA)
    except jsonschema.ValidationError as error:
        where = "".join(
            f"[{part}]" if isinstance(part, int) else f".{part}" for part in error.absolute_path
        ).lstrip(".")
        raise PlaybookError(where or "playbook", error.message) from None
    declared = {parameter["name"] for parameter in document.get("parameters", [])}
    if len(declared) != len(document.get("parameters", [])):
        raise PlaybookError("parameters", "each parameter needs a name of its own")
    steps = 0
    for g, group in enumerate(document["groups"]):
        for s, step in enumerate(group["steps"]):
            steps += 1
            where = f"groups[{g}].steps[{s}]"
            _check_references(where, step, declared)
    if steps > MAX_STEPS:
        raise PlaybookError("groups", f"a playbook has at most {MAX_STEPS} steps")
    for p, parameter in enumerate(document.get("parameters", [])):
        if parameter.get("backends") and parameter["type"] not in ("service", "services"):
            raise PlaybookError(f"parameters[{p}].backends", "only for service parameters")


def _check_references(where: str, step: dict[str, Any], declared: set[str]) -> None:
    values = [("service", step["service"])] + [
        (f"options.{name}", value) for name, value in (step.get("options") or {}).items()
    ]
    for field, value in values:
        if not isinstance(value, str) or "{" not in value:
            continue
        match = REFERENCE.match(value)
        if match is None:
            raise PlaybookError(
                f"{where}.{field}", "a parameter is referred to as the whole value: {name}"
            )
        if match.group(1) not in declared:
            raise PlaybookError(f"{where}.{field}", f"unknown parameter {value}")
    if "when" in step and step["when"] not in declared:
        raise PlaybookError(f"{where}.when", f"unknown parameter {step['when']!r}")


def parameters_of(document: dict[str, Any]) -> list[Parameter]:
    return [
        Parameter(
            name=item["name"],
            label=item.get("label") or item["name"].replace("_", " ").capitalize(),
            type=item["type"],
            backends=tuple(item.get("backends") or ()),
            required=bool(item.get("required", False)),
            default=item.get("default"),
            help=item.get("help", ""),
        )
        for item in document.get("parameters", [])
    ]


def reference_of(value: Any) -> str | None:
    """The parameter a value refers to (`{name}`), or None for a literal."""
    match = REFERENCE.match(value) if isinstance(value, str) else None
    return match.group(1) if match else None


def document_dump(document: dict[str, Any]) -> str:
    """The document as YAML (for a version imported as JSON, or saved from a form)."""
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True)
