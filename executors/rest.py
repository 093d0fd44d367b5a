"""A JSON-over-HTTP client for the hosted APIs the backends and checks call (Vercel, GitHub,
Doppler, Sentry, PagerDuty, the Docker Engine over TCP).

What every such call needs, in one place:
- the token comes from an environment variable the target config names (`token_env`), never
  from the config itself, and is masked out of every error message;
- every call has a timeout, and connections are judged by the address they reached
  (executors.http_guard: never a cloud metadata address);
- answers become the errors the engine understands: a timeout, a refused connection, 429 and
  5xx are retryable, with the server's Retry-After (or a rate-limit reset instant) kept as
  `retry_after`; 401/403 are a permanent failure naming the service and the credentials;
  404 is `NotFound`, which `validate_params(live=True)` turns into a 400 naming the field;
  any other 4xx is permanent with the API's own message.
"""

from __future__ import annotations

import json as jsonlib
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import requests

from executors.errors import RETRY_AFTER_CAP, BackendError, ConfigError, parse_retry_after
from executors.http_guard import BlockedAddress, guarded_session
from executors.value_masks import mask_values

# JSON schema of the config fields that name the API and its token.
API_URL_SCHEMA = {"type": "string", "pattern": r"^https?://[^\s]+$", "maxLength": 2000}
TOKEN_ENV_SCHEMA = {"type": "string", "pattern": r"^[A-Za-z_][A-Za-z0-9_]*$", "maxLength": 100}
# How much of an error answer's body a message keeps.
_EXCERPT = 300
# What an HTTP header can carry of a token: visible ASCII.
_TOKEN_CHARS = re.compile(r"[!-~]+")


def _same_origin(url: str, base: str) -> bool:
    first, second = urlsplit(url), urlsplit(base)
    return (first.scheme, first.netloc.lower()) == (second.scheme, second.netloc.lower())


class NotFound(BackendError):
    """The API answered 404: what was asked for does not exist (or the token cannot see it)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=False)


class RestError(BackendError):
    """Any other failed call: `status` is the HTTP status (None when nothing answered), and
    `tls_failed` whether the TLS handshake failed (a certificate not trusted, say)."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None,
        retryable: bool,
        retry_after: float | None = None,
        tls_failed: bool = False,
    ) -> None:
        super().__init__(message, retryable=retryable)
        self.status = status
        self.tls_failed = tls_failed
        if retry_after is not None:
            self.retry_after = retry_after


def token_from_env(name: str | None, service: str) -> str:
    """The value of the environment variable `name`; ConfigError (naming the variable, never
    a value) when the config names none or it is unset."""
    if not name:
        raise ConfigError(f"{service}: the target config names no token_env")
    value = os.environ.get(name, "").strip()
    if not value:
        raise ConfigError(f"{service}: the environment variable {name} is not set")
    if not _TOKEN_CHARS.fullmatch(value):
        raise ConfigError(
            f"{service}: the environment variable {name} holds a character a token cannot "
            "have (whitespace, a control character or a non-ASCII letter)"
        )
    return value


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """The wait a throttling answer asks for: Retry-After in seconds or as an HTTP date, or
    a rate-limit reset instant in epoch seconds (GitHub's x-ratelimit-reset)."""
    wait = parse_retry_after(headers.get("retry-after"))
    if wait is not None:
        return wait
    reset = headers.get("x-ratelimit-reset")
    if reset and reset.isdigit() and headers.get("x-ratelimit-remaining") == "0":
        return min(max(0.0, float(reset) - time.time()), RETRY_AFTER_CAP)
    return None


def shown(item: Any) -> str:
    """An item of an API's answer as a message shows it: text as it is, anything else as
    JSON (never Python's repr)."""
    if isinstance(item, str):
        return item
    return jsonlib.dumps(item, ensure_ascii=False, default=str)


