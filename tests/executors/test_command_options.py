"""A registered command's arguments as step options: the registration's schema decides what
a form or `--set` offers, and every refusal names the argument."""

from __future__ import annotations

import sys

import pytest

from executors.base import Connections, RollbackTarget
from executors.command import RegisteredCommandBackend
from executors.options import OptionError, options_json_schema

PRINT_ARGS = "import json, sys; print(json.dumps(sys.argv[1:]))"
ARGUMENTS = {
    "type": "object",
    "properties": {
        "app": {"enum": ["billing", "orders"], "title": "Application"},
        "migration": {
            "type": "string",
            "pattern": "^[0-9]{4}_[a-z0-9_]+$",
            "maxLength": 80,
            "description": "The migration to go back to",
        },
        "batch": {"type": "integer", "minimum": 1, "maximum": 500},
        "note": {"type": "string"},
    },
    "required": ["app", "migration"],
    "additionalProperties": False,
}


def backend(config: dict | None = None) -> RegisteredCommandBackend:
    registered = {
        "argv": [sys.executable, "-c", PRINT_ARGS, "migrate", "{app}", "{migration}"],
        "arguments": ARGUMENTS,
        "timeout": 10,
    }
    connections = Connections(registered_commands={"migrate": registered})
    return RegisteredCommandBackend({"command": "migrate", **(config or {})}, connections)


def test_each_argument_becomes_an_option_of_its_kind():
    fields = {option.name: option for option in backend().option_fields()}
    assert list(fields) == ["app", "migration", "batch", "note"]
    assert fields["app"].type == "choice" and fields["app"].label == "Application"
    assert [choice.value for choice in fields["app"].choices] == ["billing", "orders"]
    assert fields["migration"].required and fields["migration"].max_length == 80
    assert fields["migration"].help == "The migration to go back to"
    assert (fields["batch"].type, fields["batch"].minimum, fields["batch"].maximum) == (
        "integer",
        1,
        500,
    )
    assert not fields["note"].required
    assert options_json_schema(tuple(fields.values()))["properties"]["app"]["enum"] == [
        "billing",
        "orders",
    ]


def test_an_argument_fixed_by_the_config_is_not_offered():
    fields = [option.name for option in backend({"arguments": {"app": "orders"}}).option_fields()]
    assert fields == ["migration", "batch", "note"]


def test_options_as_typed_are_packed_into_the_arguments_and_run():
    command = backend()
    params = command.validate_params(
        {"app": "orders", "migration": "0042_add_index", "batch": "50"}
    )
    assert params == {"arguments": {"app": "orders", "migration": "0042_add_index", "batch": 50}}
    lines: list[str] = []
    command.apply(RollbackTarget(params=params), log=lines.append)
    assert lines[-1] == '["migrate", "orders", "0042_add_index"]'


def test_the_arguments_object_is_still_accepted():
    params = backend().validate_params({"arguments": {"app": "billing", "migration": "0001_x"}})
    assert params == {"arguments": {"app": "billing", "migration": "0001_x"}}


@pytest.mark.parametrize(
    ("params", "option", "says"),
    [
        ({"app": "orders"}, "migration", "is required"),
        ({"app": "payroll", "migration": "0001_x"}, "app", "must be one of billing, orders"),
        ({"app": "orders", "migration": "drop table"}, "migration", "does not match"),
        ({"app": "orders", "migration": "0001_" + "x" * 80}, "migration", "at most 80"),
        ({"app": "orders", "migration": "0001_x", "batch": "0"}, "batch", "at least 1"),
        ({"app": "orders", "migration": "0001_x", "force": "yes"}, "force", "unknown option"),
        ({"app": "orders", "migration": "0001_x", "note": "-rf"}, "note", "may not start"),
        ({"app": "orders", "migration": "0001_x", "note": "a\x00b"}, "note", "control"),
        ({"arguments": "app=orders"}, "arguments", "must be an object"),
    ],
)
def test_refusals_name_the_argument(params, option, says):
    with pytest.raises(OptionError) as refused:
        backend().validate_params(params)
    assert refused.value.option == option and says in str(refused.value)


def test_a_fixed_argument_cannot_be_changed_from_a_step():
    with pytest.raises(OptionError) as refused:
        backend({"arguments": {"app": "orders"}}).validate_params(
            {"arguments": {"app": "billing", "migration": "0001_x"}}
        )
    assert refused.value.option == "app" and "fixed by the service config" in str(refused.value)


def test_text_in_any_script_passes_as_one_argument():
    params = backend().validate_params(
        {"app": "orders", "migration": "0001_x", "note": "回滚 🚀 שלום <b>"}
    )
    assert params["arguments"]["note"] == "回滚 🚀 שלום <b>"
