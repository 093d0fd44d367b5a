"""Run a command an administrator registered, with arguments checked against its schema.

Nothing typed into an incident is ever run: the config names a registered command, and
only its arguments come from the service config and the rollback target. Registered
commands live in `Connections.registered_commands` (filled from settings, never from the
database), name → registration:

    "migrate-rollback": {
        "argv": ["python", "manage.py", "migrate", "{app}", "{migration}"],
        "arguments": {                      # a JSON schema for the arguments object
            "type": "object",
            "properties": {
                "app": {"enum": ["billing", "orders"]},
                "migration": {"type": "string", "pattern": "^[0-9]{4}_[a-z0-9_]+$"},
            },
            "required": ["app", "migration"],
            "additionalProperties": False,
        },
        "timeout": 600,                     # seconds; then the process group is killed
        "cwd": "/srv/app",                  # optional working directory
        "env": {"DJANGO_SETTINGS_MODULE": "app.settings"},  # optional, given to it
        "inherit_env": ["AWS_PROFILE"],     # optional: variables of ours it may see
        "check": ["python", "manage.py", "migrate", "--check"],  # optional verification
        "check_timeout": 60,                # optional, defaults to timeout
        "idempotent": False,                # optional, default False
        "description": "Roll an app's migrations back",      # optional
    }

Arguments: the service config may fix some (`config["arguments"]`, which the target may not
override), the rest come from `target.params["arguments"]`; together they must match the
registration's schema. An argv element that is exactly `{name}` is replaced by that
argument; every other element is passed verbatim, and an element with a `{name}` inside
other text is refused at registration, so each argument is always one whole argv element.
Values must be strings or numbers; strings may not start with `-` (they would be read as
options) or hold NUL. The command runs with `subprocess` from a list, never through a shell.

Apply streams each stdout line to `log` as it arrives (stderr lines prefixed `stderr: `),
with `PYTHONUNBUFFERED=1` so Python commands do not hold their output back. A non-zero exit
is a permanent BackendError naming the exit status; passing `timeout` sends SIGTERM to the
command's process group, SIGKILL a few seconds later, and raises DeadlineExceeded. The
command does not inherit this process's environment, which holds the console's own
credentials (DATABASE_URL, SECRET_KEY, cloud keys): it gets the harmless variables of
INHERITED_ENVIRONMENT (PATH, HOME, locale, TZ, TMPDIR), the ones its registration names in
`inherit_env`, and its registration's `env`. The environment is never logged. In every
line it prints, in the check results and in the failure messages, the values of its `env`,
of variables it inherits and of this process's variables whose names look secret (TOKEN,
SECRET, PASSWORD, KEY, CREDENTIAL...) are masked as `****` (values shorter than six
characters are left alone: masking `1` everywhere would hide the output, not a secret), and
so is the password of every URL (`postgres://app:****@db/orders`).

Idempotency is declared, not inferred: a command registered with `"idempotent": true` runs
again on every apply. Otherwise the caller (the engine, which records that a step was
applied before marking it done) sets `target.params["already_ran"] = True` when an earlier
attempt may have run it, and apply then refuses with a permanent BackendError: a person
must look and finish the step by hand. There is no version to read (`live_version` is
None) and nothing to settle (`wait` returns at once); checks run the registered `check`
argv and report its exit status, or are inconclusive when none is registered.
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Any

import jsonschema

from executors.base import (
    ApplyResult,
    Backend,
    BackendError,
    Change,
    CheckResult,
    CheckStatus,
    ConfigError,
    Connections,
    DeadlineExceeded,
    LogLine,
    Option,
    RollbackPlan,
    RollbackTarget,
    discard_log,
)
from executors.command_options import argument_options, pack_arguments
from executors.options import OptionError, validate_options
from executors.schemas import validate_fixed_schema
from executors.url_credentials import MASK, mask_url_credentials

KILL_GRACE_SECONDS = 5.0
MAX_LINE_LENGTH = 4000
TAIL_LINES = 20

_PLACEHOLDER = re.compile(r"^\{([A-Za-z_][A-Za-z0-9_]*)\}$")
_EMBEDDED_PLACEHOLDER = re.compile(r"\{[A-Za-z_][A-Za-z0-9_]*\}")
_SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSW|PASSPHRASE|KEY|CREDENTIAL|PRIVATE|DSN|AUTH", re.I)
# Short values ("1", "true") would mask half the output without hiding anything.
_MIN_MASKED_LENGTH = 6
# What a command inherits from the worker's environment without its registration naming it.
INHERITED_ENVIRONMENT = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR")

REGISTRATION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "argv": {"type": "array", "items": {"type": "string"}, "minItems": 1},
        "arguments": {"type": "object"},
        "timeout": {"type": "number", "exclusiveMinimum": 0},
        "cwd": {"type": "string", "minLength": 1},
        "env": {"type": "object", "additionalProperties": {"type": "string"}},
        "inherit_env": {
            "type": "array",
            "items": {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$"},
        },
        "check": {"type": "array", "items": {"type": "string"}, "minItems": 1},
        "check_timeout": {"type": "number", "exclusiveMinimum": 0},
        "idempotent": {"type": "boolean"},
        "description": {"type": "string"},
    },
    "required": ["argv", "timeout"],
    "additionalProperties": False,
}

# -- running a process ------------------------------------------------------------------------


@dataclass(frozen=True)
class CommandOutcome:
    """How a process ended: `exit_status` is None when it was killed for its timeout."""

    argv: tuple[str, ...]
    exit_status: int | None
    timed_out: bool
    duration: float
    tail: tuple[str, ...]

    @property
    def succeeded(self) -> bool:
        return self.exit_status == 0 and not self.timed_out

    def describe(self) -> str:
        """`exited with status 3`, `killed by SIGSEGV` or `timed out after 30 s`."""
        if self.timed_out:
            return f"timed out after {self.duration:.1f} s; its process group was killed"
        assert self.exit_status is not None
        if self.exit_status < 0:
            try:
                return f"killed by {signal.Signals(-self.exit_status).name}"
            except ValueError:
                return f"killed by signal {-self.exit_status}"
        return f"exited with status {self.exit_status}"


def _read_lines(stream: IO[bytes], name: str, lines: queue.Queue[tuple[str, str | None]]) -> None:
    # The reader closes its own pipe: closing it from another thread would block until a
    # pending readline returns, which a daemon that escaped the process group can delay.
    with stream:
        for raw in iter(stream.readline, b""):
            lines.put((name, raw.decode("utf-8", "replace").rstrip("\r\n")[:MAX_LINE_LENGTH]))
    lines.put((name, None))


def _kill_group(process: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM the process group (the command and whatever it started), SIGKILL after grace."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=grace)
    # Children may outlive a leader that obeyed SIGTERM; the group id stays theirs until
    # the last of them exits.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def mask(line: str, secrets: Iterable[str]) -> str:
    """`line` with every secret value, and every URL's password, replaced by ****."""
    for secret in secrets:
        line = line.replace(secret, MASK)
    return mask_url_credentials(line, MASK)


