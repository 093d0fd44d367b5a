"""Verification checks run after a rollback: HTTP health, a smoke command, a Prometheus query.

Each check returns a CheckResult and never raises for what it observes: a broken endpoint
is a failed check, not an exception. Invalid arguments (an unknown comparison) raise
ConfigError.

- `http_health` GETs a URL until it answers with the expected status (and, if asked, a JSON
  field with the expected value), retrying with exponential backoff (`backoff`, then twice
  that, ...). Not answering at all is a failure: the service is what is down. It follows a
  redirect only to the same scheme, host and port (at most 5), never asks a cloud metadata
  or link-local address however it is spelled or resolved (executors.addresses,
  executors.http_guard), and keeps at most a short excerpt of a body, with URL passwords
  masked.
- `smoke_command` runs an argv (no shell) and passes on exit status 0; a timeout kills its
  process group and fails.
- `prometheus_threshold` runs an instant query through the Prometheus HTTP API
  (`/api/v1/query`) and compares every returned sample with the threshold. Only a definite
  answer passes: no series, NaN samples, a query error or an unreachable server make the
  check inconclusive, never a pass. A single breaching series fails it.
- `kubernetes_pods` lists the pods a label selector picks through the official client and
  fails on a crash loop (a container waiting in CrashLoopBackOff, or restarted more than
  `max_restarts` times) or too few Ready pods; no pods, or an API that does not answer, is
  inconclusive.
- `registered_command` runs a command an administrator registered (executors.command) with
  schema-checked arguments, as a smoke test.
- `cloudwatch_alarm` (executors.cloudwatch_check): the alarms named are OK.
- `sentry_errors` (executors.sentry_check): few enough Sentry error events after `since`.

A service lists the checks to run after its rollback in its target config under `checks`
(validated by `executors.check_specs.validate_checks`); `run_check` runs one such spec.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urljoin, urlsplit

import jsonschema
import requests

from executors.addresses import blocked_address
from executors.base import (
    BackendError,
    CheckResult,
    CheckStatus,
    ConfigError,
    Connections,
)
from executors.check_specs import COMPARISONS, check_name
from executors.command import (
    check_registration,
    command_environment,
    mask,
    outcome_check,
    render_argv,
    run_command,
)
from executors.http_guard import BlockedAddress, guarded_session

_BODY_PREVIEW = 160
_VALUE_PREVIEW = 80
_MAX_REDIRECTS = 5
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


def _excerpt(text: str, limit: int = _BODY_PREVIEW) -> str:
    """A short, single-line, password-free excerpt of what a server said."""
    flat = mask(_CONTROL.sub(" ", text), ()).strip()
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _same_origin(first: str, second: str) -> bool:
    a, b = urlsplit(first), urlsplit(second)
    return (a.scheme, a.hostname, a.port) == (b.scheme, b.hostname, b.port)


def _get(url: str, *, timeout: float, headers: Mapping[str, str]) -> requests.Response:
    """GET, following redirects only within the URL's own scheme, host and port."""
    current = url
    for _ in range(_MAX_REDIRECTS + 1):
        with guarded_session() as session:
            response = session.get(
                current, timeout=timeout, headers=dict(headers), allow_redirects=False
            )
        location = response.headers.get("Location")
        if not response.is_redirect or not location:
            return response
        target = urljoin(current, location)
        if not _same_origin(url, target):
            raise _Redirected(f"redirected to another host ({_excerpt(target, 100)}); not followed")
        current = target
    raise _Redirected(f"more than {_MAX_REDIRECTS} redirects")


