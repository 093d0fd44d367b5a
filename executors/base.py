"""The small interface every rollback backend implements.

A backend is built from a validated target config (what to act on: a Deployment, an ECS
service, a bucket...) and the connection settings (endpoints, credentials sources). It
reads the live version, describes a rollback without side effects (plan), applies it
idempotently, waits for the infrastructure to settle while streaming progress lines, and
checks the outcome.
"""

from __future__ import annotations

import datetime
import math
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar

import jsonschema

# The errors are defined in executors.errors, below the schema of the checks list that
# raises them too; they are part of this interface, and backends import them from here.
from executors.check_specs import validate_checks
from executors.errors import BackendError, ConfigError, DeadlineExceeded, internal_error
from executors.options import LiveOption, Option, check_live_values, validate_options
from executors.schemas import validate_fixed_schema

__all__ = [
    "ApplyResult",
    "Backend",
    "BackendError",
    "Change",
    "CheckResult",
    "CheckStatus",
    "ConfigError",
    "Connections",
    "DeadlineExceeded",
    "LiveOption",
    "LogLine",
    "Option",
    "RollbackPlan",
    "RollbackTarget",
    "discard_log",
    "internal_error",
    "poll_until",
]

LogLine = Callable[[str], None]


def discard_log(line: str) -> None:
    """A log sink for callers that do not want progress lines."""


@dataclass(frozen=True)
class Connections:
    """Where the infrastructure is. Secrets are read from the environment by the SDKs."""

    aws_endpoint_url: str | None = None
    aws_region: str = "us-east-1"
    kube_host: str | None = None
    kubeconfig: str | None = None
    kube_context: str | None = None
    redis_url: str = "redis://127.0.0.1:6379/0"
    registered_commands: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class RollbackTarget:
    """What to roll back to.

    `version` is the release label, `artifact` what it points at (image, task-definition
    ARN, S3 prefix, snapshot id, ...). `previous=True` asks for the revision before the
    live one when no artifact is given. `params` carries backend-specific options.
    """

    version: str | None = None
    artifact: str | None = None
    previous: bool = False
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Change:
    """One thing a rollback would change: on `resource`, `attribute` goes from before to after."""

    resource: str
    attribute: str
    before: str | None
    after: str | None

    def as_json(self) -> dict[str, str | None]:
        """The change as stored on a step (`planned_changes`) and shown in previews."""
        return {
            "resource": self.resource,
            "attribute": self.attribute,
            "before": self.before,
            "after": self.after,
        }


@dataclass(frozen=True)
class RollbackPlan:
    """A dry-run description of the rollback. `changes` empty means nothing to do."""

    backend: str
    summary: str
    current_version: str | None
    target_version: str | None
    changes: tuple[Change, ...] = ()

    @property
    def is_noop(self) -> bool:
        return not self.changes


@dataclass(frozen=True)
class ApplyResult:
    """What apply did. `changed=False` means the infrastructure was already at the target."""

    changed: bool
    detail: str
    facts: Mapping[str, Any] = field(default_factory=dict)


class CheckStatus(StrEnum):
    PASSED = "passed"
    FAILED = "failed"
    INCONCLUSIVE = "inconclusive"


@dataclass(frozen=True)
class CheckResult:
    """One check's outcome. `observed` and `threshold` are what was measured and what it
    was held against (a status code, a ready ratio, a query's worst sample), when known."""

    name: str
    status: CheckStatus
    detail: str
    observed: str | float | None = None
    threshold: str | float | None = None


@dataclass(frozen=True)
class LiveChange:
    """Who or what last changed what a target runs, and when, as its platform records it."""

    by: str
    at: datetime.datetime | None = None
    cause: str = ""

    def describe(self) -> str:
        when = f" at {self.at:%Y-%m-%d %H:%M:%S %Z}" if self.at is not None else ""
        because = f" ({self.cause})" if self.cause else ""
        return f"{self.by}{when}{because}"


