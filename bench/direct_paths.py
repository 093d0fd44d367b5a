"""The direct paths the scale-out bench compares the engine with: bench/rollback_parallel.py's
direct client (`kubectl rollout undo` + `rollout status` + the checks' read, a thread per
Deployment) run in one process, or in a process per run as the engine's pool processes run
them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def direct(url: str, poll: float, namespaces: list[str], timeout: float) -> dict[str, float]:
    """Roll `namespaces` back with rollback_parallel.py's direct path; what it reported."""
    command = [sys.executable, str(ROOT / "bench" / "rollback_parallel.py"), "--direct", url]
    # With the reads the engine's checks make (the pods of the ReplicaSet the undo chose):
    # the engine verifies every step, so a direct path without them would do less work.
    command += [str(poll), "verify", *namespaces]
    child = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    if child.returncode:
        raise SystemExit(f"the direct path failed:\n{child.stderr[-2000:]}")
    reported: dict[str, float] = json.loads(child.stdout.strip().splitlines()[-1])
    return reported


def direct_per_run(
    url: str, poll: float, runs: list[list[str]], timeout: float
) -> dict[str, float]:
    """The direct path with the engine's parallelism: a process per run (as each run's
    message gets a pool process of its own), a thread per Deployment, all started at one
    instant once every process has loaded the client. Wall time from the first process's
    start to the last one's end; CPU of all of them from the start."""
    script = str(ROOT / "bench" / "rollback_parallel.py")
    children = [
        subprocess.Popen(
            [sys.executable, script, "--direct-on-go", url, str(poll), "verify", *namespaces],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for namespaces in runs
    ]
    try:
        for child in children:
            assert child.stdout is not None
            if child.stdout.readline().strip() != "ready":
                raise SystemExit("a direct process did not start")
        for child in children:
            assert child.stdin is not None
            child.stdin.write("go\n")
            child.stdin.flush()
        reported = []
        for child in children:
            output, _ = child.communicate(timeout=timeout)
            if child.returncode:
                raise SystemExit("a direct process failed")
            reported.append(json.loads(output.strip().splitlines()[-1]))
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
    began = min(one["began"] for one in reported)
    ended = max(one["began"] + one["wall"] for one in reported)
    return {"wall": ended - began, "cpu": sum(one["cpu"] for one in reported), "began": began}
