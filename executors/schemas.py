"""Validating JSON documents against schemas that live as long as the process."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jsonschema

_validators: dict[int, tuple[Mapping[str, Any], Any]] = {}


def validate_fixed_schema(instance: Any, schema: Mapping[str, Any]) -> None:
    """`jsonschema.validate` for a schema that lives as long as the process (a backend's
    config_schema, a check kind's schema): the schema itself is checked and its validator
    built once, not on every call (that was most of the cost of building a backend)."""
    cached = _validators.get(id(schema))
    if cached is None or cached[0] is not schema:
        validator_class = jsonschema.validators.validator_for(schema)
        validator_class.check_schema(schema)
        cached = (schema, validator_class(schema))
        _validators[id(schema)] = cached
    error = jsonschema.exceptions.best_match(cached[1].iter_errors(instance))
    if error is not None:
        raise error
