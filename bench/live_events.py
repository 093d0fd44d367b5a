"""Latency of the room's live stream, from a timeline entry's commit to a watcher reading it,
with one watcher and with many watching one incident.

    .venv/bin/python bench/live_events.py [--watchers 500] [--events 100]

What it starts and stops itself: a PostgreSQL database of its own (`backout_bench_live`,
dropped at the end) and the console under uvicorn (one process, DEBUG off, as deployed).
Redis is the machine's, database 5.

First, Debian's Chromium (headless) opens the incident room as a viewer and notes, with a
MutationObserver, when each new timeline row appears in the page: commit to row on screen,
through the htmx SSE extension's swap. Then phase 1 (one watcher) and phase 2
(`--watchers` at once). Each phase writes `--events` notes on one incident through the
services, one every `--interval` seconds, and notes the instant each commit returned.
Watchers are raw HTTP/1.1 connections on one asyncio loop in this process, reading
`/incidents/<id>/events` as a browser's EventSource does; each notes when every entry id
arrives. Latency = arrival − commit. Reported: p50 / p99 / max, whether every watcher got
every entry exactly once and in order, and the server's resident memory before the
watchers connect and with all of them connected. The watchers share the two cores with the
server, so the figures include their own parsing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    database_url,
    drop_database,
    postgres_server_url,
    recreate_database,
)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


class Watcher:
    """One EventSource-like reader: entry id → arrival instant, in arrival order."""

    def __init__(self) -> None:
        self.arrivals: list[tuple[int, float]] = []
        self.ready = asyncio.Event()

    async def watch(self, port: int, path: str, cookie: str, stop: asyncio.Event) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: text/event-stream\r\n"
            f"Cookie: sessionid={cookie}\r\nConnection: keep-alive\r\n\r\n".encode()
        )
        await writer.drain()
        status = await reader.readline()
        if b" 200 " not in status:
            raise RuntimeError(f"stream refused: {status!r}")
        try:
            while not stop.is_set():
                line = await reader.readline()
                if not line:
                    return
                if line.startswith(b"retry:"):
                    self.ready.set()
                elif line.startswith(b"id: "):
                    self.arrivals.append((int(line[4:]), time.time()))
        finally:
            writer.close()


def write_notes(
    incident_id: int, author_id: int, count: int, interval: float
) -> list[tuple[int, float]]:
    from django.contrib.auth import get_user_model

    from incidents import services
    from incidents.models import Incident

    incident = Incident.objects.get(pk=incident_id)
    author = get_user_model().objects.get(pk=author_id)
    commits = []
    for n in range(count):
        entry = services.note_add(incident=incident, author=author, body=f"bench note {n}")
        commits.append((entry.pk, time.time()))
        time.sleep(interval)
    return commits


async def phase(
    label: str, watchers: int, events: int, interval: float, port: int, ids: dict, server: int
) -> None:
    stop = asyncio.Event()
    path = f"/incidents/{ids['incident']}/events?after={ids['after']}"
    readers = [Watcher() for _ in range(watchers)]
    rss_before = _rss_mib(server)
    tasks = []
    for number, reader in enumerate(readers):
        tasks.append(asyncio.create_task(reader.watch(port, path, ids["cookie"], stop)))
        if number % 50 == 49:
            await asyncio.sleep(0.05)  # connect in waves, as a crowd of browsers would
    await asyncio.wait_for(asyncio.gather(*(r.ready.wait() for r in readers)), 120)
    rss_connected = _rss_mib(server)
    commits = await asyncio.to_thread(write_notes, ids["incident"], ids["author"], events, interval)
    wanted = [entry_id for entry_id, _ in commits]
    deadline = time.monotonic() + 60
    while any(len(r.arrivals) < len(wanted) for r in readers) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    rss_after = _rss_mib(server)
    stop.set()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)

    committed = dict(commits)
    latencies = [
        (at - committed[entry_id]) * 1000
        for reader in readers
        for entry_id, at in reader.arrivals
        if entry_id in committed
    ]
    complete = sum([entry_id for entry_id, _ in r.arrivals] == wanted for r in readers)
    print(f"\n{label}: {watchers} watcher(s), {events} entries, one every {interval * 1000:.0f} ms")
    print(f"  every entry, once, in order: {complete}/{watchers} watchers")
    if latencies:
        print(
            f"  commit → watcher: p50 {statistics.median(latencies):.1f} ms · "
            f"p99 {_percentile(latencies, 0.99):.1f} ms · max {max(latencies):.1f} ms "
            f"({len(latencies)} deliveries)"
        )
    print(
        f"  server memory (RSS): {rss_before:.0f} MiB before · {rss_connected:.0f} MiB "
        f"connected · {rss_after:.0f} MiB after the entries"
    )
    ids["after"] = wanted[-1] if wanted else ids["after"]


# Installed in the room page: the instant each timeline row appears in the document.
WATCH_ROWS = """() => {
  window.benchRows = [];
  new MutationObserver((changes) => {
    const now = Date.now();
    for (const change of changes)
      for (const node of change.addedNodes)
        if (node.id && node.id.startsWith("entry-")) window.benchRows.push([node.id, now]);
  }).observe(document.getElementById("timeline-rows"), {childList: true});
}"""


def browser_phase(events: int, interval: float, port: int, ids: dict) -> None:
    """Commit → row shown in the room page of Debian's Chromium (htmx SSE swap included)."""
    from playwright.sync_api import sync_playwright

    from tests.chromium import CHROMIUM, CHROMIUM_ARGS

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context()
        context.add_cookies(
            [{"name": "sessionid", "value": ids["cookie"], "url": f"http://127.0.0.1:{port}"}]
        )
        page = context.new_page()
        page.goto(f"http://127.0.0.1:{port}/incidents/{ids['incident']}/")
        page.wait_for_function("document.getElementById('live-status').textContent === 'Live'")
        page.evaluate(WATCH_ROWS)
        # Playwright's loop runs in this thread; the notes are written from another.
        with ThreadPoolExecutor(1) as writer:
            commits = writer.submit(
                write_notes, ids["incident"], ids["author"], events, interval
            ).result()
        wanted = {f"entry-{entry_id}": at for entry_id, at in commits}
        page.wait_for_function(
            f"window.benchRows.length >= {len(wanted)}", timeout=60_000, polling=100
        )
        rows = page.evaluate("window.benchRows")
        browser.close()
    latencies = [at_ms - wanted[row_id] * 1000 for row_id, at_ms in rows if row_id in wanted]
    shown = [row_id for row_id, _ in rows]
    print(
        f"\nOne browser (Chromium, the room page): {events} entries, "
        f"one every {interval * 1000:.0f} ms"
    )
    print(f"  every entry, once, in order: {shown == list(wanted)}")
    print(
        f"  commit → row in the page: p50 {statistics.median(latencies):.1f} ms · "
        f"p99 {_percentile(latencies, 0.99):.1f} ms · max {max(latencies):.1f} ms"
    )
    ids["after"] = commits[-1][0]


