"""Terraform's own locking of an S3-backend state, read and taken as Terraform does it.

With a DynamoDB lock table, the lock is the item whose LockID is `<bucket>/<key>`; its Info is
Terraform's lock JSON (ID, Operation, Info, Who, Version, Created, Path), and it is taken with
a conditional PutItem (`attribute_not_exists(LockID)`), so only one holder at a time. The item
`<bucket>/<key>-md5` holds, as Digest (hex), the MD5 of the state Terraform last wrote: it
refuses to read a state object that does not match it. Terraform 1.10's lock file in the
bucket (`<key>.tflock`, the same JSON) is honoured as a lock too.

The text of a lock (who, which operation) is shown to people, so control characters and
bidirectional overrides are dropped and each field is bounded.
"""

from __future__ import annotations

import datetime
import json
import re
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from executors.aws import AwsError, aws_call
from executors.base import BackendError, ConfigError, LogLine

LOCK_OPERATION = "BackoutRestoreState"
DIGEST_SUFFIX = "-md5"
LOCK_FILE_SUFFIX = ".tflock"
# Control characters and bidirectional overrides: a lock's text is shown on the timeline.
_UNSHOWN = re.compile(r"[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


@dataclass(frozen=True)
class LockHolder:
    """Who holds the state's lock, from Terraform's lock JSON."""

    lock_id: str
    who: str
    operation: str
    created: str
    info: str

    def describe(self) -> str:
        since = f" since {self.created}" if self.created else ""
        what = self.operation or "an operation"
        return f"{self.who or 'someone'} ({what}{since}, lock ID {self.lock_id or '?'})"


def _shown(value: Any, limit: int) -> str:
    return _UNSHOWN.sub("", str(value))[:limit]


def lock_holder(info_json: str) -> LockHolder:
    """The holder a lock's Info JSON names; blank fields where it cannot be read."""
    try:
        info = json.loads(info_json)
    except ValueError:
        info = {}
    if not isinstance(info, dict):
        info = {}
    return LockHolder(
        lock_id=_shown(info.get("ID", ""), 100),
        who=_shown(info.get("Who", ""), 200),
        operation=_shown(info.get("Operation", ""), 100),
        created=_shown(info.get("Created", ""), 64),
        info=_shown(info.get("Info", ""), 300),
    )


class StateLocks:
    """The locks and the digest of one state object. `s3` and `dynamodb` return the boto3
    clients (built when first asked); `table` is None without a lock table."""

    def __init__(
        self,
        *,
        s3: Callable[[], Any],
        dynamodb: Callable[[], Any],
        bucket: str,
        key: str,
        table: str | None,
    ) -> None:
        self._s3, self._dynamodb = s3, dynamodb
        self.bucket, self.key, self.table = bucket, key, table
        self.lock_path = f"{bucket}/{key}"
        self.where = f"s3://{bucket}/{key}"

    @property
    def digest_resource(self) -> str:
        return f"dynamodb/{self.table}/{self.lock_path}{DIGEST_SUFFIX}"

    def holder(self) -> LockHolder | None:
        """Who holds the state's lock (the table's item, else the lock file), if anyone."""
        if self.table:
            item = self._item(self.lock_path)
            if item is not None:
                return lock_holder(item.get("Info", {}).get("S", ""))
        doing = f"read {self.where}{LOCK_FILE_SUFFIX}"
        try:
            response = aws_call(
                doing, self._s3().get_object, Bucket=self.bucket, Key=self.key + LOCK_FILE_SUFFIX
            )
        except AwsError as error:
            if error.code in ("NoSuchKey", "404"):
                return None
            raise
        body: bytes = aws_call(doing, response["Body"].read)
        return lock_holder(body.decode(errors="replace")) if body else None

    def _item(self, lock_id: str) -> dict[str, Any] | None:
        try:
            response = aws_call(
                f"read lock table {self.table}",
                self._dynamodb().get_item,
                TableName=self.table,
                Key={"LockID": {"S": lock_id}},
                ConsistentRead=True,
            )
        except AwsError as error:
            if error.code == "ResourceNotFoundException":
                raise ConfigError(f"lock table {self.table!r} does not exist") from error
            raise
        item = response.get("Item")
        return dict(item) if item else None

    def stored_digest(self) -> str | None:
        """The MD5 Terraform expects the state to have; None without a table or digest."""
        if not self.table:
            return None
        item = self._item(self.lock_path + DIGEST_SUFFIX)
        return str(item["Digest"]["S"]) if item and "Digest" in item else None

    def write_digest(self, digest: str) -> None:
        """Tell Terraform the state's MD5 is now `digest` (with a lock table only)."""
        if not self.table:
            return
        aws_call(
            f"write the state digest in {self.table}",
            self._dynamodb().put_item,
            TableName=self.table,
            Item={"LockID": {"S": self.lock_path + DIGEST_SUFFIX}, "Digest": {"S": digest}},
        )

    def take(self, reason: str, log: LogLine) -> str | None:
        """Take the table's lock for `reason` and return its ID, or raise a retryable
        BackendError naming who holds it. Without a table, refuse while the lock file exists
        and return None. Backout's own lock for the same `reason` (a retried attempt whose
        worker died holding it) is taken over."""
        if not self.table:
            holder = self.holder()
            if holder is not None:
                raise self.locked(holder)
            return None
        lock_id = str(uuid.uuid4())
        info = {
            "ID": lock_id,
            "Operation": LOCK_OPERATION,
            "Info": reason,
            "Who": f"backout@{socket.gethostname()}"[:200],
            "Version": "backout",
            "Created": datetime.datetime.now(datetime.UTC).isoformat(),
            "Path": self.lock_path,
        }
        try:
            aws_call(
                f"lock {self.where} in {self.table}",
                self._dynamodb().put_item,
                TableName=self.table,
                Item={"LockID": {"S": self.lock_path}, "Info": {"S": json.dumps(info)}},
                ConditionExpression="attribute_not_exists(LockID)",
            )
        except AwsError as error:
            if error.code == "ResourceNotFoundException":
                raise ConfigError(f"lock table {self.table!r} does not exist") from error
            if error.code != "ConditionalCheckFailedException":
                raise
            holder = self.holder()
            if holder is None:  # released meanwhile: the next attempt takes it
                raise BackendError(
                    f"{self.where} was locked a moment ago", retryable=True
                ) from error
            if holder.operation == LOCK_OPERATION and holder.info == reason:
                log(f"taking over Backout's own lock {holder.lock_id} left by an earlier attempt")
                return holder.lock_id
            raise self.locked(holder) from error
        log(f"locked {self.where} in {self.table} (lock ID {lock_id})")
        return lock_id

    def locked(self, holder: LockHolder) -> BackendError:
        """The refusal while `holder` holds the lock: retryable, since a lock normally ends
        with the plan or apply that took it."""
        return BackendError(
            f"{self.where} is locked by {holder.describe()}: not restored while Terraform "
            f"works on it; retrying. If the lock is stale, check with its holder and run "
            f"`terraform force-unlock {holder.lock_id or '<ID>'}`",
            retryable=True,
        )

    def release(self, lock_id: str) -> None:
        """Remove the table's lock if it is still `lock_id`: never someone else's."""
        holder = self.holder()
        if holder is None or holder.lock_id != lock_id:
            return
        aws_call(
            f"unlock {self.where} in {self.table}",
            self._dynamodb().delete_item,
            TableName=self.table,
            Key={"LockID": {"S": self.lock_path}},
        )
