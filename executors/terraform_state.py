"""Restore an earlier version of a Terraform state file kept by the S3 backend, with boto3.

The state object (`bucket`/`key`, in a versioned bucket) has a version per `terraform apply`.
A rollback makes a chosen earlier version the current one again by copying it over the key
(CopyObject with its VersionId): a new version with the old content. No version is ever
deleted, so the rollback can itself be undone the same way. The step's `version_id` option
names the version (the plan builder lists them newest first with their serial and lineage);
else a release's saved state (`saved_state`, captured before the release), else the
target's artifact (a version id, or `serial N` with an optional `lineage L`), else, for
"previous", the version before the current one.

Locking, as Terraform itself does it (executors.terraform_locks) with a DynamoDB table
(`lock_table`): the lock is an item whose LockID is `<bucket>/<key>` and whose Info is
Terraform's lock JSON (ID, Operation, Who, Version, Created, Path). Apply takes that lock
itself (a conditional PutItem), so no `terraform apply` can start while it copies. When
someone else holds it, the step is refused with who holds it, since when, for which
operation. The refusal is *retryable*: a lock normally means a plan or apply that ends
within minutes, and the engine retries with backoff. A lock that outlives the retries is
stale (a killed terraform): the step fails, still marked retryable, and its message says to
check with the holder and run `terraform force-unlock <ID>`. Terraform 1.10's S3 lock file
(`<key>.tflock`) is honoured the same way. Backout's own lock names the version it
restores, so a retried step whose worker died holding it takes it over.

Terraform also keeps the MD5 of the state it last wrote in the item `<bucket>/<key>-md5`
(Digest, hex) and refuses to read a state object that does not match it. Apply rewrites
that digest for the restored content, or the next `terraform plan` would fail.

Serial and lineage are read from the state JSON before and after and recorded in the apply
facts. A version of another lineage (another state that was written to this key) is refused
unless the step's `allow_lineage_change` is set. After the copy the infrastructure still
matches the newer state: the runbooks then run `terraform apply` of the previous
configuration (a registered command, `apply_command` in the config, names it), and the
result and the log say so.

Idempotence: when the current version's content already equals the chosen version's, apply
changes nothing (changed=False). The copy carries the metadata `backout-restored-from`, so
"previous" after a restore means the version restored, not one step further back.

Errors: throttling, 5xx, timeouts and unreachable endpoints raise a retryable BackendError;
everything else is permanent. A missing bucket, state object or version is a ConfigError.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
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
    Option,
    RollbackPlan,
    RollbackTarget,
    discard_log,
    poll_until,
)
from executors.options import Choice, OptionError
from executors.s3_targets import (
    ENDPOINT_PROPERTIES,
    PRINTABLE,
    ObjectVersion,
    list_versions,
    target_connections,
)
from executors.terraform_locks import LOCK_OPERATION, StateLocks

RESTORED_FROM_METADATA = "backout-restored-from"
# The versions the plan builder describes with their serial and lineage (one read each).
DESCRIBED_VERSIONS = 20
_ARTIFACT = re.compile(r"serial\s+(?P<serial>\d+)(?:.*?lineage\s+(?P<lineage>[\w-]+))?", re.I)
_COPIED_HEADERS = (
    "CacheControl",
    "ContentDisposition",
    "ContentEncoding",
    "ContentLanguage",
    "ContentType",
    "ServerSideEncryption",
    "SSEKMSKeyId",
)

OPTIONS = (
    Option(
        "version_id",
        "State version",
        type="choice",
        live=True,
        max_length=1024,
        help="A version of the state object, newest first; empty: the release's saved state, "
        "its artifact, or the version before the current one.",
    ),
    Option(
        "saved_state",
        "Saved state",
        type="backup",
        backup_key="state_version",
        help="The state version a release recorded before it was applied.",
    ),
    Option(
        "allow_lineage_change",
        "Allow another lineage",
        type="boolean",
        default=False,
        help="Restore a version whose lineage differs from the current state's.",
    ),
)


@dataclass(frozen=True)
class StateVersion:
    """One version of the state object with what its JSON says."""

    version_id: str
    serial: int | None
    lineage: str | None
    digest: str  # MD5 of the content, hex: what Terraform's digest item holds
    body: bytes
    restored_from: str | None = None

    def describe(self) -> str:
        return state_label(self.serial, self.lineage)

    def facts(self, prefix: str) -> dict[str, Any]:
        return {
            f"{prefix}_version_id": self.version_id,
            f"{prefix}_serial": self.serial,
            f"{prefix}_lineage": self.lineage,
        }


def state_label(serial: int | None, lineage: str | None) -> str:
    """What the console shows as the state's version: `serial 7 · lineage 3f2a…`."""
    return f"serial {serial if serial is not None else '?'} · lineage {lineage or '?'}"


