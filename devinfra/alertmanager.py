"""A real Alertmanager (Debian's prometheus-alertmanager) that sends its notifications to
one webhook with a bearer token, as a team points theirs at the console:

    manager = start_alertmanager("http://127.0.0.1:8000/api/v1/alerts/alertmanager", token)
    prometheus = start_prometheus([exporter.target], rules=[...], alertmanagers=[manager.target])
    ...
    prometheus.stop(); manager.stop()

Groups wait `group_wait` before the first notification and `group_interval` between
updates (1 s each here, where production uses tens of seconds to minutes), and resolved
alerts are sent too. Clustering is off (one instance)."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from devinfra.processes import find_binary, free_port, launch, stop_process, wait_until_ready

DEFAULT_BINARY = "/usr/bin/prometheus-alertmanager"


class AlertmanagerMissing(RuntimeError):
    """No Alertmanager binary to run."""


def find_alertmanager() -> str:
    found = find_binary(
        os.environ.get("ALERTMANAGER_BINARY"),
        DEFAULT_BINARY,
        names=("alertmanager", "prometheus-alertmanager"),
    )
    if found:
        return found
    raise AlertmanagerMissing(
        "no Alertmanager binary (looked at $ALERTMANAGER_BINARY, /usr/bin/prometheus-alertmanager"
        " and PATH); install it: scripts/install-system-packages.sh prometheus-alertmanager"
    )


@dataclass
class AlertmanagerServer:
    url: str
    port: int
    process: subprocess.Popen[bytes]
    directory: Path

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        stop_process(self.process, directory=self.directory)


def start_alertmanager(
    webhook_url: str,
    bearer_token: str,
    *,
    group_wait: str = "1s",
    group_interval: str = "1s",
    log_file: Path | None = None,
    ready_timeout: float = 30.0,
) -> AlertmanagerServer:
    executable = find_alertmanager()
    directory = Path(tempfile.mkdtemp(prefix="backout-alertmanager-"))
    config = {
        "route": {
            "receiver": "backout",
            "group_by": ["alertname", "service"],
            "group_wait": group_wait,
            "group_interval": group_interval,
            "repeat_interval": "1h",
        },
        "receivers": [
            {
                "name": "backout",
                "webhook_configs": [
                    {
                        "url": webhook_url,
                        "send_resolved": True,
                        "http_config": {
                            "authorization": {"type": "Bearer", "credentials": bearer_token}
                        },
                    }
                ],
            }
        ],
    }
    # JSON is YAML; the file holds the token, so only its owner may read it.
    config_file = directory / "alertmanager.yml"
    config_file.write_text(json.dumps(config, indent=2))
    config_file.chmod(0o600)
    port = free_port()
    process = launch(
        [
            executable,
            f"--config.file={config_file}",
            f"--storage.path={directory / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
            "--log.level=warn",
        ],
        log_file,
    )
    server = AlertmanagerServer(f"http://127.0.0.1:{port}", port, process, directory)
    try:
        wait_until_ready(
            f"{server.url}/-/ready", port, process, timeout=ready_timeout, what="Alertmanager"
        )
    except BaseException:
        server.stop()
        raise
    return server
