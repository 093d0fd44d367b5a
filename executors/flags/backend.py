"""Turn feature flags off (or back on) in Redis, SSM Parameter Store or AWS AppConfig.

The config names one `flag`, or sets `kill_all: true` to act on every flag: those listed in
`flags`, or, without a list, every flag found in the store (under the Redis key prefix or
SSM parameter prefix, or every flag the AppConfig profile defines). A rollback turns the
flags off; `target.params["state"]` may say `"on"` to turn them back on. Turning flags on
with the kill switch needs an explicit `flags` list: switching on whatever happens to live
under a prefix would enable flags that were meant to stay off. `target.version` and
`target.artifact` play no part.

Where flags live:

- `store: "redis"`: one plain string key per flag, `<key_prefix><flag>` (prefix `flags:` by
  default), holding `on` or `off`. Plain keys rather than a hash so that each flag can be
  read with GET by any client and a prefix scan finds them; writes go in one MSET, so a kill
  switch flips every flag at the same instant. The server is `Connections.redis_url`, or the
  URL in the environment variable named by `redis_url_env` (the application's Redis is often
  not the console's; the URL may hold a password, so it never sits in the config). When
  flags are discovered by prefix, only string keys holding `on` or `off` count as flags.
- `store: "ssm"`: one parameter per flag, `<parameter_prefix><flag>`, value `on` or `off`.
  Existing parameters keep their type (a SecureString stays one); new ones are Strings.
  Parameters are written one by one (SSM has no batch write), in name order.

A named flag holding anything but `on` or `off` is shown as `unrecognised` (never its value,
which could be anything, even a secret) and is overwritten like any other flag.
- `store: "appconfig"`: a hosted configuration profile in the `AWS.AppConfig.FeatureFlags`
  format (`{"flags": {...}, "values": {"<flag>": {"enabled": true}}}`). `application`,
  `environment` and `configuration_profile` are AppConfig ids; `deployment_strategy` is a
  strategy id such as `AppConfig.AllAtOnce`. The live content is the configuration version
  of the newest deployment of that profile to that environment which has not been rolled
  back. Apply writes that content with the flags changed as a new hosted configuration
  version and starts a deployment of it (passing `LatestDeploymentNumber`, so a deployment
  started meanwhile by someone else makes AppConfig refuse rather than race); `wait` polls
  that deployment until it is COMPLETE or BAKING (the flags have reached every target;
  AppConfig may still roll back on an alarm during the bake, which the checks then see).
  A deployment in flight that already carries the target states counts as applied, so a
  second apply starts nothing. A crash between creating the version and starting the
  deployment leaves an unused hosted version behind; the next apply creates another one.

Known gap: moto (5.2) does not implement AppConfig environments, deployments or deployment
strategies, so the AppConfig path is tested with botocore's Stubber (request and response
shapes checked against the service model, no server); the Redis and SSM paths are tested
against a real Redis and a moto server.

Errors: Redis connection failures and timeouts, AWS throttling, 5xx, unreachable endpoints
and AppConfig's "another deployment is in progress" raise a retryable BackendError;
everything else is permanent. A missing AppConfig resource, a flag the profile does not
define, or an unreadable configuration is a ConfigError.
"""

from __future__ import annotations

import copy
import json
import os
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, cast

import redis

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
    LogLine,
    RollbackPlan,
    RollbackTarget,
    discard_log,
    poll_until,
)

ON = "on"
OFF = "off"
# Shown instead of a value that is neither on nor off: it may be anything, even a secret.
UNRECOGNISED = "unrecognised"
STORES = ("redis", "ssm", "appconfig")
DEFAULT_KEY_PREFIX = "flags:"

# Fields that belong to one store only; naming one for another store is a mistake to report.
_STORE_FIELDS = {
    "redis": ("key_prefix", "redis_url_env"),
    "ssm": ("parameter_prefix",),
    "appconfig": ("application", "environment", "configuration_profile", "deployment_strategy"),
}
_REQUIRED_STORE_FIELDS = {
    "redis": (),
    "ssm": ("parameter_prefix",),
    "appconfig": _STORE_FIELDS["appconfig"],
}

