"""Switch a Secrets Manager secret or an SSM parameter back to an earlier version, keeping
the value it replaces for the way back (the database recovery playbook's "switch the
connection setting", as a step of its own).

Target config: exactly one of `secret` (a Secrets Manager secret's name or ARN) or
`parameter` (an SSM Parameter Store name).

Which version: the step's `version` option (a secret's version id, or a parameter's version
number; read live, a missing one refused when drafted), else the release's artifact (the
version it was captured at), else, for "previous", the version before the live one.

- Secrets Manager, method "stage" (the default): UpdateSecretVersionStage moves AWSCURRENT
  to the chosen version; Secrets Manager then labels the version it replaced AWSPREVIOUS.
  Method "copy": PutSecretValue stores the chosen version's value as a new version labelled
  AWSCURRENT (for a version that has lost its labels and may be deprecated), with a client
  request token made from the secret, the source and the replaced version, so a repeated
  put creates nothing.
- SSM: GetParameterHistory gives the chosen version's value, type and KMS key;
  PutParameter with Overwrite stores it as the next version (a SecureString with its own
  key). The replaced version stays in the history.

"Previous" is chosen once per step: a step is stamped when drafted (`switch_stamp`, set by
the server only) and tags the secret or parameter `backout:switch` = "<stamp> <version>"
before switching; a retry finds its stamp and keeps that version, another step steps back.

Values never leave this module: plans, results, progress lines, check results and errors
name versions only, and an error from a call carrying a value has the value masked and no
chained cause. `live_version` is the current version id (or number), never the value.
Errors: throttling, 5xx and timeouts are retryable (executors.aws); a missing secret or
parameter is refused at draft time as an option error naming `secret` or `parameter`.
"""

from __future__ import annotations

import datetime
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from executors.aws import AwsError, aws_call, aws_client
from executors.base import (
    ApplyResult,
    Backend,
    BackendError,
    Change,
    CheckResult,
    CheckStatus,
    ConfigError,
    Connections,
    LiveOption,
    LogLine,
    RollbackPlan,
    RollbackTarget,
    discard_log,
    poll_until,
)
from executors.errors import parse_retry_after
from executors.options import Choice, Option, OptionError
from executors.value_masks import mask_values

# The step parameter set when a step is drafted, and the tag a "previous" switch records
# "<stamp> <version chosen>" in before it switches.
SWITCH_STAMP = "switch_stamp"
_STAMP = re.compile(r"[0-9a-f]{16}")
SWITCH_TAG = "backout:switch"
CURRENT, PREVIOUS = "AWSCURRENT", "AWSPREVIOUS"
# Names the copy's client request token is made in (uuid5), so a repeated put is one version.
_TOKEN_NAMESPACE = uuid.UUID("6f1f6a52-4f8e-4a51-9d0b-3c5e2b7f0d11")
_NOT_FOUND = frozenset({"ResourceNotFoundException", "ParameterNotFound"})

VERSION = Option(
    "version",
    "Version",
    type="choice",
    live=True,
    max_length=64,
    help="A version id of the secret, or a version number of the parameter's history. Empty: "
    "the chosen release's version, or the one before the live one.",
)
METHOD = Option(
    "method",
    "How",
    type="choice",
    default="stage",
    choices=(
        Choice("stage", "Move AWSCURRENT to the version"),
        Choice("copy", "Store the version's value as a new current version"),
    ),
)


@dataclass(frozen=True)
class Version:
    """One version as the options list it: id (or number), labels, when, by whom."""

    id: str
    labels: tuple[str, ...]
    created: datetime.datetime | None
    by: str = ""


@dataclass(frozen=True)
class Stored:
    """A version's value and how it is stored; never shown, logged or raised."""

    value: str | bytes = field(repr=False)
    kind: str  # "string" or "binary" (Secrets Manager), else the SSM type
    key_id: str | None = None
    data_type: str | None = None
    tier: str | None = None

    def same_value(self, other: Stored) -> bool:
        return (self.value, self.kind, self.key_id) == (other.value, other.kind, other.key_id)


def _short(version: str) -> str:
    return version if len(version) <= 12 else version[:8] + "…"


