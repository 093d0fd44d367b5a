"""Roll back a Lambda@Edge function on a CloudFront distribution: point one cache behaviour's
association for one event back at an earlier published version of the function, and follow
the distribution until CloudFront has deployed it.

Target config: `distribution_id`; `path_pattern`, the cache behaviour (absent: the default
cache behaviour); `event_type` (viewer-request, origin-request, origin-response or
viewer-response); `function`, the Lambda function (its name, or its ARN without a version) whose
published versions the association runs. Lambda@Edge functions live in us-east-1, so the
Lambda calls go there whatever region the connections name.

A release's artifact is the qualified ARN of a published version
(`arn:aws:lambda:us-east-1:<account>:function:<name>:<version>`) or the version number; the
step's `function_version` option (a number or such an ARN) chooses one instead; and
`target.previous` takes the highest published version below the live one. An unqualified ARN,
`$LATEST` or an alias is refused: CloudFront runs only published versions at the edge.

Apply reads the distribution's config and ETag (GetDistributionConfig), changes the
association's `LambdaFunctionARN` (adding the association when the behaviour has none for the
event) and writes the config back with UpdateDistribution and `IfMatch` = that ETag. A
`PreconditionFailed` answer means someone else changed the distribution in between: the step
fails as retryable and its retry reads the config again. Everything else in the config (other
behaviours, other events, CloudFront Functions) is written back as read.

"Previous" is chosen once per step: a step is stamped when drafted (`edge_stamp`, set by the
server only) and, before the update, tags the distribution `backout:edge:<digest of the
behaviour and event>` = "<stamp> <version ARN>". A retry finds its stamp and keeps that
version; another step (another stamp) steps back from wherever the behaviour is then.

Wait polls GetDistribution until its Status is `Deployed` and the association names the
target; the checks confirm the association, the status and that the version is Active.

CloudFront Functions (`FunctionAssociations`) are not handled: moto 5.2 implements no
PublishFunction (a function never reaches the LIVE stage an association runs) and, as
shipped, drops every association of a cache behaviour. The tests and the demo run moto through
devinfra.moto_server, which keeps the associations and the ETag rules (see there).

Errors: throttling, 5xx, timeouts, unreachable endpoints and PreconditionFailed raise a
retryable BackendError; everything else is permanent. A distribution, behaviour, function or
version that does not exist is a ConfigError, and at draft time (`validate_params(live=True)`)
an OptionError naming the field.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import secrets
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

EVENT_TYPES = ("viewer-request", "origin-request", "origin-response", "viewer-response")
LAMBDA_EDGE_REGION = "us-east-1"
ROLLED_BACK_TO_TAG_PREFIX = "backout:edge:"
# The step parameter set when a step is drafted (a value given is replaced), and its form.
EDGE_STAMP = "edge_stamp"
_STAMP = re.compile(r"[0-9a-f]{16}")
FUNCTION_PATTERN = r"^(arn:aws[a-z-]*:lambda:us-east-1:[0-9]{12}:function:)?[A-Za-z0-9_-]{1,64}$"
_QUALIFIED_ARN = re.compile(
    r"(?P<function>arn:aws[a-z-]*:lambda:[a-z0-9-]+:[0-9]{12}:function:(?P<name>[A-Za-z0-9_-]+))"
    r"(?::(?P<qualifier>[^:]*))?"
)
_VERSION = re.compile(r"[0-9]{1,10}")


def version_of(arn: str | None) -> str | None:
    """The version number a qualified function ARN names, or None."""
    match = _QUALIFIED_ARN.fullmatch(arn or "")
    qualifier = match.group("qualifier") if match else None
    return qualifier if qualifier and _VERSION.fullmatch(qualifier) else None


def short(arn: str | None) -> str:
    """`name:version` for a function version ARN (the ARN itself when it is not one)."""
    match = _QUALIFIED_ARN.fullmatch(arn or "")
    if match is None:
        return arn or "nothing"
    return f"{match.group('name')}:{match.group('qualifier') or '(unqualified)'}"


def steps_back(target: RollbackTarget) -> bool:
    """Whether the target is "the version before the live one" (no version named)."""
    named = target.params.get("function_version") or target.artifact
    return target.previous and not named


class EdgeFunctionsBackend(Backend):
    """A CloudFront cache behaviour's Lambda@Edge association: back to a published version."""

    kind = "edge_functions"
    label = "CloudFront Lambda@Edge association"
    config_schema = {
        "type": "object",
        "properties": {
            "distribution_id": {"type": "string", "pattern": "^[A-Z0-9]{1,64}$"},
            "path_pattern": {
                "type": "string",
                "minLength": 1,
                "maxLength": 255,
                "pattern": "^[^\\x00-\\x1f\\x7f]+$",
            },
            "event_type": {"enum": list(EVENT_TYPES)},
            "function": {"type": "string", "maxLength": 140, "pattern": FUNCTION_PATTERN},
        },
        "required": ["distribution_id", "event_type", "function"],
        "additionalProperties": False,
    }
    options = (
        Option(
            "function_version",
            "Function version",
            type="choice",
            live=True,
            max_length=256,
            help="A published version of the function (its number or qualified ARN); "
            "empty: the chosen release's.",
        ),
    )

    def __init__(
        self, config: Mapping[str, Any], connections: Connections, *, poll_interval: float = 5.0
    ) -> None:
        super().__init__(config, connections)
        self.poll_interval = poll_interval
        self._cloudfront: Any = None
        self._lambda: Any = None

    @property
    def cloudfront(self) -> Any:
        """The boto3 CloudFront client, built on first use."""
        if self._cloudfront is None:
            self._cloudfront = aws_client(self.connections, "cloudfront")
        return self._cloudfront

    @property
    def lambda_client(self) -> Any:
        """The boto3 Lambda client in us-east-1 (where Lambda@Edge functions live)."""
        if self._lambda is None:
            edge = dataclasses.replace(self.connections, aws_region=LAMBDA_EDGE_REGION)
            self._lambda = aws_client(edge, "lambda")
        return self._lambda

    # -- where -----------------------------------------------------------------------------

    @property
    def _behaviour_name(self) -> str:
        pattern = self.config.get("path_pattern")
        return f"cache behaviour {pattern}" if pattern else "default cache behaviour"

    @property
    def _where(self) -> str:
        return (
            f"CloudFront distribution {self.config['distribution_id']}, {self._behaviour_name}, "
            f"{self.config['event_type']}"
        )

    @property
    def _resource(self) -> str:
        behaviour = self.config.get("path_pattern") or "default"
        return f"cloudfront/{self.config['distribution_id']}/{behaviour}"

    @property
    def _function_name(self) -> str:
        return str(self.config["function"]).rpartition(":")[2]

    @property
    def _tag_key(self) -> str:
        behaviour = self.config.get("path_pattern") or ""
        digest = hashlib.sha256(f"{behaviour}\n{self.config['event_type']}".encode()).hexdigest()
        return f"{ROLLED_BACK_TO_TAG_PREFIX}{digest[:16]}"

    # -- reading ---------------------------------------------------------------------------

    def _distribution(self) -> dict[str, Any]:
        """GetDistribution's answer (Distribution and ETag); ConfigError when there is none."""
        distribution_id = self.config["distribution_id"]
        try:
            return dict(
                aws_call(
                    f"read CloudFront distribution {distribution_id}",
                    self.cloudfront.get_distribution,
                    Id=distribution_id,
                )
            )
        except AwsError as error:
            if error.code == "NoSuchDistribution":
                raise ConfigError(
                    f"CloudFront distribution {distribution_id!r} not found"
                ) from error
            raise

    def _behaviour(self, distribution_config: Mapping[str, Any]) -> dict[str, Any]:
        """The configured cache behaviour within a DistributionConfig (the same dict, for
        editing in place); ConfigError when the distribution has no such path pattern."""
        pattern = self.config.get("path_pattern")
        if not pattern:
            return dict(distribution_config["DefaultCacheBehavior"])
        behaviours = (distribution_config.get("CacheBehaviors") or {}).get("Items") or []
        for behaviour in behaviours:
            if behaviour.get("PathPattern") == pattern:
                return dict(behaviour)
        patterns = ", ".join(str(b.get("PathPattern")) for b in behaviours[:20]) or "none"
        raise ConfigError(
            f"CloudFront distribution {self.config['distribution_id']} has no cache behaviour "
            f"{pattern!r} (it has: {patterns})"
        )

    def _association(self, behaviour: Mapping[str, Any]) -> dict[str, Any] | None:
        items = (behaviour.get("LambdaFunctionAssociations") or {}).get("Items") or []
        for association in items:
            if association.get("EventType") == self.config["event_type"]:
                return dict(association)
        return None

    def _associated(self, distribution: Mapping[str, Any]) -> str | None:
        behaviour = self._behaviour(distribution["DistributionConfig"])
        association = self._association(behaviour)
        return str(association["LambdaFunctionARN"]) if association else None

    def live_version(self) -> str | None:
        """The qualified ARN of the function version the behaviour runs for the event, or
        None when it runs none."""
        return self._associated(self._distribution()["Distribution"])

    def capture_backup(self) -> dict[str, Any]:
        """The function version associated before a release."""
        live = self.live_version()
        return {"function_version": live} if live else {}

    def describe_backup(self, key: str, content: Any) -> str:
        """A saved association as `name:version`."""
        return short(str(content)) if key == "function_version" and content else ""

    def _function_version(self, version: str) -> dict[str, Any]:
        """GetFunctionConfiguration of a published version; ConfigError when it is not one."""
        try:
            return dict(
                aws_call(
                    f"read version {version} of Lambda function {self._function_name}",
                    self.lambda_client.get_function_configuration,
                    FunctionName=self.config["function"],
                    Qualifier=version,
                )
            )
        except AwsError as error:
            if error.code == "ResourceNotFoundException":
                raise ConfigError(
                    f"Lambda function {self._function_name!r} has no published version {version}"
                ) from error
            raise

    def _published_versions(self) -> list[dict[str, Any]]:
        """The function's published versions (not $LATEST), lowest number first."""

        def listing() -> list[dict[str, Any]]:
            paginator = self.lambda_client.get_paginator("list_versions_by_function")
            pages = paginator.paginate(FunctionName=self.config["function"])
            return [version for page in pages for version in page.get("Versions", [])]

        try:
            versions = aws_call(f"list versions of {self._function_name}", listing)
        except AwsError as error:
            if error.code == "ResourceNotFoundException":
                raise ConfigError(f"Lambda function {self._function_name!r} not found") from error
            raise
        published = [v for v in versions if _VERSION.fullmatch(str(v.get("Version")))]
        return sorted(published, key=lambda v: int(v["Version"]))

    def live_options(self) -> dict[str, LiveOption]:
        """The published versions, newest first, the one associated now marked."""
        live = version_of(self.live_version())
        choices = tuple(
            Choice(
                str(v["Version"]),
                f"{v['Version']}" + (" (live)" if str(v["Version"]) == live else ""),
                detail=str(v.get("Description") or "")[:200],
                current=str(v["Version"]) == live,
            )
            for v in reversed(self._published_versions())
        )
        return {"function_version": LiveOption(choices=choices)}

    # -- what to roll back to --------------------------------------------------------------

    def _version_given(self, given: str, *, field: str) -> str:
        """A version number from a number or a qualified ARN of the configured function;
        OptionError naming `field` for anything CloudFront would not run."""
        given = given.strip()
        if _VERSION.fullmatch(given):
            return given
        match = _QUALIFIED_ARN.fullmatch(given)
        if given == "$LATEST" or (match and match.group("qualifier") == "$LATEST"):
            raise OptionError(
                field, "$LATEST cannot run at the edge: Lambda@Edge needs a published version"
            )
        if match is None:
            raise OptionError(
                field, "must be a published version number or a qualified function version ARN"
            )
        if match.group("name") != self._function_name or (
            str(self.config["function"]).startswith("arn:")
            and match.group("function") != self.config["function"]
        ):
            raise OptionError(field, f"{given} is not a version of {self.config['function']}")
        qualifier = match.group("qualifier")
        if not qualifier:
            raise OptionError(
                field, "an unqualified ARN names no version: Lambda@Edge needs a published version"
            )
        if not _VERSION.fullmatch(qualifier):
            raise OptionError(
                field, f"{qualifier!r} is an alias: Lambda@Edge needs a published version number"
            )
        return qualifier

    def _stamp(self, target: RollbackTarget) -> str:
        stamp = target.params.get(EDGE_STAMP)
        if not isinstance(stamp, str) or not _STAMP.fullmatch(stamp):
            raise ConfigError(
                "a step back to the previous version needs the edge_stamp set when it is "
                "drafted (draft it again)"
            )
        return stamp

    def _previous(self, target: RollbackTarget, live: str | None, tags: Mapping[str, str]) -> str:
        """The version this step chose in an earlier attempt (the tag carrying its stamp),
        else the published version below the live one."""
        stamp, _, recorded = tags.get(self._tag_key, "").partition(" ")
        if recorded and stamp == self._stamp(target) and version_of(recorded):
            return str(version_of(recorded))
        live_number = version_of(live)
        if live_number is None:
            raise ConfigError(
                f"{self._where} runs {live or 'no function'}; there is no previous version to "
                "go back to (choose a version)"
            )
        earlier = [
            str(v["Version"])
            for v in self._published_versions()
            if int(v["Version"]) < int(live_number)
        ]
        if not earlier:
            raise ConfigError(
                f"Lambda function {self._function_name!r} has no published version before "
                f"{live_number}"
            )
        return earlier[-1]

    def _target_arn(
        self, target: RollbackTarget, live: str | None, tags: Mapping[str, str] | None = None
    ) -> str:
        """The qualified ARN of the version to associate; ConfigError when there is none."""
        chosen = target.params.get("function_version") or target.artifact
        try:
            if chosen:
                version = self._version_given(str(chosen), field="function_version")
            elif steps_back(target):
                version = self._previous(target, live, self._tags() if tags is None else tags)
            else:
                raise ConfigError(
                    "a Lambda@Edge rollback needs a function version (the release's artifact, "
                    "the function_version option) or the previous version"
                )
        except OptionError as error:
            raise ConfigError(error.reason) from None
        return str(self._function_version(version)["FunctionArn"])

    def _tags(self, arn: str | None = None) -> dict[str, str]:
        if arn is None:
            arn = self._distribution()["Distribution"]["ARN"]
        answer = aws_call(
            f"read the tags of CloudFront distribution {self.config['distribution_id']}",
            self.cloudfront.list_tags_for_resource,
            Resource=arn,
        )
        return {tag["Key"]: tag.get("Value", "") for tag in answer["Tags"].get("Items") or []}

    # -- draft-time validation -------------------------------------------------------------

    def validate_params(self, params: Mapping[str, Any], *, live: bool = False) -> dict[str, Any]:
        """As the base class, with `function_version` as a number (a qualified ARN given is
        read as its version; $LATEST, an alias or an unqualified ARN is refused). With `live`,
        the distribution, the behaviour, the function and the version chosen must exist: an
        OptionError names `distribution_id`, `path_pattern`, `function` or `function_version`.
        Stamped (`edge_stamp`, set here only: a value given is replaced)."""
        if isinstance(params, Mapping):
            params = {name: value for name, value in params.items() if name != EDGE_STAMP}
        cleaned = super().validate_params(params, live=False)
        cleaned[EDGE_STAMP] = secrets.token_hex(8)
        if cleaned.get("function_version") is not None:
            cleaned["function_version"] = self._version_given(
                cleaned["function_version"], field="function_version"
            )
        if not live:
            return cleaned
        try:
            distribution = self._distribution()["Distribution"]
        except ConfigError as error:
            raise OptionError("distribution_id", str(error)) from None
        try:
            self._behaviour(distribution["DistributionConfig"])
        except ConfigError as error:
            raise OptionError("path_pattern", str(error)) from None
        try:
            self._function_version("$LATEST")
        except ConfigError:
            raise OptionError(
                "function", f"Lambda function {self._function_name!r} not found in us-east-1"
            ) from None
        published = [str(v["Version"]) for v in self._published_versions()]
        wanted = cleaned.get("function_version")
        if wanted is not None and wanted not in published:
            shown = ", ".join(published[-20:]) or "none"
            raise OptionError(
                "function_version",
                f"{self._function_name} has no published version {wanted} (published: {shown})",
            )
        return cleaned

    # -- the rollback ----------------------------------------------------------------------

    def plan(self, target: RollbackTarget) -> RollbackPlan:
        """The association's version now and the one it would run; no change when equal."""
        distribution = self._distribution()["Distribution"]
        live = self._associated(distribution)
        wanted = self._target_arn(target, live, self._tags(distribution["ARN"]))
        if live == wanted:
            return RollbackPlan(
                self.kind, f"{self._where} already runs {short(wanted)}", live, wanted
            )
        change = Change(self._resource, f"{self.config['event_type']} function", live, wanted)
        summary = f"{self._where}: {short(live)} → {short(wanted)}, then wait for the deployment"
        return RollbackPlan(self.kind, summary, live, wanted, (change,))

    def apply(self, target: RollbackTarget, *, log: LogLine = discard_log) -> ApplyResult:
        """Tag the distribution with the target, then write the edited config back under the
        ETag read with it; a no-op when the behaviour already runs the target."""
        distribution_id = self.config["distribution_id"]
        distribution = self._distribution()["Distribution"]
        tags = self._tags(distribution["ARN"])
        answer = aws_call(
            f"read the config of CloudFront distribution {distribution_id}",
            self.cloudfront.get_distribution_config,
            Id=distribution_id,
        )
        config, etag = answer["DistributionConfig"], answer["ETag"]
        behaviour = self._behaviour(config)
        association = self._association(behaviour)
        live = str(association["LambdaFunctionARN"]) if association else None
        wanted = self._target_arn(target, live, tags)
        facts = {"from_function_version": live, "to_function_version": wanted}
        if live == wanted:
            return ApplyResult(False, f"{self._where} already runs {short(wanted)}", facts)
        record = f"{self._stamp(target)} {wanted}" if steps_back(target) else None
        if record is not None and tags.get(self._tag_key) != record:
            # Tagged first: if the update then fails, a retry resolves "previous" the same way.
            aws_call(
                f"tag CloudFront distribution {distribution_id}",
                self.cloudfront.tag_resource,
                Resource=distribution["ARN"],
                Tags={"Items": [{"Key": self._tag_key, "Value": record}]},
            )
        self._associate(config, wanted)
        log(f"{self._where}: associating {short(wanted)} in place of {short(live)}")
        try:
            updated = aws_call(
                f"update CloudFront distribution {distribution_id}",
                self.cloudfront.update_distribution,
                Id=distribution_id,
                IfMatch=etag,
                DistributionConfig=config,
            )
        except AwsError as error:
            if error.code == "PreconditionFailed":
                raise BackendError(
                    f"CloudFront distribution {distribution_id} changed while it was being "
                    "edited (its ETag no longer matches); the retry reads it again",
                    retryable=True,
                ) from error
            raise
        facts["etag"] = updated.get("ETag")
        detail = f"{self._where}: {short(live)} → {short(wanted)}"
        return ApplyResult(True, detail, facts)

    def _associate(self, config: dict[str, Any], arn: str) -> None:
        """Point the configured behaviour's association for the event at `arn`, in place."""
        pattern = self.config.get("path_pattern")
        if pattern:
            items = config["CacheBehaviors"]["Items"]
            behaviour = next(b for b in items if b.get("PathPattern") == pattern)
        else:
            behaviour = config["DefaultCacheBehavior"]
        associations = behaviour.setdefault("LambdaFunctionAssociations", {"Quantity": 0})
        items = associations.setdefault("Items", [])
        for association in items:
            if association.get("EventType") == self.config["event_type"]:
                association["LambdaFunctionARN"] = arn
                break
        else:
            items.append(
                {
                    "LambdaFunctionARN": arn,
                    "EventType": self.config["event_type"],
                    "IncludeBody": False,
                }
            )
        associations["Quantity"] = len(items)

    def wait(self, target: RollbackTarget, *, deadline: float, log: LogLine = discard_log) -> None:
        """Poll the distribution until it is Deployed with the target associated."""
        distribution = self._distribution()["Distribution"]
        wanted = self._target_arn(
            target, self._associated(distribution), self._tags(distribution["ARN"])
        )

        def deployed() -> tuple[bool, str]:
            current = self._distribution()["Distribution"]
            live = self._associated(current)
            if live != wanted:
                raise BackendError(
                    f"{self._where} runs {short(live)}, not {short(wanted)}: the distribution "
                    "was changed again"
                )
            status = str(current.get("Status"))
            return status == "Deployed", f"distribution {current['Id']}: {status}, {short(live)}"

        poll_until(
            deployed, deadline=deadline, log=log, interval=self.poll_interval, what=self._where
        )

    def checks(self, target: RollbackTarget) -> list[CheckResult]:
        """The behaviour runs the target version, the distribution is Deployed, and the
        version is Active in Lambda."""
        distribution = self._distribution()["Distribution"]
        live = self._associated(distribution)
        wanted = self._target_arn(target, live, self._tags(distribution["ARN"]))
        status = str(distribution.get("Status"))
        state = str(self._function_version(str(version_of(wanted))).get("State") or "")
        return [
            CheckResult(
                "function version associated",
                CheckStatus.PASSED if live == wanted else CheckStatus.FAILED,
                f"{self._where} runs {short(live)}",
                observed=live,
                threshold=wanted,
            ),
            CheckResult(
                "distribution deployed",
                CheckStatus.PASSED if status == "Deployed" else CheckStatus.FAILED,
                f"distribution {distribution['Id']}: {status}",
                observed=status,
                threshold="Deployed",
            ),
            CheckResult(
                "function version active",
                {"Active": CheckStatus.PASSED, "": CheckStatus.INCONCLUSIVE}.get(
                    state, CheckStatus.FAILED
                ),
                f"{short(wanted)}: {state or 'Lambda reports no state'}",
                observed=state or None,
                threshold="Active",
            ),
        ]