# -- stores ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class FlagFlip:
    """One flag that must change: `before` is None when the store has no such flag yet."""

    flag: str
    before: str | None
    after: str


def _state(value: str | None) -> str | None:
    """`on`, `off`, None for an absent flag, or UNRECOGNISED for any other value."""
    return value if value in (ON, OFF, None) else UNRECOGNISED


class _RedisFlags:
    """Flags as plain Redis string keys `<prefix><flag>` holding `on` / `off`."""

    def __init__(self, config: Mapping[str, Any], connections: Connections) -> None:
        self.prefix: str = config.get("key_prefix", DEFAULT_KEY_PREFIX)
        url_variable = config.get("redis_url_env")
        if url_variable is not None:
            url = os.environ.get(url_variable)
            if not url:
                raise ConfigError(f"environment variable {url_variable} (redis_url_env) is unset")
        else:
            url = connections.redis_url
        self.client = redis.Redis.from_url(
            url, decode_responses=True, socket_timeout=5, socket_connect_timeout=5
        )
        self.where = f"Redis keys {self.prefix}*"

    def resource(self, flag: str) -> str:
        return f"redis/{self.prefix}{flag}"

    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        try:
            yield
        except (redis.ConnectionError, redis.TimeoutError) as error:
            raise BackendError(f"{what}: Redis did not answer: {error}", retryable=True) from error
        except redis.RedisError as error:
            raise BackendError(f"{what}: {error}") from error

    def _values(self, keys: list[str]) -> list[str | None]:
        return cast(list[str | None], self.client.mget(keys)) if keys else []

    def read(self, flags: list[str] | None) -> dict[str, str | None]:
        with self._errors(f"read {self.where}"):
            if flags is None:
                pattern = re.sub(r"([*?\[\]\\])", r"\\\1", self.prefix) + "*"
                keys = sorted(self.client.scan_iter(match=pattern, count=500, _type="string"))
                return {
                    key[len(self.prefix) :]: value
                    for key, value in zip(keys, self._values(keys), strict=True)
                    if value in (ON, OFF)
                }
            values = self._values([self.prefix + flag for flag in flags])
            return {flag: _state(value) for flag, value in zip(flags, values, strict=True)}

    def write(self, flips: list[FlagFlip], log: LogLine) -> dict[str, Any]:
        with self._errors(f"write {self.where}"):
            self.client.mset({self.prefix + flip.flag: flip.after for flip in flips})
        return {}


class _SsmFlags:
    """Flags as SSM parameters `<prefix><flag>` holding `on` / `off`."""

    def __init__(self, config: Mapping[str, Any], connections: Connections) -> None:
        self.prefix: str = config["parameter_prefix"]
        self.client = aws_client(connections, "ssm")
        self.where = f"SSM parameters {self.prefix}*"

    def resource(self, flag: str) -> str:
        return f"ssm/{self.prefix}{flag}"

    def _discover(self) -> list[str]:
        names: list[str] = []
        paginator = self.client.get_paginator("describe_parameters")
        pages = paginator.paginate(
            ParameterFilters=[{"Key": "Name", "Option": "BeginsWith", "Values": [self.prefix]}]
        )
        for page in aws_call(f"list {self.where}", lambda: list(pages)):
            names.extend(parameter["Name"] for parameter in page.get("Parameters", []))
        return sorted(names)

    def read(self, flags: list[str] | None) -> dict[str, str | None]:
        discovered = flags is None
        names = self._discover() if flags is None else [self.prefix + flag for flag in flags]
        values: dict[str, str] = {}
        for start in range(0, len(names), 10):  # GetParameters takes ten names at a time
            batch = names[start : start + 10]
            found = aws_call(
                f"read {self.where}",
                self.client.get_parameters,
                Names=batch,
                WithDecryption=True,
            )
            values.update((p["Name"], p["Value"]) for p in found.get("Parameters", []))
        states = {name[len(self.prefix) :]: _state(values.get(name)) for name in names}
        if discovered:
            return {flag: state for flag, state in states.items() if state in (ON, OFF)}
        return states

    def write(self, flips: list[FlagFlip], log: LogLine) -> dict[str, Any]:
        for flip in flips:
            name = self.prefix + flip.flag
            # Overwriting without a Type keeps the parameter's own (a SecureString stays one).
            new_type = {"Type": "String"} if flip.before is None else {}
            aws_call(
                f"write {name}",
                self.client.put_parameter,
                Name=name,
                Value=flip.after,
                Overwrite=True,
                **new_type,
            )
        return {}


