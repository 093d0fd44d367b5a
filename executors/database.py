"""Restore an RDS instance to a new instance and repoint the connection, through boto3.

Two methods, the config's `mode` unless the step's `method` option says otherwise:
"point_in_time" restores `source_instance` as it was at `target.params["restore_time"]` (an
ISO 8601 timestamp with a timezone), "snapshot" restores the DB snapshot
`target.params["snapshot"]`, else `target.artifact` (a snapshot of `source_instance`). The
options, the restorable window and the snapshot list are in executors.database_options. The
source instance is never modified.

The new instance's name is derived from the target (`<prefix>-pitr-<UTC time>` or
`<prefix>-snap-<hash of the snapshot id>`), so a repeated apply finds the instance it already
started instead of starting another restore. Once the instance is available, the connection
setting (a Secrets Manager secret or an SSM parameter) is rewritten to its endpoint: in apply
when the instance is already available, otherwise at the end of `wait`. Only the host and port
change; credentials and everything else in the value stay as they were. Three value shapes are
understood: an RDS-style JSON secret (`host`, `port`, optional `dbInstanceIdentifier`), a URL
(`postgres://user:pass@host:5432/db`), or a bare `host[:port]`.

For audit, ApplyResult.facts records the endpoint the setting pointed at before and the
secret's version id (or the parameter's version number) holding the old value: the old value
itself, which carries the password, is never logged nor put in the facts.

Restarting the services that hold open connections is a separate step (e.g. a Kubernetes
restart); running a migration rollback is the registered-command backend.

Errors: throttling, 5xx, timeouts and unreachable endpoints raise a retryable BackendError;
everything else is permanent. A missing source instance, snapshot, secret or parameter is a
ConfigError.
"""

from __future__ import annotations

import datetime
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

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
from executors.database_options import (
    database_options,
    restorable_window,
    restore_point,
    snapshot_created,
    snapshot_option,
    snapshots_of,
    window_option,
)

MODES = ("point_in_time", "snapshot")
RESTORED_FROM_TAG = "backout:restored-from"
# Statuses a restoring instance does not come back from by itself.
_FAILED_STATUSES = frozenset(
    {
        "failed",
        "incompatible-network",
        "incompatible-parameters",
        "incompatible-restore",
        "inaccessible-encryption-credentials",
        "restore-error",
        "storage-full",
    }
)

# -- connection values -------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int | None

    def __str__(self) -> str:
        return self.host if self.port is None else f"{self.host}:{self.port}"

    def reaches(self, other: Endpoint) -> bool:
        """Same host, and same port unless this one leaves the port to the default."""
        return self.host == other.host and self.port in (None, other.port)


def endpoint_in(value: str) -> Endpoint:
    """The host and port a connection value (JSON secret, URL or host[:port]) points at."""
    document = _json_object(value)
    if document is not None:
        if not document.get("host"):
            raise ConfigError("the connection secret is JSON without a 'host' field")
        port = document.get("port")
        return Endpoint(str(document["host"]), int(port) if port not in (None, "") else None)
    if "://" in value:
        parts = urlsplit(value)
        if not parts.hostname:
            raise ConfigError("the connection URL has no host")
        return Endpoint(parts.hostname, parts.port)
    host, _, port = value.strip().partition(":")
    if not host:
        raise ConfigError("the connection value is empty")
    return Endpoint(host, int(port) if port.isdigit() else None)


def with_endpoint(value: str, endpoint: Endpoint, instance_id: str) -> str:
    """`value` with its host replaced by `endpoint`'s, and its port if it names one; all else
    (credentials, database name, options, field types) kept."""
    had_port = endpoint_in(value).port is not None
    new = endpoint if had_port else Endpoint(endpoint.host, None)
    document = _json_object(value)
    if document is not None:
        document["host"] = new.host
        if had_port:
            # RDS-managed secrets store the port as a number, hand-written ones often as text.
            port = document["port"]
            document["port"] = str(new.port) if isinstance(port, str) else new.port
        if "dbInstanceIdentifier" in document:
            document["dbInstanceIdentifier"] = instance_id
        return json.dumps(document)
    if "://" in value:
        parts = urlsplit(value)
        userinfo, at, _ = parts.netloc.rpartition("@")
        return urlunsplit(parts._replace(netloc=f"{userinfo}{at}{new}"))
    return str(new)


