"""Switch a Doppler secret (a database URL, say) back to an earlier value, keeping the value
it replaces in Doppler for the way back. Doppler's API v3 over HTTPS, with a service token or
a personal token in `Authorization: Bearer`.

Target config: `project` and `config` (Doppler's names: lower-case letters, digits, dashes
and underscores), `secret` (upper-case letters, digits and underscores, at most 100), and
`token_env`, the environment variable holding the token; `api_url` defaults to
https://api.doppler.com.

How a release names a value without the console ever holding it. The console keeps only a
digest: "sha256:" and the first 16 hex digits of the SHA-256 of the value's text.
`live_version` is the live value's digest, so a release whose artifact is a digest is
recognised as live after a switch however the value got there. The value itself is looked
for in Doppler only, in this order: the live value, the value kept by the last switch
(below), then the secret's changes in the config's log (each log entry's diff carries the
value added and the value removed), newest first. A release's artifact, or the step's `log`
option, may instead be a config log id: the value that log entry gave the secret.
"previous" is the value the secret had before its latest change (the newest log entry
changing it), chosen once per step (see the switch record).

Apply sets, in one POST /v3/configs/config/secrets (one log entry, all or nothing):
- the secret to the chosen value;
- `<SECRET>_BACKOUT_PREVIOUS` to the value it replaced: the way back, readable in Doppler
  (undo the switch by switching back to its digest, or with Doppler's "rollback changes" on
  the switch's log entry, whose id the step's facts record);
- `<SECRET>_BACKOUT_SWITCH`, the switch record "<stamp> <digest set> <digest replaced>": no
  values. A step is stamped when drafted (`doppler_stamp`, set by the server only); a retry
  of a "previous" step finds its stamp there and keeps the value it chose, where it would
  otherwise step back from the value it has just set.

Apply is idempotent: when the live value already has the target's digest it writes nothing
and reports `changed=False`. Doppler is synchronous; `wait` reads the secret back until its
digest is the target's. The checks: the live digest is the target's, and the replaced value
is kept (the kept value's digest is the one the switch record names).

Values never leave this module: plans, results, progress lines, checks and errors name
digests and log ids only; an error from the call carrying values has them masked in every
form the answer may repeat them in (executors.rest, executors.value_masks), and neither a
cause nor a context. A digest of a
low-entropy value (a short word) can be guessed; digests are meant for values like
connection URLs with passwords. Errors: 429, 5xx and timeouts are retryable (with
Retry-After), 401/403 a permanent failure naming Doppler (executors.rest); a project, config,
secret or log that does not exist is refused at draft time as an option error naming it.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import re
import secrets
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
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
    LiveChange,
    LogLine,
    RollbackPlan,
    RollbackTarget,
    discard_log,
    poll_until,
)
from executors.options import Option, OptionError
from executors.rest import API_URL_SCHEMA, TOKEN_ENV_SCHEMA, NotFound, RestApi

DEFAULT_API_URL = "https://api.doppler.com"
SERVICE = "Doppler"
PREVIOUS_SUFFIX = "_BACKOUT_PREVIOUS"
SWITCH_SUFFIX = "_BACKOUT_SWITCH"
# The step parameter set when a step is drafted (a value given is replaced), and its form.
DOPPLER_STAMP = "doppler_stamp"
_STAMP = re.compile(r"[0-9a-f]{16}")
DIGEST_CHARS = 16
_DIGEST = re.compile(r"sha256:([0-9a-f]{12,64})")
LOG_ID_PATTERN = r"[A-Za-z0-9_-]{1,64}"
# How many pages of the config's log (of LOG_PAGE_SIZE entries) a search reads at most.
LOG_PAGE_SIZE = 20
LOG_PAGES = 25
NAME_SCHEMA = {"type": "string", "pattern": r"^[a-z0-9][a-z0-9_-]*$", "maxLength": 80}

LOG = Option(
    "log",
    "Config log entry",
    max_length=64,
    pattern=LOG_ID_PATTERN,
    help="The id of a config log entry that changed the secret: go back to the value it set. "
    "Empty: the chosen release's value, or the value before the live one.",
)


def _sha256(value: str) -> str:
    # surrogatepass: a value read from JSON may hold a lone surrogate, and an encoding error
    # would carry the whole value in its message.
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()


def digest_of(value: str) -> str:
    """What the console records of a value: "sha256:" and the first 16 hex digits."""
    return "sha256:" + _sha256(value)[:DIGEST_CHARS]


def same_digest(recorded: str, value: str) -> bool:
    """Whether `recorded` (a digest, 12 to 64 hex digits) is the digest of `value`."""
    found = _DIGEST.fullmatch(recorded)
    if found is None:
        return False
    return _sha256(value).startswith(found.group(1))


@dataclass(frozen=True)
class Value:
    """A value of the secret and its digest; the value is never shown, logged or raised."""

    text: str = field(repr=False)

    @property
    def digest(self) -> str:
        return digest_of(self.text)


@dataclass(frozen=True)
class SwitchRecord:
    """What `<SECRET>_BACKOUT_SWITCH` holds: the stamp of the step that switched, the digest
    it set and the digest it replaced."""

    stamp: str
    set: str
    replaced: str

    def text(self) -> str:
        return f"{self.stamp} {self.set} {self.replaced}"

    @classmethod
    def parse(cls, text: str | None) -> SwitchRecord | None:
        parts = (text or "").split()
        return cls(*parts) if len(parts) == 3 else None


def _mapping(value: Any, what: str) -> Mapping[str, Any]:
    """`value`, an object of Doppler's answer; a permanent error naming what when it is not."""
    if not isinstance(value, Mapping):
        raise BackendError(f"{SERVICE} answered a {what} that is not an object", retryable=False)
    return value