def command_environment(registration: Mapping[str, Any]) -> tuple[dict[str, str], list[str]]:
    """The environment a registered command runs with (see the module docstring), and the
    values to mask in what it prints, longest first (so a secret holding another is masked
    whole)."""
    extra: dict[str, str] = dict(registration.get("env", {}))
    names = (*INHERITED_ENVIRONMENT, *registration.get("inherit_env", ()))
    inherited = {name: os.environ[name] for name in names if name in os.environ}
    environment = {**inherited, "PYTHONUNBUFFERED": "1", **extra}
    secrets = set(extra.values())
    secrets.update(value for name, value in inherited.items() if _SECRET_NAME.search(name))
    secrets.update(value for name, value in os.environ.items() if _SECRET_NAME.search(name))
    ordered = sorted(
        (secret for secret in secrets if len(secret) >= _MIN_MASKED_LENGTH), key=len, reverse=True
    )
    return environment, ordered


def run_command(
    argv: Sequence[str],
    *,
    timeout: float,
    cwd: str | None = None,
    env: Mapping[str, str] | None = None,
    log: LogLine = discard_log,
    secrets: Sequence[str] = (),
    kill_grace: float = KILL_GRACE_SECONDS,
) -> CommandOutcome:
    """Run `argv` (no shell) in its own process group, passing each output line to `log`.

    Lines are logged from the calling thread as they arrive. After `timeout` seconds the
    process group is killed and the outcome says `timed_out`. Raises BackendError when the
    program cannot be started.
    """
    started = time.monotonic()
    deadline = started + timeout
    try:
        process = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=dict(env) if env is not None else None,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
    except OSError as error:
        raise BackendError(f"cannot start {argv[0]}: {error.strerror or error}") from error
    lines: queue.Queue[tuple[str, str | None]] = queue.Queue()
    assert process.stdout is not None and process.stderr is not None
    readers = [
        threading.Thread(target=_read_lines, args=(stream, name, lines), daemon=True)
        for stream, name in ((process.stdout, "stdout"), (process.stderr, "stderr"))
    ]
    for reader in readers:
        reader.start()
    tail: list[str] = []

    def emit(name: str, line: str) -> None:
        shown = mask(line, secrets) if name == "stdout" else f"stderr: {mask(line, secrets)}"
        tail.append(shown)
        del tail[:-TAIL_LINES]
        log(shown)

    open_streams = 2
    timed_out = False
    try:
        while open_streams:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                timed_out = True
                break
            try:
                name, line = lines.get(timeout=min(remaining, 0.2))
            except queue.Empty:
                continue
            if line is None:
                open_streams -= 1
            else:
                emit(name, line)
        if not timed_out:
            try:
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                timed_out = True
    except BaseException:
        # The log sink failed or the worker is shutting down: leave no command running
        # unwatched.
        _kill_group(process, kill_grace)
        raise
    if timed_out:
        _kill_group(process, kill_grace)
    # Lines written just before the end (or the kill) are still in the queue.
    for reader in readers:
        reader.join(timeout=1.0)
    while True:
        try:
            name, line = lines.get_nowait()
        except queue.Empty:
            break
        if line is not None:
            emit(name, line)
    return CommandOutcome(
        argv=tuple(argv),
        exit_status=None if timed_out else process.returncode,
        timed_out=timed_out,
        duration=time.monotonic() - started,
        tail=tuple(tail),
    )


