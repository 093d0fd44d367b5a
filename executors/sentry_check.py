"""A verification check on Sentry: at most `threshold` error events in a window of `window`
minutes after the rollback.

It speaks Sentry's web API version 0 (sentry.io or a self-hosted Sentry at `api_url`):

- `GET /api/0/organizations/{organization}/projects/` resolves the project slug to its id
  (paginated with Link headers marked `results="true|false"`); a project given by its id is
  looked for in the same listing, so a typo is reported as such;
- `GET /api/0/organizations/{organization}/events/` ("Query Discover Events in Table
  Format") with `field=count()`, `dataset=errors`, the project id, the environment, the
  search `query` and an absolute `start`/`end` (UTC) counts the error events.

The token comes from the environment variable `token_env` (it needs org:read and
event:read), goes only in the Authorization header and is masked out of every message.

The window. A window that began before the rollback finished would count the bad release's
errors, so the caller passes `since`, the instant the run's steps finished (the
verification round does; a watch round or release tracking passes nothing and the window
is simply the last `window` minutes). The counted window starts at the later of `since`
and `window` minutes ago and lasts `window` minutes. While it is still open the check asks
again, after as long as the window has run so far (at least a second, at most
REQUERY_SECONDS): the count only grows, so it fails as soon as it is above the threshold,
within seconds for a release still erring at full rate, and passes only once the whole
window is over. It waits at most `wait_seconds`
(keep that below VERIFY_TIMEOUT_SECONDS); a window still open then is inconclusive, and
resuming the run later counts a whole window after the rollback.

Outcomes: at most `threshold` events → passed; more → failed; Sentry not answering, 5xx or
429 after `retries` tries (waiting what Retry-After asks, up to MAX_RETRY_WAIT_SECONDS),
refused credentials, an unknown organization or project → inconclusive, with a message
naming Sentry and what to fix. The observed count and the threshold go into the result.
Like the other checks it returns a CheckResult and never raises for what it observes.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from executors.base import BackendError, CheckResult, CheckStatus, ConfigError
from executors.rest import NotFound, RestApi, RestError, link_next, token_from_env

SERVICE = "Sentry"
DEFAULT_API_URL = "https://sentry.io"
DEFAULT_TOKEN_ENV = "SENTRY_AUTH_TOKEN"
# How often an open window is counted again, and the first wait between retries (doubled
# after each); a Retry-After longer than MAX_RETRY_WAIT_SECONDS is not waited for.
REQUERY_SECONDS = 15.0
RETRY_BACKOFF_SECONDS = 1.0
MAX_RETRY_WAIT_SECONDS = 60.0
_MESSAGE = 300


class _CannotTell(Exception):
    """Sentry could not be asked, or did not say; the message says why."""


def _utc(moment: datetime) -> str:
    """Sentry's `start`/`end` form: ISO 8601 to the second, in UTC."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")


def _next_second(moment: datetime) -> datetime:
    whole = moment.replace(microsecond=0)
    return whole if whole == moment else whole + timedelta(seconds=1)


class _Sentry:
    """One check's conversation with Sentry: retries, project lookup, counting."""

    def __init__(self, api: RestApi, organization: str, retries: int, token_env: str) -> None:
        self.api = api
        self.organization = organization
        self.retries = retries
        self.token_env = token_env

    def ask(self, call: Callable[[], Any]) -> Any:
        """`call()`, tried again on retryable errors; every failure becomes _CannotTell."""
        for attempt in range(self.retries + 1):
            try:
                return call()
            except RestError as error:
                if error.status in (401, 403):
                    raise _CannotTell(
                        f"{error}; check the token in {self.token_env} "
                        "(it needs org:read and event:read)"
                    ) from None
                if not error.retryable or attempt == self.retries:
                    raise _CannotTell(str(error)) from None
                asked = getattr(error, "retry_after", None)
                wait = RETRY_BACKOFF_SECONDS * 2**attempt if asked is None else asked
                if wait > MAX_RETRY_WAIT_SECONDS:
                    raise _CannotTell(f"{error}; Sentry asks to wait {wait:.0f} s") from None
                time.sleep(wait)
            except NotFound:
                raise _CannotTell(
                    f"Sentry has no organization {self.organization!r} "
                    f"(or the token in {self.token_env} cannot see it)"
                ) from None
            except BackendError as error:  # ConfigError: an address checks may not ask
                raise _CannotTell(str(error)) from None
        raise AssertionError("unreachable")

    def project_id(self, project: str) -> str:
        """The id of `project` (a slug or an id) in the organization."""
        path = f"/api/0/organizations/{quote(self.organization, safe='')}/projects/"

        def listing() -> list[Any]:
            return list(
                self.api.pages(
                    path,
                    params={"per_page": 100},
                    items=lambda page: page if isinstance(page, list) else [],
                    next_page=link_next,
                    limit=50,
                    doing=f"list the projects of {self.organization}",
                )
            )

        for listed in self.ask(listing):
            if isinstance(listed, dict) and project in (listed.get("slug"), listed.get("id")):
                return str(listed["id"])
        raise _CannotTell(
            f"Sentry organization {self.organization!r} has no project {project!r} "
            f"(or the token in {self.token_env} cannot see it)"
        )

    def count(
        self,
        project_id: str,
        start: datetime,
        end: datetime,
        environment: str | None,
        query: str,
    ) -> int:
        """The number of error events of the project in [start, end)."""
        params = {
            "field": "count()",
            "dataset": "errors",
            "project": project_id,
            "query": query,
            "start": _utc(start),
            "end": _utc(end),
            **({"environment": environment} if environment else {}),
        }
        path = f"/api/0/organizations/{quote(self.organization, safe='')}/events/"
        answer = self.ask(lambda: self.api.get(path, params=params, doing="count error events"))
        try:
            value = answer["data"][0]["count()"]
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise TypeError(value)
        except (KeyError, IndexError, TypeError):
            raise _CannotTell(f"Sentry's answer holds no count: {str(answer)[:120]}") from None
        return int(value)


