"""Step options: one declaration validates what a form, a terminal or a client sends."""

from __future__ import annotations

import jsonschema
import pytest

from executors.dns import DNS_OPTIONS
from executors.kubernetes.step_options import SINGLE_DEPLOYMENT_OPTIONS, age_text
from executors.options import (
    Choice,
    LiveOption,
    Option,
    OptionError,
    check_live_values,
    options_json_schema,
    validate_options,
)

KUBE = SINGLE_DEPLOYMENT_OPTIONS


def error_of(options: tuple[Option, ...], params: dict[str, object]) -> OptionError:
    with pytest.raises(OptionError) as caught:
        validate_options(options, params)
    return caught.value


def test_defaults_fill_in_and_strings_become_typed_values() -> None:
    assert validate_options(KUBE, {}) == {"operation": "undo"}
    assert validate_options(KUBE, {"operation": "scale", "replicas": "0"}) == {
        "operation": "scale",
        "replicas": 0,
    }
    assert validate_options(KUBE, {"operation": "scale", "replicas": 3})["replicas"] == 3
    assert validate_options(KUBE, {"operation": "scale", "replicas": "restore"})["replicas"] == (
        "restore"
    )


@pytest.mark.parametrize(
    ("params", "option", "says"),
    [
        ({"operation": "explode"}, "operation", "must be one of undo, restart"),
        ({"operation": "scale"}, "replicas", "is required when operation is scale"),
        ({"operation": "scale", "replicas": "-1"}, "replicas", "at least 0"),
        ({"operation": "scale", "replicas": "1001"}, "replicas", "at most 1000"),
        ({"operation": "scale", "replicas": "three"}, "replicas", 'whole number or "restore"'),
        ({"operation": "scale", "replicas": True}, "replicas", "whole number"),
        ({"replicas": "2"}, "replicas", "only applies when operation is scale"),
        ({"operation": "apply_manifest"}, "manifest", "is required"),
        ({"operation": "apply_manifest", "manifest": "not saved"}, "manifest", "saved backup"),
        ({"colour": "red"}, "colour", "unknown option; this backend takes: operation"),
        ({"max_restarts": "9" * 40}, "max_restarts", "whole number"),
    ],
)
def test_bad_values_name_the_option(params: dict[str, object], option: str, says: str) -> None:
    error = error_of(KUBE, params)
    assert error.option == option
    assert says in str(error)


def test_an_unknown_option_name_is_shortened_in_the_message() -> None:
    error = error_of(KUBE, {"x" * 5000: "1"})
    assert len(error.option) == 80


def test_text_at_its_limits() -> None:
    text = Option("note", "Note", max_length=20)
    assert validate_options((text,), {"note": "回滚 🚀 שלום <b>&"}) == {"note": "回滚 🚀 שלום <b>&"}
    assert validate_options((text,), {"note": "界" * 20}) == {"note": "界" * 20}
    assert "at most 20 characters" in str(error_of((text,), {"note": "界" * 21}))
    assert "control characters" in str(error_of((text,), {"note": "a\x00b"}))
    assert "control characters" in str(error_of((text,), {"note": "a\x1bb"}))
    assert "must be text" in str(error_of((text,), {"note": ["a"]}))


def test_times_are_stored_in_utc_and_need_a_timezone() -> None:
    when = Option("restore_time", "Restore to", type="datetime")
    assert validate_options((when,), {"restore_time": "2026-12-03T15:02:10+01:00"}) == {
        "restore_time": "2026-12-03T14:02:10Z"
    }
    assert "with a timezone" in str(error_of((when,), {"restore_time": "2026-12-03T14:02:10"}))
    assert "with a timezone" in str(error_of((when,), {"restore_time": "yesterday"}))
    assert "with a timezone" in str(error_of((when,), {"restore_time": "2" * 500}))


def test_params_must_be_an_object() -> None:
    with pytest.raises(OptionError, match="options: must be an object"):
        validate_options(KUBE, ["operation"])  # type: ignore[arg-type]


def test_engine_parameters_pass_through() -> None:
    cleaned = validate_options(KUBE, {"already_ran": True, "backup_release": "v1"})
    assert cleaned == {"already_ran": True, "backup_release": "v1", "operation": "undo"}


def test_dns_options_choose_backup_or_maintenance() -> None:
    assert "backup: is required" in str(error_of(DNS_OPTIONS, {}))
    saved = [{"Name": "a.example.", "Type": "A", "ResourceRecords": [{"Value": "1.2.3.4"}]}]
    assert validate_options(DNS_OPTIONS, {"backup": saved}) == {"mode": "backup", "backup": saved}
    assert validate_options(DNS_OPTIONS, {"mode": "maintenance", "ttl": "30"}) == {
        "mode": "maintenance",
        "ttl": 30,
    }
    error = error_of(DNS_OPTIONS, {"mode": "maintenance", "maintenance_target": "x; rm -rf"})
    assert error.option == "maintenance_target"


def test_live_values_are_held_against_what_the_infrastructure_says() -> None:
    revision = Option("to_revision", "Revision", type="choice", live=True)
    live = {"to_revision": LiveOption(choices=(Choice("3", "revision 3"), Choice("2", "r2")))}
    check_live_values((revision,), {"to_revision": "2"}, live)
    with pytest.raises(OptionError, match=r"to_revision: 9 is not available \(available: 3, 2\)"):
        check_live_values((revision,), {"to_revision": "9"}, live)

    when = Option("restore_time", "Restore to", type="datetime", live=True)
    window = {
        "restore_time": LiveOption(minimum="2026-12-01T00:00:00Z", maximum="2026-12-03T14:05:00Z")
    }
    check_live_values((when,), {"restore_time": "2026-12-03T14:02:10Z"}, window)
    with pytest.raises(OptionError, match="outside the restorable window"):
        check_live_values((when,), {"restore_time": "2026-12-03T14:06:00Z"}, window)
    with pytest.raises(OptionError, match="outside the restorable window"):
        check_live_values((when,), {"restore_time": "2026-11-30T23:59:59Z"}, window)


def test_the_json_schema_accepts_what_validation_accepts() -> None:
    schema = options_json_schema(KUBE)
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    assert validator.is_valid({"operation": "scale", "replicas": 2})
    assert validator.is_valid({"operation": "scale", "replicas": "restore"})
    assert not validator.is_valid({"operation": "scale"})
    assert not validator.is_valid({"operation": "explode"})
    assert not validator.is_valid({"colour": "red"})


def test_ages_read_as_people_say_them() -> None:
    import datetime

    now = datetime.datetime(2026, 12, 3, 14, 0, tzinfo=datetime.UTC)
    assert age_text("2026-12-03T13:55:00Z", now) == "5 min ago"
    assert age_text("2026-12-03T10:50:00Z", now) == "3 h 10 min ago"
    assert age_text("2026-11-30T12:00:00Z", now) == "3 d 2 h ago"
    assert age_text(None, now) == age_text("garbage", now) == ""
