"""A backend's step options: one declaration that the plan builder's form, the terminal's
`--set key=value`, the API's JSON schema and the validation of a step all read.

A backend declares its options as a tuple of `Option`s (`Backend.options`, or
`Backend.option_fields()` when they depend on the config, as a registered command's
arguments do). `validate_options` turns what a person typed (strings from a form or a
terminal) or what a client sent (JSON values) into the parameters a step stores, and raises
`OptionError` naming the option for anything it cannot accept: an unknown option, a value of
the wrong type or out of range, an option that does not apply to the operation chosen, a
required one missing. Options whose choices or bounds come from the infrastructure (the
revisions a Deployment has, an instance's restorable window) are marked `live`; the backend
reads them with `live_options()`, and `check_live_values` holds a value against them.

An option of type "backup" restores something saved before a release (a Deployment
manifest, a DNS record set): people choose the release by its version, and the caller puts
the saved content in its place before validation (`backup_key` names the part of the
release's backup it takes).
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from executors.errors import ConfigError

OptionType = Literal["string", "integer", "boolean", "datetime", "choice", "minutes", "backup"]

# Parameters the engine or the caller sets on a step, never people: accepted, not declared.
ENGINE_PARAMS = frozenset({"already_ran", "backup_release"})
TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off"})
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


class OptionError(ConfigError):
    """A step option that cannot be accepted; `option` names it."""

    def __init__(self, option: str, message: str) -> None:
        super().__init__(f"{option}: {message}")
        self.option = option
        self.reason = message


@dataclass(frozen=True)
class Choice:
    """One value an option may take. `detail` says more (a revision's images and age);
    `current` marks what the infrastructure runs now."""

    value: str
    label: str
    detail: str = ""
    current: bool = False

    def as_json(self) -> dict[str, Any]:
        return {
            "value": self.value,
            "label": self.label,
            "detail": self.detail,
            "current": self.current,
        }


@dataclass(frozen=True)
class Option:
    """One option of a step.

    `when` limits it to steps whose other options have one of the values listed (e.g.
    {"operation": ("scale",)}); it is required only then. For "integer" and "minutes",
    `minimum`/`maximum` bound the number and `also` lists words accepted besides numbers
    (a scale's "restore"). "choice" takes one of `choices`, or of the live choices when
    `live` is set.
    """

    name: str
    label: str
    type: OptionType = "string"
    help: str = ""
    required: bool = False
    default: Any = None
    choices: tuple[Choice, ...] = ()
    live: bool = False
    when: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    minimum: int | None = None
    maximum: int | None = None
    also: tuple[str, ...] = ()
    max_length: int = 200
    pattern: str | None = None
    backup_key: str | None = None

    def applies(self, values: Mapping[str, Any]) -> bool:
        """Whether the option applies given the other options' (cleaned) values."""
        return all(str(values.get(name)) in allowed for name, allowed in self.when.items())

    def condition_text(self) -> str:
        return " and ".join(
            f"{name} is {' or '.join(allowed)}" for name, allowed in self.when.items()
        )


@dataclass(frozen=True)
class LiveOption:
    """What the infrastructure says about an option now: the values it may take, the bounds
    of a time (ISO 8601, UTC), and a line to show beside it."""

    choices: tuple[Choice, ...] = ()
    minimum: str | None = None
    maximum: str | None = None
    note: str = ""


def validate_options(options: Iterable[Option], params: Mapping[str, Any]) -> dict[str, Any]:
    """The step parameters for `params` (typed values or strings), defaults filled in for
    options that apply; OptionError for the first thing that cannot be accepted."""
    if not isinstance(params, Mapping):
        raise OptionError("options", "must be an object of option names to values")
    declared = {option.name: option for option in options}
    for name in params:
        if name not in declared and name not in ENGINE_PARAMS:
            known = ", ".join(declared) or "none"
            raise OptionError(str(name)[:80], f"unknown option; this backend takes: {known}")
    cleaned: dict[str, Any] = {name: params[name] for name in ENGINE_PARAMS if name in params}
    # Options are declared before the options whose `when` names them.
    for option in declared.values():
        given = params.get(option.name)
        blank = given is None or (isinstance(given, str) and not given.strip())
        if not option.applies(cleaned):
            if not blank:
                raise OptionError(option.name, f"only applies when {option.condition_text()}")
            continue
        if blank:
            if option.default is not None:
                cleaned[option.name] = option.default
            elif option.required:
                where = f" when {option.condition_text()}" if option.when else ""
                raise OptionError(option.name, f"is required{where}")
            continue
        cleaned[option.name] = clean_value(option, given)
    return cleaned


def clean_value(option: Option, value: Any) -> Any:
    """One option's value in its stored form; OptionError when it cannot be."""
    cleaner = _CLEANERS[option.type]
    return cleaner(option, value)


def _clean_string(option: Option, value: Any) -> str:
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        raise OptionError(option.name, "must be text")
    text = str(value).strip()
    if len(text) > option.max_length:
        raise OptionError(option.name, f"must be at most {option.max_length} characters")
    if _CONTROL.search(text):
        raise OptionError(option.name, "must not contain control characters")
    if option.pattern and not re.fullmatch(option.pattern, text):
        raise OptionError(option.name, f"does not match the expected form {option.pattern}")
    return text


def _clean_integer(option: Option, value: Any) -> int | str:
    if isinstance(value, str) and value.strip() in option.also:
        return value.strip()
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and re.fullmatch(r"\s*-?[0-9]{1,12}\s*", value):
        number = int(value)
    if number is None:
        words = "".join(f' or "{word}"' for word in option.also)
        raise OptionError(option.name, f"must be a whole number{words}")
    if option.minimum is not None and number < option.minimum:
        raise OptionError(option.name, f"must be at least {option.minimum}")
    if option.maximum is not None and number > option.maximum:
        raise OptionError(option.name, f"must be at most {option.maximum}")
    return number


def _clean_boolean(option: Option, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    word = str(value).strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise OptionError(option.name, "must be true or false")


def parse_instant(value: str) -> datetime.datetime | None:
    """An ISO 8601 instant with a timezone (a trailing Z allowed), or None."""
    try:
        parsed = datetime.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def _clean_datetime(option: Option, value: Any) -> str:
    instant = parse_instant(value) if isinstance(value, str) and len(value) <= 64 else None
    if instant is None:
        raise OptionError(
            option.name, "must be an ISO 8601 time with a timezone, e.g. 2026-12-03T14:02:10Z"
        )
    return instant.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _clean_choice(option: Option, value: Any) -> str:
    text = _clean_string(option, value)
    if option.choices and text not in {choice.value for choice in option.choices}:
        allowed = ", ".join(choice.value for choice in option.choices)
        raise OptionError(option.name, f"must be one of {allowed}")
    return text


def _clean_minutes(option: Option, value: Any) -> int | str:
    return _clean_integer(option, value)


def _clean_backup(option: Option, value: Any) -> Any:
    if not isinstance(value, dict | list) or not value:
        raise OptionError(
            option.name, "must be a saved backup: choose a release that has one by its version"
        )
    return value


_CLEANERS = {
    "string": _clean_string,
    "integer": _clean_integer,
    "boolean": _clean_boolean,
    "datetime": _clean_datetime,
    "choice": _clean_choice,
    "minutes": _clean_minutes,
    "backup": _clean_backup,
}


def check_live_values(
    options: Iterable[Option], params: Mapping[str, Any], live: Mapping[str, LiveOption]
) -> None:
    """Hold each live option's value against what the infrastructure says now: a choice
    must be one of the live choices, a time within the live bounds."""
    for option in options:
        facts = live.get(option.name)
        value = params.get(option.name)
        if not option.live or facts is None or value is None:
            continue
        if option.type == "choice" or facts.choices:
            values = [choice.value for choice in facts.choices]
            if str(value) not in values:
                shown = ", ".join(values[:20]) or "none"
                raise OptionError(option.name, f"{value} is not available (available: {shown})")
        if option.type == "datetime":
            _check_window(option, str(value), facts)


def _check_window(option: Option, value: str, facts: LiveOption) -> None:
    instant = parse_instant(value)
    earliest = parse_instant(facts.minimum) if facts.minimum else None
    latest = parse_instant(facts.maximum) if facts.maximum else None
    if instant is None:
        return
    if (earliest and instant < earliest) or (latest and instant > latest):
        window = f"{facts.minimum or '…'} to {facts.maximum or '…'}"
        raise OptionError(option.name, f"{value} is outside the restorable window {window}")


def natural_key(text: str) -> list[Any]:
    """A sort key that orders "v5.10.0" after "v5.9.1": digit runs compare as numbers."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


_JSON_TYPES = {
    "string": {"type": "string"},
    "integer": {"type": "integer"},
    "boolean": {"type": "boolean"},
    "datetime": {"type": "string", "format": "date-time"},
    "choice": {"type": "string"},
    "minutes": {"type": "integer"},
    "backup": {"type": "string", "description": "version of a release with a saved backup"},
}


def options_json_schema(options: Iterable[Option]) -> dict[str, Any]:
    """A JSON schema of the options as clients send them (a "backup" option by the
    version of the release that holds it)."""
    properties: dict[str, Any] = {}
    conditional: list[dict[str, Any]] = []
    for option in options:
        schema: dict[str, Any] = {"title": option.label, **_JSON_TYPES[option.type]}
        if option.help:
            schema["description"] = option.help
        if option.choices:
            schema["enum"] = [choice.value for choice in option.choices]
        if option.type in ("integer", "minutes"):
            if option.minimum is not None:
                schema["minimum"] = option.minimum
            if option.maximum is not None:
                schema["maximum"] = option.maximum
            if option.also:
                schema = {"title": option.label, "anyOf": [schema, {"enum": list(option.also)}]}
        if option.type == "string":
            schema["maxLength"] = option.max_length
            if option.pattern:
                schema["pattern"] = option.pattern
        if option.default is not None:
            schema["default"] = option.default
        properties[option.name] = schema
        if option.required:
            condition = {
                "properties": {
                    name: {"enum": list(allowed)} for name, allowed in option.when.items()
                }
            }
            conditional.append({"if": condition, "then": {"required": [option.name]}})
    document: dict[str, Any] = {
        "type": "object",
        "properties": properties,
        "additionalProperties": False,
    }
    if conditional:
        document["allOf"] = conditional
    return document


def restart_stamp() -> str:
    """The stamp a drafted restart carries (UTC, to the second): the backend restarts once
    per stamp, so a retried step does not restart again."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def scale_option(label: str, *, maximum: int, help: str) -> Option:
    """`replicas` of a "scale" operation: a count, or "restore" for the count the last scale
    replaced. Kubernetes and ECS steps share the name, so one playbook step scales either."""
    return Option(
        "replicas",
        label,
        type="integer",
        required=True,
        minimum=0,
        maximum=maximum,
        also=("restore",),
        when={"operation": ("scale",)},
        help=help,
    )


RESTART_STAMP = Option(
    "restarted_at",
    "Restart stamp",
    when={"operation": ("restart",)},
    max_length=64,
    help="Filled in when the plan is drafted, so that a retried step restarts once.",
)