class _Redirected(Exception):
    """A redirect the check does not follow."""


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
) -> tuple[bool, str, str]:
    """One GET: (healthy, what was seen, the observed status and field in short)."""
    try:
        response = _get(url, timeout=timeout, headers=headers or {})
    except requests.Timeout:
        return False, f"no answer within {timeout:g} s", "no answer"
    except _Redirected as error:
        return False, str(error), "redirect"
    except BlockedAddress as error:
        return False, str(error), "blocked"
    except requests.RequestException as error:
        return False, f"request failed: {type(error).__name__}: {_excerpt(str(error))}", "no answer"
    status = f"{response.status_code} {_excerpt(response.reason or '', 60)}".strip()
    code = str(response.status_code)
    if response.status_code != expect_status:
        body = _excerpt(response.text[: _BODY_PREVIEW * 4])
        return False, f"{status} (want {expect_status})" + (f": {body}" if body else ""), code
    if json_field is None:
        return True, status, code
    try:
        document = response.json()
    except ValueError:
        return False, f"{status} but the body is not JSON", f"{code}, not JSON"
    found, value = _field(document, json_field)
    if not found:
        return False, f"{status} but the JSON has no field {json_field}", f"{code}, no {json_field}"
    shown = _excerpt(repr(value), _VALUE_PREVIEW)
    observed = f"{code}, {json_field}={_excerpt(str(value), _VALUE_PREVIEW)}"
    if expect_value is not None and value != expect_value:
        return False, f"{status} but {json_field}={shown} (want {expect_value!r})", observed
    return True, f"{status}, {json_field}={shown}", observed


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
    blocked = blocked_address(url)
    if blocked:
        return CheckResult(name, CheckStatus.INCONCLUSIVE, blocked, observed="blocked")
    attempts = retries + 1
    wanted = str(expect_status)
    if json_field is not None:
        wanted += f", {json_field}=" + ("any" if expect_value is None else str(expect_value))
    seen = observed = ""
    for attempt in range(1, attempts + 1):
        healthy, seen, observed = _probe(
            url,
            expect_status=expect_status,
            json_field=json_field,
            expect_value=expect_value,
            timeout=timeout,
            headers=headers,
        )
        if healthy:
            return CheckResult(
                name,
                CheckStatus.PASSED,
                f"{seen} (attempt {attempt} of {attempts})",
                observed=observed,
                threshold=wanted,
            )
        if attempt < attempts:
            time.sleep(backoff * 2 ** (attempt - 1))
    return CheckResult(
        name,
        CheckStatus.FAILED,
        f"gave up after {attempts} attempts: {seen}",
        observed=observed,
        threshold=wanted,
    )


def smoke_command(
    argv: Sequence[str],
    *,
    timeout: float = 60.0,
    cwd: str | None = None,
    env: Mapping[str, str] | None = None,
    name: str | None = None,
    secrets: Sequence[str] = (),
) -> CheckResult:
    """Run `argv` (no shell); pass on exit status 0, fail otherwise or after `timeout` s.
    The result observes the exit status ("timed out", "did not start") against "exit 0";
    `secrets` (and URL passwords) are masked in what it says."""
    name = name or f"smoke {argv[0]}"
    try:
        outcome = run_command(argv, timeout=timeout, cwd=cwd, env=env, secrets=secrets)
    except BackendError as error:  # a program that cannot start is a failed smoke test
        detail = mask(str(error), secrets)
        return CheckResult(name, CheckStatus.FAILED, detail, "did not start", "exit 0")
    result = outcome_check(name, outcome, secrets)
    observed = "timed out" if outcome.timed_out else f"exit {outcome.exit_status}"
    return CheckResult(result.name, result.status, result.detail, observed, "exit 0")


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
        return CheckResult(
            name,
            CheckStatus.INCONCLUSIVE,
            f"Prometheus did not answer: {reason}",
            threshold=threshold,
        )
    except ValueError:
        return CheckResult(
            name,
            CheckStatus.INCONCLUSIVE,
            f"Prometheus answered {response.status_code} without JSON",
            threshold=threshold,
        )
    if not isinstance(answer, Mapping) or answer.get("status") != "success":
        details = answer if isinstance(answer, Mapping) else {}
        kind = " ".join(filter(None, (str(response.status_code), details.get("errorType"))))
        reason = details.get("error") or "no detail"
        return CheckResult(
            name,
            CheckStatus.INCONCLUSIVE,
            f"query failed ({kind}): {reason}",
            threshold=threshold,
        )
    try:
        samples = _samples(answer.get("data") or {})
    except (ValueError, TypeError, KeyError, IndexError) as error:
        return CheckResult(
            name, CheckStatus.INCONCLUSIVE, f"unreadable result: {error}", threshold=threshold
        )
    if not samples:
        return CheckResult(
            name,
            CheckStatus.INCONCLUSIVE,
            "no data: the query returned nothing",
            threshold=threshold,
        )

    def on_the_right_side(value: float) -> bool:
        return value < threshold if comparison == "below" else value > threshold

    numbers = [value for _, value in samples if not math.isnan(value)]
    # The sample nearest to breaking the rule stands for the whole result.
    worst = (max(numbers) if comparison == "below" else min(numbers)) if numbers else None
    breaching = [(s, v) for s, v in samples if not math.isnan(v) and not on_the_right_side(v)]
    if breaching:
        listed = ", ".join(f"{series}={value:g}" for series, value in breaching)
        return CheckResult(
            name,
            CheckStatus.FAILED,
            f"not {comparison} {threshold:g}: {listed}",
            observed=worst,
            threshold=threshold,
        )
    if any(math.isnan(value) for _, value in samples):
        return CheckResult(
            name,
            CheckStatus.INCONCLUSIVE,
            "NaN in the result: no usable data",
            observed=worst,
            threshold=threshold,
        )
    listed = ", ".join(f"{series}={value:g}" for series, value in samples)
    return CheckResult(
        name,
        CheckStatus.PASSED,
        f"{comparison} {threshold:g}: {listed}",
        observed=worst,
        threshold=threshold,
    )


