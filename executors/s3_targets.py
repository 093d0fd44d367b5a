"""What the backends that restore S3 object versions share (executors.terraform_state,
executors.s3_versions): the optional `region` and `endpoint` of their target config, and
the listing of a versioned bucket's object versions and delete markers, every page of it.

A config's `endpoint` (a moto server in tests and the demo, an S3-compatible store) replaces
the console's AWS endpoint for that service only; one whose host is written as a metadata or
link-local address is refused (executors.addresses), since the SDK would sign requests to it.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from executors.addresses import named_address_forbidden
from executors.aws import AwsError, aws_call
from executors.base import ConfigError, Connections

# The config properties both backends take besides their own.
ENDPOINT_PROPERTIES: dict[str, Any] = {
    "region": {"type": "string", "pattern": "^[a-z]{2}(-[a-z]+)+-[0-9]+$"},
    "endpoint": {"type": "string", "pattern": "^https?://[^\\s/]+(/[^\\s]*)?$", "maxLength": 500},
}
LIST_PAGE_SIZE = 1000  # ListObjectVersions' largest page
# Text without control characters: keys and names end up in log lines and on the timeline.
PRINTABLE = "^[^\\x00-\\x1f\\x7f]*$"


def target_connections(config: Mapping[str, Any], connections: Connections) -> Connections:
    """`connections` with the config's own endpoint and region, where it names them."""
    endpoint = config.get("endpoint")
    if endpoint and named_address_forbidden(str(endpoint)):
        raise ConfigError(f"endpoint: {endpoint} is a link-local (cloud metadata) address")
    return dataclasses.replace(
        connections,
        aws_endpoint_url=endpoint or connections.aws_endpoint_url,
        aws_region=config.get("region") or connections.aws_region,
    )


@dataclass(frozen=True)
class ObjectVersion:
    """One entry of a versioned bucket's history: a version, or a delete marker (`deleted`)."""

    key: str
    version_id: str
    last_modified: datetime.datetime
    is_latest: bool
    etag: str = ""
    size: int = 0
    deleted: bool = False

    def as_backup(self) -> dict[str, Any]:
        return {"version_id": self.version_id, "etag": self.etag}


def list_versions(
    s3: Any, bucket: str, prefix: str, *, page_size: int = LIST_PAGE_SIZE
) -> list[ObjectVersion]:
    """Every version and delete marker under `prefix`, every page, each key's newest first
    (the order S3 lists them in; LastModified alone cannot break ties within a second).
    A missing bucket is a ConfigError."""

    def listing() -> list[ObjectVersion]:
        paginator = s3.get_paginator("list_object_versions")
        pages = paginator.paginate(
            Bucket=bucket, Prefix=prefix, PaginationConfig={"PageSize": page_size}
        )
        found: list[tuple[int, ObjectVersion]] = []
        for page in pages:
            entries = [(item, False) for item in page.get("Versions", [])]
            entries += [(item, True) for item in page.get("DeleteMarkers", [])]
            for item, deleted in entries:
                found.append(
                    (
                        len(found),
                        ObjectVersion(
                            key=item["Key"],
                            version_id=str(item.get("VersionId") or "null"),
                            last_modified=item["LastModified"].astimezone(datetime.UTC),
                            is_latest=bool(item.get("IsLatest")),
                            etag=str(item.get("ETag", "")),
                            size=int(item.get("Size", 0)),
                            deleted=deleted,
                        ),
                    )
                )
        # A page lists a key's versions and its delete markers apart: order each key's
        # entries by time, the latest first, keeping S3's order among equal times.
        found.sort(key=lambda pair: (pair[1].key, not pair[1].is_latest, -_stamp(pair[1]), pair[0]))
        return [entry for _, entry in found]

    try:
        return aws_call(f"list versions in s3://{bucket}/{prefix}", listing)
    except AwsError as error:
        if error.code == "NoSuchBucket":
            raise ConfigError(f"bucket {bucket!r} does not exist") from error
        raise


def current_etags(
    s3: Any, bucket: str, prefix: str, *, page_size: int = LIST_PAGE_SIZE
) -> dict[str, str]:
    """The ETag of each current object under `prefix` (ListObjectsV2, every page): cheaper
    than listing every version when only what is served now matters."""

    def listing() -> dict[str, str]:
        paginator = s3.get_paginator("list_objects_v2")
        pages = paginator.paginate(
            Bucket=bucket, Prefix=prefix, PaginationConfig={"PageSize": page_size}
        )
        return {item["Key"]: item["ETag"] for page in pages for item in page.get("Contents", [])}

    try:
        return aws_call(f"list s3://{bucket}/{prefix}", listing)
    except AwsError as error:
        if error.code == "NoSuchBucket":
            raise ConfigError(f"bucket {bucket!r} does not exist") from error
        raise


def find_version(
    history: Mapping[str, list[ObjectVersion]], key: str, version_id: str
) -> ObjectVersion | None:
    """Version `version_id` of `key` in a listing grouped by key; None for a delete marker
    or a version that is gone."""
    return next(
        (
            entry
            for entry in history.get(key, [])
            if entry.version_id == version_id and not entry.deleted
        ),
        None,
    )


def _stamp(entry: ObjectVersion) -> float:
    return entry.last_modified.timestamp()


def require_versioning(s3: Any, bucket: str) -> None:
    """ConfigError unless the bucket keeps versions: restoring relies on them, and a delete
    in an unversioned or suspended bucket would destroy what it removes."""
    try:
        status = aws_call(
            f"read the versioning of s3://{bucket}", s3.get_bucket_versioning, Bucket=bucket
        ).get("Status")
    except AwsError as error:
        if error.code == "NoSuchBucket":
            raise ConfigError(f"bucket {bucket!r} does not exist") from error
        raise
    if status != "Enabled":
        raise ConfigError(
            f"bucket {bucket!r} has versioning {status or 'never enabled'}: restoring versions "
            "needs it Enabled"
        )
