"""A real Prometheus server and a metrics source whose values the caller sets.

    exporter = MetricsExporter.start()
    exporter.set("http_requests_error_ratio", 0.02, {"service": "web"})
    prometheus = start_prometheus([exporter.target])   # Debian's /usr/bin/prometheus
    prometheus.wait_for_series('http_requests_error_ratio{service="web"}')
    ...
    prometheus.stop(); exporter.stop()

`start_prometheus` writes its own configuration and data directory under a temporary
directory, listens on a free port of 127.0.0.1 and scrapes the targets every
`scrape_interval` (1 s by default). The binary is Debian's `prometheus` package (installed
by scripts/install-system-packages.sh from bin/test and bin/demo); `find_prometheus`
raises PrometheusMissing with what to run when it is not there.

`MetricsExporter` serves `/metrics` in the Prometheus text format from a thread: gauges
set with `set` and dropped with `remove`, so a test controls exactly what Prometheus scrapes.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from devinfra.processes import find_binary, free_port, launch, stop_process, wait_until_ready

DEFAULT_BINARY = "/usr/bin/prometheus"


class PrometheusMissing(RuntimeError):
    """No Prometheus binary to run."""


def find_prometheus(binary: str | None = None) -> str:
    """The Prometheus binary to run: `binary`, $PROMETHEUS_BINARY, Debian's, or on PATH."""
    found = find_binary(
        binary, os.environ.get("PROMETHEUS_BINARY"), DEFAULT_BINARY, names=("prometheus",)
    )
    if found:
        return found
    raise PrometheusMissing(
        "no prometheus binary found (looked at $PROMETHEUS_BINARY, /usr/bin/prometheus and "
        "PATH); install Debian's package: scripts/install-system-packages.sh prometheus"
    )


# -- the metrics source ---------------------------------------------------------------------


def _labels_text(labels: Mapping[str, str]) -> str:
    if not labels:
        return ""
    escaped = (
        f'{key}="{value}"'.replace("\\", "\\\\").replace("\n", "\\n")
        for key, value in sorted(labels.items())
    )
    return "{" + ",".join(escaped) + "}"


class _ExporterServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, exporter: MetricsExporter) -> None:
        super().__init__(("127.0.0.1", 0), _ExporterHandler)
        self.exporter = exporter


class _ExporterHandler(BaseHTTPRequestHandler):
    server: _ExporterServer

    def do_GET(self) -> None:
        if urllib.parse.urlsplit(self.path).path != "/metrics":
            self.send_error(404)
            return
        body = self.server.exporter.render().encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.server.exporter.scrapes += 1

    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes every second would drown any other output."""


@dataclass
class MetricsExporter:
    """Gauges served on /metrics from a thread of this process."""

    _server: _ExporterServer | None = None
    _values: dict[tuple[str, tuple[tuple[str, str], ...]], float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    scrapes: int = 0

    @classmethod
    def start(cls) -> MetricsExporter:
        exporter = cls()
        exporter._server = _ExporterServer(exporter)
        thread = threading.Thread(
            target=exporter._server.serve_forever,
            args=(0.05,),
            name="metrics-exporter",
            daemon=True,
        )
        thread.start()
        return exporter

    @property
    def target(self) -> str:
        """host:port, as a Prometheus scrape target."""
        assert self._server is not None
        return f"127.0.0.1:{self._server.server_address[1]}"

    def set(self, name: str, value: float, labels: Mapping[str, str] | None = None) -> None:
        """Serve gauge `name{labels}` with `value` from now on."""
        key = (name, tuple(sorted((labels or {}).items())))
        with self._lock:
            self._values[key] = float(value)

    def remove(self, name: str) -> None:
        """Stop serving every series of `name`."""
        with self._lock:
            for key in [key for key in self._values if key[0] == name]:
                del self._values[key]

    def render(self) -> str:
        with self._lock:
            values = sorted(self._values.items())
        lines: list[str] = []
        typed: set[str] = set()
        for (name, labels), value in values:
            if name not in typed:
                lines.append(f"# TYPE {name} gauge")
                typed.add(name)
            lines.append(f"{name}{_labels_text(dict(labels))} {value!r}")
        return "\n".join(lines) + "\n"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


# -- the server -----------------------------------------------------------------------------


@dataclass
class PrometheusServer:
    """A running Prometheus child process and its directory."""

    url: str
    process: subprocess.Popen[bytes]
    directory: Path
    scrape_interval: float

    def query(self, promql: str, *, timeout: float = 5.0) -> dict[str, Any]:
        """The JSON answer of an instant query."""
        address = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(address, timeout=timeout) as response:
            return json.loads(response.read())  # type: ignore[no-any-return]

    def wait_for_value(
        self, promql: str, wanted: float | None = None, *, timeout: float = 20.0
    ) -> float:
        """Block until the query returns a sample (equal to `wanted`, if given); return it."""
        deadline = time.monotonic() + timeout
        seen: Any = None
        while time.monotonic() < deadline:
            seen = self.query(promql)["data"]["result"]
            if seen:
                value = float(seen[0]["value"][1])
                if wanted is None or value == wanted:
                    return value
            time.sleep(self.scrape_interval / 4)
        raise TimeoutError(f"{promql}: no sample{f' of {wanted:g}' if wanted else ''}: {seen}")

    def wait_for_no_value(self, promql: str, *, timeout: float = 20.0) -> None:
        """Block until the query returns no series (a series that went away is stale)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.query(promql)["data"]["result"]:
                return
            time.sleep(self.scrape_interval / 4)
        raise TimeoutError(f"{promql} still returns data after {timeout:g} s")

    def stop(self) -> None:
        stop_process(self.process, directory=self.directory)


def start_prometheus(
    targets: Sequence[str],
    *,
    scrape_interval: float = 1.0,
    binary: str | None = None,
    ready_timeout: float = 30.0,
    log_file: Path | None = None,
    rules: Sequence[Mapping[str, Any]] = (),
    alertmanagers: Sequence[str] = (),
) -> PrometheusServer:
    """Start Prometheus on a free port of 127.0.0.1 scraping `targets` (host:port), with
    alerting `rules` (Prometheus rule dicts: alert, expr, for, labels, annotations) sent to
    `alertmanagers` (host:port)."""
    executable = find_prometheus(binary)
    directory = Path(tempfile.mkdtemp(prefix="backout-prometheus-"))
    interval = f"{max(1, round(scrape_interval * 1000))}ms"
    config = {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "scrape_configs": [{"job_name": "backout", "static_configs": [{"targets": list(targets)}]}],
    }
    if rules:
        rules_file = directory / "rules.yml"
        rules_file.write_text(json.dumps({"groups": [{"name": "backout", "rules": list(rules)}]}))
        config["rule_files"] = [str(rules_file)]
    if alertmanagers:
        config["alerting"] = {
            "alertmanagers": [{"static_configs": [{"targets": list(alertmanagers)}]}]
        }
    # JSON is YAML: no YAML library needed to write the configuration.
    (directory / "prometheus.yml").write_text(json.dumps(config, indent=2))
    port = free_port()
    process = launch(
        [
            executable,
            f"--config.file={directory / 'prometheus.yml'}",
            f"--storage.tsdb.path={directory / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        log_file,
    )
    server = PrometheusServer(f"http://127.0.0.1:{port}", process, directory, scrape_interval)
    try:
        wait_until_ready(
            f"{server.url}/-/ready", port, process, timeout=ready_timeout, what="Prometheus"
        )
    except BaseException:
        server.stop()
        raise
    return server
