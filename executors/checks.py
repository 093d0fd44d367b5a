"""Verification checks run after a rollback: HTTP health, a smoke command, a Prometheus query.

Each check returns a CheckResult and never raises for what it observes: a broken endpoint
is a failed check, not an exception. Invalid arguments (an unknown comparison) raise
ConfigError.

- `http_health` GETs a URL until it answers with the expected status (and, if asked, a JSON
  field with the expected value), retrying with exponential backoff (`backoff`, then twice
  that, ...). Not answering at all is a failure: the service is what is down.
- `smoke_command` runs an argv (no shell) and passes on exit status 0; a timeout kills its
  process group and fails.
- `prometheus_threshold` runs an instant query through the Prometheus HTTP API
  (`/api/v1/query`) and compares every returned sample with the threshold. Only a definite
  answer passes: no series, NaN samples, a query error or an unreachable server make the
  check inconclusive, never a pass. A single breaching series fails it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

import requests

from executors.base import BackendError, CheckResult, CheckStatus, ConfigError
from executors.command import outcome_check, run_command

COMPARISONS = ("below", "above")
_BODY_PREVIEW = 200


def _field(document: Any, path: str) -> tuple[bool, Any]:
    """(found, value) of a dotted path such as `build.version` or `checks.0.status`."""
    value = document
    for part in path.split("."):
        if isinstance(value, Mapping) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return False, None
    return True, value


def _probe(
    url: str,
    *,
    expect_status: int,
    json_field: str | None,
    expect_value: Any,
    timeout: float,
    headers: Mapping[str, str] | None,
) -> tuple[bool, str]:
    """One GET: (healthy, what was seen)."""
    try:
        response = requests.get(url, timeout=timeout, headers=dict(headers or {}))
    except requests.Timeout:
        return False, f"no answer within {timeout:g} s"
    except requests.RequestException as error:
        return False, f"request failed: {type(error).__name__}: {error}"
    status = f"{response.status_code} {response.reason}".strip()
    if response.status_code != expect_status:
        body = response.text[:_BODY_PREVIEW].strip()
        return False, f"{status} (want {expect_status})" + (f": {body}" if body else "")
    if json_field is None:
        return True, status
    try:
        document = response.json()
    except ValueError:
        return False, f"{status} but the body is not JSON"
    found, value = _field(document, json_field)
    if not found:
        return False, f"{status} but the JSON has no field {json_field}"
    if expect_value is not None and value != expect_value:
        return False, f"{status} but {json_field}={value!r} (want {expect_value!r})"
    return True, f"{status}, {json_field}={value!r}"


def http_health(
    url: str,
    *,
    expect_status: int = 200,
    json_field: str | None = None,
    expect_value: Any = None,
    retries: int = 3,
    backoff: float = 1.0,
    timeout: float = 5.0,
    headers: Mapping[str, str] | None = None,
    name: str | None = None,
) -> CheckResult:
    """GET `url` until it is healthy, at most `retries` more times after the first attempt.

    Healthy means status `expect_status` and, when `json_field` (a dotted path) is given,
    that field present in the JSON body and equal to `expect_value` (any value when
    `expect_value` is None). Attempt n+1 waits `backoff * 2**(n-1)` seconds after attempt n.
    """
    name = name or f"health {url}"
    attempts = retries + 1
    seen = ""
    for attempt in range(1, attempts + 1):
        healthy, seen = _probe(
            url,
            expect_status=expect_status,
            json_field=json_field,
            expect_value=expect_value,
            timeout=timeout,
            headers=headers,
        )
        if healthy:
            return CheckResult(
                name, CheckStatus.PASSED, f"{seen} (attempt {attempt} of {attempts})"
            )
        if attempt < attempts:
            time.sleep(backoff * 2 ** (attempt - 1))
    return CheckResult(name, CheckStatus.FAILED, f"gave up after {attempts} attempts: {seen}")


def smoke_command(
    argv: Sequence[str],
    *,
    timeout: float = 60.0,
    cwd: str | None = None,
    env: Mapping[str, str] | None = None,
    name: str | None = None,
) -> CheckResult:
    """Run `argv` (no shell); pass on exit status 0, fail otherwise or after `timeout` s."""
    name = name or f"smoke {argv[0]}"
    try:
        outcome = run_command(argv, timeout=timeout, cwd=cwd, env=env)
    except BackendError as error:  # a program that cannot start is a failed smoke test
        return CheckResult(name, CheckStatus.FAILED, str(error))
    return outcome_check(name, outcome)


def _samples(data: Mapping[str, Any]) -> list[tuple[str, float]]:
    """(series, value) of an instant query's data; ValueError for other result types."""
    result_type = data.get("resultType")
    result = data.get("result")
    if result_type == "scalar":
        return [("scalar", float(result[1]))]  # type: ignore[index]
    if result_type == "vector":
        samples = []
        for series in result or []:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(series.get("metric", {}).items()))
            samples.append((f"{{{labels}}}", float(series["value"][1])))
        return samples
    raise ValueError(f"a {result_type} result, not an instant vector or scalar")