def _json_object(value: str) -> dict[str, Any] | None:
    if not value.lstrip().startswith("{"):
        return None
    try:
        document = json.loads(value)
    except ValueError as error:
        raise ConfigError("the connection secret looks like JSON but does not parse") from error
    return document if isinstance(document, dict) else None


def _instance_id_of(endpoint: Endpoint) -> str:
    """RDS endpoints are `<instance>.<hash>.<region>.rds.amazonaws.com`."""
    if endpoint.host.endswith(".rds.amazonaws.com"):
        return endpoint.host.split(".", 1)[0]
    return str(endpoint)


# -- the backend -----------------------------------------------------------------------


@dataclass(frozen=True)
class Restore:
    """The restore a target asks for."""

    instance_id: str  # the new instance
    source: str  # human-readable: "orders at 2024-05-01T12:00:00+00:00" / "snapshot s1"
    restore_time: datetime.datetime | None = None
    snapshot: str | None = None


@dataclass(frozen=True)
class ConnectionValue:
    value: str
    version: str  # a secret VersionId or a parameter version number


class RdsRestoreBackend(Backend):
    """An RDS database: restore to a new instance, then repoint the connection setting."""

    restores_data = True

    kind = "database"
    label = "RDS restore"
    config_schema = {
        "type": "object",
        "properties": {
            "source_instance": {"type": "string", "minLength": 1},
            "mode": {"enum": list(MODES)},
            "secret": {"type": "string", "minLength": 1},
            "ssm_parameter": {"type": "string", "minLength": 1},
            "new_instance_prefix": {
                "type": "string",
                "pattern": "^[a-zA-Z][a-zA-Z0-9-]{0,39}$",
            },
            "instance_class": {"type": "string", "minLength": 1},
            "db_subnet_group": {"type": "string", "minLength": 1},
            "vpc_security_group_ids": {
                "type": "array",
                "items": {"type": "string", "minLength": 1},
                "minItems": 1,
            },
        },
        "required": ["source_instance", "mode"],
        "additionalProperties": False,
    }

    def __init__(
        self, config: Mapping[str, Any], connections: Connections, *, poll_interval: float = 15.0
    ) -> None:
        super().__init__(config, connections)
        self.poll_interval = poll_interval
        self._clients: dict[str, Any] = {}

    @classmethod
    def validate_config(cls, config: Mapping[str, Any]) -> dict[str, Any]:
        """Check the schema and that exactly one connection setting is named."""
        validated = super().validate_config(config)
        if ("secret" in validated) == ("ssm_parameter" in validated):
            raise ConfigError(
                "config: name the connection setting to repoint: either 'secret' (Secrets "
                "Manager) or 'ssm_parameter'"
            )
        validated.setdefault("new_instance_prefix", f"{validated['source_instance']}-restore")
        return validated

    def _aws(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = aws_client(self.connections, service)
        return self._clients[service]

    @property
    def rds(self) -> Any:
        """The boto3 RDS client, built on first use."""
        return self._aws("rds")

    @property
    def settings(self) -> Any:
        """The Secrets Manager or SSM client holding the connection setting."""
        return self._aws("secretsmanager" if "secret" in self.config else "ssm")

    @property
    def _setting_name(self) -> str:
        if "secret" in self.config:
            return f"secret {self.config['secret']}"
        return f"parameter {self.config['ssm_parameter']}"

    # -- step options (executors.database_options) ------------------------------------------

    def option_fields(self) -> tuple[Option, ...]:
        return database_options(self.config["mode"])

    def live_options(self) -> dict[str, LiveOption]:
        """The source instance's restorable window and its snapshots, read now."""
        source = self.config["source_instance"]
        return {
            "restore_time": window_option(self.rds, source),
            "snapshot": snapshot_option(self.rds, source),
        }

    def writes_lost_after(self, params: Mapping[str, Any]) -> datetime.datetime | None:
        """The restore time, or when the snapshot was taken."""
        method, point = restore_point(params, self.config["mode"])
        if not point:
            return None
        if method == "snapshot":
            return snapshot_created(self.rds, str(point))
        return datetime.datetime.fromisoformat(str(point).replace("Z", "+00:00"))

    def capture_backup(self) -> dict[str, Any]:
        """The latest restorable time and the newest snapshot, saved before a release."""
        source = self.config["source_instance"]
        _, latest = restorable_window(self.rds, source)
        snapshots = snapshots_of(self.rds, source)
        backup: dict[str, Any] = {}
        if latest is not None:
            backup["restorable_time"] = latest.strftime("%Y-%m-%dT%H:%M:%SZ")
        if snapshots:
            backup["snapshot"] = snapshots[0]["DBSnapshotIdentifier"]
        return backup

    # -- the target ----------------------------------------------------------------------

    def _restore(self, target: RollbackTarget) -> Restore:
        prefix = self.config["new_instance_prefix"].rstrip("-")
        source = self.config["source_instance"]
        if str(target.params.get("method") or self.config["mode"]) == "snapshot":
            snapshot = str(target.params.get("snapshot") or target.artifact or "")
            if not snapshot:
                raise ConfigError(
                    "a snapshot restore needs params.snapshot or target.artifact: the DB "
                    "snapshot id"
                )
            digest = hashlib.sha256(snapshot.encode()).hexdigest()[:10]
            return Restore(f"{prefix}-snap-{digest}", f"snapshot {snapshot}", snapshot=snapshot)
        raw = target.params.get("restore_time")
        if not raw:
            raise ConfigError(
                "a point-in-time restore needs target.params['restore_time'], an ISO 8601 "
                "timestamp such as 2024-05-01T12:00:00Z"
            )
        try:
            restore_time = datetime.datetime.fromisoformat(str(raw))
        except ValueError as error:
            raise ConfigError(f"restore_time {raw!r} is not an ISO 8601 timestamp") from error
        if restore_time.tzinfo is None:
            raise ConfigError(f"restore_time {raw!r} has no timezone; add one (e.g. Z)")
        restore_time = restore_time.astimezone(datetime.UTC)
        return Restore(
            f"{prefix}-pitr-{restore_time:%Y%m%d-%H%M%S}",
            f"{source} at {restore_time.isoformat()}",
            restore_time=restore_time,
        )

    def _instance(self, instance_id: str) -> dict[str, Any] | None:
        try:
            response = aws_call(
                f"describe RDS instance {instance_id}",
                self.rds.describe_db_instances,
                DBInstanceIdentifier=instance_id,
            )
        except AwsError as error:
            if error.code == "DBInstanceNotFound":
                return None
            raise
        return dict(response["DBInstances"][0])

    def _check_restorable(self, restore: Restore) -> None:
        """Refuse a restore AWS would refuse, before anything is started."""
        source_id = self.config["source_instance"]
        if restore.snapshot is not None:
            try:
                snapshot = aws_call(
                    f"describe DB snapshot {restore.snapshot}",
                    self.rds.describe_db_snapshots,
                    DBSnapshotIdentifier=restore.snapshot,
                )["DBSnapshots"][0]
            except AwsError as error:
                if error.code == "DBSnapshotNotFound":
                    raise ConfigError(f"DB snapshot {restore.snapshot!r} not found") from error
                raise
            if snapshot.get("DBInstanceIdentifier") != source_id:
                of = snapshot.get("DBInstanceIdentifier")
                raise ConfigError(
                    f"DB snapshot {restore.snapshot!r} is of {of!r}, not of {source_id!r}"
                )
            return
        source = self._instance(source_id)
        if source is None:
            raise ConfigError(f"source RDS instance {source_id!r} not found")
        latest = source.get("LatestRestorableTime")
        if latest is not None and restore.restore_time and restore.restore_time > latest:
            raise ConfigError(
                f"{restore.restore_time.isoformat()} is after {source_id}'s latest restorable "
                f"time {latest.astimezone(datetime.UTC).isoformat()}"
            )

    # -- the connection setting ------------------------------------------------------------

    def _connection(self) -> ConnectionValue:
        try:
            if "secret" in self.config:
                secret = aws_call(
                    f"read {self._setting_name}",
                    self.settings.get_secret_value,
                    SecretId=self.config["secret"],
                )
                if "SecretString" not in secret:
                    raise ConfigError(f"{self._setting_name} is binary; a text value is needed")
                return ConnectionValue(secret["SecretString"], str(secret["VersionId"]))
            parameter = aws_call(
                f"read {self._setting_name}",
                self.settings.get_parameter,
                Name=self.config["ssm_parameter"],
                WithDecryption=True,
            )["Parameter"]
            return ConnectionValue(parameter["Value"], str(parameter["Version"]))
        except AwsError as error:
            if error.code in ("ResourceNotFoundException", "ParameterNotFound"):
                raise ConfigError(f"{self._setting_name} not found") from error
            raise

    def _write_connection(self, value: str) -> str:
        """Store `value`; return the new secret version id or parameter version."""
        if "secret" in self.config:
            response = aws_call(
                f"update {self._setting_name}",
                self.settings.put_secret_value,
                SecretId=self.config["secret"],
                SecretString=value,
            )
            return str(response["VersionId"])
        name = self.config["ssm_parameter"]
        described = aws_call(
            f"describe {self._setting_name}",
            self.settings.describe_parameters,
            ParameterFilters=[{"Key": "Name", "Values": [name]}],
        )["Parameters"]
        kept: dict[str, Any] = {}
        if described and described[0].get("Type") == "SecureString" and described[0].get("KeyId"):
            # Without KeyId an overwrite re-encrypts with the account's default key.
            kept["KeyId"] = described[0]["KeyId"]
        response = aws_call(
            f"update {self._setting_name}",
            self.settings.put_parameter,
            Name=name,
            Value=value,
            Overwrite=True,
            **kept,
        )
        return str(response["Version"])

    def _point_connection_at(self, instance: Mapping[str, Any], log: LogLine) -> bool:
        """Repoint the connection setting at `instance`; False when it already points there."""
        endpoint = _endpoint_of(instance)
        if endpoint is None:
            raise BackendError(
                f"RDS instance {instance['DBInstanceIdentifier']} is available without an endpoint",
                retryable=True,
            )
        current = self._connection()
        before = endpoint_in(current.value)
        if before.reaches(endpoint):
            return False
        version = self._write_connection(
            with_endpoint(current.value, endpoint, instance["DBInstanceIdentifier"])
        )
        log(f"{self._setting_name}: {before} → {endpoint} (new version {version})")
        return True

    # -- the interface -------------------------------------------------------------------

    def live_version(self) -> str | None:
        """The instance the connection setting points at (its endpoint if not an RDS name)."""
        return _instance_id_of(endpoint_in(self._connection().value))

    def plan(self, target: RollbackTarget) -> RollbackPlan:
        """The restore to start (unless already started) and the connection change; no writes."""
        restore = self._restore(target)
        instance = self._instance(restore.instance_id)
        current = endpoint_in(self._connection().value)
        changes: list[Change] = []
        if instance is None:
            self._check_restorable(restore)
            changes.append(
                Change(
                    f"rds/{restore.instance_id}",
                    "instance",
                    None,
                    f"restored from {restore.source}",
                )
            )
        endpoint = _endpoint_of(instance) if instance else None
        if endpoint is None or not current.reaches(endpoint):
            after = str(endpoint or f"endpoint of {restore.instance_id} once it is available")
            changes.append(Change(self._setting_name, "endpoint", str(current), after))
        if changes:
            summary = (
                f"restore {restore.source} as {restore.instance_id}, "
                f"then repoint {self._setting_name}"
            )
        else:
            summary = f"{self._setting_name} already points at {restore.instance_id}"
        return RollbackPlan(
            backend=self.kind,
            summary=summary,
            current_version=_instance_id_of(current),
            target_version=restore.instance_id,
            changes=tuple(changes),
        )

    def apply(self, target: RollbackTarget, *, log: LogLine = discard_log) -> ApplyResult:
        """Start the restore unless started; repoint the connection if the instance is up."""
        restore = self._restore(target)
        connection = self._connection()
        facts: dict[str, Any] = {
            "new_instance": restore.instance_id,
            "restored_from": restore.source,
            "previous_endpoint": str(endpoint_in(connection.value)),
            "previous_connection_version": connection.version,
            "connection_setting": self._setting_name,
        }
        changed = False
        instance = self._instance(restore.instance_id)
        if instance is None:
            self._check_restorable(restore)
            log(f"restoring {restore.source} as new instance {restore.instance_id}")
            instance = self._start_restore(restore)
            changed = True
        status = instance.get("DBInstanceStatus")
        if status == "available":
            changed = self._point_connection_at(instance, log) or changed
        else:
            log(f"{restore.instance_id} is {status}; the connection moves once it is available")
        if changed:
            detail = f"restore {restore.source} as {restore.instance_id}"
        else:
            detail = f"{restore.instance_id} already restored and {self._setting_name} points at it"
        return ApplyResult(changed, detail, facts)

    def _start_restore(self, restore: Restore) -> dict[str, Any]:
        common: dict[str, Any] = {
            "Tags": [{"Key": RESTORED_FROM_TAG, "Value": restore.source[:256]}],
        }
        if "instance_class" in self.config:
            common["DBInstanceClass"] = self.config["instance_class"]
        if "db_subnet_group" in self.config:
            common["DBSubnetGroupName"] = self.config["db_subnet_group"]
        if "vpc_security_group_ids" in self.config:
            common["VpcSecurityGroupIds"] = self.config["vpc_security_group_ids"]
        if restore.snapshot is not None:
            response = aws_call(
                f"restore {restore.instance_id} from snapshot {restore.snapshot}",
                self.rds.restore_db_instance_from_db_snapshot,
                DBInstanceIdentifier=restore.instance_id,
                DBSnapshotIdentifier=restore.snapshot,
                **common,
            )
        else:
            response = aws_call(
                f"restore {restore.instance_id} from {restore.source}",
                self.rds.restore_db_instance_to_point_in_time,
                SourceDBInstanceIdentifier=self.config["source_instance"],
                TargetDBInstanceIdentifier=restore.instance_id,
                RestoreTime=restore.restore_time,
                **common,
            )
        return dict(response["DBInstance"])

    def wait(self, target: RollbackTarget, *, deadline: float, log: LogLine = discard_log) -> None:
        """Poll the new instance until available, then repoint the connection setting."""
        restore = self._restore(target)
        available: dict[str, Any] = {}

        def restored() -> tuple[bool, str]:
            instance = self._instance(restore.instance_id)
            if instance is None:
                raise BackendError(
                    f"RDS instance {restore.instance_id} does not exist: apply has not run"
                )
            status = str(instance.get("DBInstanceStatus"))
            if status in _FAILED_STATUSES:
                raise BackendError(f"RDS instance {restore.instance_id} is {status}")
            if status == "available":
                available.update(instance)
            return status == "available", f"{restore.instance_id}: {status}"

        poll_until(
            restored,
            deadline=deadline,
            log=log,
            interval=self.poll_interval,
            what=f"RDS restore {restore.instance_id}",
        )
        self._point_connection_at(available, log)

    def checks(self, target: RollbackTarget) -> list[CheckResult]:
        """The new instance is available and the connection setting points at it."""
        restore = self._restore(target)
        instance = self._instance(restore.instance_id)
        if instance is None:
            missing = f"{restore.instance_id} does not exist"
            return [
                CheckResult("instance available", CheckStatus.FAILED, missing),
                CheckResult("connection points at new instance", CheckStatus.FAILED, missing),
            ]
        status = instance.get("DBInstanceStatus")
        results = [
            CheckResult(
                "instance available",
                CheckStatus.PASSED if status == "available" else CheckStatus.FAILED,
                f"{restore.instance_id} is {status}",
            )
        ]
        current = endpoint_in(self._connection().value)
        wanted = _endpoint_of(instance)
        results.append(
            CheckResult(
                "connection points at new instance",
                CheckStatus.PASSED if wanted and current.reaches(wanted) else CheckStatus.FAILED,
                f"{self._setting_name} points at {current}; "
                f"{restore.instance_id} is at {wanted or 'no endpoint yet'}",
            )
        )
        return results


def _endpoint_of(instance: Mapping[str, Any]) -> Endpoint | None:
    """The instance's endpoint; None while it is still being created."""
    endpoint = instance.get("Endpoint") or {}
    if not endpoint.get("Address"):
        return None
    port = endpoint.get("Port")
    return Endpoint(str(endpoint["Address"]), int(port) if port else None)
