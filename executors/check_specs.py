"""The `checks` list a service's target config may carry: its schema, and the names and
checklist items of its checks.

Each entry is a check spec: a `kind` (http, command, kubernetes_pods, prometheus,
cloudwatch_alarm, sentry_errors) and that
kind's arguments, validated by `validate_checks` against CHECK_SCHEMAS.
`executors.checks.run_check` runs one spec. This module sits below `executors.base`, whose
`Backend.validate_config` validates the list, so it imports neither base nor the checks:
validating a service's config loads no HTTP client and no Kubernetes client.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jsonschema

from executors.addresses import named_address_forbidden
from executors.errors import ConfigError
from executors.schemas import validate_fixed_schema

# How a Prometheus check compares its samples with the threshold.
COMPARISONS = ("below", "above")
CHECK_KINDS = (
    "http",
    "command",
    "kubernetes_pods",
    "prometheus",
    "cloudwatch_alarm",
    "sentry_errors",
)
# The post-rollback checklist items a passing check ticks (their `check_key`), by kind.
DEFAULT_TICKS = {
    "http": "http_health",
    "command": "smoke_command",
    "kubernetes_pods": "pods_healthy",
}
PROMETHEUS_MEASURES = ("error_rate", "latency")
# A Sentry organization or project slug (lowercase letters, digits, - and _), or an id.
# These patterns end in \Z, not $, which would let a trailing newline through.
_SENTRY_SLUG = {
    "type": "string",
    "pattern": "^[a-z0-9][a-z0-9_-]*\\Z",
    "maxLength": 50,
    "description": "a Sentry slug (lowercase letters, digits, - and _) or id",
}
_NO_CONTROL = "^[^\\x00-\\x1f\\x7f]*\\Z"

_COMMON = {
    "kind": {"enum": list(CHECK_KINDS)},
    "name": {"type": "string", "minLength": 1, "maxLength": 80},
    "ticks": {"type": "string", "pattern": "^[a-z0-9_]*$", "maxLength": 50},
}


def _schema(properties: Mapping[str, Any], required: Sequence[str]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {**_COMMON, **properties},
        "required": ["kind", *required],
        "additionalProperties": False,
    }


CHECK_SCHEMAS: dict[str, dict[str, Any]] = {
    "http": _schema(
        {
            "url": {"type": "string", "pattern": "^https?://[^\\s]+$", "maxLength": 2000},
            "expect_status": {"type": "integer", "minimum": 100, "maximum": 599},
            "json_field": {"type": "string", "minLength": 1, "maxLength": 200},
            "expect": {"type": ["string", "number", "boolean"]},
            "retries": {"type": "integer", "minimum": 0, "maximum": 10},
            "backoff": {"type": "number", "minimum": 0, "maximum": 60},
            "timeout": {"type": "number", "exclusiveMinimum": 0, "maximum": 60},
        },
        ["url"],
    ),
    "command": _schema(
        {
            "command": {"type": "string", "minLength": 1},
            "arguments": {"type": "object"},
        },
        ["command"],
    ),
    "kubernetes_pods": _schema(
        {
            "namespace": {"type": "string", "minLength": 1, "maxLength": 253},
            "selector": {"type": "string", "minLength": 1, "maxLength": 1000},
            "min_ready_ratio": {"type": "number", "minimum": 0, "maximum": 1},
            "max_restarts": {"type": "integer", "minimum": 0},
        },
        ["namespace", "selector"],
    ),
    "prometheus": _schema(
        {
            "query": {"type": "string", "minLength": 1, "maxLength": 4000},
            "comparison": {"enum": list(COMPARISONS)},
            "threshold": {"type": "number"},
            "url": {"type": "string", "pattern": "^https?://[^\\s]+$", "maxLength": 2000},
            "measures": {"enum": list(PROMETHEUS_MEASURES)},
            "timeout": {"type": "number", "exclusiveMinimum": 0, "maximum": 60},
            "settle_seconds": {"type": "number", "minimum": 0, "maximum": 1800},
        },
        ["query", "threshold"],
    ),
    "cloudwatch_alarm": _schema(
        {
            "alarms": {
                "type": "array",
                "items": {"type": "string", "minLength": 1, "maxLength": 255},
                "minItems": 1,
                "maxItems": 100,
                "uniqueItems": True,
            },
            "settle_seconds": {"type": "number", "minimum": 0, "maximum": 1800},
        },
        ["alarms"],
    ),
    # executors.sentry_check; api_url and token_env as executors.rest's API_URL_SCHEMA and
    # TOKEN_ENV_SCHEMA, written out so that validating loads no HTTP client.
    "sentry_errors": _schema(
        {
            "organization": _SENTRY_SLUG,
            "project": _SENTRY_SLUG,
            # Sentry's rule: no whitespace or slashes, not "." or "..", at most 64.
            "environment": {
                "type": "string",
                "pattern": "^(?!\\.\\.?\\Z)[^\\s/\\x00-\\x1f\\x7f]+\\Z",
                "maxLength": 64,
                "description": "a Sentry environment name (no spaces or slashes, not . or ..)",
            },
            "query": {
                "type": "string",
                "pattern": _NO_CONTROL,
                "maxLength": 1000,
                "description": "one line of Sentry search, without control characters",
            },
            "window": {"type": "integer", "minimum": 1, "maximum": 60},
            "threshold": {"type": "integer", "minimum": 0, "maximum": 1_000_000},
            "api_url": {"type": "string", "pattern": "^https?://[^\\s]+\\Z", "maxLength": 2000},
            "token_env": {
                "type": "string",
                "pattern": "^[A-Za-z_][A-Za-z0-9_]*\\Z",
                "maxLength": 100,
            },
            "timeout": {"type": "number", "exclusiveMinimum": 0, "maximum": 60},
            "retries": {"type": "integer", "minimum": 0, "maximum": 5},
            "wait_seconds": {"type": "number", "minimum": 0, "maximum": 3600},
        },
        ["organization", "project", "window", "threshold"],
    ),
}
MAX_CHECKS = 20


def validate_checks(checks: Any) -> list[dict[str, Any]]:
    """Return a service's `checks` list if every entry matches its kind's schema and the
    names are unique; else raise ConfigError naming the entry (`checks/1/url: ...`)."""
    if not isinstance(checks, list):
        raise ConfigError("checks: must be a list of checks")
    if len(checks) > MAX_CHECKS:
        raise ConfigError(f"checks: at most {MAX_CHECKS} checks per service")
    names: set[str] = set()
    for index, spec in enumerate(checks):
        where = f"checks/{index}"
        if not isinstance(spec, Mapping):
            raise ConfigError(f"{where}: must be an object")
        kind = spec.get("kind")
        if kind not in CHECK_SCHEMAS:
            raise ConfigError(f"{where}/kind: must be one of {', '.join(CHECK_KINDS)}")
        try:
            validate_fixed_schema(dict(spec), CHECK_SCHEMAS[kind])
        except jsonschema.ValidationError as error:
            path = "/".join(str(part) for part in error.absolute_path)
            message = error.message
            if error.validator == "pattern" and "description" in error.schema:
                # What the pattern means, not the regular expression.
                message = f"{str(error.instance)[:60]!r} is not {error.schema['description']}"
            raise ConfigError(f"{where}{'/' + path if path else ''}: {message}") from error
        field = {"http": "url", "sentry_errors": "api_url"}.get(str(kind), "")
        if field in spec and named_address_forbidden(str(spec[field])):
            raise ConfigError(
                f"{where}/{field}: a link-local address (where cloud metadata answers) "
                "is never checked"
            )
        name = check_name(spec)
        if name in names:
            raise ConfigError(f"{where}/name: another check of this service is named {name!r}")
        names.add(name)
    return [dict(spec) for spec in checks]


def check_name(spec: Mapping[str, Any]) -> str:
    """The check's given name, or one made from what it looks at."""
    if spec.get("name"):
        return str(spec["name"])
    kind = spec.get("kind")
    if kind == "http":
        return f"health {spec.get('url')}"
    if kind == "command":
        return f"smoke {spec.get('command')}"
    if kind == "kubernetes_pods":
        return f"pods {spec.get('namespace')} {spec.get('selector')}"
    if kind == "prometheus":
        comparison = spec.get("comparison", "below")
        return f"{spec.get('query')} {comparison} {spec.get('threshold')}"
    if kind == "cloudwatch_alarm":
        return f"alarms {', '.join(spec.get('alarms') or [])}"[:80]
    if kind == "sentry_errors":
        return f"sentry {spec.get('organization')}/{spec.get('project')}"[:80]
    return str(kind)


def checklist_key(spec: Mapping[str, Any]) -> str:
    """The `check_key` of the checklist items this check ticks when it passes ("" none):
    `ticks` when given, else by kind; a Prometheus check ticks what it `measures`."""
    if "ticks" in spec:
        return str(spec["ticks"])
    if spec.get("kind") == "prometheus":
        return str(spec.get("measures", ""))
    return DEFAULT_TICKS.get(str(spec.get("kind")), "")
