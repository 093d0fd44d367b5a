"""The options of a database (RDS restore) step, and what RDS says about them now.

- `method`: "point_in_time" or "snapshot" (the config's mode when not given).
- `restore_time`: for a point-in-time restore, inside the source instance's restorable window.
  The window ends at the instance's LatestRestorableTime. It starts at the automated backups'
  RestoreWindow.EarliestTime when RDS gives one; otherwise it starts at the later of the
  instance's creation and the start of its backup retention period (the moto server gives no
  RestoreWindow).
- `snapshot`: for a snapshot restore, one of the source instance's available snapshots
  (manual or automated, every page, newest first). When it is not given, the target's artifact
  is used, as before options existed.
- `acknowledge_loss`: the commander's written acknowledgement that the writes after the
  restore point are lost. The console asks for it when the loss exceeds the incident's RPO.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from executors.aws import AwsError, aws_call
from executors.base import ConfigError
from executors.options import Choice, LiveOption, Option, parse_instant

METHODS = ("point_in_time", "snapshot")

METHOD = Option(
    "method",
    "Restore from",
    type="choice",
    choices=(
        Choice("point_in_time", "A point in time"),
        Choice("snapshot", "A snapshot"),
    ),
)
RESTORE_TIME = Option(
    "restore_time",
    "Restore to (UTC)",
    type="datetime",
    live=True,
    required=True,
    when={"method": ("point_in_time",)},
    help="Inside the restorable window; writes after it are not in the restored database.",
)
SNAPSHOT = Option(
    "snapshot",
    "Snapshot",
    type="choice",
    live=True,
    when={"method": ("snapshot",)},
    max_length=255,
    help="Empty: the snapshot the chosen release names.",
)
ACKNOWLEDGE_LOSS = Option(
    "acknowledge_loss",
    "Acknowledgement of the data lost",
    max_length=1000,
    help="Required when the writes lost span more than the incident's RPO: say who agreed, "
    "and why it is acceptable.",
)


def database_options(mode: str) -> tuple[Option, ...]:
    """The options, the method defaulting to the config's mode."""
    return (replace(METHOD, default=mode), RESTORE_TIME, SNAPSHOT, ACKNOWLEDGE_LOSS)


def _utc(value: Any) -> datetime.datetime | None:
    if isinstance(value, datetime.datetime):
        return value.astimezone(datetime.UTC)
    if isinstance(value, str):
        return parse_instant(value)
    return None


def _iso(instant: datetime.datetime) -> str:
    return instant.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def source_instance(rds: Any, source_id: str) -> dict[str, Any]:
    """The source instance as RDS describes it; ConfigError when it is gone."""
    try:
        response = aws_call(
            f"describe RDS instance {source_id}",
            rds.describe_db_instances,
            DBInstanceIdentifier=source_id,
        )
    except AwsError as error:
        if error.code == "DBInstanceNotFound":
            raise ConfigError(f"source RDS instance {source_id!r} not found") from error
        raise
    return dict(response["DBInstances"][0])


def restorable_window(
    rds: Any, source_id: str, *, now: datetime.datetime | None = None
) -> tuple[datetime.datetime | None, datetime.datetime | None]:
    """(earliest, latest) restorable times of the source instance, UTC; None when unknown."""
    instance = source_instance(rds, source_id)
    latest = _utc(instance.get("LatestRestorableTime"))
    earliest = None
    try:
        backups = aws_call(
            f"describe automated backups of {source_id}",
            rds.describe_db_instance_automated_backups,
            DBInstanceIdentifier=source_id,
        ).get("DBInstanceAutomatedBackups", [])
    except AwsError:
        backups = []
    windows = [backup.get("RestoreWindow") or {} for backup in backups]
    starts = [_utc(window.get("EarliestTime")) for window in windows]
    earliest = min((start for start in starts if start is not None), default=None)
    if earliest is None and latest is not None:
        retention = int(instance.get("BackupRetentionPeriod") or 0)
        created = _utc(instance.get("InstanceCreateTime"))
        start = (now or datetime.datetime.now(datetime.UTC)) - datetime.timedelta(days=retention)
        earliest = max(start, created) if created else start
    return earliest, latest


def window_option(rds: Any, source_id: str) -> LiveOption:
    earliest, latest = restorable_window(rds, source_id)
    if latest is None:
        return LiveOption(note=f"{source_id} has no restorable window (backups off?)")
    if earliest is not None and earliest.microsecond:
        # To the second, inside the window: rounded up at its start (down at its end).
        earliest = earliest.replace(microsecond=0) + datetime.timedelta(seconds=1)
    low = _iso(earliest) if earliest else None
    return LiveOption(
        minimum=low,
        maximum=_iso(latest),
        note=f"restorable from {low or 'unknown'} to {_iso(latest)}",
    )


def snapshots_of(rds: Any, source_id: str) -> list[dict[str, Any]]:
    """The source instance's available snapshots, every page, newest first."""
    found: list[dict[str, Any]] = []
    marker: str | None = None
    while True:
        page = aws_call(
            f"list DB snapshots of {source_id}",
            rds.describe_db_snapshots,
            DBInstanceIdentifier=source_id,
            **({"Marker": marker} if marker else {}),
        )
        found.extend(
            snapshot
            for snapshot in page.get("DBSnapshots", [])
            if snapshot.get("Status") == "available"
        )
        marker = page.get("Marker")
        if not marker:
            break
    epoch = datetime.datetime.min.replace(tzinfo=datetime.UTC)
    return sorted(found, key=lambda s: _utc(s.get("SnapshotCreateTime")) or epoch, reverse=True)


def snapshot_option(rds: Any, source_id: str) -> LiveOption:
    choices = []
    for snapshot in snapshots_of(rds, source_id):
        created = _utc(snapshot.get("SnapshotCreateTime"))
        choices.append(
            Choice(
                snapshot["DBSnapshotIdentifier"],
                snapshot["DBSnapshotIdentifier"],
                detail=" · ".join(
                    part
                    for part in (
                        created.strftime("%Y-%m-%d %H:%M:%S UTC") if created else "",
                        str(snapshot.get("SnapshotType") or ""),
                    )
                    if part
                ),
            )
        )
    return LiveOption(choices=tuple(choices))


def snapshot_created(rds: Any, snapshot_id: str) -> datetime.datetime | None:
    """When the snapshot was taken (the restore point of a snapshot restore)."""
    try:
        snapshot = aws_call(
            f"describe DB snapshot {snapshot_id}",
            rds.describe_db_snapshots,
            DBSnapshotIdentifier=snapshot_id,
        )["DBSnapshots"][0]
    except AwsError as error:
        if error.code == "DBSnapshotNotFound":
            raise ConfigError(f"DB snapshot {snapshot_id!r} not found") from error
        raise
    return _utc(snapshot.get("SnapshotCreateTime"))


def restore_point(params: Mapping[str, Any], mode: str) -> tuple[str, str | None]:
    """(method, snapshot or restore time as given) for a step's parameters."""
    method = str(params.get("method") or mode)
    if method == "snapshot":
        return method, params.get("snapshot")
    return method, params.get("restore_time")