def _list(value: Any, what: str) -> list[Any]:
    """`value`, a list in Doppler's answer (missing: empty); a permanent error when not."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise BackendError(f"{SERVICE} answered {what} that are not a list", retryable=False)
    return value


class DopplerBackend(Backend):
    """One Doppler secret: make an earlier value live, keeping the replaced one."""

    kind = "doppler"
    label = "Doppler secret"
    config_schema = {
        "type": "object",
        "properties": {
            "project": NAME_SCHEMA,
            "config": NAME_SCHEMA,
            "secret": {"type": "string", "pattern": r"^[A-Z_][A-Z0-9_]*$", "maxLength": 100},
            "api_url": API_URL_SCHEMA,
            "token_env": TOKEN_ENV_SCHEMA,
        },
        "required": ["project", "config", "secret", "token_env"],
        "additionalProperties": False,
    }
    options = (LOG,)

    def __init__(
        self,
        config: Mapping[str, Any],
        connections: Connections,
        *,
        poll_interval: float = 0.5,
        timeout: float = 10.0,
    ) -> None:
        super().__init__(config, connections)
        self.project = str(self.config["project"])
        self.config_name = str(self.config["config"])
        self.name = str(self.config["secret"])
        self.poll_interval = poll_interval
        self.timeout = timeout
        self._api: RestApi | None = None

    @property
    def api(self) -> RestApi:
        """The Doppler API client, its token read from `token_env` on first use."""
        if self._api is None:
            self._api = RestApi.from_config(
                SERVICE, self.config, DEFAULT_API_URL, timeout=self.timeout
            )
        return self._api

    @property
    def where(self) -> str:
        return f"{self.name} in {self.project}/{self.config_name}"

    @property
    def _scope(self) -> dict[str, str]:
        return {"project": self.project, "config": self.config_name}

    # -- reading ---------------------------------------------------------------------------

    def _read(self, name: str) -> Value | None:
        """The raw value of secret `name` of the config, None when it does not exist."""
        try:
            answer = self.api.get(
                "/v3/configs/config/secret",
                params={**self._scope, "name": name},
                doing=f"read {name} in {self.project}/{self.config_name}",
            )
        except NotFound:
            return None
        raw = _mapping(_mapping(answer, "secret").get("value") or {}, "secret value").get("raw")
        if raw is None:  # a restricted secret: Doppler does not reveal its value
            raise ConfigError(f"Doppler does not reveal the value of {name} to this token")
        return Value(str(raw))

    def _live(self) -> Value:
        value = self._read(self.name)
        if value is None:
            raise ConfigError(f"secret {self.where} not found")
        return value

    def _logs(self) -> Iterator[Mapping[str, Any]]:
        """The config's log entries, newest first: the newest LOG_PAGES pages of them."""
        for page in range(1, LOG_PAGES + 1):
            answer = self.api.get(
                "/v3/configs/config/logs",
                params={**self._scope, "page": page, "per_page": LOG_PAGE_SIZE},
                doing=f"read the log of {self.project}/{self.config_name}",
            )
            entries = _list(_mapping(answer, "config log page").get("logs"), "config logs")
            yield from entries
            if len(entries) < LOG_PAGE_SIZE:
                return

    def _change(self, log: Mapping[str, Any]) -> Mapping[str, Any] | None:
        """The diff entry of `log` that changed the secret, or None."""
        diff = _list(_mapping(log, "config log entry").get("diff"), "config log diff")
        return next((d for d in diff if _mapping(d, "diff").get("name") == self.name), None)

    def _log(self, log_id: str) -> Mapping[str, Any]:
        try:
            answer = self.api.get(
                "/v3/configs/config/logs/log",
                params={**self._scope, "log": log_id},
                doing=f"read config log {log_id}",
            )
        except NotFound:
            raise ConfigError(
                f"config log {log_id} not found in {self.project}/{self.config_name}"
            ) from None
        return _mapping(_mapping(answer, "config log").get("log") or {}, "config log entry")

    def _set_by(self, log_id: str) -> Value:
        """The value config log entry `log_id` gave the secret."""
        change = self._change(self._log(log_id))
        if change is None or change.get("added") is None:
            raise ConfigError(f"config log {log_id} did not set {self.name}")
        return Value(str(change["added"]))

    def _find(self, digest: str) -> Value:
        """The value whose digest is `digest`, looked for in Doppler (see the module)."""
        if not _DIGEST.fullmatch(digest):
            raise ConfigError(f"{digest[:80]!r} is neither a sha256: digest nor a log id")
        for value in (self._read(self.name), self._read(self.name + PREVIOUS_SUFFIX)):
            if value is not None and same_digest(digest, value.text):
                return value
        for log in self._logs():
            change = self._change(log) or {}
            for key in ("added", "removed"):
                text = change.get(key)
                if text is not None and same_digest(digest, str(text)):
                    return Value(str(text))
        raise ConfigError(
            f"no value of {self.where} with digest {digest} is left in Doppler (looked in "
            f"the newest {LOG_PAGES * LOG_PAGE_SIZE} log entries)"
        )

    def _record(self) -> SwitchRecord | None:
        kept = self._read(self.name + SWITCH_SUFFIX)
        return SwitchRecord.parse(kept.text if kept else None)

    def _before_live(self) -> Value:
        """The value the secret had before its latest change."""
        for log in self._logs():
            change = self._change(log)
            if change is None:
                continue
            if change.get("removed") is None:
                raise ConfigError(f"{self.where} had no value before log entry {log.get('id')}")
            return Value(str(change["removed"]))
        raise ConfigError(f"the config log records no change of {self.where}")

    # -- options, versions, backups --------------------------------------------------------

    def validate_params(self, params: Mapping[str, Any], *, live: bool = False) -> dict[str, Any]:
        """As the base class, and stamped (`doppler_stamp`, set here only); with `live`, a
        project, config or secret that does not exist is refused naming `project`, `config`
        or `secret`, and a `log` that does not exist or did not set the secret naming `log`."""
        if isinstance(params, Mapping):
            params = {name: value for name, value in params.items() if name != DOPPLER_STAMP}
        cleaned = super().validate_params(params, live=live)
        if live:
            if self._read(self.name) is None:
                self._refuse_missing()
            if cleaned.get("log"):
                try:
                    self._set_by(str(cleaned["log"]))
                except ConfigError as error:
                    raise OptionError("log", str(error)) from None
        cleaned[DOPPLER_STAMP] = secrets.token_hex(8)
        return cleaned

    def _refuse_missing(self) -> None:
        """Name what is missing: the project, the config, or the secret."""
        probes = (
            ("project", "/v3/projects/project", {"project": self.project}),
            ("config", "/v3/configs/config", self._scope),
        )
        for option, path, query in probes:
            try:
                self.api.get(path, params=query, doing=f"read {option}")
            except NotFound:
                name = self.project if option == "project" else self.config_name
                raise OptionError(option, f"{option} {name} not found in Doppler") from None
        raise OptionError("secret", f"secret {self.where} not found")

    def live_version(self) -> str | None:
        """The live value's digest; never the value."""
        return self._live().digest

    def live_change(self) -> LiveChange | None:
        """Who made the secret's latest change and when, from the config's log."""
        for entry in self._logs():
            if self._change(entry) is None:
                continue
            user = _mapping(entry.get("user") or {}, "config log user")
            by = str(user.get("name") or user.get("email") or "someone")
            at = None
            with contextlib.suppress(ValueError):
                at = datetime.datetime.fromisoformat(str(entry.get("created_at")))
            return LiveChange(by, at, f"config log {entry.get('id')}")
        return None

    def capture_backup(self) -> dict[str, Any]:
        """The digest of the value live before a release: what a switch goes back to."""
        return {"digest": self._live().digest}

    def describe_backup(self, key: str, content: Any) -> str:
        return f"value {content}" if key == "digest" else ""

    # -- what a switch does ----------------------------------------------------------------

    def _stamp(self, target: RollbackTarget) -> str:
        stamp = target.params.get(DOPPLER_STAMP)
        return stamp if isinstance(stamp, str) and _STAMP.fullmatch(stamp) else ""

    def _source(self, target: RollbackTarget) -> Value:
        """The value the secret is to have."""
        chosen = target.params.get("log") or target.artifact
        if chosen:
            chosen = str(chosen)
            if chosen.startswith("sha256:"):
                return self._find(chosen)
            if not re.fullmatch(LOG_ID_PATTERN, chosen):
                raise ConfigError(f"{chosen[:80]!r} is neither a sha256: digest nor a log id")
            return self._set_by(chosen)
        if not target.previous:
            raise ConfigError(
                "a switch needs the log option, a release whose artifact is a digest or a "
                "log id, or the previous value"
            )
        stamp = self._stamp(target)
        if not stamp:
            raise ConfigError(
                "a switch to the previous value needs the doppler_stamp set when it is "
                "drafted (draft it again)"
            )
        record = self._record()
        if record is not None and record.stamp == stamp:
            return self._find(record.set)  # this step chose it, in an earlier attempt
        return self._before_live()

    def plan(self, target: RollbackTarget) -> RollbackPlan:
        """Which value becomes live, by digest; no writes, no values."""
        live, source = self._live(), self._source(target)
        changes: tuple[Change, ...] = ()
        if live.digest == source.digest:
            summary = f"{self.where} already has the value {source.digest}"
        else:
            resource = f"doppler/{self.project}/{self.config_name}/{self.name}"
            changes = (Change(resource, "value", live.digest, source.digest),)
            summary = (
                f"set {self.where} from {live.digest} to {source.digest}; the replaced "
                f"value is kept in {self.name}{PREVIOUS_SUFFIX}"
            )
        return RollbackPlan(
            backend=self.kind,
            summary=summary,
            current_version=live.digest,
            target_version=source.digest,
            changes=changes,
        )

    def apply(self, target: RollbackTarget, *, log: LogLine = discard_log) -> ApplyResult:
        """Set the secret to the target value, keeping the replaced one; a no-op when the
        live value already is the target's."""
        live, source = self._live(), self._source(target)
        facts: dict[str, Any] = {"from_digest": live.digest, "to_digest": source.digest}
        if live.digest == source.digest:
            return ApplyResult(False, f"{self.where} already has the value {source.digest}", facts)
        record = SwitchRecord(self._stamp(target) or "-", source.digest, live.digest)
        log(f"{self.where}: setting the value {source.digest} in place of {live.digest}")
        self._write(
            {
                self.name: source.text,
                self.name + PREVIOUS_SUFFIX: live.text,
                self.name + SWITCH_SUFFIX: record.text(),
            }
        )
        switch_log = self._switch_log(source.digest)
        if switch_log:
            facts["log"] = switch_log
        detail = (
            f"{self.where} has the value {source.digest}; {live.digest} kept in "
            f"{self.name}{PREVIOUS_SUFFIX} for the way back"
        )
        return ApplyResult(True, detail, facts)

    def _write(self, values: Mapping[str, str]) -> None:
        """POST the secrets; an error has every value masked (executors.rest)."""
        self.api.send(
            "POST",
            "/v3/configs/config/secrets",
            {**self._scope, "secrets": dict(values)},
            doing=f"update {self.project}/{self.config_name}",
            hidden=values.values(),
        )

    def _switch_log(self, digest: str) -> str:
        """The id of the newest log entry that set the secret to `digest` ("" if unknown)."""
        for entry in self._logs():
            change = self._change(entry)
            if change is not None:
                added = change.get("added")
                found = added is not None and same_digest(digest, str(added))
                return str(entry.get("id") or "") if found else ""
        return ""

    def wait(self, target: RollbackTarget, *, deadline: float, log: LogLine = discard_log) -> None:
        """Read the secret back until its digest is the target's."""
        wanted = self._source(target).digest

        def settled() -> tuple[bool, str]:
            live = self._live().digest
            state = "has" if live == wanted else f"has {live}, not yet"
            return live == wanted, f"{self.where} {state} {wanted}"

        poll_until(
            settled, deadline=deadline, log=log, interval=self.poll_interval, what=self.where
        )

    def checks(self, target: RollbackTarget) -> list[CheckResult]:
        """The live value is the target's; the value a switch replaced is kept."""
        live, wanted = self._live().digest, self._source(target).digest
        results = [
            CheckResult(
                "live value is the target's",
                CheckStatus.PASSED if live == wanted else CheckStatus.FAILED,
                f"{self.where} has {live}; target {wanted}",
                observed=live,
                threshold=wanted,
            )
        ]
        record, kept = self._record(), self._read(self.name + PREVIOUS_SUFFIX)
        kept_name = self.name + PREVIOUS_SUFFIX
        if record is None or record.set != live:
            status, detail = CheckStatus.INCONCLUSIVE, f"no switch to {live} recorded"
        elif kept is not None and kept.digest == record.replaced:
            status, detail = CheckStatus.PASSED, f"{kept_name} keeps {record.replaced}"
        else:
            found = kept.digest if kept is not None else "nothing"
            status = CheckStatus.FAILED
            detail = f"{kept_name} holds {found}, not the replaced {record.replaced}"
        results.append(CheckResult("replaced value kept", status, detail))
        return results