def bench(options: argparse.Namespace) -> int:
    server_url = postgres_server_url()
    recreate_database(server_url, options.database)
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "bench.settings",
        "PYTHONPATH": str(ROOT),
        "DATABASE_URL": database_url(server_url, options.database),
        "REDIS_URL": options.redis,
        "CELERY_BROKER_URL": options.redis,
        "SECRET_KEY": os.environ.get("SECRET_KEY") or secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "LOG_LEVEL": "WARNING",
    }
    os.environ.update(env)
    server: subprocess.Popen[bytes] | None = None
    try:
        import django

        django.setup()
        from django.contrib.auth import get_user_model
        from django.core.management import call_command
        from django.db import connections
        from django.test import Client
        from django.utils import timezone

        from incidents import services
        from incidents.roles import ensure_roles

        call_command("migrate", verbosity=0)
        ensure_roles()
        viewer = get_user_model().objects.create_user("bench-viewer", password=None)
        author = get_user_model().objects.create_user("bench-ic", password=None)
        from tests.factories import grant_roles

        grant_roles(viewer, ["Viewer"])
        grant_roles(author, ["Incident Commander"])
        now = timezone.now()
        incident = services.incident_open(
            title="Live stream bench",
            severity="P2",
            environment="production",
            opened_by=None,
            started_at=now,
            detected_at=now,
        )
        client = Client()
        client.force_login(viewer)
        ids = {
            "incident": incident.pk,
            "author": author.pk,
            "after": incident.timeline.order_by("id").values_list("pk", flat=True).last(),
            "cookie": client.cookies["sessionid"].value,
        }
        connections.close_all()

        port = _free_port()
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "console.asgi:application",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--log-level",
                "warning",
                "--no-access-log",
            ],
            cwd=ROOT,
            env=env,
            start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("uvicorn did not start") from None
                time.sleep(0.1)

        if not options.no_browser:
            browser_phase(options.events, options.interval, port, ids)

        async def both() -> None:
            await phase("One watcher", 1, options.events, options.interval, port, ids, server.pid)
            await phase(
                "Many watchers",
                options.watchers,
                options.events,
                options.interval,
                port,
                ids,
                server.pid,
            )

        asyncio.run(both())
        return 0
    finally:
        if server is not None and server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
        drop_database(server_url, options.database)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--watchers", type=int, default=500)
    parser.add_argument("--events", type=int, default=100)
    parser.add_argument("--interval", type=float, default=0.05, help="seconds between entries")
    parser.add_argument("--no-browser", action="store_true", help="skip the Chromium phase")
    parser.add_argument("--database", default="backout_bench_live")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/5")
    return bench(parser.parse_args())


if __name__ == "__main__":
    threading.current_thread().name = "bench"
    sys.exit(main())
