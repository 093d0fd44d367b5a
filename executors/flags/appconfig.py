"""Flags in an AWS AppConfig feature-flag profile (`store: "appconfig"`).

The profile is hosted configuration in the `AWS.AppConfig.FeatureFlags` format
(`{"flags": {...}, "values": {"<flag>": {"enabled": true}}}`). `application`,
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
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from executors.aws import AwsError, aws_call, aws_client
from executors.base import BackendError, ConfigError, Connections, LogLine
from executors.flags.stores import OFF, ON, FlagFlip

# Deployment states in which the deployed version is (or is becoming) what clients get.
_LIVE_DEPLOYMENT_STATES = ("COMPLETE", "BAKING", "DEPLOYING", "VALIDATING")
SETTLED_DEPLOYMENT_STATES = ("COMPLETE", "BAKING")
FAILED_DEPLOYMENT_STATES = ("ROLLING_BACK", "ROLLED_BACK", "REVERTED")


@dataclass(frozen=True)
class LiveConfiguration:
    """The newest live deployment of the profile, the newest deployment number of the
    environment (any profile), and the deployed content."""

    deployment: Mapping[str, Any]
    latest_deployment_number: int
    content: dict[str, Any]


class AppConfigFlags:
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
        self.last_live: LiveConfiguration | None = None

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

    def live(self) -> LiveConfiguration:
        latest: int | None = None
        for deployment in self.deployments():
            if latest is None:
                latest = int(deployment["DeploymentNumber"])
            if (
                deployment.get("ConfigurationProfileId") == self.profile
                and deployment.get("State") in _LIVE_DEPLOYMENT_STATES
            ):
                assert latest is not None
                self.last_live = LiveConfiguration(deployment, latest, self._content(deployment))
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


def describe_deployment(deployment: Mapping[str, Any]) -> str:
    """An AppConfig deployment in a few words: number, state and how far it has got."""
    return (
        f"deployment {deployment['DeploymentNumber']} {deployment.get('State')} "
        f"({deployment.get('PercentageComplete', 0):g} %)"
    )
