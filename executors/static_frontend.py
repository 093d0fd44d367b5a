"""Roll back a static frontend served from S3 through CloudFront, with boto3.

Each release lives in the releases bucket under `<releases_prefix><version>/`. A rollback
copies that release to the root of the live bucket (the index object last, so it never
points at assets that are not there yet), deletes live objects the release does not have,
invalidates `/*` on the distribution, and writes the marker object `.release` in the live
bucket: the release name, the live index ETag and the invalidation id. The marker is written
last, so an apply interrupted before the invalidation does it again on retry; `wait` and the
checks find the invalidation through it.

An object is already in place when its live ETag equals the release's. CopyObject gives a copy
of a multipart upload (ETag `...-N`) a plain MD5 ETag, so such objects are copied with their
source ETag in the metadata `backout-source-etag`, which the comparison reads instead.

live_version trusts the marker while the live index still has the ETag it recorded; otherwise
(a deploy that bypassed Backout) it looks for the release whose index has the live index's
ETag.

CloudFront: AWS spells a finished invalidation's status `Completed` and some moto releases
`COMPLETED`, so the wait compares case-insensitively and does not use boto3's waiter.

Errors: throttling, 5xx, timeouts and unreachable endpoints raise a retryable BackendError;
everything else is permanent. A missing bucket, distribution or release is a ConfigError.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import uuid
from collections.abc import Mapping
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
    Option,
    RollbackPlan,
    RollbackTarget,
    discard_log,
    poll_until,
)
from executors.options import Choice, natural_key

MARKER_KEY = ".release"
SOURCE_ETAG_METADATA = "backout-source-etag"
_DELETE_BATCH = 1000  # DeleteObjects' limit
# Headers a REPLACE copy must carry over itself (COPY would keep them).
_COPIED_HEADERS = (
    "CacheControl",
    "ContentDisposition",
    "ContentEncoding",
    "ContentLanguage",
    "ContentType",
    "WebsiteRedirectLocation",
)

# -- the backend -----------------------------------------------------------------------


@dataclass(frozen=True)
class StoredObject:
    etag: str
    size: int


@dataclass(frozen=True)
class Sync:
    """What copying a release over the live bucket involves. Keys are relative to the root;
    `live_etags` holds the ETag of every live object the copies and deletes touch."""

    release: str
    copies: tuple[str, ...]
    deletes: tuple[str, ...]
    live_etags: Mapping[str, str] = field(default_factory=dict)

    @property
    def in_place(self) -> bool:
        return not self.copies and not self.deletes


class StaticFrontendBackend(Backend):
    """An S3 + CloudFront site: copy a release prefix live, delete the rest, invalidate."""

    kind = "static_frontend"
    label = "Static frontend (S3 + CloudFront)"
    config_schema = {
        "type": "object",
        "properties": {
            "releases_bucket": {"type": "string", "minLength": 3},
            "releases_prefix": {"type": "string", "pattern": "^(.*/)?$"},
            "live_bucket": {"type": "string", "minLength": 3},
            "distribution_id": {"type": "string", "minLength": 1},
            "index_key": {"type": "string", "minLength": 1, "pattern": "^[^/]"},
        },
        "required": ["releases_bucket", "live_bucket", "distribution_id"],
        "additionalProperties": False,
    }

    def __init__(
        self, config: Mapping[str, Any], connections: Connections, *, poll_interval: float = 5.0
    ) -> None:
        super().__init__(config, connections)
        self.poll_interval = poll_interval
        self._s3: Any = None
        self._cloudfront: Any = None

    @classmethod
    def validate_config(cls, config: Mapping[str, Any]) -> dict[str, Any]:
        """Check the schema, fill defaults, and refuse a layout where deletes hit releases."""
        validated = super().validate_config(config)
        validated.setdefault("releases_prefix", "releases/")
        validated.setdefault("index_key", "index.html")
        if (
            validated["releases_bucket"] == validated["live_bucket"]
            and not validated["releases_prefix"]
        ):
            raise ConfigError(
                "config: releases in the live bucket need a releases_prefix, or a rollback "
                "would delete them"
            )
        return validated

    @property
    def s3(self) -> Any:
        """The boto3 S3 client, built on first use."""
        if self._s3 is None:
            self._s3 = aws_client(self.connections, "s3")
        return self._s3

    @property
    def cloudfront(self) -> Any:
        """The boto3 CloudFront client, built on first use."""
        if self._cloudfront is None:
            self._cloudfront = aws_client(self.connections, "cloudfront")
        return self._cloudfront

    # -- reading -------------------------------------------------------------------------

    options = (
        Option(
            "release",
            "Build to restore",
            type="choice",
            live=True,
            max_length=1024,
            help="A release folder of the releases bucket; empty: the chosen release's.",
        ),
    )

    def live_options(self) -> dict[str, LiveOption]:
        """The release folders, newest name first, the one served now marked."""
        live = self.live_version()
        names = sorted(self._release_names(), key=natural_key, reverse=True)
        choices = tuple(
            Choice(name, name + (" (live)" if name == live else ""), current=name == live)
            for name in names
        )
        return {"release": LiveOption(choices=choices)}

    def capture_backup(self) -> dict[str, Any]:
        """The release served before a new one goes live."""
        live = self.live_version()
        return {"release": live} if live else {}

    def _release_name(self, target: RollbackTarget) -> str:
        """The release folder name: the step's `release` option, else target.artifact (a
        prefix or s3:// URL) or version."""
        name = target.params.get("release") or target.artifact or target.version
        if not name:
            raise ConfigError(
                "a static-frontend rollback needs target.artifact (the release prefix) "
                "or target.version (the release folder name)"
            )
        if name.startswith("s3://"):
            bucket, _, name = name.removeprefix("s3://").partition("/")
            if bucket != self.config["releases_bucket"]:
                raise ConfigError(
                    f"release {target.artifact!r} is not in the releases bucket "
                    f"{self.config['releases_bucket']!r}"
                )
        name = name.removeprefix(self.config["releases_prefix"]).strip("/")
        if not name or ".." in name.split("/"):
            raise ConfigError(f"{target.artifact or target.version!r} does not name a release")
        return name

    def _release_prefix(self, release: str) -> str:
        return f"{self.config['releases_prefix']}{release}/"

    def _list(self, bucket: str, prefix: str = "") -> dict[str, StoredObject]:
        """Every object under `prefix`, by key relative to it."""

        def listing() -> dict[str, StoredObject]:
            paginator = self.s3.get_paginator("list_objects_v2")
            return {
                item["Key"][len(prefix) :]: StoredObject(item["ETag"], int(item["Size"]))
                for page in paginator.paginate(Bucket=bucket, Prefix=prefix)
                for item in page.get("Contents", [])
            }

        try:
            return aws_call(f"list s3://{bucket}/{prefix}", listing)
        except AwsError as error:
            if error.code == "NoSuchBucket":
                raise ConfigError(f"bucket {bucket!r} does not exist") from error
            raise

    def _release_objects(self, release: str) -> dict[str, StoredObject]:
        prefix = self._release_prefix(release)
        objects = self._list(self.config["releases_bucket"], prefix)
        if not objects:
            raise ConfigError(
                f"no release {release!r}: nothing under s3://{self.config['releases_bucket']}/{prefix}"
            )
        if self.config["index_key"] not in objects:
            raise ConfigError(f"release {release!r} has no {self.config['index_key']}")
        return objects

    def _live_objects(self) -> dict[str, StoredObject]:
        objects = self._list(self.config["live_bucket"])
        objects.pop(MARKER_KEY, None)
        if self.config["live_bucket"] == self.config["releases_bucket"]:
            releases = self.config["releases_prefix"]
            objects = {key: obj for key, obj in objects.items() if not key.startswith(releases)}
        return objects

    def _head(self, bucket: str, key: str) -> dict[str, Any] | None:
        try:
            head: dict[str, Any] = aws_call(
                f"read s3://{bucket}/{key}", self.s3.head_object, Bucket=bucket, Key=key
            )
        except AwsError as error:
            if error.code in ("404", "NoSuchKey"):
                return None
            raise
        return head

    def _read(self, bucket: str, key: str) -> bytes | None:
        try:
            response = aws_call(
                f"read s3://{bucket}/{key}", self.s3.get_object, Bucket=bucket, Key=key
            )
        except AwsError as error:
            if error.code == "NoSuchKey":
                return None
            raise
        body: bytes = aws_call(f"read s3://{bucket}/{key}", response["Body"].read)
        return body

    def _marker(self) -> dict[str, Any] | None:
        body = self._read(self.config["live_bucket"], MARKER_KEY)
        if body is None:
            return None
        try:
            marker = json.loads(body)
        except ValueError:
            return None
        return marker if isinstance(marker, dict) else None

    def _in_place(self, key: str, release_object: StoredObject, live: StoredObject | None) -> bool:
        if live is None:
            return False
        if live.etag == release_object.etag:
            return True
        if "-" not in release_object.etag or live.size != release_object.size:
            return False
        head = self._head(self.config["live_bucket"], key) or {}
        return bool(head.get("Metadata", {}).get(SOURCE_ETAG_METADATA) == release_object.etag)

    def _sync(self, release: str) -> Sync:
        release_objects = self._release_objects(release)
        live_objects = self._live_objects()
        index_key = self.config["index_key"]
        copies = [
            key
            for key, release_object in sorted(release_objects.items())
            if not self._in_place(key, release_object, live_objects.get(key))
        ]
        # The index goes last, once every asset it refers to is in place.
        copies.sort(key=lambda key: key == index_key)
        deletes = sorted(set(live_objects) - set(release_objects))
        live_etags = {
            key: live_objects[key].etag for key in [*copies, *deletes] if key in live_objects
        }
        return Sync(release, tuple(copies), tuple(deletes), live_etags)

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

    # -- the interface -------------------------------------------------------------------

    def live_version(self) -> str | None:
        """The release the live bucket serves: the marker's, or the one whose index matches."""
        live_index = self._head(self.config["live_bucket"], self.config["index_key"])
        if live_index is None:
            return None
        marker = self._marker()
        if marker and marker.get("index_etag") == live_index["ETag"]:
            return str(marker["release"])
        matches = [
            release
            for release in self._release_names()
            if (head := self._head(self.config["releases_bucket"], self._index_of(release)))
            and head["ETag"] == live_index["ETag"]
        ]
        return matches[0] if len(matches) == 1 else None

    def _release_names(self) -> list[str]:
        bucket, prefix = self.config["releases_bucket"], self.config["releases_prefix"]

        def listing() -> list[str]:
            paginator = self.s3.get_paginator("list_objects_v2")
            return [
                common["Prefix"][len(prefix) :].rstrip("/")
                for page in paginator.paginate(Bucket=bucket, Prefix=prefix, Delimiter="/")
                for common in page.get("CommonPrefixes", [])
            ]

        return aws_call(f"list releases in s3://{bucket}/{prefix}", listing)

    def _index_of(self, release: str) -> str:
        return f"{self._release_prefix(release)}{self.config['index_key']}"

    def plan(self, target: RollbackTarget) -> RollbackPlan:
        """Every object copy and delete, the marker and the invalidation; no writes."""
        release = self._release_name(target)
        sync = self._sync(release)
        self._check_distribution()
        marker = self._marker() or {}
        current = self.live_version()
        live, releases = self.config["live_bucket"], self.config["releases_bucket"]
        changes: list[Change] = []
        if not sync.in_place or marker.get("release") != release:
            for key in sync.copies:
                source = f"s3://{releases}/{self._release_prefix(release)}{key}"
                changes.append(
                    Change(f"s3://{live}/{key}", "object", sync.live_etags.get(key), source)
                )
            for key in sync.deletes:
                changes.append(Change(f"s3://{live}/{key}", "object", sync.live_etags[key], None))
            changes.append(
                Change(f"s3://{live}/{MARKER_KEY}", "release", marker.get("release"), release)
            )
            changes.append(
                Change(f"cloudfront/{self.config['distribution_id']}", "invalidation", None, "/*")
            )
        if changes:
            summary = (
                f"publish release {release} to s3://{live}: copy {len(sync.copies)} objects, "
                f"delete {len(sync.deletes)}, invalidate /*"
            )
        else:
            summary = f"s3://{live} already serves release {release}"
        return RollbackPlan(
            backend=self.kind,
            summary=summary,
            current_version=current,
            target_version=release,
            changes=tuple(changes),
        )

    def apply(self, target: RollbackTarget, *, log: LogLine = discard_log) -> ApplyResult:
        """Copy, delete, invalidate, then write the marker; a no-op once the marker is there."""
        release = self._release_name(target)
        sync = self._sync(release)
        marker = self._marker() or {}
        live = self.config["live_bucket"]
        if sync.in_place and marker.get("release") == release and marker.get("invalidation_id"):
            return ApplyResult(
                False,
                f"s3://{live} already serves release {release}",
                {"release": release, "invalidation_id": marker["invalidation_id"]},
            )
        self._check_distribution()
        if sync.copies:
            log(f"copying {len(sync.copies)} objects of release {release} to s3://{live}")
        for key in sync.copies:
            self._copy(release, key)
        if sync.deletes:
            log(f"deleting {len(sync.deletes)} objects that release {release} does not have")
            self._delete(sync.deletes)
        invalidation_id = self._invalidate(release)
        log(f"invalidating /* on {self.config['distribution_id']}: invalidation {invalidation_id}")
        live_index = self._head(live, self.config["index_key"]) or {}
        self._write_marker(
            {
                "release": release,
                "index_etag": live_index.get("ETag"),
                "invalidation_id": invalidation_id,
                "replaced_release": marker.get("release"),
                "applied_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            }
        )
        return ApplyResult(
            True,
            f"published release {release} to s3://{live}: {len(sync.copies)} copied, "
            f"{len(sync.deletes)} deleted, invalidation {invalidation_id}",
            {
                "release": release,
                "previous_release": marker.get("release"),
                "copied": len(sync.copies),
                "deleted": len(sync.deletes),
                "invalidation_id": invalidation_id,
            },
        )

    def _copy(self, release: str, key: str) -> None:
        releases, live = self.config["releases_bucket"], self.config["live_bucket"]
        source = {"Bucket": releases, "Key": f"{self._release_prefix(release)}{key}"}
        extra: dict[str, Any] = {}
        head = self._head(releases, source["Key"])
        if head is None:
            raise BackendError(f"s3://{releases}/{source['Key']} disappeared during the rollback")
        if "-" in head["ETag"]:  # a multipart upload: remember its ETag, the copy gets another
            extra = {name: head[name] for name in _COPIED_HEADERS if name in head}
            extra["Metadata"] = {**head.get("Metadata", {}), SOURCE_ETAG_METADATA: head["ETag"]}
            extra["MetadataDirective"] = "REPLACE"
        aws_call(
            f"copy s3://{releases}/{source['Key']} to s3://{live}/{key}",
            self.s3.copy_object,
            Bucket=live,
            Key=key,
            CopySource=source,
            **extra,
        )

    def _delete(self, keys: tuple[str, ...]) -> None:
        live = self.config["live_bucket"]
        for start in range(0, len(keys), _DELETE_BATCH):
            batch = keys[start : start + _DELETE_BATCH]
            response = aws_call(
                f"delete {len(batch)} objects from s3://{live}",
                self.s3.delete_objects,
                Bucket=live,
                Delete={"Objects": [{"Key": key} for key in batch], "Quiet": True},
            )
            errors = response.get("Errors") or []
            if errors:
                first = errors[0]
                raise BackendError(
                    f"could not delete {len(errors)} objects from s3://{live}, e.g. "
                    f"{first.get('Key')}: {first.get('Code')} {first.get('Message')}",
                    retryable=first.get("Code")
                    in ("InternalError", "ServiceUnavailable", "SlowDown"),
                )

    def _invalidate(self, release: str) -> str:
        distribution_id = self.config["distribution_id"]
        response = aws_call(
            f"invalidate /* on {distribution_id}",
            self.cloudfront.create_invalidation,
            DistributionId=distribution_id,
            InvalidationBatch={
                "Paths": {"Quantity": 1, "Items": ["/*"]},
                # Unique: CloudFront answers a reused reference with the old invalidation.
                "CallerReference": f"backout-{release}-{uuid.uuid4().hex}",
            },
        )
        return str(response["Invalidation"]["Id"])

    def _write_marker(self, marker: Mapping[str, Any]) -> None:
        live = self.config["live_bucket"]
        aws_call(
            f"write s3://{live}/{MARKER_KEY}",
            self.s3.put_object,
            Bucket=live,
            Key=MARKER_KEY,
            Body=json.dumps(marker, indent=2).encode(),
            ContentType="application/json",
            CacheControl="no-store",
        )

    def _applied_invalidation(self, release: str) -> str:
        marker = self._marker() or {}
        if marker.get("release") != release or not marker.get("invalidation_id"):
            raise BackendError(
                f"s3://{self.config['live_bucket']} has no record of publishing release "
                f"{release}: apply has not run"
            )
        return str(marker["invalidation_id"])

    def _invalidation_status(self, invalidation_id: str) -> str:
        response = aws_call(
            f"read invalidation {invalidation_id}",
            self.cloudfront.get_invalidation,
            DistributionId=self.config["distribution_id"],
            Id=invalidation_id,
        )
        return str(response["Invalidation"]["Status"])

    def wait(self, target: RollbackTarget, *, deadline: float, log: LogLine = discard_log) -> None:
        """Poll the invalidation apply created until CloudFront reports it completed."""
        invalidation_id = self._applied_invalidation(self._release_name(target))

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
        """Invalidation completed, live index identical to the release's, nothing left over."""
        release = self._release_name(target)
        return [
            self._check_invalidation(release),
            self._check_index(release),
            self._check_objects(release),
        ]

    def _check_invalidation(self, release: str) -> CheckResult:
        name = "invalidation completed"
        try:
            invalidation_id = self._applied_invalidation(release)
        except BackendError as error:
            return CheckResult(name, CheckStatus.FAILED, str(error))
        status = self._invalidation_status(invalidation_id)
        passed = status.lower() == "completed"
        return CheckResult(
            name,
            CheckStatus.PASSED if passed else CheckStatus.FAILED,
            f"invalidation {invalidation_id}: {status}",
        )

    def _check_index(self, release: str) -> CheckResult:
        index_key = self.config["index_key"]
        name = f"{index_key} matches release"
        wanted = self._read(self.config["releases_bucket"], self._index_of(release))
        served = self._read(self.config["live_bucket"], index_key)
        if wanted is None:
            return CheckResult(name, CheckStatus.FAILED, f"release {release} has no {index_key}")
        if served is None:
            return CheckResult(name, CheckStatus.FAILED, f"the live bucket has no {index_key}")
        wanted_hash = hashlib.sha256(wanted).hexdigest()
        served_hash = hashlib.sha256(served).hexdigest()
        if wanted_hash == served_hash:
            return CheckResult(name, CheckStatus.PASSED, f"sha256 {served_hash[:16]}… on both")
        return CheckResult(
            name,
            CheckStatus.FAILED,
            f"live sha256 {served_hash[:16]}…, release {release} sha256 {wanted_hash[:16]}…",
        )

    def _check_objects(self, release: str) -> CheckResult:
        sync = self._sync(release)
        if sync.in_place:
            return CheckResult(
                "live objects match release", CheckStatus.PASSED, f"every object of {release} live"
            )
        return CheckResult(
            "live objects match release",
            CheckStatus.FAILED,
            f"{len(sync.copies)} objects differ from release {release}, "
            f"{len(sync.deletes)} extra objects live",
        )
