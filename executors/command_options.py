"""A registered command's arguments as step options: one option per argument its
registration's JSON schema declares and the service's config does not fix, so a form, the
terminal's `--set migration=0042_add_index` and the API all offer exactly those.

The options are flat (`migration`, not `arguments.migration`); the backend packs them into
`params["arguments"]`, which is what it reads, and the registration's schema still validates
the whole object.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from executors.options import Choice, Option

_TYPES = {"integer": "integer", "number": "string", "boolean": "boolean"}


def argument_options(schema: Mapping[str, Any], fixed: Mapping[str, Any]) -> tuple[Option, ...]:
    """One option per argument of `schema` not in `fixed`, in the schema's order."""
    required = set(schema.get("required", []))
    options = []
    for name, spec in (schema.get("properties") or {}).items():
        if name in fixed or not isinstance(spec, Mapping):
            continue
        label = str(spec.get("title") or name.replace("_", " ").capitalize())
        common: dict[str, Any] = {
            "help": str(spec.get("description") or ""),
            "required": name in required,
        }
        if "enum" in spec:
            choices = tuple(Choice(str(value), str(value)) for value in spec["enum"])
            options.append(Option(name, label, type="choice", choices=choices, **common))
        elif spec.get("type") in _TYPES:
            option_type = _TYPES[str(spec["type"])]
            bounds = {
                key: int(spec[source])
                for key, source in (("minimum", "minimum"), ("maximum", "maximum"))
                if isinstance(spec.get(source), int) and option_type == "integer"
            }
            options.append(Option(name, label, type=option_type, **bounds, **common))  # type: ignore[arg-type]
        else:
            options.append(
                Option(
                    name,
                    label,
                    max_length=int(spec.get("maxLength", 200)),
                    pattern=spec.get("pattern"),
                    **common,
                )
            )
    return tuple(options)


def pack_arguments(params: Mapping[str, Any], options: tuple[Option, ...]) -> dict[str, Any]:
    """`params` with the argument options moved into `params["arguments"]`."""
    names = {option.name for option in options}
    packed = {key: value for key, value in params.items() if key not in names}
    arguments = dict(packed.get("arguments") or {})
    arguments.update({key: value for key, value in params.items() if key in names})
    if arguments:
        packed["arguments"] = arguments
    return packed
