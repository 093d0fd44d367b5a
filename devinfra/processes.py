"""Start and stop the local infrastructure servers as child processes."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(
    port: int, *, timeout: float = 20.0, process: subprocess.Popen | None = None
) -> None:
    """Block until something accepts connections on 127.0.0.1:`port`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"server on port {port} exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing answered on 127.0.0.1:{port} within {timeout}s")


def wait_until_ready(
    url: str, port: int, process: subprocess.Popen, *, timeout: float, what: str
) -> None:
    """Block until `url` answers 200 (a Prometheus-style /-/ready), or raise RuntimeError
    when the process exits or `timeout` passes."""
    import urllib.request

    wait_for_port(port, timeout=timeout, process=process)
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{what} on port {port} did not become ready")
        time.sleep(0.1)


def find_binary(*candidates: str | None, names: Sequence[str]) -> str | None:
    """The first of `candidates` (paths, None skipped) that can be run, else the first of
    `names` on PATH; None when there is none."""
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return next((found for name in names if (found := shutil.which(name))), None)


def launch(argv: Sequence[str], log_file: Path | None = None) -> subprocess.Popen[bytes]:
    """Start `argv` with no input, its output appended to `log_file` (or dropped)."""
    output = open(log_file, "ab") if log_file else subprocess.DEVNULL  # noqa: SIM115
    try:
        return subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=output, stderr=output)
    finally:
        if log_file:
            output.close()  # type: ignore[union-attr]


def stop_process(
    process: subprocess.Popen[bytes], *, directory: Path | None = None, timeout: float = 10
) -> None:
    """Terminate `process` (killing it after `timeout` s) and remove its `directory`."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    if directory is not None:
        shutil.rmtree(directory, ignore_errors=True)


@dataclass
class ServerProcess:
    url: str
    port: int
    process: subprocess.Popen

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_moto_server(port: int | None = None, *, attempts: int = 3) -> ServerProcess:
    """Run moto (`devinfra.moto_server`) in its own process, reached through `endpoint_url`.

    A free port is only free when asked: another server started meanwhile (the Kubernetes
    stand-in, binding port 0 while moto imports) may take it first. So the server is known
    ready only when moto itself answers on it, and another port is tried when it lost."""
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    for attempt in range(1, attempts + 1):
        chosen = port or free_port()
        process = subprocess.Popen(
            [sys.executable, "-m", "devinfra.moto_server", "-H", "127.0.0.1", "-p", str(chosen)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        server = ServerProcess(url=f"http://127.0.0.1:{chosen}", port=chosen, process=process)
        try:
            wait_until_ready(
                f"{server.url}/moto-api/data.json", chosen, process, timeout=20, what="moto"
            )
        except RuntimeError:
            server.stop()
            if port is not None or attempt == attempts:
                raise
            continue
        if process.poll() is None:  # it answered, and it is ours
            return server
        if port is not None:
            raise RuntimeError(f"moto could not listen on port {chosen}")
    raise RuntimeError(f"moto found no free port in {attempts} attempts")


def reset_moto_server(url: str) -> None:
    """Forget every AWS resource the server holds."""
    import urllib.request

    request = urllib.request.Request(f"{url}/moto-api/reset", method="POST", data=b"")
    urllib.request.urlopen(request, timeout=5).close()