def _parse_state(body: bytes) -> tuple[int | None, str | None]:
    try:
        document = json.loads(body)
    except ValueError:
        return None, None
    if not isinstance(document, dict):
        return None, None
    serial = document.get("serial")
    lineage = document.get("lineage")
    return (
        serial if isinstance(serial, int) and not isinstance(serial, bool) else None,
        str(lineage) if isinstance(lineage, str) else None,
    )


class TerraformStateBackend(Backend):
    """A Terraform S3-backend state: copy an earlier object version back over the key."""

    kind = "terraform_state"
    label = "Terraform state (S3 backend)"
    config_schema = {
        "type": "object",
        "properties": {
            "bucket": {"type": "string", "minLength": 3, "maxLength": 63},
            "key": {"type": "string", "minLength": 1, "maxLength": 1024, "pattern": PRINTABLE},
            "lock_table": {"type": "string", "pattern": "^[A-Za-z0-9_.-]{3,255}$"},
            "apply_command": {
                "type": "string",
                "minLength": 1,
                "maxLength": 100,
                "pattern": PRINTABLE,
            },
            **ENDPOINT_PROPERTIES,
        },
        "required": ["bucket", "key"],
        "additionalProperties": False,
    }
    options = OPTIONS

    def __init__(
        self, config: Mapping[str, Any], connections: Connections, *, poll_interval: float = 2.0
    ) -> None:
        super().__init__(config, connections)
        self.poll_interval = poll_interval
        self._aws = target_connections(self.config, connections)
        self._s3: Any = None
        self._dynamodb: Any = None
        self.locks = StateLocks(
            s3=lambda: self.s3,
            dynamodb=lambda: self.dynamodb,
            bucket=self.config["bucket"],
            key=self.config["key"],
            table=self.config.get("lock_table"),
        )

    @property
    def s3(self) -> Any:
        """The boto3 S3 client, built on first use."""
        if self._s3 is None:
            self._s3 = aws_client(self._aws, "s3")
        return self._s3

    @property
    def dynamodb(self) -> Any:
        """The boto3 DynamoDB client, built on first use."""
        if self._dynamodb is None:
            self._dynamodb = aws_client(self._aws, "dynamodb")
        return self._dynamodb

    @property
    def _where(self) -> str:
        return f"s3://{self.config['bucket']}/{self.config['key']}"

    # -- reading -------------------------------------------------------------------------

    def _versions(self) -> list[ObjectVersion]:
        """The state object's versions (not its delete markers), newest first."""
        key = self.config["key"]
        entries = list_versions(self.s3, self.config["bucket"], key)
        return [entry for entry in entries if entry.key == key and not entry.deleted]

    def _read(self, version_id: str | None = None) -> StateVersion | None:
        """A version of the state (the current one when None); None when there is none."""
        extra = {"VersionId": version_id} if version_id else {}
        try:
            response = aws_call(
                f"read {self._where}",
                self.s3.get_object,
                Bucket=self.config["bucket"],
                Key=self.config["key"],
                **extra,
            )
        except AwsError as error:
            if error.code == "NoSuchBucket":
                raise ConfigError(f"bucket {self.config['bucket']!r} does not exist") from error
            if error.code in ("NoSuchKey", "NoSuchVersion", "InvalidArgument", "404"):
                return None
            raise
        body: bytes = aws_call(f"read {self._where}", response["Body"].read)
        serial, lineage = _parse_state(body)
        return StateVersion(
            version_id=str(response.get("VersionId") or version_id or "null"),
            serial=serial,
            lineage=lineage,
            digest=hashlib.md5(body, usedforsecurity=False).hexdigest(),
            body=body,
            restored_from=(response.get("Metadata") or {}).get(RESTORED_FROM_METADATA),
        )

    def _current(self) -> StateVersion:
        current = self._read()
        if current is None:
            raise ConfigError(f"no state at {self._where}")
        return current

    def live_version(self) -> str | None:
        """The current state's serial and lineage; None when there is no state yet."""
        current = self._read()
        return current.describe() if current is not None else None

    def live_options(self) -> dict[str, LiveOption]:
        """The state's versions, newest first; the newest ones with serial and lineage."""
        choices = []
        for number, entry in enumerate(self._versions()):
            when = entry.last_modified.strftime("%Y-%m-%d %H:%M:%S UTC")
            label = entry.version_id
            if number < DESCRIBED_VERSIONS:
                read = self._read(entry.version_id)
                if read is not None:
                    label = read.describe()
            current = " (current)" if entry.is_latest else ""
            choices.append(
                Choice(
                    entry.version_id,
                    label + current,
                    f"{when} · {entry.version_id}",
                    entry.is_latest,
                )
            )
        return {"version_id": LiveOption(choices=tuple(choices))}

    def capture_backup(self) -> dict[str, Any]:
        """The current state version (id, serial, lineage), saved before a release."""
        current = self._read()
        if current is None:
            return {}
        return {
            "state_version": {
                "version_id": current.version_id,
                "serial": current.serial,
                "lineage": current.lineage,
            }
        }

    def describe_backup(self, key: str, content: Any) -> str:
        if key != "state_version" or not isinstance(content, Mapping):
            return ""
        return state_label(content.get("serial"), content.get("lineage"))

    def validate_params(self, params: Mapping[str, Any], *, live: bool = False) -> dict[str, Any]:
        """As the base class; with `live`, the chosen or saved version must exist, and be of
        the current lineage unless `allow_lineage_change`."""
        cleaned = super().validate_params(params, live=live)
        saved = cleaned.get("saved_state")
        if saved is not None and not (isinstance(saved, Mapping) and saved.get("version_id")):
            raise OptionError("saved_state", "is not a saved state version")
        if not live:
            return cleaned
        name = "version_id" if cleaned.get("version_id") else "saved_state"
        wanted = cleaned.get("version_id") or (saved or {}).get("version_id")
        if not wanted:
            return cleaned
        chosen = self._read(str(wanted))
        if chosen is None:
            raise OptionError(name, f"{wanted} is not a version of {self._where}")
        current = self._current()
        if not cleaned.get("allow_lineage_change") and chosen.lineage != current.lineage:
            raise OptionError(name, self._lineage_refusal(chosen, current))
        return cleaned

    def _lineage_refusal(self, chosen: StateVersion, current: StateVersion) -> str:
        return (
            f"version {chosen.version_id} is of lineage {chosen.lineage}, the current state of "
            f"lineage {current.lineage}; set allow_lineage_change to restore it anyway"
        )

    def _target(self, target: RollbackTarget, current: StateVersion) -> StateVersion:
        """The version to restore (see the module's docstring for the order asked)."""
        saved = target.params.get("saved_state")
        wanted = target.params.get("version_id") or (
            saved.get("version_id") if isinstance(saved, Mapping) else None
        )
        if not wanted and target.artifact:
            wanted = self._version_for_artifact(target.artifact)
        if wanted:
            chosen = self._read(str(wanted))
            if chosen is None:
                raise ConfigError(f"{wanted} is not a version of {self._where}")
            return chosen
        if not target.previous:
            raise ConfigError(
                "a Terraform state rollback needs a version_id, a release's saved state, an "
                "artifact (a version id or `serial N`) or previous"
            )
        if current.restored_from:  # this backend restored it: "previous" is done
            restored = self._read(current.restored_from)
            if restored is not None:
                return restored
        older = [entry for entry in self._versions() if entry.version_id != current.version_id]
        for entry in older:
            candidate = self._read(entry.version_id)
            if candidate is not None and candidate.digest != current.digest:
                return candidate
        raise ConfigError(f"{self._where} has no earlier version with other content")

    def _version_for_artifact(self, artifact: str) -> str:
        versions = self._versions()
        if any(entry.version_id == artifact for entry in versions):
            return artifact
        match = _ARTIFACT.search(artifact)
        if match is None:
            raise ConfigError(
                f"{artifact[:200]!r} is neither a version of {self._where} nor `serial N`"
            )
        serial, lineage = int(match["serial"]), match["lineage"]
        for entry in versions:
            read = self._read(entry.version_id)
            if read is not None and read.serial == serial and (lineage in (None, read.lineage)):
                return entry.version_id
        raise ConfigError(f"{self._where} has no version with {artifact[:200]}")

    def next_step(self) -> str:
        """The runbooks' next step after the state is restored."""
        command = self.config.get("apply_command")
        how = f"the registered command {command!r}" if command else "the previous configuration"
        return f"now run terraform apply of the previous values ({how}) against {self._where}"

    # -- the interface -------------------------------------------------------------------

    def plan(self, target: RollbackTarget) -> RollbackPlan:
        """The version copied over the key, its serial and lineage, the digest rewritten,
        and who holds the lock now; no writes."""
        current = self._current()
        chosen = self._target(target, current)
        changes: list[Change] = []
        if chosen.digest != current.digest:
            changes.append(
                Change(self._where, "current version", current.describe(), chosen.describe())
            )
            if self.config.get("lock_table"):
                changes.append(
                    Change(
                        self.locks.digest_resource,
                        "Digest",
                        self.locks.stored_digest(),
                        chosen.digest,
                    )
                )
        if not changes:
            summary = f"{self._where} already holds {chosen.describe()}"
        else:
            summary = (
                f"copy version {chosen.version_id} ({chosen.describe()}) over {self._where}, "
                f"now {current.describe()}; no version is deleted; then {self.next_step()}"
            )
            if chosen.lineage != current.lineage:
                allowed = target.params.get("allow_lineage_change")
                summary += f"; lineage changes{'' if allowed else ' (refused unless allowed)'}"
            holder = self.locks.holder()
            if holder is not None:
                summary += f"; locked now by {holder.describe()}"
        return RollbackPlan(
            backend=self.kind,
            summary=summary,
            current_version=current.describe(),
            target_version=chosen.describe(),
            changes=tuple(changes),
        )

    def apply(self, target: RollbackTarget, *, log: LogLine = discard_log) -> ApplyResult:
        """Under Terraform's lock: copy the chosen version over the key, rewrite the digest.
        Nothing changes when the current content is the chosen one already."""
        current = self._current()
        chosen = self._target(target, current)
        facts: dict[str, Any] = {
            **current.facts("before"),
            **chosen.facts("restored"),
            "next_step": self.next_step(),
        }
        if chosen.digest == current.digest:
            log(f"{self._where} already holds {chosen.describe()}; {self.next_step()}")
            return ApplyResult(
                False,
                f"{self._where} already holds {chosen.describe()}; {self.next_step()}",
                {**facts, **current.facts("after")},
            )
        if chosen.lineage != current.lineage and not target.params.get("allow_lineage_change"):
            raise ConfigError(self._lineage_refusal(chosen, current))
        lock_id = self.locks.take(f"restore version {chosen.version_id}", log)
        try:
            log(f"copying version {chosen.version_id} ({chosen.describe()}) over {self._where}")
            new_version = self._copy(chosen)
            if self.config.get("lock_table"):
                self.locks.write_digest(chosen.digest)
                log(f"state digest in {self.config['lock_table']} set to {chosen.digest}")
        finally:
            if lock_id:
                self.locks.release(lock_id)
        after = self._current()
        log(f"{self._where}: {current.describe()} → {after.describe()}; {self.next_step()}")
        return ApplyResult(
            True,
            f"{self._where}: restored version {chosen.version_id} as {new_version} "
            f"({current.describe()} → {after.describe()}); {self.next_step()}",
            {**facts, **after.facts("after"), "new_version_id": new_version},
        )

    def _copy(self, chosen: StateVersion) -> str:
        bucket, key = self.config["bucket"], self.config["key"]
        head = aws_call(
            f"read version {chosen.version_id} of {self._where}",
            self.s3.head_object,
            Bucket=bucket,
            Key=key,
            VersionId=chosen.version_id,
        )
        extra = {name: head[name] for name in _COPIED_HEADERS if head.get(name)}
        metadata = {**head.get("Metadata", {}), RESTORED_FROM_METADATA: chosen.version_id}
        response = aws_call(
            f"copy version {chosen.version_id} over {self._where}",
            self.s3.copy_object,
            Bucket=bucket,
            Key=key,
            CopySource={"Bucket": bucket, "Key": key, "VersionId": chosen.version_id},
            MetadataDirective="REPLACE",
            Metadata=metadata,
            **extra,
        )
        return str(response.get("VersionId") or "null")

    def _settled(self, target: RollbackTarget) -> tuple[bool, str]:
        current = self._current()
        chosen = self._target(target, current)
        if current.digest != chosen.digest:
            raise BackendError(
                f"{self._where} holds {current.describe()} (version {current.version_id}), not "
                f"the restored {chosen.describe()}: it was written again since"
            )
        stored = self.locks.stored_digest()
        if self.config.get("lock_table") and stored != current.digest:
            return False, f"{self._where}: {current.describe()}; digest in the lock table {stored}"
        return True, f"{self._where}: {current.describe()} is current; {self.next_step()}"

    def wait(self, target: RollbackTarget, *, deadline: float, log: LogLine = discard_log) -> None:
        """Until the restored content is current and Terraform's digest matches it."""
        poll_until(
            lambda: self._settled(target),
            deadline=deadline,
            log=log,
            interval=self.poll_interval,
            what=f"Terraform state {self._where}",
        )

    def checks(self, target: RollbackTarget) -> list[CheckResult]:
        """The restored version is current, its digest is Terraform's, no lock is left."""
        current = self._current()
        chosen = self._target(target, current)
        results = [
            CheckResult(
                "state is the restored version",
                CheckStatus.PASSED if current.digest == chosen.digest else CheckStatus.FAILED,
                f"current {current.describe()}; restored {chosen.describe()}",
                observed=current.describe(),
                threshold=chosen.describe(),
            )
        ]
        if self.config.get("lock_table"):
            stored = self.locks.stored_digest()
            results.append(
                CheckResult(
                    "state digest matches",
                    CheckStatus.PASSED if stored == current.digest else CheckStatus.FAILED,
                    f"lock table digest {stored}; state MD5 {current.digest}",
                )
            )
        holder = self.locks.holder()
        results.append(
            CheckResult(
                "state unlocked",
                CheckStatus.PASSED
                if holder is None or holder.operation != LOCK_OPERATION
                else CheckStatus.FAILED,
                "no lock held" if holder is None else f"locked by {holder.describe()}",
            )
        )
        return results