# Deployment states in which the deployed version is (or is becoming) what clients get.
_LIVE_DEPLOYMENT_STATES = ("COMPLETE", "BAKING", "DEPLOYING", "VALIDATING")
_SETTLED_DEPLOYMENT_STATES = ("COMPLETE", "BAKING")
_FAILED_DEPLOYMENT_STATES = ("ROLLING_BACK", "ROLLED_BACK", "REVERTED")


@dataclass(frozen=True)
class _LiveConfiguration:
    deployment: Mapping[str, Any]
    latest_deployment_number: int
    content: dict[str, Any]


class _AppConfigFlags:
    """Flags in an AppConfig feature-flag profile, changed by deploying a new version."""

    def __init__(self, config: Mapping[str, Any], connections: Connections) -> None:
        self.application: str = config["application"]
        self.environment: str = config["environment"]
        self.profile: str = config["configuration_profile"]
        self.strategy: str = config["deployment_strategy"]
        self.client = aws_client(connections, "appconfig")
        self.where = (
            f"AppConfig {self.application}/{self.profile} in environment {self.environment}"
        )
        self.deployment_number: int | None = None
        # The configuration the last read saw, so that a write or check right after it
        # does not read it again.
        self.last_live: _LiveConfiguration | None = None

    def resource(self, flag: str) -> str:
        return f"appconfig/{self.application}/{self.environment}/{self.profile}/{flag}"

    def _missing_is_config_error[T](self, what: str, method: Callable[..., T], **kwargs: Any) -> T:
        try:
            return aws_call(what, method, **kwargs)
        except AwsError as error:
            if error.code in ("ResourceNotFoundException", "BadRequestException"):
                raise ConfigError(str(error)) from error
            raise

    def deployments(self) -> Iterator[Mapping[str, Any]]:
        """Deployments to the environment, newest first (AppConfig's documented order)."""
        token: dict[str, str] = {}
        while True:
            page = self._missing_is_config_error(
                f"list deployments of {self.where}",
                self.client.list_deployments,
                ApplicationId=self.application,
                EnvironmentId=self.environment,
                **token,
            )
            yield from page.get("Items", [])
            if not page.get("NextToken"):
                return
            token = {"NextToken": page["NextToken"]}

    def live(self) -> _LiveConfiguration:
        latest: int | None = None
        for deployment in self.deployments():
            if latest is None:
                latest = int(deployment["DeploymentNumber"])
            if (
                deployment.get("ConfigurationProfileId") == self.profile
                and deployment.get("State") in _LIVE_DEPLOYMENT_STATES
            ):
                assert latest is not None
                self.last_live = _LiveConfiguration(deployment, latest, self._content(deployment))
                return self.last_live
        raise ConfigError(f"{self.where}: nothing is deployed, so there is no flag to turn off")

    def _content(self, deployment: Mapping[str, Any]) -> dict[str, Any]:
        version = str(deployment["ConfigurationVersion"])
        if not version.isdigit():
            raise ConfigError(f"{self.where}: deployed version {version!r} is not hosted")
        response = self._missing_is_config_error(
            f"read version {version} of {self.where}",
            self.client.get_hosted_configuration_version,
            ApplicationId=self.application,
            ConfigurationProfileId=self.profile,
            VersionNumber=int(version),
        )
        body = response["Content"]
        raw = body.read() if hasattr(body, "read") else body
        try:
            content = json.loads(raw)
        except ValueError as error:
            raise ConfigError(f"{self.where}: version {version} is not JSON") from error
        if not isinstance(content, dict) or not isinstance(content.get("flags"), dict):
            raise ConfigError(
                f"{self.where}: version {version} is not in the AWS.AppConfig.FeatureFlags format"
            )
        return content

    @staticmethod
    def _states(content: Mapping[str, Any]) -> dict[str, str]:
        values = content.get("values") or {}
        return {
            flag: ON if (values.get(flag) or {}).get("enabled") is True else OFF
            for flag in sorted(content["flags"])
        }

    def read(self, flags: list[str] | None) -> dict[str, str | None]:
        states = self._states(self.live().content)
        if flags is None:
            return dict(states)
        undefined = [flag for flag in flags if flag not in states]
        if undefined:
            raise ConfigError(f"{self.where} defines no flag {', '.join(undefined)}")
        return {flag: states[flag] for flag in flags}

    def write(self, flips: list[FlagFlip], log: LogLine) -> dict[str, Any]:
        live = self.last_live or self.live()
        content = copy.deepcopy(live.content)
        values = content.setdefault("values", {})
        for flip in flips:
            values.setdefault(flip.flag, {})["enabled"] = flip.after == ON
        description = "Backout rollback: " + ", ".join(
            f"{flip.flag} {flip.before}→{flip.after}" for flip in flips
        )
        created = self._missing_is_config_error(
            f"create a version of {self.where}",
            self.client.create_hosted_configuration_version,
            ApplicationId=self.application,
            ConfigurationProfileId=self.profile,
            Content=json.dumps(content).encode(),
            ContentType="application/json",
            Description=description[:1024],
        )
        version = str(created["VersionNumber"])
        log(f"created hosted configuration version {version} of {self.where}")
        try:
            started = self._missing_is_config_error(
                f"deploy version {version} of {self.where}",
                self.client.start_deployment,
                ApplicationId=self.application,
                EnvironmentId=self.environment,
                DeploymentStrategyId=self.strategy,
                ConfigurationProfileId=self.profile,
                ConfigurationVersion=version,
                Description=description[:1024],
                LatestDeploymentNumber=live.latest_deployment_number,
            )
        except AwsError as error:
            if error.code == "ConflictException":
                raise BackendError(
                    f"{self.where}: another deployment is in progress; try again when it ends "
                    f"or stop it ({error})",
                    retryable=True,
                ) from error
            raise
        self.deployment_number = int(started["DeploymentNumber"])
        log(f"started deployment {self.deployment_number} ({self.strategy})")
        return {"configuration_version": version, "deployment_number": self.deployment_number}

    def get_deployment(self, number: int) -> Mapping[str, Any]:
        return self._missing_is_config_error(
            f"read deployment {number} of {self.where}",
            self.client.get_deployment,
            ApplicationId=self.application,
            EnvironmentId=self.environment,
            DeploymentNumber=number,
        )

    def newest_deployment_number(self) -> int | None:
        for deployment in self.deployments():
            if deployment.get("ConfigurationProfileId") == self.profile:
                return int(deployment["DeploymentNumber"])
        return None