class Backend(ABC):
    """Base class of every rollback backend."""

    kind: ClassVar[str]
    label: ClassVar[str]
    config_schema: ClassVar[Mapping[str, Any]] = {"type": "object"}
    # The options a step on this backend takes (see executors.options).
    options: ClassVar[tuple[Option, ...]] = ()
    # Whether a step restores data (and so loses what was written after its restore point):
    # approval policies that ask for a DBA or the CTO follow it, whatever scenario is picked.
    restores_data: ClassVar[bool] = False

    def __init__(self, config: Mapping[str, Any], connections: Connections) -> None:
        self.config = self.validate_config(config)
        self.connections = connections

    @classmethod
    def validate_config(cls, config: Mapping[str, Any]) -> dict[str, Any]:
        """Return the config if it matches `config_schema`, else raise ConfigError.

        A `checks` list (the service's verification after a rollback, see
        executors.check_specs) is validated against its own schema and left out of the
        config returned: backends never see it.
        """
        backend_config = {key: value for key, value in config.items() if key != "checks"}
        if "checks" in config:
            validate_checks(config["checks"])
        try:
            validate_fixed_schema(backend_config, cls.config_schema)
        except jsonschema.ValidationError as error:
            where = "/".join(str(part) for part in error.absolute_path) or "config"
            raise ConfigError(f"{where}: {error.message}") from error
        return backend_config

    def option_fields(self) -> tuple[Option, ...]:
        """The options a step takes: the class's `options`, or ones derived from the config
        (a registered command's arguments)."""
        return self.options

    def live_options(self) -> dict[str, LiveOption]:
        """What the infrastructure says about the options marked `live` (choices, bounds),
        read now; empty when none are. May raise BackendError."""
        return {}

    def capture_backup(self) -> dict[str, Any]:
        """What to save before a release so that it can be undone later (a manifest, a
        record set), keyed as the "backup" options' `backup_key`; empty when nothing is."""
        return {}

    def describe_backup(self, key: str, content: Any) -> str:
        """A saved backup (`capture_backup()[key]`) in a few words, to show beside it (the
        values of a record set, a manifest's image); empty when there is nothing to say."""
        return ""

    def pin_release(self, params: Mapping[str, Any], artifact: str) -> dict[str, Any]:
        """The options a step going back to a release whose artifact is `artifact` stores,
        before they are validated: a backend whose option names what the artifact names (a
        dump file) fills it in here, so that the draft checks it against the
        infrastructure and the data-loss check sees it. By default `params` unchanged."""
        return dict(params)

    def writes_lost_after(self, params: Mapping[str, Any]) -> datetime.datetime | None:
        """For a step that restores data: the instant after which writes are not in what
        it restores (the restore time, the snapshot's time); None when nothing is lost.
        May read the infrastructure (a snapshot's creation time)."""
        return None

    def validate_params(self, params: Mapping[str, Any], *, live: bool = False) -> dict[str, Any]:
        """A step's parameters, checked against the options (OptionError names the one at
        fault), with defaults filled in; with `live`, also against the infrastructure now."""
        fields = self.option_fields()
        cleaned = validate_options(fields, params)
        if live and any(option.live and cleaned.get(option.name) is not None for option in fields):
            check_live_values(fields, cleaned, self.live_options())
        return cleaned

    @abstractmethod
    def live_version(self) -> str | None:
        """The version (or artifact) the infrastructure runs now, or None if unknown."""

    def live_change(self) -> LiveChange | None:
        """Who last changed the live version and when, where the platform says (None)."""
        return None

    @abstractmethod
    def plan(self, target: RollbackTarget) -> RollbackPlan:
        """Describe current → target without side effects."""

    @abstractmethod
    def apply(self, target: RollbackTarget, *, log: LogLine = discard_log) -> ApplyResult:
        """Make the change. Safe to call again: a second call changes nothing."""

    @abstractmethod
    def wait(self, target: RollbackTarget, *, deadline: float, log: LogLine = discard_log) -> None:
        """Block until the change has settled, or raise DeadlineExceeded at `deadline`
        (a `time.monotonic()` instant), logging progress lines meanwhile."""

    @abstractmethod
    def checks(self, target: RollbackTarget) -> list[CheckResult]:
        """Verify the outcome; each check passes, fails, or is inconclusive."""


def poll_until(
    condition: Callable[[], tuple[bool, str]],
    *,
    deadline: float,
    log: LogLine,
    interval: float = 0.5,
    what: str,
    since: float | None = None,
) -> None:
    """Call `condition` until it returns (True, _), logging each new progress message.

    The first call is at once; later calls keep to a grid `interval` apart, counted from
    `since` (the monotonic instant the change was made, when known) or from the first
    call. A slow call or slow bookkeeping before the wait therefore never shifts the
    grid: the outcome is seen within `interval` of its happening, as if polling had begun
    with the change. A call that overruns its slot skips to the next one.

    A `log` with a `flush_if_due()` method (the engine's step log) is asked to store its
    lines between polls, so that a wait whose progress does not change keeps nothing back.

    Raises DeadlineExceeded when `deadline` (monotonic seconds) passes first.
    """
    last_message = None
    anchor = time.monotonic() if since is None else since
    flush_if_due = getattr(log, "flush_if_due", None)  # a log that stores lines in batches
    while True:
        done, message = condition()
        if message != last_message:
            log(message)
            last_message = message
        if done:
            return
        if flush_if_due is not None:
            flush_if_due()
        now = time.monotonic()
        if now >= deadline:
            raise DeadlineExceeded(f"{what}: deadline passed; last state: {message}")
        slot = now
        if interval > 0:
            slot = anchor + (math.floor((now - anchor) / interval) + 1) * interval
        time.sleep(max(0.0, min(slot, deadline) - now))