def outcome_check(name: str, outcome: CommandOutcome, secrets: Sequence[str] = ()) -> CheckResult:
    """A check that passes when the command exited 0, with the end of its output (masked as
    run_command masked it; the command line is masked here)."""
    detail = f"{mask(shlex.join(outcome.argv), secrets)} {outcome.describe()}"
    if not outcome.succeeded and outcome.tail:
        detail += ": " + " | ".join(outcome.tail[-5:])
    return CheckResult(
        name, CheckStatus.PASSED if outcome.succeeded else CheckStatus.FAILED, detail
    )


# -- registrations --------------------------------------------------------------------------


def _placeholders(argv: Sequence[str]) -> list[str]:
    names = []
    for element in argv:
        match = _PLACEHOLDER.match(element)
        if match:
            names.append(match.group(1))
        elif _EMBEDDED_PLACEHOLDER.search(element):
            raise ConfigError(
                f"argv element {element!r}: a placeholder must be a whole argv element"
            )
    return names


def check_registration(name: str, registration: Mapping[str, Any]) -> dict[str, Any]:
    """Return the registration if it is usable, else raise ConfigError saying why."""
    try:
        validate_fixed_schema(dict(registration), REGISTRATION_SCHEMA)
    except jsonschema.ValidationError as error:
        where = "/".join(str(part) for part in error.absolute_path) or "registration"
        raise ConfigError(f"registered command {name!r}: {where}: {error.message}") from error
    checked = dict(registration)
    schema = checked.setdefault("arguments", {"type": "object", "additionalProperties": False})
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as error:
        raise ConfigError(
            f"registered command {name!r}: arguments is not a valid JSON schema: {error.message}"
        ) from error
    declared = set(schema.get("properties", {}))
    try:
        used = _placeholders(checked["argv"]) + _placeholders(checked.get("check", []))
    except ConfigError as error:
        raise ConfigError(f"registered command {name!r}: {error}") from error
    undeclared = sorted(set(used) - declared)
    if undeclared:
        raise ConfigError(
            f"registered command {name!r}: argv uses {', '.join(undeclared)} which the "
            "arguments schema does not define"
        )
    return checked


