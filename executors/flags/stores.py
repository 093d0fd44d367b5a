"""What a flag's state is, and the two stores that keep one key per flag: Redis and SSM.

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
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, cast

import redis

from executors.aws import aws_call, aws_client
from executors.base import BackendError, ConfigError, Connections, LogLine

ON = "on"
OFF = "off"
# Shown instead of a value that is neither on nor off: it may be anything, even a secret.
UNRECOGNISED = "unrecognised"
DEFAULT_KEY_PREFIX = "flags:"


@dataclass(frozen=True)
class FlagFlip:
    """One flag that must change: `before` is None when the store has no such flag yet."""

    flag: str
    before: str | None
    after: str


def flag_state(value: str | None) -> str | None:
    """`on`, `off`, None for an absent flag, or UNRECOGNISED for any other value."""
    return value if value in (ON, OFF, None) else UNRECOGNISED


class RedisFlags:
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
            return {flag: flag_state(value) for flag, value in zip(flags, values, strict=True)}

    def write(self, flips: list[FlagFlip], log: LogLine) -> dict[str, Any]:
        with self._errors(f"write {self.where}"):
            self.client.mset({self.prefix + flip.flag: flip.after for flip in flips})
        return {}


class SsmFlags:
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
        states = {name[len(self.prefix) :]: flag_state(values.get(name)) for name in names}
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
