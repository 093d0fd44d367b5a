"""What the demo's verification checks look at: health endpoints and error-rate metrics for
the Deployments in the Kubernetes stand-in, answered from their live state.

    GET /health/<namespace>/<deployment>
        200 {"status": "ok", "version": "v2.4.0", "ready": "3/3"} when every pod of the
        Deployment is Ready, else 503 {"status": "degraded", ...}; 404 for no such Deployment.
        `version` is the tag of the image the Deployment's pod template runs.
    GET /metrics
        demo_http_error_ratio{service="<namespace>-<deployment>"}: 0.31 while the Deployment
        runs one of the images given as bad, 0.004 otherwise (the Prometheus text format).

The error ratio follows the pod template, which a rollback changes at once, so by the time
the rollout has finished and verification asks, Prometheus (scraping every second) has seen
the new value.
"""

from __future__ import annotations

import json
import threading
import urllib.parse
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from devinfra.kube_standin import KubeStandinHandle

BAD_ERROR_RATIO = 0.31
GOOD_ERROR_RATIO = 0.004


def _ready(pod: dict[str, Any]) -> bool:
    return any(
        condition.get("type") == "Ready" and condition.get("status") == "True"
        for condition in (pod.get("status") or {}).get("conditions") or []
    )


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, health: DemoHealth) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.health = health


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        path = urllib.parse.urlsplit(self.path).path.strip("/").split("/")
        if path == ["metrics"]:
            self._send(200, self.server.health.metrics(), "text/plain; version=0.0.4")
        elif len(path) == 3 and path[0] == "health":
            status, document = self.server.health.health(path[1], path[2])
            self._send(status, json.dumps(document), "application/json")
        else:
            self._send(404, json.dumps({"error": "not found"}), "application/json")

    def _send(self, status: int, body: str, content_type: str) -> None:
        payload = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        """Prometheus scrapes every second: keep the demo's output readable."""


class DemoHealth:
    """The health and metrics server, on a free port of 127.0.0.1, run by a thread."""

    def __init__(self, kube: KubeStandinHandle, bad_images: Iterable[str]) -> None:
        self.kube = kube
        self.bad_images = frozenset(bad_images)
        self._server = _Server(self)
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.1,), name="demo-health", daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def target(self) -> str:
        """host:port, as a Prometheus scrape target."""
        return f"127.0.0.1:{self._server.server_address[1]}"

    def health_url(self, namespace: str, deployment: str) -> str:
        return f"{self.url}/health/{namespace}/{deployment}"

    def _image(self, deployment: dict[str, Any]) -> str:
        containers = deployment["spec"]["template"]["spec"].get("containers") or [{}]
        return str(containers[0].get("image", ""))

    def health(self, namespace: str, name: str) -> tuple[int, dict[str, Any]]:
        """(status code, JSON document) of the Deployment's health endpoint."""
        deployment = self.kube.get("deployments", namespace, name)
        if deployment is None:
            return 404, {"status": "unknown", "error": f"no Deployment {namespace}/{name}"}
        labels = (deployment["spec"].get("selector") or {}).get("matchLabels") or {}
        pods = [
            pod
            for pod in self.kube.list("pods", namespace)
            if all(
                (pod["metadata"].get("labels") or {}).get(key) == value
                for key, value in labels.items()
            )
        ]
        ready = sum(1 for pod in pods if _ready(pod))
        healthy = bool(pods) and ready == len(pods)
        return (200 if healthy else 503), {
            "status": "ok" if healthy else "degraded",
            "version": self._image(deployment).rpartition(":")[2],
            "ready": f"{ready}/{len(pods)}",
        }

    def metrics(self) -> str:
        """The error ratio of every Deployment, in the Prometheus text format."""
        lines = [
            "# HELP demo_http_error_ratio Share of requests answered with a 5xx.",
            "# TYPE demo_http_error_ratio gauge",
        ]
        for deployment in self.kube.list("deployments"):
            namespace = deployment["metadata"]["namespace"]
            name = deployment["metadata"]["name"]
            service = name if name.startswith(namespace) else f"{namespace}-{name}"
            ratio = (
                BAD_ERROR_RATIO if self._image(deployment) in self.bad_images else GOOD_ERROR_RATIO
            )
            lines.append(f'demo_http_error_ratio{{service="{service}"}} {ratio}')
        return "\n".join(lines) + "\n"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