def _argv_value(name: str, value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ConfigError(f"argument {name} must be a string or a number to fill an argv element")
    text = str(value)
    if isinstance(value, str) and value.startswith("-"):
        raise ConfigError(f"argument {name} may not start with '-' (it would read as an option)")
    if "\0" in text:
        raise ConfigError(f"argument {name} may not contain a NUL character")
    return text


def render_argv(argv: Sequence[str], arguments: Mapping[str, Any]) -> list[str]:
    """`argv` with each whole-element `{name}` replaced by that argument's value."""
    rendered = []
    for element in argv:
        match = _PLACEHOLDER.match(element)
        if not match:
            rendered.append(element)
            continue
        name = match.group(1)
        if name not in arguments:
            raise ConfigError(f"argument {name} is required by the command line")
        rendered.append(_argv_value(name, arguments[name]))
    return rendered


# -- the backend ------------------------------------------------------------------------------


class RegisteredCommandBackend(Backend):
    """An administrator-registered command, run with schema-checked arguments."""

    kind = "command"
    label = "Registered command"
    config_schema = {
        "type": "object",
        "properties": {
            "command": {"type": "string", "minLength": 1},
            "arguments": {"type": "object"},
        },
        "required": ["command"],
        "additionalProperties": False,
    }

    def __init__(
        self,
        config: Mapping[str, Any],
        connections: Connections,
        *,
        kill_grace: float = KILL_GRACE_SECONDS,
    ) -> None:
        super().__init__(config, connections)
        self.kill_grace = kill_grace
        self.name: str = self.config["command"]
        registration = connections.registered_commands.get(self.name)
        if registration is None:
            raise ConfigError(f"config/command: no registered command is named {self.name!r}")
        self.registration = check_registration(self.name, registration)

    # -- step options (executors.command_options) ------------------------------------------

    def option_fields(self) -> tuple[Option, ...]:
        fixed = self.config.get("arguments", {})
        return argument_options(self.registration["arguments"], fixed)

    def validate_params(self, params: Mapping[str, Any], *, live: bool = False) -> dict[str, Any]:
        """The arguments as options (flat), then packed into params["arguments"] and held
        against the registration's schema, an error naming the argument."""
        fields = self.option_fields()
        given = dict(params)
        nested = given.pop("arguments", None)
        if nested is not None:
            if not isinstance(nested, Mapping):
                raise OptionError("arguments", "must be an object of argument names to values")
            given.update(nested)
        fixed = sorted(set(self.config.get("arguments", {})) & set(given))
        if fixed:
            raise OptionError(fixed[0], "is fixed by the service config; a step cannot change it")
        cleaned = validate_options(fields, given)
        packed = pack_arguments(cleaned, fields)
        self._arguments(RollbackTarget(params=packed))  # the registration's schema, whole
        for name, value in packed.get("arguments", {}).items():
            try:
                _argv_value(name, value)
            except ConfigError as error:
                raise OptionError(name, str(error).removeprefix(f"argument {name} ")) from error
        return packed

    def _arguments(self, target: RollbackTarget) -> dict[str, Any]:
        fixed = dict(self.config.get("arguments", {}))
        given = target.params.get("arguments", {})
        if not isinstance(given, Mapping):
            raise ConfigError("params['arguments'] must be an object")
        overridden = sorted(set(fixed) & set(given))
        if overridden:
            raise OptionError(
                overridden[0],
                f"arguments {', '.join(overridden)} are fixed by the service config and may "
                "not be changed in the rollback",
            )
        arguments = {**fixed, **given}
        try:
            jsonschema.validate(arguments, self.registration["arguments"])
        except jsonschema.ValidationError as error:
            where = "/".join(str(part) for part in error.absolute_path)
            raise OptionError(where or "arguments", f"{self.name}: {error.message}") from error
        return arguments

    def _argv(self, target: RollbackTarget) -> list[str]:
        return render_argv(self.registration["argv"], self._arguments(target))

    def _run(self, argv: list[str], *, timeout: float, log: LogLine) -> CommandOutcome:
        environment, secrets = command_environment(self.registration)
        log(mask(f"$ {shlex.join(argv)}", secrets))
        return run_command(
            argv,
            timeout=timeout,
            cwd=self.registration.get("cwd"),
            env=environment,
            log=log,
            secrets=secrets,
            kill_grace=self.kill_grace,
        )

    def live_version(self) -> str | None:
        """A command has no version to read: always None."""
        return None

    def plan(self, target: RollbackTarget) -> RollbackPlan:
        """The command line that apply would run, arguments checked and filled in; no run."""
        command_line = shlex.join(self._argv(target))
        once = "" if self.registration.get("idempotent") else " (not idempotent: runs once)"
        return RollbackPlan(
            backend=self.kind,
            summary=f"run {self.name}: {command_line}{once}",
            current_version=None,
            target_version=target.version,
            changes=(Change(f"command/{self.name}", "run", None, command_line),),
        )

    def apply(self, target: RollbackTarget, *, log: LogLine = discard_log) -> ApplyResult:
        """Run the command, streaming its output; raise on a non-zero exit or timeout."""
        argv = self._argv(target)
        if target.params.get("already_ran") and not self.registration.get("idempotent"):
            raise BackendError(
                f"{self.name} is not registered as idempotent and an earlier attempt already "
                "ran it: refusing to run it again; check its effect and finish the step by hand"
            )
        timeout = float(self.registration["timeout"])
        outcome = self._run(argv, timeout=timeout, log=log)
        if outcome.timed_out:
            raise DeadlineExceeded(f"{self.name} {outcome.describe()} (timeout {timeout:g} s)")
        if not outcome.succeeded:
            last = f"; last output: {outcome.tail[-1]}" if outcome.tail else ""
            raise BackendError(f"{self.name} {outcome.describe()}{last}")
        return ApplyResult(
            True,
            f"{self.name} exited with status 0 after {outcome.duration:.1f} s",
            {"argv": argv, "exit_status": 0, "duration": round(outcome.duration, 3)},
        )

    def wait(self, target: RollbackTarget, *, deadline: float, log: LogLine = discard_log) -> None:
        """Nothing to wait for: apply returns only once the command has finished."""

    def checks(self, target: RollbackTarget) -> list[CheckResult]:
        """The exit status of the registered `check` argv; inconclusive when there is none."""
        check = self.registration.get("check")
        if check is None:
            return [
                CheckResult(
                    "check command",
                    CheckStatus.INCONCLUSIVE,
                    f"{self.name} has no check command registered",
                )
            ]
        argv = render_argv(check, self._arguments(target))
        timeout = float(self.registration.get("check_timeout", self.registration["timeout"]))
        outcome = self._run(argv, timeout=timeout, log=discard_log)
        return [outcome_check("check command", outcome, command_environment(self.registration)[1])]
