"""The frame every hosted-API stand-in (Vercel, GitHub, Doppler, PagerDuty, Sentry, Docker
Engine) is built on: a threaded HTTP server on 127.0.0.1, routes as (method, path pattern,
function), a token check, JSON answers, and faults a test can queue.

A stand-in subclasses `Standin`, lists its `routes`, says how it authenticates
(`authorized`) and how its API words an error (`error_body`), and keeps its state under
`self.lock`. `start()` serves it on a free port in a daemon thread; `stop()` ends it.

Faults: `fail_next(status, count, retry_after=...)` makes the next `count` requests (that
match `path_prefix`, when given) answer `status` with the API's error body before any route
runs, and `delay_next(seconds, count)` holds answers back (for client timeouts). Every request
is kept in `requests` (method, path, query, body, headers without the token) for tests to
assert what was called and how often.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar, Self
from urllib.parse import parse_qs, urlsplit


@dataclass
class Request:
    """One request as a route sees it; `params` are the path pattern's named groups."""

    method: str
    path: str
    query: dict[str, str]
    body: Any
    headers: Mapping[str, str]
    params: dict[str, str] = field(default_factory=dict)

    def arg(self, name: str, default: str | None = None) -> str | None:
        """A query-string parameter (its last value)."""
        return self.query.get(name, default)


@dataclass
class Answer:
    """What a route answers: a status, a JSON document (or raw bytes) and extra headers."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


class StandinError(Exception):
    """Raised by a route to answer an error in the API's own shape."""

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.extra = extra


@dataclass
class _Fault:
    status: int
    remaining: int
    path_prefix: str
    retry_after: str | None


class Standin:
    """Base class of a hosted-API stand-in; see the module docstring."""

    # (method, path regex with named groups, method name on the subclass)
    routes: ClassVar[list[tuple[str, str, str]]] = []
    name: ClassVar[str] = "stand-in"

    def __init__(self, token: str = "standin-token") -> None:
        self.token = token
        self.lock = threading.RLock()
        self.requests: list[Request] = []
        self._faults: list[_Fault] = []
        self._delays: list[list[Any]] = []  # [seconds, count left, path prefix]
        self._compiled = [
            (method, re.compile(f"^{pattern}$"), handler)
            for method, pattern, handler in self.routes
        ]
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- what a subclass may override --------------------------------------------------------

    def authorized(self, request: Request) -> bool:
        """Whether the request carries the token (default: `Authorization: Bearer <token>`)."""
        return request.headers.get("authorization") == f"Bearer {self.token}"

    def error_body(self, status: int, message: str, **extra: Any) -> Any:
        """The API's error document for `status` (default: {"message": ...})."""
        return {"message": message, **extra}

    # -- faults ---------------------------------------------------------------------------------

    def fail_next(
        self, status: int, count: int = 1, *, retry_after: str | None = None, path_prefix: str = ""
    ) -> None:
        """Answer the next `count` matching requests with `status` (and Retry-After)."""
        with self.lock:
            self._faults.append(_Fault(status, count, path_prefix, retry_after))

    def delay_next(self, seconds: float, count: int = 1, *, path_prefix: str = "") -> None:
        """Hold the next `count` answers (to paths under `path_prefix`) back `seconds` each;
        the request is still carried out, as by a server that answers too late."""
        with self.lock:
            self._delays.append([seconds, count, path_prefix])

    def calls(self, method: str, path_pattern: str) -> list[Request]:
        """The requests so far whose method and path (a regex, matched whole) match."""
        pattern = re.compile(f"^{path_pattern}$")
        with self.lock:
            return [r for r in self.requests if r.method == method and pattern.match(r.path)]

    def _take_fault(self, path: str) -> _Fault | None:
        with self.lock:
            for fault in self._faults:
                if fault.remaining > 0 and path.startswith(fault.path_prefix):
                    fault.remaining -= 1
                    return fault
            return None

    def _take_delay(self, path: str) -> float:
        with self.lock:
            for delay in self._delays:
                if delay[1] > 0 and path.startswith(delay[2]):
                    delay[1] -= 1
                    return delay[0]
            return 0.0

    # -- serving --------------------------------------------------------------------------------

    def handle(self, request: Request) -> Answer:
        """Route one request: faults first, then the token, then the matching route."""
        fault = self._take_fault(request.path)
        if fault is not None:
            headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
            message = "rate limited" if fault.status == 429 else "stand-in fault"
            return Answer(fault.status, self.error_body(fault.status, message), headers)
        allowed = False
        for method, pattern, handler in self._compiled:
            match = pattern.match(request.path)
            if match is None:
                continue
            allowed = True
            if method != request.method:
                continue
            if not self.authorized(request):
                return Answer(401, self.error_body(401, "bad or missing credentials"))
            request.params = match.groupdict()
            try:
                answer = getattr(self, handler)(request)
            except StandinError as error:
                return Answer(
                    error.status, self.error_body(error.status, error.message, **error.extra)
                )
            return answer if isinstance(answer, Answer) else Answer(200, answer)
        if allowed:
            return Answer(405, self.error_body(405, f"{request.method} not allowed here"))
        return Answer(404, self.error_body(404, f"no such path: {request.path}"))

    @property
    def url(self) -> str:
        """The base URL it serves, http://127.0.0.1:<port>."""
        assert self._server is not None, "start() it first"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self, port: int = 0) -> Self:
        """Serve on 127.0.0.1:`port` (0: a free one) in a daemon thread; returns self."""
        self._server = ThreadingHTTPServer(("127.0.0.1", port), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name=f"{self.name}-standin", daemon=True
        )
        self._thread.start()
        return self

    def handler_class(self) -> type[BaseHTTPRequestHandler]:
        """The request handler that serves this stand-in, for a server of another kind (a
        Unix socket server)."""
        return _handler_for(self)

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def _handler_for(standin: Standin) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                self._send(Answer(400, standin.error_body(400, "the body is not JSON")))
                return
            headers = {key.lower(): value for key, value in self.headers.items()}
            request = Request(
                method=self.command,
                path=parts.path,
                query={key: values[-1] for key, values in parse_qs(parts.query).items()},
                body=body,
                headers=headers,
            )
            kept = {k: v for k, v in headers.items() if k not in ("authorization", "x-api-key")}
            with standin.lock:
                standin.requests.append(
                    Request(request.method, request.path, request.query, body, kept)
                )
            delay = standin._take_delay(request.path)
            if delay:
                threading.Event().wait(delay)
            self._send(standin.handle(request))

        def _send(self, answer: Answer) -> None:
            if isinstance(answer.body, bytes):
                payload, kind = answer.body, "application/octet-stream"
            elif answer.body is None:
                payload, kind = b"", "application/json"
            else:
                payload, kind = json.dumps(answer.body).encode(), "application/json"
            self.send_response(answer.status)
            self.send_header("Content-Type", answer.headers.pop("Content-Type", kind))
            self.send_header("Content-Length", str(len(payload)))
            for key, value in answer.headers.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _serve  # noqa: N815

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            return

    return Handler