def sentry_errors(
    *,
    organization: str,
    project: str,
    window: int,
    threshold: int,
    query: str = "",
    environment: str | None = None,
    api_url: str = DEFAULT_API_URL,
    token_env: str = DEFAULT_TOKEN_ENV,
    timeout: float = 10.0,
    retries: int = 2,
    wait_seconds: float = 240.0,
    since: datetime | None = None,
    name: str | None = None,
) -> CheckResult:
    """Pass when the project had at most `threshold` error events in the `window` minutes
    after `since` (or the last `window` minutes); see the module docstring."""
    name = name or f"sentry {organization}/{project}"[:80]

    def now() -> datetime:
        return datetime.now(UTC)

    wanted = f"≤ {threshold} in {window} min"

    def result(status: CheckStatus, detail: str, observed: Any = None) -> CheckResult:
        return CheckResult(name, status, detail[:_MESSAGE], observed=observed, threshold=wanted)

    try:
        token = token_from_env(token_env, SERVICE)
    except ConfigError as error:
        return result(CheckStatus.INCONCLUSIVE, str(error))
    sentry = _Sentry(
        RestApi(SERVICE, api_url, token, timeout=timeout), organization, retries, token_env
    )
    length = timedelta(minutes=window)
    start = now() - length
    if since is not None and since.astimezone(UTC) > start:
        start = _next_second(since.astimezone(UTC))
    end = start + length
    give_up = time.monotonic() + wait_seconds
    where = f"{organization}/{project}" + (f" ({environment})" if environment else "")
    try:
        project_id = sentry.project_id(project)
        while True:
            asked_at = now()
            upto = min(end, asked_at)
            # Right after the rollback the window may not have begun (its start is rounded
            # up to the second): nothing in it yet, and Sentry refuses an end before a start.
            # Sentry is asked in whole seconds and refuses a start that is not before the end.
            begun = upto.replace(microsecond=0) > start.replace(microsecond=0)
            count = sentry.count(project_id, start, upto, environment, query) if begun else 0
            if count > threshold:
                return result(
                    CheckStatus.FAILED,
                    f"{count} error events in {where} since {_utc(start)} UTC, above {threshold}",
                    count,
                )
            if upto >= end:
                return result(
                    CheckStatus.PASSED,
                    f"{count} error events in {where} from {_utc(start)} to {_utc(end)} UTC",
                    count,
                )
            # Soon at first (a release still erring shows at once), then less often.
            running = max(0.0, (asked_at - start).total_seconds())
            left = min(REQUERY_SECONDS, max(1.0, running), (end - asked_at).total_seconds())
            if time.monotonic() + left > give_up:
                seconds = max(0, math.floor((upto - start).total_seconds()))
                return result(
                    CheckStatus.INCONCLUSIVE,
                    f"{count} error events in {where} in the first {seconds} s since "
                    f"{_utc(start)} UTC; the {window}-minute window ends at {_utc(end)} UTC: "
                    "resume the run after that to count it whole",
                    count,
                )
            time.sleep(max(0.0, left))
    except _CannotTell as error:
        return result(CheckStatus.INCONCLUSIVE, str(error))


def sentry_errors_of_spec(
    spec: Mapping[str, Any], *, since: datetime | None, timeout: float, name: str
) -> CheckResult:
    """Run a validated `sentry_errors` check spec (executors.check_specs); `timeout` is the
    request timeout when the spec gives none."""
    return sentry_errors(
        organization=spec["organization"],
        project=spec["project"],
        window=int(spec["window"]),
        threshold=int(spec["threshold"]),
        query=spec.get("query", ""),
        environment=spec.get("environment"),
        api_url=spec.get("api_url", DEFAULT_API_URL),
        token_env=spec.get("token_env", DEFAULT_TOKEN_ENV),
        timeout=float(spec.get("timeout", timeout)),
        retries=int(spec.get("retries", 2)),
        wait_seconds=float(spec.get("wait_seconds", 240)),
        since=since,
        name=name,
    )
