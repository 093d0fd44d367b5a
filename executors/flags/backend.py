"""The feature-flag backend: turn one flag off, or all of them (kill switch), in the store
the config names, and read them back (see the package's docstring)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

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
    Option,
    RollbackPlan,
    RollbackTarget,
    discard_log,
    poll_until,
)
from executors.flags.appconfig import (
    FAILED_DEPLOYMENT_STATES,
    SETTLED_DEPLOYMENT_STATES,
    AppConfigFlags,
    describe_deployment,
)
from executors.flags.stores import (
    DEFAULT_KEY_PREFIX,
    OFF,
    ON,
    FlagFlip,
    RedisFlags,
    SsmFlags,
)
from executors.options import Choice

STORES = ("redis", "ssm", "appconfig")

FLAG_OPTIONS = (
    Option(
        "state",
        "Set the flag(s)",
        type="choice",
        default=OFF,
        choices=(Choice(OFF, "off"), Choice(ON, "on")),
    ),
    Option(
        "for_minutes",
        "For how long (minutes)",
        type="minutes",
        minimum=1,
        maximum=10080,
        help="The console reminds the incident to set the flag back once this has passed; "
        "empty: until someone changes it.",
    ),
)

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
        self.store: RedisFlags | SsmFlags | AppConfigFlags
        if store == "redis":
            self.store = RedisFlags(self.config, connections)
        elif store == "ssm":
            self.store = SsmFlags(self.config, connections)
        else:
            self.store = AppConfigFlags(self.config, connections)

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

    options = FLAG_OPTIONS

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
            minutes = target.params.get("for_minutes")
            if minutes:
                summary += f" for {minutes} min; a reminder to set it back follows"
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
        assert isinstance(self.store, AppConfigFlags)
        if self.store.deployment_number is not None:
            return self.store.deployment_number
        return self.store.newest_deployment_number()

    def wait(self, target: RollbackTarget, *, deadline: float, log: LogLine = discard_log) -> None:
        """AppConfig: poll the deployment until COMPLETE or BAKING. Then read the flags back."""
        if isinstance(self.store, AppConfigFlags):
            store = self.store
            number = self._deployment_number()
            if number is not None:

                def delivered() -> tuple[bool, str]:
                    deployment = store.get_deployment(number)
                    state = deployment.get("State")
                    if state in FAILED_DEPLOYMENT_STATES:
                        raise BackendError(f"{store.where}: {describe_deployment(deployment)}")
                    return state in SETTLED_DEPLOYMENT_STATES, describe_deployment(deployment)

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
        if isinstance(self.store, AppConfigFlags):
            results.append(self._check_deployment())
        return results

    def _check_deployment(self) -> CheckResult:
        assert isinstance(self.store, AppConfigFlags)
        deployment = (self.store.last_live or self.store.live()).deployment
        described = describe_deployment(deployment)
        if deployment.get("State") in SETTLED_DEPLOYMENT_STATES:
            return CheckResult("AppConfig deployment", CheckStatus.PASSED, described)
        return CheckResult(
            "AppConfig deployment", CheckStatus.INCONCLUSIVE, f"{described}: still rolling out"
        )