def _masked(doing: str, method: Callable[..., Any], value: str | bytes, **kwargs: Any) -> Any:
    """aws_call for a call that carries a value: an error says what failed with the value
    masked, keeps its retryability and Retry-After, and neither chains nor has as its context
    anything that holds the value (it is raised outside the handler)."""
    try:
        return aws_call(doing, method, **kwargs)
    except BackendError as error:
        failed, retryable = str(error), error.retryable
        response = getattr(error.__cause__, "response", None)
    shown = value.decode(errors="replace") if isinstance(value, bytes) else value
    masked = BackendError(mask_values(failed, [shown], shortest=1), retryable=retryable)
    headers = (response or {}).get("ResponseMetadata", {}).get("HTTPHeaders", {})
    wait = parse_retry_after(headers.get("retry-after"))
    if wait is not None:
        masked.retry_after = wait  # type: ignore[attr-defined]
    raise masked


class SecretSwitchBackend(Backend):
    """A secret or parameter: make an earlier version's value the current one."""

    kind = "secret_switch"
    label = "Secrets Manager secret / SSM parameter"
    config_schema = {
        "type": "object",
        "properties": {
            "secret": {"type": "string", "minLength": 1, "maxLength": 2048},
            "parameter": {"type": "string", "minLength": 1, "maxLength": 2048},
        },
        "additionalProperties": False,
    }

    def __init__(
        self, config: Mapping[str, Any], connections: Connections, *, poll_interval: float = 1.0
    ) -> None:
        super().__init__(config, connections)
        self.poll_interval = poll_interval
        self.is_secret = "secret" in self.config
        self.name = str(self.config["secret" if self.is_secret else "parameter"])
        self._client: Any = None

    @classmethod
    def validate_config(cls, config: Mapping[str, Any]) -> dict[str, Any]:
        """As the base class, and exactly one of `secret` or `parameter`."""
        checked = super().validate_config(config)
        if ("secret" in checked) == ("parameter" in checked):
            raise ConfigError(
                "config: name exactly one of secret (Secrets Manager) or parameter (SSM)"
            )
        return checked

    @property
    def client(self) -> Any:
        """The Secrets Manager or SSM client, built on first use."""
        if self._client is None:
            self._client = aws_client(
                self.connections, "secretsmanager" if self.is_secret else "ssm"
            )
        return self._client

    @property
    def _where(self) -> str:
        return f"{'secret' if self.is_secret else 'parameter'} {self.name}"

    @property
    def _resource(self) -> str:
        return f"{'secretsmanager' if self.is_secret else 'ssm'}/{self.name}"

    def _read(self, doing: str, method: Callable[..., Any], **kwargs: Any) -> Any:
        try:
            return aws_call(f"{doing} {self._where}", method, **kwargs)
        except AwsError as error:
            if error.code in _NOT_FOUND:
                raise ConfigError(f"{self._where} not found") from error
            raise

    # -- reading -------------------------------------------------------------------------

    def _stages(self) -> dict[str, list[str]]:
        """Secrets Manager: version id → its staging labels."""
        described = self._read("describe", self.client.describe_secret, SecretId=self.name)
        if described.get("DeletedDate"):
            raise ConfigError(f"{self._where} is scheduled for deletion")
        return {k: list(v) for k, v in (described.get("VersionIdsToStages") or {}).items()}

    def _history(self, *, decrypt: bool) -> list[dict[str, Any]]:
        """SSM: the parameter's history, oldest first (with values only when `decrypt`)."""

        def listing() -> list[dict[str, Any]]:
            paginator = self.client.get_paginator("get_parameter_history")
            pages = paginator.paginate(Name=self.name, WithDecryption=decrypt)
            return [entry for page in pages for entry in page.get("Parameters", [])]

        entries = self._read("read the history of", listing)
        if not entries:
            raise ConfigError(f"{self._where} not found")
        return sorted(entries, key=lambda entry: int(entry["Version"]))

    def _stored(self, version: str, history: list[dict[str, Any]] | None = None) -> Stored:
        if self.is_secret:
            answer = self._read(
                "read a version of",
                self.client.get_secret_value,
                SecretId=self.name,
                VersionId=version,
            )
            if "SecretBinary" in answer:
                return Stored(answer["SecretBinary"], "binary")
            return Stored(answer.get("SecretString", ""), "string")
        for entry in history or self._history(decrypt=True):
            if str(entry["Version"]) == version:
                secure = entry.get("Type") == "SecureString"
                return Stored(
                    entry.get("Value", ""),
                    str(entry.get("Type")),
                    entry.get("KeyId") if secure else None,
                    entry.get("DataType"),
                    entry.get("Tier"),
                )
        raise ConfigError(f"version {version} is not in the history of {self._where}")

    def _current(self) -> str:
        if self.is_secret:
            current = [v for v, stages in self._stages().items() if CURRENT in stages]
            if not current:
                raise ConfigError(f"{self._where} has no {CURRENT} version")
            return current[0]
        return str(self._history(decrypt=False)[-1]["Version"])

    def versions(self) -> list[Version]:
        """Every version, newest first, without values."""
        if not self.is_secret:
            return [
                Version(
                    str(entry["Version"]),
                    tuple(entry.get("Labels") or ()),
                    entry.get("LastModifiedDate"),
                    str(entry.get("LastModifiedUser") or ""),
                )
                for entry in reversed(self._history(decrypt=False))
            ]

        def listing() -> list[dict[str, Any]]:  # boto3 has no paginator for it
            entries: list[dict[str, Any]] = []
            more: dict[str, str] = {}
            while True:
                page = self.client.list_secret_version_ids(
                    SecretId=self.name, IncludeDeprecated=True, MaxResults=100, **more
                )
                entries += page.get("Versions", [])
                if not page.get("NextToken"):
                    return entries
                more = {"NextToken": page["NextToken"]}

        found = [
            Version(str(v["VersionId"]), tuple(v.get("VersionStages") or ()), v.get("CreatedDate"))
            for v in self._read("list the versions of", listing)
        ]
        epoch = datetime.datetime.min.replace(tzinfo=datetime.UTC)
        return sorted(found, key=lambda v: v.created or epoch, reverse=True)

    # -- options -------------------------------------------------------------------------

    def option_fields(self) -> tuple[Option, ...]:
        """`version`, and for a secret the `method`."""
        return (VERSION, METHOD) if self.is_secret else (VERSION,)

    def live_options(self) -> dict[str, LiveOption]:
        """The versions, newest first, with their labels and age; the live one marked."""
        versions = self.versions()
        current = self._current()
        choices = []
        for version in versions:
            name = _short(version.id) if self.is_secret else f"version {version.id}"
            labels = f" ({', '.join(version.labels)})" if version.labels else ""
            when = version.created.strftime("%Y-%m-%d %H:%M UTC") if version.created else ""
            by = version.by if version.by not in ("", "N/A") else ""
            shown = version.id if self.is_secret else ""  # a parameter's label is its number
            detail = " · ".join(part for part in (shown, when, by) if part)
            now = " (current)" if version.id == current else ""
            choices.append(Choice(version.id, name + labels + now, detail, bool(now)))
        return {"version": LiveOption(choices=tuple(choices))}

    def validate_params(self, params: Mapping[str, Any], *, live: bool = False) -> dict[str, Any]:
        """As the base class, and stamped (`switch_stamp`, set here only: a value given is
        replaced); with `live`, a secret or parameter that does not exist is refused naming
        `secret` or `parameter`."""
        if live:
            try:
                self._current()
            except ConfigError as error:
                raise OptionError("secret" if self.is_secret else "parameter", str(error)) from None
        if isinstance(params, Mapping):
            params = {name: value for name, value in params.items() if name != SWITCH_STAMP}
        cleaned = super().validate_params(params, live=live)
        cleaned[SWITCH_STAMP] = uuid.uuid4().hex[:16]
        return cleaned

    def capture_backup(self) -> dict[str, Any]:
        """The version current before a release: what a later switch goes back to."""
        return {"version": self._current()}

    def describe_backup(self, key: str, content: Any) -> str:
        return f"version {content}" if key == "version" else ""

    def live_version(self) -> str | None:
        """The current version id (Secrets Manager) or number (SSM); never the value."""
        return self._current()

    # -- what a switch does ----------------------------------------------------------------

    def _method(self, target: RollbackTarget) -> str:
        return str(target.params.get("method") or "stage") if self.is_secret else "copy"

    def _source(self, target: RollbackTarget) -> tuple[str, str]:
        """(the version whose value becomes current, the current version)."""
        chosen = target.params.get("version") or target.artifact
        if self.is_secret:
            stages = self._stages()
            current = next((v for v, s in stages.items() if CURRENT in s), None)
            if current is None:
                raise ConfigError(f"{self._where} has no {CURRENT} version")
            if chosen:
                if str(chosen) not in stages and str(chosen) not in self._all_secret_versions():
                    raise ConfigError(f"version {chosen} of {self._where} not found")
                return str(chosen), current
            recorded = self._recorded_source(target)
            if recorded is not None:
                return recorded, current  # this step chose it, in an earlier attempt
            previous = next((v for v, s in stages.items() if PREVIOUS in s), None)
            if previous is None:
                raise ConfigError(f"{self._where} has no {PREVIOUS} version to go back to")
            return previous, current
        history = self._history(decrypt=False)
        current = str(history[-1]["Version"])
        numbers = [str(entry["Version"]) for entry in history]
        if chosen:
            if str(chosen) not in numbers:
                raise ConfigError(f"version {chosen} is not in the history of {self._where}")
            return str(chosen), current
        recorded = self._recorded_source(target)
        if recorded is not None:
            return recorded, current  # this step chose it, in an earlier attempt
        if len(numbers) < 2:
            raise ConfigError(f"{self._where} has no version before {current}")
        return numbers[-2], current

    def _stamp(self, target: RollbackTarget) -> str:
        stamp = target.params.get(SWITCH_STAMP)
        if not isinstance(stamp, str) or not _STAMP.fullmatch(stamp):
            raise ConfigError(
                "a switch to the previous version needs the switch_stamp set when it is "
                "drafted (draft it again)"
            )
        return stamp

    def _recorded_source(self, target: RollbackTarget) -> str | None:
        """For "previous": the version this step chose in an earlier attempt (the switch
        tag carrying its stamp), else None; ConfigError for a target naming nothing."""
        if not target.previous:
            raise ConfigError(
                "a switch needs the version option, a release whose artifact is a version, "
                "or the previous version"
            )
        mine = self._stamp(target)
        stamp, _, source = self._tags().get(SWITCH_TAG, "").partition(" ")
        return source if source and stamp == mine else None

    def _record_source(self, target: RollbackTarget, source: str) -> None:
        """Tag the secret or parameter with this step's stamp and chosen version, before
        the switch: a retry of the step then goes to the same version, and another step
        (another stamp) steps back from wherever the secret is then."""
        if target.params.get("version") or target.artifact or not target.previous:
            return
        tag = [{"Key": SWITCH_TAG, "Value": f"{self._stamp(target)} {source}"}]
        if self.is_secret:
            aws_call(f"tag {self._where}", self.client.tag_resource, SecretId=self.name, Tags=tag)
        else:
            aws_call(
                f"tag {self._where}",
                self.client.add_tags_to_resource,
                ResourceType="Parameter",
                ResourceId=self.name,
                Tags=tag,
            )

    def _all_secret_versions(self) -> set[str]:
        return {version.id for version in self.versions()}

    def _tags(self) -> dict[str, str]:
        if self.is_secret:
            described = self._read("describe", self.client.describe_secret, SecretId=self.name)
            return {str(tag["Key"]): str(tag["Value"]) for tag in described.get("Tags") or []}
        listed = self._read(
            "read the tags of",
            self.client.list_tags_for_resource,
            ResourceType="Parameter",
            ResourceId=self.name,
        )
        return {str(tag["Key"]): str(tag["Value"]) for tag in listed.get("TagList", [])}

    def _switched(self, source: str, current: str, method: str) -> bool:
        if source == current:
            return True
        if method == "stage":
            return False
        history = None if self.is_secret else self._history(decrypt=True)
        return self._stored(current, history).same_value(self._stored(source, history))

    def plan(self, target: RollbackTarget) -> RollbackPlan:
        """Which version becomes current, and how; no writes, no values."""
        source, current = self._source(target)
        method = self._method(target)
        changes: tuple[Change, ...] = ()
        if self._switched(source, current, method):
            summary = f"{self._where} already has the value of version {_short(source)}"
        elif method == "stage":
            changes = (Change(self._resource, CURRENT, current, source),)
            summary = (
                f"move {CURRENT} of {self._where} from {_short(current)} to {_short(source)}; "
                f"{_short(current)} stays as {PREVIOUS}"
            )
        else:
            after = f"a new version with the value of {source}"
            attribute = CURRENT if self.is_secret else "version"
            changes = (Change(self._resource, attribute, current, after),)
            kept = f"as {PREVIOUS}" if self.is_secret else "in the history"
            summary = (
                f"store the value of version {_short(source)} of {self._where} as a new "
                f"current version; {_short(current)} stays {kept}"
            )
        return RollbackPlan(
            backend=self.kind,
            summary=summary,
            current_version=current,
            target_version=source,
            changes=changes,
        )

    def apply(self, target: RollbackTarget, *, log: LogLine = discard_log) -> ApplyResult:
        """Make the source version's value current; a no-op when it already is."""
        source, current = self._source(target)
        method = self._method(target)
        facts: dict[str, Any] = {"from_version": current, "source_version": source}
        if self._switched(source, current, method):
            facts["to_version"] = current
            detail = f"{self._where} already has the value of version {_short(source)}"
            return ApplyResult(False, detail, facts)
        self._record_source(target, source)
        if self.is_secret and method == "stage":
            log(f"{self._where}: moving {CURRENT} from {_short(current)} to {_short(source)}")
            self._move_stage(CURRENT, source)
            new = source
        elif self.is_secret:
            log(f"{self._where}: storing version {_short(source)}'s value as a new version")
            new = self._copy_secret(source, current)
        else:
            log(f"{self._where}: putting version {source}'s value back as the next version")
            new = self._put_parameter(source, current)
        facts["to_version"] = new
        detail = (
            f"{self._where}: version {_short(new)} is current (value of {_short(source)}); "
            f"{_short(current)} kept for the way back"
        )
        return ApplyResult(True, detail, facts)

    def _move_stage(self, stage: str, version: str) -> None:
        holder = next((v for v, s in self._stages().items() if stage in s), None)
        if holder == version:
            return
        extra = {"RemoveFromVersionId": holder} if holder else {}
        aws_call(
            f"move {stage} of {self._where}",
            self.client.update_secret_version_stage,
            SecretId=self.name,
            VersionStage=stage,
            MoveToVersionId=version,
            **extra,
        )

    def _copy_secret(self, source: str, current: str) -> str:
        stored = self._stored(source)
        token = str(uuid.uuid5(_TOKEN_NAMESPACE, f"{self.name}|{source}|{current}"))
        value_field = "SecretBinary" if stored.kind == "binary" else "SecretString"
        answer = _masked(
            f"store a new version of {self._where}",
            self.client.put_secret_value,
            stored.value,
            SecretId=self.name,
            ClientRequestToken=token,
            VersionStages=[CURRENT],
            **{value_field: stored.value},
        )
        return str(answer["VersionId"])

    def _put_parameter(self, source: str, current: str) -> str:
        stored = self._stored(source)
        extra: dict[str, Any] = {}
        if stored.key_id:
            extra["KeyId"] = stored.key_id
        if stored.data_type:
            extra["DataType"] = stored.data_type
        if stored.tier == "Advanced":
            extra["Tier"] = "Advanced"
        answer = _masked(
            f"put {self._where}",
            self.client.put_parameter,
            stored.value,
            Name=self.name,
            Value=stored.value,
            Type=stored.kind,
            Overwrite=True,
            **extra,
        )
        return str(answer["Version"])

    def wait(self, target: RollbackTarget, *, deadline: float, log: LogLine = discard_log) -> None:
        """Read the secret or parameter back until the source's value is current."""
        method = self._method(target)

        def settled() -> tuple[bool, str]:
            source, current = self._source(target)
            done = self._switched(source, current, method)
            state = "has" if done else "does not have yet"
            return done, f"{self._where}: version {_short(current)} {state} the value of {source}"

        poll_until(
            settled, deadline=deadline, log=log, interval=self.poll_interval, what=self._where
        )

    def checks(self, target: RollbackTarget) -> list[CheckResult]:
        """The current value is the source version's; the replaced value is kept."""
        source, current = self._source(target)
        switched = self._switched(source, current, self._method(target))
        results = [
            CheckResult(
                "current value is the target version's",
                CheckStatus.PASSED if switched else CheckStatus.FAILED,
                f"version {current} is current; target version {source}",
                observed=current,
                threshold=source,
            )
        ]
        if self.is_secret:
            previous = [v for v, s in self._stages().items() if PREVIOUS in s and v != current]
            kept = bool(previous)
            detail = f"{PREVIOUS} is version {previous[0]}" if kept else f"no {PREVIOUS} version"
        else:
            count = len(self._history(decrypt=False))
            kept = count > 1
            detail = f"{count} versions in the history"
        results.append(
            CheckResult(
                "previous value kept",
                CheckStatus.PASSED if kept else CheckStatus.FAILED,
                detail,
            )
        )
        return results