# -- Kubernetes pods -----------------------------------------------------------------------------


def _pod_ready(pod: Mapping[str, Any]) -> bool:
    return any(
        condition.get("type") == "Ready" and condition.get("status") == "True"
        for condition in (pod.get("status") or {}).get("conditions") or []
    )


def kubernetes_pods(
    connections: Connections,
    namespace: str,
    selector: str,
    *,
    min_ready_ratio: float = 1.0,
    max_restarts: int = 3,
    timeout: float = 10.0,
    name: str | None = None,
) -> CheckResult:
    """Pods picked by `selector` in `namespace`: Ready enough and none crash-looping.

    Fails when a container waits in CrashLoopBackOff or restarted more than `max_restarts`
    times, or when fewer than `min_ready_ratio` of the pods are Ready. Pods being deleted
    are left out. No pods at all, or an API that cannot be read, is INCONCLUSIVE: an empty
    answer says nothing about health.
    """
    name = name or f"pods {namespace} {selector}"
    wanted = f"ready ≥ {min_ready_ratio:.0%}, restarts ≤ {max_restarts}"
    try:
        from kubernetes import client as kube_client
        from kubernetes.client.exceptions import ApiException

        # The client and the backend's connection module are imported here, not at the
        # top, so that importing this module never loads the Kubernetes client.
        from executors.kubernetes.client import kube_api_client

        with kube_api_client(connections, connect_retries=1) as api_client:
            response: Any = kube_client.CoreV1Api(api_client).list_namespaced_pod(
                namespace,
                label_selector=selector,
                _preload_content=False,
                _request_timeout=timeout,
            )
            listing = json.loads(response.data)
    except ConfigError as error:
        return CheckResult(name, CheckStatus.INCONCLUSIVE, str(error), threshold=wanted)
    except ApiException as error:
        return CheckResult(
            name,
            CheckStatus.INCONCLUSIVE,
            f"the Kubernetes API refused to list pods: {error.status} {error.reason}",
            threshold=wanted,
        )
    except Exception as error:  # urllib3 and socket errors: the API could not be reached
        reason = f"{type(error).__name__}: {error}"[:_BODY_PREVIEW]
        return CheckResult(
            name,
            CheckStatus.INCONCLUSIVE,
            f"the Kubernetes API did not answer: {reason}",
            threshold=wanted,
        )
    pods = [
        pod
        for pod in listing.get("items") or []
        if not (pod.get("metadata") or {}).get("deletionTimestamp")
    ]
    if not pods:
        return CheckResult(
            name,
            CheckStatus.INCONCLUSIVE,
            f"no pods in {namespace} match {selector}",
            observed="no pods",
            threshold=wanted,
        )
    ready = sum(1 for pod in pods if _pod_ready(pod))
    ratio = ready / len(pods)
    crash_loops: list[str] = []
    most_restarts = 0
    for pod in pods:
        statuses = (pod.get("status") or {}).get("containerStatuses") or []
        for status in statuses:
            restarts = int(status.get("restartCount") or 0)
            most_restarts = max(most_restarts, restarts)
            waiting = (status.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") == "CrashLoopBackOff" or restarts > max_restarts:
                crash_loops.append(
                    f"{pod['metadata']['name']}/{status.get('name')} "
                    f"{waiting.get('reason') or 'restarting'}, {restarts} restarts"
                )
    observed = f"{ready}/{len(pods)} ready, most restarts {most_restarts}"
    problems = []
    if crash_loops:
        problems.append("crash-looping: " + "; ".join(crash_loops[:5]))
        if len(crash_loops) > 5:
            problems[-1] += f" and {len(crash_loops) - 5} more"
    if ratio < min_ready_ratio:
        problems.append(f"only {ready} of {len(pods)} pods Ready (want {min_ready_ratio:.0%})")
    if problems:
        return CheckResult(
            name, CheckStatus.FAILED, "; ".join(problems), observed=observed, threshold=wanted
        )
    return CheckResult(
        name,
        CheckStatus.PASSED,
        f"{ready} of {len(pods)} pods Ready, no crash loops",
        observed=observed,
        threshold=wanted,
    )


# -- registered commands as smoke tests ------------------------------------------------------


def registered_command(
    connections: Connections,
    command: str,
    arguments: Mapping[str, Any] | None = None,
    *,
    name: str | None = None,
) -> CheckResult:
    """Run the registered `command` with `arguments` (checked against its schema) as a
    smoke test: passes on exit status 0 within the registration's timeout."""
    name = name or f"smoke {command}"
    registration = connections.registered_commands.get(command)
    if registration is None:
        return CheckResult(
            name, CheckStatus.INCONCLUSIVE, f"no registered command is named {command!r}"
        )
    try:
        checked = check_registration(command, registration)
        jsonschema.validate(dict(arguments or {}), checked["arguments"])
        argv = render_argv(checked["argv"], dict(arguments or {}))
    except jsonschema.ValidationError as error:
        return CheckResult(name, CheckStatus.INCONCLUSIVE, f"{command}: arguments: {error.message}")
    except ConfigError as error:
        return CheckResult(name, CheckStatus.INCONCLUSIVE, str(error))
    environment, secrets = command_environment(checked)
    return smoke_command(
        argv,
        timeout=float(checked.get("check_timeout", checked["timeout"])),
        cwd=checked.get("cwd"),
        env=environment,
        name=name,
        secrets=secrets,
    )


# -- running a service's check specs ---------------------------------------------------------

# How often a Prometheus reading on the wrong side is taken again while it may still settle.
PROMETHEUS_REQUERY_SECONDS = 2.0


@dataclass(frozen=True)
class VerificationDefaults:
    """Values a check spec may leave out, from settings."""

    prometheus_url: str = ""
    http_timeout: float = 5.0
    prometheus_timeout: float = 5.0
    kube_timeout: float = 10.0


def _with_version(value: Any, version: str | None) -> Any:
    if isinstance(value, str) and "{version}" in value:
        if not version:
            raise LookupError("the check expects {version} but the target version is unknown")
        return value.replace("{version}", version)
    return value


def run_check(
    spec: Mapping[str, Any],
    *,
    version: str | None,
    connections: Connections,
    defaults: VerificationDefaults,
    since: datetime | None = None,
) -> CheckResult:
    """Run one validated check spec. `version` (the release rolled back to) fills
    `{version}` in an http check's `expect`; `since`, the instant the rollback's steps
    finished, is when a sentry_errors window starts at the earliest. Never raises for what
    it observes."""
    name = check_name(spec)
    kind = spec["kind"]
    if kind == "http":
        try:
            expect = _with_version(spec.get("expect"), version)
        except LookupError as error:
            return CheckResult(name, CheckStatus.INCONCLUSIVE, str(error))
        return http_health(
            spec["url"],
            expect_status=int(spec.get("expect_status", 200)),
            json_field=spec.get("json_field"),
            expect_value=expect,
            retries=int(spec.get("retries", 3)),
            backoff=float(spec.get("backoff", 1.0)),
            timeout=float(spec.get("timeout", defaults.http_timeout)),
            name=name,
        )
    if kind == "command":
        return registered_command(
            connections, spec["command"], spec.get("arguments") or {}, name=name
        )
    if kind == "kubernetes_pods":
        return kubernetes_pods(
            connections,
            spec["namespace"],
            spec["selector"],
            min_ready_ratio=float(spec.get("min_ready_ratio", 1.0)),
            max_restarts=int(spec.get("max_restarts", 3)),
            timeout=defaults.kube_timeout,
            name=name,
        )
    if kind == "prometheus":
        url = spec.get("url") or defaults.prometheus_url
        threshold = float(spec["threshold"])
        if not url:
            return CheckResult(
                name,
                CheckStatus.INCONCLUSIVE,
                "no Prometheus to ask: set PROMETHEUS_URL or the check's url",
                threshold=threshold,
            )
        # A metric reflects a rollback only after the next scrapes: a reading on the wrong
        # side is taken again until `settle_seconds` have passed, then it fails.
        settle_until = time.monotonic() + float(spec.get("settle_seconds", 0))
        while True:
            result = prometheus_threshold(
                url,
                spec["query"],
                threshold,
                comparison=spec.get("comparison", "below"),
                timeout=float(spec.get("timeout", defaults.prometheus_timeout)),
                name=name,
            )
            left = settle_until - time.monotonic()
            if result.status != CheckStatus.FAILED or left <= 0:
                return result
            time.sleep(min(PROMETHEUS_REQUERY_SECONDS, left))
    if kind == "cloudwatch_alarm":
        from executors.cloudwatch_check import cloudwatch_alarms  # boto3 only when used

        settle = float(spec.get("settle_seconds", 0))
        return cloudwatch_alarms(connections, spec["alarms"], settle_seconds=settle, name=name)
    if kind == "sentry_errors":
        from executors.sentry_check import sentry_errors_of_spec  # its HTTP client when used

        return sentry_errors_of_spec(spec, since=since, timeout=defaults.http_timeout, name=name)
    raise ConfigError(f"unknown check kind {kind!r}")