def prometheus_threshold(
    base_url: str,
    query: str,
    threshold: float,
    *,
    comparison: str = "below",
    timeout: float = 5.0,
    headers: Mapping[str, str] | None = None,
    name: str | None = None,
) -> CheckResult:
    """Pass when every sample of the instant `query` is strictly below (or above) `threshold`.

    Any sample on the wrong side fails the check. No data, NaN, a query error or an
    unreachable Prometheus is INCONCLUSIVE, never a pass.
    """
    if comparison not in COMPARISONS:
        raise ConfigError(f"comparison must be 'below' or 'above', not {comparison!r}")
    name = name or f"prometheus {query} {comparison} {threshold:g}"
    url = base_url.rstrip("/") + "/api/v1/query"
    try:
        response = requests.get(
            url, params={"query": query}, timeout=timeout, headers=dict(headers or {})
        )
        answer = response.json()
    except requests.RequestException as error:
        reason = f"{type(error).__name__}: {error}"[:_BODY_PREVIEW]
        return CheckResult(name, CheckStatus.INCONCLUSIVE, f"Prometheus did not answer: {reason}")
    except ValueError:
        return CheckResult(
            name,
            CheckStatus.INCONCLUSIVE,
            f"Prometheus answered {response.status_code} without JSON",
        )
    if not isinstance(answer, Mapping) or answer.get("status") != "success":
        details = answer if isinstance(answer, Mapping) else {}
        kind = " ".join(filter(None, (str(response.status_code), details.get("errorType"))))
        reason = details.get("error") or "no detail"
        return CheckResult(name, CheckStatus.INCONCLUSIVE, f"query failed ({kind}): {reason}")
    try:
        samples = _samples(answer.get("data") or {})
    except (ValueError, TypeError, KeyError, IndexError) as error:
        return CheckResult(name, CheckStatus.INCONCLUSIVE, f"unreadable result: {error}")
    if not samples:
        return CheckResult(name, CheckStatus.INCONCLUSIVE, "no data: the query returned nothing")

    def on_the_right_side(value: float) -> bool:
        return value < threshold if comparison == "below" else value > threshold

    breaching = [(s, v) for s, v in samples if not math.isnan(v) and not on_the_right_side(v)]
    if breaching:
        listed = ", ".join(f"{series}={value:g}" for series, value in breaching)
        return CheckResult(name, CheckStatus.FAILED, f"not {comparison} {threshold:g}: {listed}")
    if any(math.isnan(value) for _, value in samples):
        return CheckResult(name, CheckStatus.INCONCLUSIVE, "NaN in the result: no usable data")
    listed = ", ".join(f"{series}={value:g}" for series, value in samples)
    return CheckResult(name, CheckStatus.PASSED, f"{comparison} {threshold:g}: {listed}")