def _describe(deployment: Mapping[str, Any]) -> str:
    return (
        f"deployment {deployment['DeploymentNumber']} {deployment.get('State')} "
        f"({deployment.get('PercentageComplete', 0):g} %)"
    )


# -- the backend -----------------------------------------------------------------------------


class FeatureFlagBackend(Backend):
    """Feature flags: turn one off, or all of them (kill switch), and read them back."""

    kind = "feature_flag"
    label = "Feature flag"
    config_schema = {
        "type": "object",
        "properties": {
            "store": {"enum": list(STORES)},
            "flag": {"type": "string", "minLength": 1},
            "kill_all": {"type": "boolean"},
            "flags": {
                "type": "array",
                "items": {"type": "string", "minLength": 1},
                "minItems": 1,
                "uniqueItems": True,
            },
            "key_prefix": {"type": "string"},
            "redis_url_env": {"type": "string", "minLength": 1},
            "parameter_prefix": {"type": "string", "minLength": 1},
            "application": {"type": "string", "minLength": 1},
            "environment": {"type": "string", "minLength": 1},
            "configuration_profile": {"type": "string", "minLength": 1},
            "deployment_strategy": {"type": "string", "minLength": 1},
        },
        "required": ["store"],
        "additionalProperties": False,
    }

    def __init__(
        self, config: Mapping[str, Any], connections: Connections, *, poll_interval: float = 5.0
    ) -> None:
        super().__init__(config, connections)
        self.poll_interval = poll_interval
        store = self.config["store"]
        self.store: _RedisFlags | _SsmFlags | _AppConfigFlags
        if store == "redis":
            self.store = _RedisFlags(self.config, connections)
        elif store == "ssm":
            self.store = _SsmFlags(self.config, connections)
        else:
            self.store = _AppConfigFlags(self.config, connections)

    @classmethod
    def validate_config(cls, config: Mapping[str, Any]) -> dict[str, Any]:
        """Check the schema, then that the flag choice and store fields fit together."""
        validated = super().validate_config(config)
        store = validated["store"]
        kill_all = validated.get("kill_all", False)
        if kill_all == ("flag" in validated):
            raise ConfigError("config: name one flag, or set kill_all: true (not both)")
        if "flags" in validated and not kill_all:
            raise ConfigError("config: a flags list goes with kill_all: true")
        for other, fields in _STORE_FIELDS.items():
            for name in fields:
                if other != store and name in validated:
                    raise ConfigError(f"config: {name} applies to the {other} store only")
        missing = [name for name in _REQUIRED_STORE_FIELDS[store] if name not in validated]
        if missing:
            raise ConfigError(f"config: the {store} store needs {', '.join(missing)}")
        discovers = kill_all and "flags" not in validated
        if discovers and store == "redis" and not validated.get("key_prefix", DEFAULT_KEY_PREFIX):
            raise ConfigError("config: kill_all without a flags list needs a key_prefix")
        return validated

    def _named_flags(self) -> list[str] | None:
        """The flags the config names, or None when the kill switch finds them in the store."""
        if "flag" in self.config:
            return [self.config["flag"]]
        return list(self.config["flags"]) if "flags" in self.config else None

    def _wanted_state(self, target: RollbackTarget) -> str:
        state = target.params.get("state", OFF)
        if state not in (ON, OFF):
            raise ConfigError(f"params['state'] must be 'on' or 'off', not {state!r}")
        if state == ON and self._named_flags() is None:
            raise ConfigError(
                "the kill switch turns on only the flags it lists: add a flags list to the "
                "config to turn flags back on"
            )
        return str(state)

    def _flips(self, target: RollbackTarget) -> tuple[dict[str, str | None], list[FlagFlip]]:
        """The current states, and the flags whose state must change."""
        wanted = self._wanted_state(target)
        states = self.store.read(self._named_flags())
        flips = [FlagFlip(flag, state, wanted) for flag, state in states.items() if state != wanted]
        return states, flips

    @staticmethod
    def _describe_states(states: Mapping[str, str | None]) -> str | None:
        if not states:
            return None
        return ", ".join(f"{flag}={state or 'absent'}" for flag, state in states.items())

    def live_version(self) -> str | None:
        """The states of the flags, e.g. `checkout_v2=on, search_v3=off`; None if none found."""
        return self._describe_states(self.store.read(self._named_flags()))

    def plan(self, target: RollbackTarget) -> RollbackPlan:
        """Which flags go from on to off (or back on), read from the store; no writes."""
        states, flips = self._flips(target)
        wanted = self._wanted_state(target)
        changes = tuple(
            Change(self.store.resource(flip.flag), "state", flip.before, flip.after)
            for flip in flips
        )
        if not states:
            summary = f"no flags found in {self.store.where}"
        elif flips:
            summary = (
                f"turn {', '.join(flip.flag for flip in flips)} {wanted} in {self.store.where}"
            )
        else:
            summary = f"every flag is already {wanted} in {self.store.where}"
        return RollbackPlan(
            backend=self.kind,
            summary=summary,
            current_version=self._describe_states(states),
            target_version=self._describe_states({flag: wanted for flag in states}),
            changes=changes,
        )

    def apply(self, target: RollbackTarget, *, log: LogLine = discard_log) -> ApplyResult:
        """Write the flags that are not yet in the wanted state; the rest are left alone."""
        states, flips = self._flips(target)
        wanted = self._wanted_state(target)
        if not flips:
            detail = f"every flag is already {wanted}" if states else "no flags found in the store"
            return ApplyResult(False, f"{self.store.where}: {detail}", {"states": states})
        facts = self.store.write(flips, log)
        for flip in flips:
            log(f"{self.store.resource(flip.flag)}: {flip.before or 'absent'} → {flip.after}")
        return ApplyResult(
            True,
            f"turned {len(flips)} flags {wanted} in {self.store.where}",
            {"before": states, "flipped": [flip.flag for flip in flips], **facts},
        )

    def _deployment_number(self) -> int | None:
        assert isinstance(self.store, _AppConfigFlags)
        if self.store.deployment_number is not None:
            return self.store.deployment_number
        return self.store.newest_deployment_number()

    def wait(self, target: RollbackTarget, *, deadline: float, log: LogLine = discard_log) -> None:
        """AppConfig: poll the deployment until COMPLETE or BAKING. Then read the flags back."""
        if isinstance(self.store, _AppConfigFlags):
            store = self.store
            number = self._deployment_number()
            if number is not None:

                def delivered() -> tuple[bool, str]:
                    deployment = store.get_deployment(number)
                    state = deployment.get("State")
                    if state in _FAILED_DEPLOYMENT_STATES:
                        raise BackendError(f"{store.where}: {_describe(deployment)}")
                    return state in _SETTLED_DEPLOYMENT_STATES, _describe(deployment)

                poll_until(
                    delivered,
                    deadline=deadline,
                    log=log,
                    interval=self.poll_interval,
                    what=f"AppConfig deployment {number}",
                )
        _, flips = self._flips(target)
        if flips:
            raise BackendError(
                f"{', '.join(flip.flag for flip in flips)} not yet "
                f"{self._wanted_state(target)}: apply has not run"
            )
        log(f"{self.store.where}: flags read back in the wanted state")

    def checks(self, target: RollbackTarget) -> list[CheckResult]:
        """The flag states read back (and, for AppConfig, the deployment carrying them)."""
        wanted = self._wanted_state(target)
        states, flips = self._flips(target)
        results: list[CheckResult] = []
        if not states:
            results.append(
                CheckResult(
                    "flag state", CheckStatus.INCONCLUSIVE, f"no flags in {self.store.where}"
                )
            )
        elif flips:
            detail = "; ".join(f"{flip.flag} is {flip.before or 'absent'}" for flip in flips)
            results.append(
                CheckResult("flag state", CheckStatus.FAILED, f"want {wanted}: {detail}")
            )
        else:
            described = self._describe_states(states) or ""
            results.append(CheckResult("flag state", CheckStatus.PASSED, described))
        if isinstance(self.store, _AppConfigFlags):
            results.append(self._check_deployment())
        return results

    def _check_deployment(self) -> CheckResult:
        assert isinstance(self.store, _AppConfigFlags)
        deployment = (self.store.last_live or self.store.live()).deployment
        described = _describe(deployment)
        if deployment.get("State") in _SETTLED_DEPLOYMENT_STATES:
            return CheckResult("AppConfig deployment", CheckStatus.PASSED, described)
        return CheckResult(
            "AppConfig deployment", CheckStatus.INCONCLUSIVE, f"{described}: still rolling out"
        )
