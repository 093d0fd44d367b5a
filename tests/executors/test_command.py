"""RegisteredCommandBackend running real processes (Python one-liners) without a shell."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest

from executors.base import (
    BackendError,
    CheckStatus,
    ConfigError,
    Connections,
    DeadlineExceeded,
    RollbackTarget,
)
from executors.command import RegisteredCommandBackend

PY = sys.executable
PRINT_ARGS = "import json, sys; print(json.dumps(sys.argv[1:]))"

MIGRATION_ARGUMENTS = {
    "type": "object",
    "properties": {
        "app": {"enum": ["billing", "orders"]},
        "migration": {"type": "string", "pattern": "^[0-9]{4}_[a-z0-9_]+$"},
    },
    "required": ["app", "migration"],
    "additionalProperties": False,
}
FREE_TEXT = {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}


def registration(script: str, **extra) -> dict:
    return {"argv": [PY, "-c", script], "timeout": 10, **extra}


def backend_for(registered: dict, config: dict | None = None, **kwargs) -> RegisteredCommandBackend:
    connections = Connections(registered_commands={"the-command": registered})
    return RegisteredCommandBackend(
        {"command": "the-command", **(config or {})}, connections, **kwargs
    )


def migrate_backend() -> RegisteredCommandBackend:
    return backend_for(
        {
            "argv": [PY, "-c", PRINT_ARGS, "migrate", "{app}", "{migration}"],
            "arguments": MIGRATION_ARGUMENTS,
            "timeout": 10,
        }
    )


def with_arguments(**arguments) -> RollbackTarget:
    return RollbackTarget(params={"arguments": arguments})


def test_plan_shows_the_command_line_with_the_arguments_filled_in():
    plan = migrate_backend().plan(with_arguments(app="billing", migration="0041_add_invoice"))

    assert plan.changes[0].after.endswith("migrate billing 0041_add_invoice")
    assert "not idempotent" in plan.summary


def test_plan_runs_nothing(tmp_path):
    marker = tmp_path / "ran"
    backend = backend_for(registration(f"open({str(marker)!r}, 'w').close()"))

    backend.plan(RollbackTarget())

    assert not marker.exists()


def test_an_unregistered_command_is_a_config_error():
    with pytest.raises(ConfigError, match="no registered command is named 'rm-rf'"):
        RegisteredCommandBackend({"command": "rm-rf"}, Connections())


def test_arguments_that_break_the_schema_are_a_config_error_naming_the_argument():
    with pytest.raises(ConfigError, match="migration: .* does not match"):
        migrate_backend().plan(with_arguments(app="billing", migration="0041; drop table"))


def test_a_missing_argument_is_a_config_error():
    with pytest.raises(ConfigError, match="'migration' is a required property"):
        migrate_backend().plan(with_arguments(app="billing"))


def test_an_argument_stays_one_argv_element_whatever_it_contains():
    backend = backend_for(
        {"argv": [PY, "-c", PRINT_ARGS, "{text}"], "arguments": FREE_TEXT, "timeout": 10}
    )
    lines: list[str] = []

    backend.apply(with_arguments(text="a b; rm -rf / $(id) `id`"), log=lines.append)

    assert json.loads(lines[-1]) == ["a b; rm -rf / $(id) `id`"]


def test_an_argument_starting_with_a_dash_is_refused():
    backend = backend_for(
        {"argv": [PY, "-c", PRINT_ARGS, "{text}"], "arguments": FREE_TEXT, "timeout": 10}
    )

    with pytest.raises(ConfigError, match="may not start with '-'"):
        backend.plan(with_arguments(text="--database=other"))


def test_a_placeholder_inside_a_larger_argv_element_is_refused_at_registration():
    with pytest.raises(ConfigError, match="a placeholder must be a whole argv element"):
        backend_for(
            {"argv": [PY, "-c", PRINT_ARGS, "--to={text}"], "arguments": FREE_TEXT, "timeout": 10}
        )


def test_a_placeholder_the_schema_does_not_define_is_refused_at_registration():
    with pytest.raises(ConfigError, match="argv uses missing which the arguments schema"):
        backend_for({"argv": [PY, "{missing}"], "arguments": FREE_TEXT, "timeout": 10})


def test_arguments_fixed_by_the_service_config_cannot_be_changed_by_the_rollback():
    backend = backend_for(
        {
            "argv": [PY, "-c", PRINT_ARGS, "{app}", "{migration}"],
            "arguments": MIGRATION_ARGUMENTS,
            "timeout": 10,
        },
        {"arguments": {"app": "billing"}},
    )

    with pytest.raises(ConfigError, match="app are fixed by the service config"):
        backend.plan(with_arguments(app="orders", migration="0041_add_invoice"))


def test_apply_fills_fixed_and_given_arguments_into_the_command_line():
    backend = backend_for(
        {
            "argv": [PY, "-c", PRINT_ARGS, "{app}", "{migration}"],
            "arguments": MIGRATION_ARGUMENTS,
            "timeout": 10,
        },
        {"arguments": {"app": "billing"}},
    )
    lines: list[str] = []

    result = backend.apply(with_arguments(migration="0041_add_invoice"), log=lines.append)

    assert json.loads(lines[-1]) == ["billing", "0041_add_invoice"]
    assert result.changed
    assert result.facts["exit_status"] == 0


def test_apply_streams_output_lines_as_they_arrive():
    script = "import time; print('first', flush=True); time.sleep(0.6); print('second')"
    backend = backend_for(registration(script))
    arrivals: dict[str, float] = {}

    backend.apply(RollbackTarget(), log=lambda line: arrivals.setdefault(line, time.monotonic()))
    finished = time.monotonic()

    assert finished - arrivals["first"] >= 0.5
    assert "second" in arrivals


def test_apply_marks_stderr_lines():
    backend = backend_for(registration("import sys; print('careful', file=sys.stderr)"))
    lines: list[str] = []

    backend.apply(RollbackTarget(), log=lines.append)

    assert "stderr: careful" in lines


def test_apply_raises_a_permanent_error_with_the_exit_status_on_failure():
    backend = backend_for(registration("import sys; print('no such migration'); sys.exit(2)"))

    with pytest.raises(BackendError, match="exited with status 2") as raised:
        backend.apply(RollbackTarget())

    assert not raised.value.retryable
    assert "no such migration" in str(raised.value)


def process_is_gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state == "Z"  # exited; its new parent has not reaped it yet


def test_apply_kills_the_whole_process_group_on_timeout(tmp_path):
    pid_file = tmp_path / "child.pid"
    script = (
        "import subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        f"open({str(pid_file)!r}, 'w').write(str(child.pid))\n"
        "print('waiting', flush=True)\n"
        "time.sleep(60)\n"
    )
    backend = backend_for({**registration(script), "timeout": 1}, kill_grace=0.5)
    started = time.monotonic()

    with pytest.raises(DeadlineExceeded, match="timed out"):
        backend.apply(RollbackTarget())

    assert time.monotonic() - started < 5
    child = int(pid_file.read_text())
    deadline = time.monotonic() + 2
    while not process_is_gone(child) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert process_is_gone(child)


def test_a_failing_log_sink_leaves_no_command_running(tmp_path):
    pid_file = tmp_path / "command.pid"
    script = (
        "import os, time\n"
        f"open({str(pid_file)!r}, 'w').write(str(os.getpid()))\n"
        "print('started', flush=True)\n"
        "time.sleep(60)\n"
    )
    backend = backend_for(registration(script), kill_grace=0.5)

    def broken_sink(line: str) -> None:
        if line == "started":
            raise RuntimeError("timeline unavailable")

    with pytest.raises(RuntimeError, match="timeline unavailable"):
        backend.apply(RollbackTarget(), log=broken_sink)

    assert process_is_gone(int(pid_file.read_text()))


def test_apply_refuses_to_rerun_a_non_idempotent_command_that_already_ran(tmp_path):
    marker = tmp_path / "ran"
    backend = backend_for(registration(f"open({str(marker)!r}, 'a').write('x')"))

    with pytest.raises(BackendError, match="refusing to run it again") as raised:
        backend.apply(RollbackTarget(params={"already_ran": True}))

    assert not raised.value.retryable
    assert not marker.exists()


def test_apply_reruns_an_idempotent_command_that_already_ran(tmp_path):
    marker = tmp_path / "ran"
    backend = backend_for(registration(f"open({str(marker)!r}, 'a').write('x')", idempotent=True))

    backend.apply(RollbackTarget(params={"already_ran": True}))
    backend.apply(RollbackTarget(params={"already_ran": True}))

    assert marker.read_text() == "xx"


def test_secret_environment_values_never_reach_the_log(monkeypatch):
    monkeypatch.setenv("BILLING_API_TOKEN", "tok-inherited-123456")
    monkeypatch.setenv("PLAIN", "visible-value")
    script = (
        "import os; print(os.environ['DB_PASSWORD'], os.environ['BILLING_API_TOKEN'], "
        "os.environ['PLAIN'])"
    )
    registered = registration(
        script,
        env={"DB_PASSWORD": "hunter2-registered"},
        inherit_env=["BILLING_API_TOKEN", "PLAIN"],
    )
    lines: list[str] = []

    backend_for(registered).apply(RollbackTarget(), log=lines.append)

    output = "\n".join(lines)
    assert "hunter2-registered" not in output
    assert "tok-inherited-123456" not in output
    assert "**** **** visible-value" in output


def test_a_command_sees_only_the_allowed_environment(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgres://console:console-db-pass@db:5432/backout")
    monkeypatch.setenv("SECRET_KEY", "the-console-signing-key")
    monkeypatch.setenv("AWS_PROFILE", "ops")
    script = "import json, os; print(json.dumps(sorted(os.environ)))"
    lines: list[str] = []

    backend_for(registration(script, inherit_env=["AWS_PROFILE"])).apply(
        RollbackTarget(), log=lines.append
    )

    seen = set(json.loads(lines[-1]))
    assert {"DATABASE_URL", "SECRET_KEY"}.isdisjoint(seen)
    assert {"PATH", "AWS_PROFILE", "PYTHONUNBUFFERED"} <= seen


def test_an_echoed_url_keeps_its_user_and_loses_its_password():
    script = "print('connecting to postgres://orders:s3cr3t-pw@db.internal:5432/orders')"
    lines: list[str] = []

    backend_for(registration(script)).apply(RollbackTarget(), log=lines.append)

    assert lines[-1] == "connecting to postgres://orders:****@db.internal:5432/orders"


def test_a_failed_check_command_masks_its_registered_secret():
    backend = backend_for(
        registration(
            "pass",
            env={"CHECK_TOKEN": "check-token-987654"},
            check=[PY, "-c", "import os, sys; print(os.environ['CHECK_TOKEN']); sys.exit(1)"],
        )
    )

    [result] = backend.checks(RollbackTarget())

    assert result.status is CheckStatus.FAILED
    assert "check-token-987654" not in result.detail and "****" in result.detail


def test_the_command_runs_in_the_registered_working_directory(tmp_path):
    backend = backend_for(registration("import os; print(os.getcwd())", cwd=str(tmp_path)))
    lines: list[str] = []

    backend.apply(RollbackTarget(), log=lines.append)

    assert os.path.samefile(lines[-1], tmp_path)


def test_checks_pass_when_the_check_command_exits_zero():
    backend = backend_for(registration("pass", check=[PY, "-c", "print('schema at 0041')"]))

    [result] = backend.checks(RollbackTarget())

    assert result.status is CheckStatus.PASSED


def test_checks_fail_with_the_exit_status_of_the_check_command():
    backend = backend_for(
        registration("pass", check=[PY, "-c", "import sys; print('drift'); sys.exit(1)"])
    )

    [result] = backend.checks(RollbackTarget())

    assert result.status is CheckStatus.FAILED
    assert "exited with status 1" in result.detail
    assert "drift" in result.detail


def test_checks_fill_arguments_into_the_check_command():
    backend = backend_for(
        {
            "argv": [PY, "-c", "pass"],
            "check": [PY, "-c", "import sys; sys.exit(sys.argv[1] != 'billing')", "{app}"],
            "arguments": MIGRATION_ARGUMENTS,
            "timeout": 10,
        }
    )

    [result] = backend.checks(with_arguments(app="billing", migration="0041_add_invoice"))

    assert result.status is CheckStatus.PASSED


def test_checks_are_inconclusive_without_a_check_command():
    [result] = backend_for(registration("pass")).checks(RollbackTarget())

    assert result.status is CheckStatus.INCONCLUSIVE


def test_live_version_is_unknown_for_a_command():
    assert backend_for(registration("pass")).live_version() is None
