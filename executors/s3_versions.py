"""Restore the objects of a versioned S3 prefix to earlier versions, with boto3: for static
frontends whose previous build was overwritten in place, then invalidate CloudFront.

What to restore, one of the step's options:

- `restore_time`: every object of the prefix as it was at that instant. An object is
  restored to its newest version written at or before it; an object created after it, or
  deleted at the time, is hidden behind a new **delete marker** (a plain DeleteObject in a
  versioned bucket): no version is ever deleted, so the restore can be undone.
- `versions`: the version ids a release saved (`capture_backup` records every object's
  current version id under the prefix); objects the saved set does not name are hidden
  behind delete markers the same way.

A version is restored by copying it over its key (CopyObject with its VersionId): a new
version with the old content. The plan lists every copy and every delete marker and changes
nothing. Apply refuses a bucket whose versioning is not Enabled (a delete there would destroy
what it removes). An object is in place when its current version is the wanted one or has
the same ETag and size; a multipart upload's ETag does not survive a copy, so such copies
carry the metadata `backout-restored-from` (the version id), which the comparison reads.

Then, with a `distribution_id`, apply invalidates `/<prefix>*` (or `invalidation_path`) with a
caller reference made of the step's draft stamp and the restore point, so a retried apply
finds the invalidation it made instead of making another, and `wait` and the checks find it
the same way. AWS spells a finished invalidation's status `Completed`; some moto releases
answer `COMPLETED`: compared case-insensitively.

`live_version` is a digest of the prefix's current keys and ETags (`12 objects · content
3f2a…`), not of the version ids: a restore writes new version ids, but restoring a build
brings back its content, so the console recognises the release it restored (it reads only
the current objects, with ListObjectsV2). Every listing is paginated (`page_size`, 1,000).

Errors: throttling, 5xx, timeouts and unreachable endpoints raise a retryable BackendError;
everything else is permanent. A missing bucket, distribution or saved version is a
ConfigError.
"""

from __future__ import annotations

import datetime
import hashlib
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
from executors.options import OptionError, parse_instant, restart_stamp
from executors.s3_targets import (
    ENDPOINT_PROPERTIES,
    LIST_PAGE_SIZE,
    PRINTABLE,
    ObjectVersion,
    current_etags,
    find_version,
    list_versions,
    require_versioning,
    target_connections,
)

RESTORED_FROM_METADATA = "backout-restored-from"
PLANNED_CHANGES_SHOWN = 200  # a plan lists this many object changes, then counts the rest
INVALIDATIONS_SEARCHED = 50
_DELETE_BATCH = 1000  # DeleteObjects' limit

OPTIONS = (
    Option(
        "restore_time",
        "Restore to the time",
        type="datetime",
        live=True,
        help="Every object of the prefix as it was then; objects created since are hidden "
        "behind delete markers.",
    ),
    Option(
        "versions",
        "Saved versions",
        type="backup",
        backup_key="versions",
        help="The version ids a release saved; objects it does not name are hidden behind "
        "delete markers.",
    ),
    Option(
        "drafted_at",
        "Draft stamp",
        max_length=64,
        help="Filled in when the plan is drafted, so that a retried step invalidates once.",
    ),
)


@dataclass(frozen=True)
class Restore:
    """What bringing the prefix back to a restore point involves."""

    point: str
    copies: tuple[tuple[ObjectVersion, ObjectVersion | None], ...]  # (wanted, current)
    hides: tuple[ObjectVersion, ...]  # current versions to hide behind delete markers
    wanted: Mapping[str, str]  # key → version id at the restore point

    @property
    def in_place(self) -> bool:
        return not self.copies and not self.hides

    def digest(self) -> str:
        text = "\n".join(f"{key}\t{version}" for key, version in sorted(self.wanted.items()))
        return hashlib.sha256(text.encode()).hexdigest()


def content_digest(etags: Mapping[str, str]) -> str:
    """`12 objects · content 3f2a9c0b41d2`: the keys and ETags served now."""
    text = "\n".join(f"{key}\t{etag}" for key, etag in sorted(etags.items()))
    return f"{len(etags)} objects · content {hashlib.sha256(text.encode()).hexdigest()[:12]}"