def _message(response: requests.Response) -> str:
    """The API's own explanation, on one line and not yet shortened: a JSON body's
    message/error field, or the body."""
    text = answer_text(response)
    try:
        data = jsonlib.loads(text)
    except ValueError:
        data = None
    if isinstance(data, Mapping):
        for key in ("message", "error", "detail", "messages"):
            value = data.get(key)
            if isinstance(value, Mapping):
                value = value.get("message") or value.get("code")
            if isinstance(value, list):
                value = "; ".join(shown(item) for item in value[:3])
            if value:
                return " ".join(shown(value).split())
    return " ".join(text.split()) or response.reason or ""


def answer_text(response: requests.Response) -> str:
    """The body as text, never with a character replaced (a value with one would not be
    found to be masked): in the charset the answer names, else UTF-8, what APIs send (not
    the Latin-1 that HTTP/1.1 once made the default for text); Latin-1, which reads every
    byte as the character it is there, when the body is neither."""
    named = (
        response.encoding
        if "charset=" in response.headers.get("content-type", "").lower()
        else None
    )
    for encoding in filter(None, (named, "utf-8")):
        try:
            return response.content.decode(encoding)
        except (LookupError, UnicodeDecodeError):
            continue
    return response.content.decode("latin-1")


@dataclass
class RestApi:
    """One hosted API: where it is, what it is called in messages, and how to authenticate.

    `auth_header` is the header the token goes in and `auth_scheme` what precedes it
    ("Bearer", "token", or "" for a bare key). `session` is made on first use.
    """

    service: str
    base_url: str
    token: str | None = None
    auth_header: str = "Authorization"
    auth_scheme: str = "Bearer"
    timeout: float = 10.0
    headers: Mapping[str, str] = field(default_factory=dict)
    session: requests.Session | None = None

    @classmethod
    def from_config(
        cls,
        service: str,
        config: Mapping[str, Any],
        default_url: str,
        *,
        timeout: float,
        headers: Mapping[str, str] | None = None,
    ) -> RestApi:
        """The client a backend's target config names: `api_url` (else `default_url`), and
        the token in the environment variable `token_env`."""
        return cls(
            service,
            str(config.get("api_url") or default_url),
            token_from_env(config.get("token_env"), service),
            timeout=timeout,
            headers=dict(headers or {}),
        )

    def excerpt(self, text: str, hidden: Iterable[str] = ()) -> str:
        """The start of `text` that a message quotes, without the token or any of `hidden`
        in any form an answer may repeat them in (executors.value_masks)."""
        values = [*([self.token] if self.token else []), *hidden]
        return mask_values(text, values, shortest=1, limit=_EXCERPT)

    def url(self, path: str) -> str:
        """`path` (starting with /) under the API's base URL; a full URL is kept as it is."""
        if path.startswith(("http://", "https://")):
            return path
        return self.base_url.rstrip("/") + path

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        doing: str = "",
        hidden: Iterable[str] = (),
    ) -> requests.Response:
        """Make one call; a 2xx answer is returned, anything else raised as described above.
        `doing` says what the call was for ("promote deployment dpl_1"), for messages;
        `hidden` are values the call carries that an error must not show (with the token).

        Errors are raised outside the handler of what caused them, so that none keeps the
        cause, which may hold those values, as its context."""
        if self.session is None:
            self.session = guarded_session()
        headers = {"Accept": "application/json", "User-Agent": "backout", **self.headers}
        if self.token:
            headers[self.auth_header] = f"{self.auth_scheme} {self.token}".strip()
        what = f"{self.service}: {doing or f'{method} {path}'}"
        hidden = list(hidden)
        failure: BackendError | None = None
        unreachable: str | None = None
        tls_failed = False
        try:
            response = self.session.request(
                method,
                self.url(path),
                params=params,
                json=json,
                headers=headers,
                timeout=self.timeout,
                allow_redirects=False,
            )
        except BlockedAddress as error:
            failure = ConfigError(f"{what}: {error}")
        except requests.Timeout:
            failure = RestError(
                f"{what}: no answer within {self.timeout:g} s", status=None, retryable=True
            )
        except requests.RequestException as error:
            unreachable = str(error)  # masked below, outside this handler
            tls_failed = isinstance(error, requests.exceptions.SSLError)
        except UnicodeEncodeError as error:  # says where, never what: it holds the text
            failure = ConfigError(
                f"{what}: the token or the request holds text HTTP cannot carry "
                f"({error.reason[:100]})"
            )
        if unreachable is not None:
            reason = self.excerpt(unreachable, hidden)
            failure = RestError(
                f"{what}: {reason}", status=None, retryable=True, tls_failed=tls_failed
            )
        if failure is not None:
            raise failure
        if 200 <= response.status_code < 300:
            return response
        raise self._error(what, response, hidden)

    def _error(self, what: str, response: requests.Response, hidden: Iterable[str]) -> BackendError:
        status = response.status_code
        detail = self.excerpt(_message(response), hidden)
        text = f"{what}: HTTP {status}" + (f": {detail}" if detail else "")
        wait = retry_after_seconds(response.headers)
        if status == 429 or status >= 500 or (status == 403 and wait is not None):
            return RestError(text, status=status, retryable=True, retry_after=wait)
        if status in (401, 403):
            return RestError(
                f"{what}: {self.service} refused the credentials (HTTP {status})"
                + (f": {detail}" if detail else ""),
                status=status,
                retryable=False,
            )
        if status == 404:
            return NotFound(text)
        return RestError(text, status=status, retryable=False)

    def get(self, path: str, *, params: Mapping[str, Any] | None = None, doing: str = "") -> Any:
        """GET `path` and return its JSON document."""
        return self.json_of(self.request("GET", path, params=params, doing=doing), doing)

    def send(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        doing: str = "",
        hidden: Iterable[str] = (),
    ) -> Any:
        """POST/PATCH/PUT/DELETE `body` as JSON and return the answer's JSON (None if empty);
        an error shows none of `hidden` (see `request`)."""
        response = self.request(method, path, json=body, doing=doing, hidden=hidden)
        return self.json_of(response, doing) if response.content else None

    def json_of(self, response: requests.Response, doing: str = "") -> Any:
        """The answer's JSON; a permanent error when the body is not JSON."""
        try:
            return response.json()
        except ValueError:  # its text holds the body, which may hold a value
            pass
        raise RestError(
            f"{self.service}: {doing or response.url}: the answer is not JSON",
            status=response.status_code,
            retryable=False,
        )

    def pages(
        self,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        items: Callable[[Any], list[Any]],
        next_page: Callable[[requests.Response, Any], Mapping[str, Any] | str | None],
        limit: int = 50,
        doing: str = "",
    ) -> Iterator[Any]:
        """Every item of a paginated list, page after page, at most `limit` pages.

        `items` picks a page's items out of its JSON; `next_page` gives the next page's
        query parameters (merged into `params`), or a full URL (a Link header's next), or
        None on the last page. A next URL elsewhere than the API's own scheme and host is
        refused, since the token would go with it.
        """
        query: dict[str, Any] = dict(params or {})
        target = path
        for _ in range(limit):
            response = self.request("GET", target, params=query, doing=doing)
            data = self.json_of(response, doing)
            yield from items(data)
            following = next_page(response, data)
            if following is None:
                return
            if isinstance(following, str):
                if not _same_origin(following, self.base_url):
                    raise RestError(
                        f"{self.service}: {doing or path}: the next page is elsewhere "
                        f"({urlsplit(following).netloc[:100]}); not followed with the token",
                        status=None,
                        retryable=False,
                    )
                target, query = following, {}
            else:
                query = {**query, **following}
        raise RestError(
            f"{self.service}: {doing or path}: more than {limit} pages",
            status=None,
            retryable=False,
        )


def link_next(response: requests.Response, data: Any = None) -> str | None:
    """The `next` URL of an RFC 8288 Link header (GitHub's and Sentry's pagination)."""
    link = response.links.get("next") or {}
    if link.get("results") == "false":  # Sentry marks an empty next page this way
        return None
    return link.get("url")
