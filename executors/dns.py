"""Roll back a Route 53 record through boto3: restore a saved backup or show maintenance.

The backend acts on the record sets of one name and type in one hosted zone (one set when
`set_identifier` picks a weighted/latency/failover member). Before a release, `backup()`
returns those record sets as JSON-safe dicts; a rollback hands them back as
`target.params["backup"]` and they are UPSERTed as saved. Alternatively
`target.params["maintenance_target"]` points the record at a maintenance value: a string or a
list of strings (record values, e.g. a CNAME target or IP addresses; TTL from
`params["ttl"]`, else the record's current TTL, else 60) or a dict with `DNSName` and
`HostedZoneId` (an alias, e.g. to a CloudFront maintenance page). Routing fields of the
current set (weight, set identifier, health check) are kept.

Apply UPSERTs only the record sets that differ, in one change batch, so a second apply sends
nothing. `wait` polls that change until Route 53 reports it INSYNC (compared
case-insensitively) and then reads the values back; the change id lives on the backend
instance, so a `wait` in another process (or after an apply that changed nothing) only reads
the values back. Names compare case-insensitively with the trailing dot and Route 53's octal
escapes (`\\052` for `*`) normalised.

Errors: throttling, PriorRequestNotComplete, 5xx, timeouts and unreachable endpoints raise a
retryable BackendError; everything else is permanent. A missing hosted zone, or a target
without a usable backup or maintenance value, is a ConfigError.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
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

RECORD_TYPES = ("A", "AAAA", "CAA", "CNAME", "DS", "MX", "NAPTR", "NS", "PTR", "SPF", "SRV", "TXT")
DEFAULT_TTL = 60
_VALUE_FIELDS = ("TTL", "ResourceRecords", "AliasTarget")

# -- record sets ---------------------------------------------------------------------------


def normalise_name(name: str) -> str:
    """`App.Example.com` and `\\052.example.com.` → `app.example.com.`, `*.example.com.`."""
    unescaped = re.sub(r"\\(\d{3})", lambda match: chr(int(match.group(1), 8)), name)
    return unescaped.lower().rstrip(".") + "."


def _comparable(record_set: Mapping[str, Any]) -> dict[str, Any]:
    """A record set in a form where equal means the same in Route 53."""
    comparable = copy.deepcopy(dict(record_set))
    comparable["Name"] = normalise_name(comparable["Name"])
    if "ResourceRecords" in comparable:
        comparable["ResourceRecords"] = sorted(r["Value"] for r in comparable["ResourceRecords"])
    if "AliasTarget" in comparable:
        alias = comparable["AliasTarget"]
        alias["DNSName"] = normalise_name(alias["DNSName"])
        alias.setdefault("EvaluateTargetHealth", False)
    return comparable


def describe_values(record_set: Mapping[str, Any] | None) -> str | None:
    """The values of a record set in one line: `a, b (TTL 60)` or `alias x.cloudfront.net.`."""
    if record_set is None:
        return None
    if "AliasTarget" in record_set:
        return f"alias {normalise_name(record_set['AliasTarget']['DNSName'])}"
    values = ", ".join(sorted(r["Value"] for r in record_set.get("ResourceRecords", [])))
    return f"{values} (TTL {record_set.get('TTL')})"


DNS_OPTIONS = (
    Option(
        "mode",
        "What to do",
        type="choice",
        default="backup",
        choices=(
            Choice("backup", "Restore the record set saved before a release"),
            Choice("maintenance", "Point the record at the maintenance target"),
        ),
    ),
    Option(
        "backup",
        "Saved record set",
        type="backup",
        backup_key="record_sets",
        required=True,
        when={"mode": ("backup",)},
        help="The record set saved before a release; the dry run shows current → saved.",
    ),
    Option(
        "maintenance_target",
        "Maintenance target",
        when={"mode": ("maintenance",)},
        max_length=1000,
        pattern=r"[A-Za-z0-9_.:*\-]+(\s*,\s*[A-Za-z0-9_.:*\-]+)*",
        help="A record value, or values separated by commas; empty: the record's configured "
        "maintenance target.",
    ),
    Option(
        "ttl",
        "TTL (seconds)",
        type="integer",
        minimum=0,
        maximum=172800,
        when={"mode": ("maintenance",)},
        help="Empty: the record's current TTL.",
    ),
)


class Route53Backend(Backend):
    """A Route 53 record: UPSERT a saved backup, or point it at a maintenance value."""

    kind = "dns"
    label = "Route 53 record"
    config_schema = {
        "type": "object",
        "properties": {
            "hosted_zone_id": {"type": "string", "minLength": 1},
            "record_name": {"type": "string", "minLength": 1},
            "record_type": {"enum": list(RECORD_TYPES)},
            "set_identifier": {"type": "string", "minLength": 1},
            # What "maintenance" points at when the step does not say (a value, a list of
            # values, or an alias {DNSName, HostedZoneId}).
            "maintenance_target": {
                "anyOf": [
                    {"type": "string", "minLength": 1},
                    {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1},
                    {"type": "object", "required": ["DNSName", "HostedZoneId"]},
                ]
            },
        },
        "required": ["hosted_zone_id", "record_name", "record_type"],
        "additionalProperties": False,
    }

    options = DNS_OPTIONS

    def __init__(
        self, config: Mapping[str, Any], connections: Connections, *, poll_interval: float = 5.0
    ) -> None:
        super().__init__(config, connections)
        self.poll_interval = poll_interval
        self._client: Any = None
        self._last_change_id: str | None = None

    @property
    def client(self) -> Any:
        """The boto3 Route 53 client, built on first use."""
        if self._client is None:
            self._client = aws_client(self.connections, "route53")
        return self._client

    @property
    def _name(self) -> str:
        return normalise_name(self.config["record_name"])

    @property
    def _where(self) -> str:
        where = f"{self._name} {self.config['record_type']}"
        if "set_identifier" in self.config:
            where += f" [{self.config['set_identifier']}]"
        return where

    def _resource(self, record_set: Mapping[str, Any]) -> str:
        resource = (
            f"route53/{self.config['hosted_zone_id']}/{self._name} {self.config['record_type']}"
        )
        if "SetIdentifier" in record_set:
            resource += f" [{record_set['SetIdentifier']}]"
        return resource

    def _is_ours(self, record_set: Mapping[str, Any]) -> bool:
        wanted_set = self.config.get("set_identifier")
        return (
            normalise_name(record_set["Name"]) == self._name
            and record_set["Type"] == self.config["record_type"]
            and (wanted_set is None or record_set.get("SetIdentifier") == wanted_set)
        )

    def _current_sets(self) -> list[dict[str, Any]]:
        """The record sets of this name and type (and set identifier), as Route 53 has them."""
        found: list[dict[str, Any]] = []
        start: dict[str, str] = {
            "StartRecordName": self._name,
            "StartRecordType": self.config["record_type"],
        }
        while True:
            try:
                page = aws_call(
                    f"list record sets {self._where}",
                    self.client.list_resource_record_sets,
                    HostedZoneId=self.config["hosted_zone_id"],
                    MaxItems="100",
                    **start,
                )
            except AwsError as error:
                if error.code == "NoSuchHostedZone":
                    raise ConfigError(
                        f"hosted zone {self.config['hosted_zone_id']!r} not found"
                    ) from error
                raise
            record_sets = page.get("ResourceRecordSets", [])
            found.extend(dict(r) for r in record_sets if self._is_ours(r))
            # Listing is ordered by name then type: past ours, there is nothing more to find.
            past = any(
                (normalise_name(r["Name"]), r["Type"]) != (self._name, self.config["record_type"])
                for r in record_sets
            )
            if past or not page.get("IsTruncated"):
                return found
            start = {
                "StartRecordName": page["NextRecordName"],
                "StartRecordType": page["NextRecordType"],
            }
            if page.get("NextRecordIdentifier"):
                start["StartRecordIdentifier"] = page["NextRecordIdentifier"]

    def backup(self) -> list[dict[str, Any]]:
        """The record sets to save before a release; pass them back as params["backup"]."""
        return self._current_sets()

    def capture_backup(self) -> dict[str, Any]:
        return {"record_sets": self.backup()}

    def describe_backup(self, key: str, content: Any) -> str:
        if key != "record_sets" or not isinstance(content, list):
            return ""
        sets = [describe_values(item) for item in content if isinstance(item, Mapping)]
        return "; ".join(value for value in sets if value)[:200]

    def live_options(self) -> dict[str, LiveOption]:
        """The values the record has now, shown beside the saved ones."""
        now = "; ".join(filter(None, map(describe_values, self._current_sets()))) or "no record"
        return {"backup": LiveOption(note=f"now: {now}")}

    def validate_params(self, params: Mapping[str, Any], *, live: bool = False) -> dict[str, Any]:
        """As the base class; "maintenance" falls back to the config's maintenance target,
        and values separated by commas become a list."""
        cleaned = super().validate_params(params, live=live)
        if cleaned.get("mode") != "maintenance":
            return cleaned
        given = cleaned.get("maintenance_target")
        if given is None:
            if "maintenance_target" not in self.config:
                raise OptionError(
                    "maintenance_target", "is required: this record has no maintenance target set"
                )
            cleaned["maintenance_target"] = self.config["maintenance_target"]
        elif "," in given:
            cleaned["maintenance_target"] = [part.strip() for part in given.split(",") if part]
        return cleaned

    def _desired_sets(
        self, target: RollbackTarget, current: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        backup = target.params.get("backup")
        maintenance = target.params.get("maintenance_target")
        if (backup is None) == (maintenance is None):
            raise ConfigError(
                "a DNS rollback needs exactly one of target.params['backup'] (saved record "
                "sets) or target.params['maintenance_target']"
            )
        if backup is not None:
            return self._checked_backup(backup)
        return self._maintenance_sets(maintenance, target.params.get("ttl"), current)

    def _checked_backup(self, backup: Any) -> list[dict[str, Any]]:
        if not isinstance(backup, list) or not backup:
            raise ConfigError("params['backup'] must be a non-empty list of record sets")
        for record_set in backup:
            if not isinstance(record_set, Mapping) or not {"Name", "Type"} <= set(record_set):
                raise ConfigError("each backup record set needs at least Name and Type")
            if not self._is_ours(record_set):
                holds = f"{record_set['Name']} {record_set['Type']}"
                if "SetIdentifier" in record_set:
                    holds += f" [{record_set['SetIdentifier']}]"
                raise ConfigError(f"the backup holds {holds}, not {self._where}")
            if not ("ResourceRecords" in record_set or "AliasTarget" in record_set):
                raise ConfigError(f"backup record set {record_set['Name']} has no values")
        return [dict(record_set) for record_set in backup]

    def _maintenance_sets(
        self, maintenance: Any, ttl: Any, current: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        if isinstance(maintenance, str):
            maintenance = [maintenance]
        if isinstance(maintenance, Mapping):
            if not {"DNSName", "HostedZoneId"} <= set(maintenance):
                raise ConfigError("an alias maintenance_target needs DNSName and HostedZoneId")
            values: dict[str, Any] = {
                "AliasTarget": {
                    "DNSName": maintenance["DNSName"],
                    "HostedZoneId": maintenance["HostedZoneId"],
                    "EvaluateTargetHealth": bool(maintenance.get("EvaluateTargetHealth", False)),
                }
            }
        elif (
            isinstance(maintenance, list)
            and maintenance
            and all(isinstance(value, str) and value for value in maintenance)
        ):
            records = [{"Value": value} for value in maintenance]
            values = {"ResourceRecords": records}
        else:
            raise ConfigError(
                "maintenance_target must be a value, a list of values, or an alias "
                "{DNSName, HostedZoneId}"
            )
        if ttl is not None and (not isinstance(ttl, int) or ttl < 0):
            raise ConfigError("params['ttl'] must be a whole number of seconds")
        if len(current) > 1:
            raise ConfigError(
                f"{self._where} has {len(current)} record sets (a routing policy); set "
                "set_identifier in the config to choose the one to point at maintenance"
            )
        base = current[0] if current else {"Name": self._name, "Type": self.config["record_type"]}
        desired = {key: value for key, value in base.items() if key not in _VALUE_FIELDS}
        desired.update(values)
        if "ResourceRecords" in values:
            desired["TTL"] = ttl if ttl is not None else base.get("TTL", DEFAULT_TTL)
        return [desired]

    def _differences(
        self, target: RollbackTarget
    ) -> tuple[list[dict[str, Any]], list[tuple[dict[str, Any] | None, dict[str, Any]]]]:
        """The current sets, and (current, desired) for each set that must change."""
        current = self._current_sets()
        by_identifier = {record_set.get("SetIdentifier"): record_set for record_set in current}
        differing = []
        for desired in self._desired_sets(target, current):
            before = by_identifier.get(desired.get("SetIdentifier"))
            if before is None or _comparable(before) != _comparable(desired):
                differing.append((before, desired))
        return current, differing

    def live_version(self) -> str | None:
        """The record's values, e.g. `lb-1.example.net (TTL 300)`; None if there is none."""
        current = self._current_sets()
        if not current:
            return None
        if len(current) == 1:
            return describe_values(current[0])
        return "; ".join(f"{r.get('SetIdentifier')}={describe_values(r)}" for r in current)

    def plan(self, target: RollbackTarget) -> RollbackPlan:
        """Each record set the UPSERT would change, before and after; no writes."""
        current, differing = self._differences(target)
        changes = tuple(
            Change(
                self._resource(desired), "values", describe_values(before), describe_values(desired)
            )
            for before, desired in differing
        )
        after = "; ".join(filter(None, (describe_values(desired) for _, desired in differing)))
        return RollbackPlan(
            backend=self.kind,
            summary=f"UPSERT {self._where} → {after}" if changes else f"{self._where} already set",
            current_version=self.live_version(),
            target_version=after or None,
            changes=changes,
        )

    def apply(self, target: RollbackTarget, *, log: LogLine = discard_log) -> ApplyResult:
        """UPSERT the record sets that differ, in one change batch."""
        current, differing = self._differences(target)
        if not differing:
            return ApplyResult(False, f"{self._where} already has the target values", {})
        response = aws_call(
            f"UPSERT {self._where}",
            self.client.change_resource_record_sets,
            HostedZoneId=self.config["hosted_zone_id"],
            ChangeBatch={
                "Comment": f"Backout rollback of {self._where}",
                "Changes": [
                    {"Action": "UPSERT", "ResourceRecordSet": desired} for _, desired in differing
                ],
            },
        )
        self._last_change_id = str(response["ChangeInfo"]["Id"])
        for before, desired in differing:
            log(
                f"{self._resource(desired)}: {describe_values(before)} → {describe_values(desired)}"
            )
        return ApplyResult(
            True,
            f"UPSERT {len(differing)} record sets of {self._where}",
            {
                "change_id": self._last_change_id,
                "before": current,
                "upserted": [d for _, d in differing],
            },
        )

    def wait(self, target: RollbackTarget, *, deadline: float, log: LogLine = discard_log) -> None:
        """Poll this backend's last change until INSYNC, then confirm the values read back."""
        change_id = self._last_change_id
        if change_id is not None:

            def in_sync() -> tuple[bool, str]:
                status = aws_call(f"read change {change_id}", self.client.get_change, Id=change_id)[
                    "ChangeInfo"
                ]["Status"]
                return str(status).upper() == "INSYNC", f"change {change_id}: {status}"

            poll_until(
                in_sync,
                deadline=deadline,
                log=log,
                interval=self.poll_interval,
                what=f"Route 53 change {change_id}",
            )
        _, differing = self._differences(target)
        if differing:
            raise BackendError(f"{self._where} does not have the target values: apply has not run")
        log(f"{self._where} reads back the target values")

    def checks(self, target: RollbackTarget) -> list[CheckResult]:
        """The record's values read back equal the target's."""
        _, differing = self._differences(target)
        if differing:
            detail = "; ".join(
                f"{describe_values(before)} where {describe_values(desired)} is wanted"
                for before, desired in differing
            )
            return [CheckResult("record values", CheckStatus.FAILED, detail)]
        return [
            CheckResult(
                "record values", CheckStatus.PASSED, f"{self._where}: {self.live_version()}"
            )
        ]