class S3VersionsBackend(Backend):
    """A versioned S3 prefix: copy earlier versions back, hide newer objects, invalidate."""

    kind = "s3_versions"
    label = "S3 object versions"
    config_schema = {
        "type": "object",
        "properties": {
            "bucket": {"type": "string", "minLength": 3, "maxLength": 63},
            "prefix": {"type": "string", "maxLength": 1024, "pattern": PRINTABLE},
            "distribution_id": {"type": "string", "minLength": 1, "maxLength": 64},
            "invalidation_path": {"type": "string", "pattern": "^/", "maxLength": 4000},
            **ENDPOINT_PROPERTIES,
        },
        "required": ["bucket", "prefix"],
        "additionalProperties": False,
    }
    options = OPTIONS

    def __init__(
        self,
        config: Mapping[str, Any],
        connections: Connections,
        *,
        poll_interval: float = 5.0,
        page_size: int = LIST_PAGE_SIZE,
    ) -> None:
        super().__init__(config, connections)
        self.poll_interval = poll_interval
        self.page_size = page_size
        self._aws = target_connections(self.config, connections)
        self._s3: Any = None
        self._cloudfront: Any = None

    @property
    def s3(self) -> Any:
        """The boto3 S3 client, built on first use."""
        if self._s3 is None:
            self._s3 = aws_client(self._aws, "s3")
        return self._s3

    @property
    def cloudfront(self) -> Any:
        """The boto3 CloudFront client, built on first use."""
        if self._cloudfront is None:
            self._cloudfront = aws_client(self._aws, "cloudfront")
        return self._cloudfront

    @property
    def _where(self) -> str:
        return f"s3://{self.config['bucket']}/{self.config['prefix']}"

    @property
    def _invalidation_path(self) -> str:
        return str(self.config.get("invalidation_path") or f"/{self.config['prefix']}*")

    # -- reading -------------------------------------------------------------------------

    def _history(self) -> dict[str, list[ObjectVersion]]:
        """Each key's versions and delete markers, newest first."""
        history: dict[str, list[ObjectVersion]] = {}
        for entry in list_versions(
            self.s3, self.config["bucket"], self.config["prefix"], page_size=self.page_size
        ):
            history.setdefault(entry.key, []).append(entry)
        return history

    @staticmethod
    def _current(history: Mapping[str, list[ObjectVersion]]) -> dict[str, ObjectVersion]:
        return {
            key: entries[0]
            for key, entries in history.items()
            if entries and not entries[0].deleted
        }

    def live_version(self) -> str | None:
        """A digest of the keys and ETags the prefix serves now (see the docstring)."""
        etags = current_etags(
            self.s3, self.config["bucket"], self.config["prefix"], page_size=self.page_size
        )
        return content_digest(etags)

    def live_options(self) -> dict[str, LiveOption]:
        """The window a restore time may fall in: from the oldest version kept to now."""
        history = self._history()
        times = [entry.last_modified for entries in history.values() for entry in entries]
        if not times:
            return {"restore_time": LiveOption(note=f"no versions under {self._where}")}
        oldest = min(times)
        now = datetime.datetime.now(datetime.UTC)
        current = self._current(history)
        return {
            "restore_time": LiveOption(
                minimum=oldest.strftime("%Y-%m-%dT%H:%M:%SZ"),
                maximum=now.strftime("%Y-%m-%dT%H:%M:%SZ"),
                note=f"versions kept since {oldest:%Y-%m-%d %H:%M:%S} UTC; "
                f"{content_digest({key: entry.etag for key, entry in current.items()})} now",
            )
        }

    def capture_backup(self) -> dict[str, Any]:
        """Every object's current version id under the prefix, saved before a release."""
        current = self._current(self._history())
        if not current:
            return {}
        return {"versions": {key: entry.version_id for key, entry in sorted(current.items())}}

    def describe_backup(self, key: str, content: Any) -> str:
        if key != "versions" or not isinstance(content, Mapping):
            return ""
        return f"{len(content)} object versions"

    def validate_params(self, params: Mapping[str, Any], *, live: bool = False) -> dict[str, Any]:
        """As the base class; exactly one of restore_time and versions, the draft stamped,
        and with `live` every saved version must still exist."""
        cleaned = super().validate_params(params, live=live)
        has_time, saved = cleaned.get("restore_time"), cleaned.get("versions")
        if has_time and saved:
            raise OptionError("versions", "give either restore_time or saved versions, not both")
        if not has_time and not saved:
            raise OptionError(
                "restore_time", "give a time, or choose a release whose saved versions to restore"
            )
        if saved is not None:
            if not isinstance(saved, Mapping) or not all(
                isinstance(key, str) and isinstance(value, str) for key, value in saved.items()
            ):
                raise OptionError("versions", "is not a saved set of version ids")
            outside = [key for key in saved if not key.startswith(self.config["prefix"])]
            if outside:
                raise OptionError("versions", f"{outside[0][:200]} is not under {self._where}")
        if not cleaned.get("drafted_at"):
            cleaned["drafted_at"] = restart_stamp()
        if live and saved:
            history = self._history()
            missing = [
                key for key, version in saved.items() if not find_version(history, key, version)
            ]
            if missing:
                raise OptionError(
                    "versions",
                    f"{len(missing)} saved versions no longer exist under {self._where}, "
                    f"e.g. {missing[0][:200]}",
                )
        return cleaned

    def _restore(self, target: RollbackTarget) -> Restore:
        history = self._history()
        current = self._current(history)
        wanted: dict[str, ObjectVersion] = {}
        saved = target.params.get("versions")
        when = parse_instant(str(target.params.get("restore_time") or ""))
        if isinstance(saved, Mapping) and saved:
            point = f"the {len(saved)} saved versions"
            for key, version_id in saved.items():
                found = find_version(history, str(key), str(version_id))
                if found is None:
                    raise ConfigError(f"saved version {version_id} of {key} no longer exists")
                wanted[str(key)] = found
        elif when is not None:
            point = when.strftime("%Y-%m-%d %H:%M:%S UTC")
            for key, entries in history.items():
                then = next((entry for entry in entries if entry.last_modified <= when), None)
                if then is not None and not then.deleted:
                    wanted[key] = then
        else:
            raise ConfigError("an S3 versions rollback needs restore_time or saved versions")
        copies = tuple(
            (entry, current.get(key))
            for key, entry in sorted(wanted.items())
            if not self._in_place(entry, current.get(key))
        )
        hides = tuple(entry for key, entry in sorted(current.items()) if key not in wanted)
        return Restore(
            point, copies, hides, {key: entry.version_id for key, entry in wanted.items()}
        )

    def _in_place(self, wanted: ObjectVersion, current: ObjectVersion | None) -> bool:
        if current is None:
            return False
        if current.version_id == wanted.version_id:
            return True
        if current.size != wanted.size:
            return False
        if "-" not in wanted.etag:
            return current.etag == wanted.etag
        head = self._head(current.key, current.version_id)
        return bool(head.get("Metadata", {}).get(RESTORED_FROM_METADATA) == wanted.version_id)

    def _head(self, key: str, version_id: str) -> dict[str, Any]:
        head: dict[str, Any] = aws_call(
            f"read s3://{self.config['bucket']}/{key}",
            self.s3.head_object,
            Bucket=self.config["bucket"],
            Key=key,
            VersionId=version_id,
        )
        return head

    def _reference(self, target: RollbackTarget, restore: Restore) -> str:
        stamp = str(target.params.get("drafted_at") or "")
        return f"backout-{stamp}-{restore.digest()[:24]}"

    # -- the interface -------------------------------------------------------------------

    def plan(self, target: RollbackTarget) -> RollbackPlan:
        """Every copy and delete marker, and the invalidation; no writes."""
        restore = self._restore(target)
        distribution = self.config.get("distribution_id")
        if distribution:
            self._check_distribution()
        bucket = self.config["bucket"]
        changes = [
            Change(
                f"s3://{bucket}/{wanted.key}",
                "version",
                current.version_id if current else "deleted",
                f"{wanted.version_id} (copied as a new version)",
            )
            for wanted, current in restore.copies
        ]
        changes += [
            Change(
                f"s3://{bucket}/{entry.key}",
                "version",
                entry.version_id,
                "delete marker (every version kept)",
            )
            for entry in restore.hides
        ]
        if len(changes) > PLANNED_CHANGES_SHOWN:
            rest = len(changes) - PLANNED_CHANGES_SHOWN
            changes = changes[:PLANNED_CHANGES_SHOWN]
            changes.append(Change(self._where, "objects", None, f"{rest} more changes"))
        invalidated = distribution and self._find_invalidation(self._reference(target, restore))
        if distribution and (changes or invalidated is None):
            changes.append(
                Change(f"cloudfront/{distribution}", "invalidation", None, self._invalidation_path)
            )
        if changes:
            summary = (
                f"restore {self._where} to {restore.point}: copy {len(restore.copies)} earlier "
                f"versions back, hide {len(restore.hides)} objects behind delete markers "
                "(no version is deleted)"
            )
            if distribution:
                summary += f", then invalidate {self._invalidation_path}"
        else:
            summary = f"{self._where} is at {restore.point} already"
        return RollbackPlan(
            backend=self.kind,
            summary=summary,
            current_version=self.live_version(),
            target_version=restore.point,
            changes=tuple(changes),
        )

    def apply(self, target: RollbackTarget, *, log: LogLine = discard_log) -> ApplyResult:
        """Copy, hide, then invalidate; a no-op once in place and invalidated."""
        require_versioning(self.s3, self.config["bucket"])
        restore = self._restore(target)
        distribution = self.config.get("distribution_id")
        reference = self._reference(target, restore)
        if distribution:
            self._check_distribution()
        invalidation = self._find_invalidation(reference) if distribution else None
        facts: dict[str, Any] = {
            "restore_point": restore.point,
            "copied": len(restore.copies),
            "hidden": len(restore.hides),
        }
        if restore.in_place and (not distribution or invalidation is not None):
            if invalidation:
                facts["invalidation_id"] = invalidation["Id"]
            return ApplyResult(False, f"{self._where} is at {restore.point} already", facts)
        if restore.copies:
            log(f"copying {len(restore.copies)} earlier versions back under {self._where}")
        for wanted, _ in restore.copies:
            self._copy(wanted)
        if restore.hides:
            log(
                f"hiding {len(restore.hides)} objects newer than {restore.point} behind delete "
                "markers (their versions are kept)"
            )
            self._hide(restore.hides)
        detail = (
            f"{self._where} restored to {restore.point}: {len(restore.copies)} copied back, "
            f"{len(restore.hides)} hidden behind delete markers"
        )
        if distribution:
            invalidation_id = self._invalidate(reference)
            facts["invalidation_id"] = invalidation_id
            log(f"invalidating {self._invalidation_path} on {distribution}: {invalidation_id}")
            detail += f", invalidation {invalidation_id}"
        facts["content"] = self.live_version()
        return ApplyResult(True, detail, facts)

    def _copy(self, wanted: ObjectVersion) -> None:
        bucket = self.config["bucket"]
        extra: dict[str, Any] = {}
        if "-" in wanted.etag:  # a multipart upload: its ETag does not survive the copy
            head = self._head(wanted.key, wanted.version_id)
            extra = {
                name: head[name]
                for name in ("CacheControl", "ContentEncoding", "ContentType", "ContentDisposition")
                if head.get(name)
            }
            extra["Metadata"] = {
                **head.get("Metadata", {}),
                RESTORED_FROM_METADATA: wanted.version_id,
            }
            extra["MetadataDirective"] = "REPLACE"
        aws_call(
            f"copy version {wanted.version_id} of s3://{bucket}/{wanted.key} back",
            self.s3.copy_object,
            Bucket=bucket,
            Key=wanted.key,
            CopySource={"Bucket": bucket, "Key": wanted.key, "VersionId": wanted.version_id},
            **extra,
        )

    def _hide(self, entries: tuple[ObjectVersion, ...]) -> None:
        """Delete markers for `entries`: DeleteObjects without version ids, which in a
        versioned bucket keeps every version."""
        bucket = self.config["bucket"]
        for start in range(0, len(entries), _DELETE_BATCH):
            batch = entries[start : start + _DELETE_BATCH]
            response = aws_call(
                f"hide {len(batch)} objects in s3://{bucket}",
                self.s3.delete_objects,
                Bucket=bucket,
                Delete={"Objects": [{"Key": entry.key} for entry in batch], "Quiet": True},
            )
            errors = response.get("Errors") or []
            if errors:
                first = errors[0]
                raise BackendError(
                    f"could not hide {len(errors)} objects in s3://{bucket}, e.g. "
                    f"{first.get('Key')}: {first.get('Code')} {first.get('Message')}",
                    retryable=first.get("Code")
                    in ("InternalError", "ServiceUnavailable", "SlowDown"),
                )

    def _check_distribution(self) -> None:
        distribution_id = self.config["distribution_id"]
        try:
            aws_call(
                f"read CloudFront distribution {distribution_id}",
                self.cloudfront.get_distribution,
                Id=distribution_id,
            )
        except AwsError as error:
            if error.code == "NoSuchDistribution":
                raise ConfigError(
                    f"CloudFront distribution {distribution_id!r} not found"
                ) from error
            raise

    def _invalidate(self, reference: str) -> str:
        distribution_id = self.config["distribution_id"]
        response = aws_call(
            f"invalidate {self._invalidation_path} on {distribution_id}",
            self.cloudfront.create_invalidation,
            DistributionId=distribution_id,
            InvalidationBatch={
                "Paths": {"Quantity": 1, "Items": [self._invalidation_path]},
                "CallerReference": reference,
            },
        )
        return str(response["Invalidation"]["Id"])

    def _find_invalidation(self, reference: str) -> dict[str, Any] | None:
        """The invalidation made with `reference`, among the newest ones; None if none is."""
        distribution_id = self.config["distribution_id"]

        def newest() -> list[dict[str, Any]]:
            paginator = self.cloudfront.get_paginator("list_invalidations")
            return [
                item
                for page in paginator.paginate(DistributionId=distribution_id)
                for item in page["InvalidationList"].get("Items", [])
            ]

        summaries = aws_call(f"list invalidations of {distribution_id}", newest)
        summaries.sort(key=lambda item: item["CreateTime"], reverse=True)
        for summary in summaries[:INVALIDATIONS_SEARCHED]:
            invalidation = aws_call(
                f"read invalidation {summary['Id']}",
                self.cloudfront.get_invalidation,
                DistributionId=distribution_id,
                Id=summary["Id"],
            )["Invalidation"]
            if invalidation["InvalidationBatch"].get("CallerReference") == reference:
                return dict(invalidation)
        return None

    def _applied_invalidation(self, target: RollbackTarget) -> dict[str, Any]:
        reference = self._reference(target, self._restore(target))
        invalidation = self._find_invalidation(reference)
        if invalidation is None:
            raise BackendError(
                f"no invalidation of {self._invalidation_path} for this restore of "
                f"{self._where}: apply has not run"
            )
        return invalidation

    def _invalidation_status(self, invalidation_id: str) -> str:
        response = aws_call(
            f"read invalidation {invalidation_id}",
            self.cloudfront.get_invalidation,
            DistributionId=self.config["distribution_id"],
            Id=invalidation_id,
        )
        return str(response["Invalidation"]["Status"])

    def wait(self, target: RollbackTarget, *, deadline: float, log: LogLine = discard_log) -> None:
        """Poll the invalidation apply made until CloudFront says it completed (without a
        distribution, only check that the objects are in place)."""
        if not self.config.get("distribution_id"):
            restore = self._restore(target)
            if not restore.in_place:
                raise BackendError(f"{self._where} is not at {restore.point}: apply has not run")
            log(f"{self._where} is at {restore.point}")
            return
        invalidation_id = str(self._applied_invalidation(target)["Id"])

        def completed() -> tuple[bool, str]:
            status = self._invalidation_status(invalidation_id)
            return status.lower() == "completed", f"invalidation {invalidation_id}: {status}"

        poll_until(
            completed,
            deadline=deadline,
            log=log,
            interval=self.poll_interval,
            what=f"CloudFront invalidation {invalidation_id}",
        )

    def checks(self, target: RollbackTarget) -> list[CheckResult]:
        """Every object at the restore point; the invalidation completed."""
        restore = self._restore(target)
        results = [
            CheckResult(
                "objects at the restore point",
                CheckStatus.PASSED if restore.in_place else CheckStatus.FAILED,
                f"{len(restore.wanted)} objects as at {restore.point}"
                if restore.in_place
                else f"{len(restore.copies)} objects differ from {restore.point}, "
                f"{len(restore.hides)} objects should be hidden",
            )
        ]
        if self.config.get("distribution_id"):
            try:
                invalidation = self._applied_invalidation(target)
            except BackendError as error:
                results.append(
                    CheckResult("invalidation completed", CheckStatus.FAILED, str(error))
                )
            else:
                status = str(invalidation["Status"])
                results.append(
                    CheckResult(
                        "invalidation completed",
                        CheckStatus.PASSED if status.lower() == "completed" else CheckStatus.FAILED,
                        f"invalidation {invalidation['Id']}: {status}",
                    )
                )
        return results
