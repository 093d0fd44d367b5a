"""The room's live stream across two web processes: 1,000 watchers on 10 incidents, from a
timeline entry's commit to each watcher reading it.

    .venv/bin/python bench/live_fanout.py [--watchers 1000] [--incidents 10] [--events 20]

What it starts and stops itself: a PostgreSQL database of its own (`backout_bench_fanout`,
dropped at the end) and two web processes started by devinfra/cluster.py with the production
web command (uvicorn, one process each, DEBUG off, static files collected), on Redis
database 6. Each web process's database pool is capped (`--pool`, 20): a watcher's request
gives its connection back once it is let in, and the cap keeps a crowd connecting at once
within the shared PostgreSQL's 100 connections.

It opens `--incidents` incidents and signs a viewer in, then connects `--watchers` watchers,
split evenly over the incidents and, for each incident, over both web processes (watcher n
watches incident n mod 10 on process (n div 10) mod 2), in waves of 50. Each watcher is a
streaming aiohttp request on a connection of its own (aiohttp comes with the kubernetes
client), all on one asyncio loop in this process, reading `/incidents/<id>/events?after=<its
last entry>` as an EventSource does, and noting when each entry id arrives. A writer process
of its own (so that this process's loop does not delay its clock) then adds `--events` notes
to each incident through the services, one note every `--interval` seconds, taking the
incidents in turn, and notes the instant each commit returned. Latency = arrival − commit.

It prints: commit → watcher p50 / p99 / max over every delivery, in all and per web process
(target p99 ≤ 100 ms on this 2-core machine), and the entries some watcher read later than
that, with when they were committed (a tail spread over the run, or one moment's stall);
whether every watcher got every entry of its incident exactly once and in commit order (and
the deliveries missing, doubled or unexpected); and the web processes' resident memory (the
sum over both) idle, with the first wave connected, with every watcher connected and after
the entries, with the memory per watcher (all connected minus the first wave, divided by the
watchers added after it). The watchers share the two cores with both web processes, the
writer, PostgreSQL and Redis, so the figures include their own reading.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    database_url,
    drop_database,
    postgres_server_url,
    recreate_database,
)

TARGET_P99_MS = 100.0
WAVE = 50


def session_rss_mib(session: int) -> float:
    """The resident memory of every process of `session` (a web process and anything it
    started), MiB."""
    total_kib = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[3]) != session:
                continue
            status = (stat.parent / "status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total_kib += int(line.split()[1])
    return total_kib / 1024


def quantile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def latency_line(values: list[float]) -> str:
    return (
        f"p50 {statistics.median(values):6.1f} ms · p99 {quantile(values, 0.99):6.1f} ms · "
        f"max {max(values):6.1f} ms ({len(values)} deliveries)"
    )


# -- the writer (run as a child process: `--write AUTHOR EVENTS INTERVAL INCIDENT...`) --------


def write_notes(author_id: int, events: int, interval: float, incident_ids: list[int]) -> None:
    """Add `events` notes to each incident, taking them in turn, one every `interval`
    seconds; print each note's (entry id, incident id, commit instant) as JSON."""
    import django

    django.setup()
    from django.contrib.auth import get_user_model

    from incidents import services
    from incidents.models import Incident

    author = get_user_model().objects.get(pk=author_id)
    incidents = list(Incident.objects.filter(pk__in=incident_ids).order_by("pk"))
    committed = []
    next_at = time.monotonic()
    for n in range(events):
        for incident in incidents:
            next_at += interval
            time.sleep(max(0.0, next_at - time.monotonic()))
            entry = services.note_add(incident=incident, author=author, body=f"fan-out {n}")
            committed.append((entry.pk, incident.pk, time.time()))
    print(json.dumps(committed))


# -- the watchers ----------------------------------------------------------------------------


class Watcher:
    """One EventSource-like reader of one incident on one web process: the entry ids it
    read, with the instant each arrived."""

    def __init__(self, incident_id: int, web: int, url: str) -> None:
        self.incident_id, self.web, self.url = incident_id, web, url
        self.arrivals: list[tuple[int, float]] = []
        self.ready = asyncio.Event()
        self.error: str | None = None

    async def watch(self, session: Any, cookie: str) -> None:
        import aiohttp

        headers = {"Accept": "text/event-stream", "Cookie": f"sessionid={cookie}"}
        try:
            async with session.get(
                self.url, headers=headers, timeout=aiohttp.ClientTimeout(total=None)
            ) as response:
                if response.status != 200:
                    raise RuntimeError(f"stream refused: {response.status}")
                async for line in response.content:
                    if line.startswith(b"retry:"):
                        self.ready.set()
                    elif line.startswith(b"id: "):
                        self.arrivals.append((int(line[4:]), time.time()))
        except asyncio.CancelledError:
            raise
        except Exception as error:
            self.error = f"{type(error).__name__}: {error}"
            self.ready.set()


async def fan_out(options: argparse.Namespace, ids: dict[str, Any], webs: list[Any]) -> None:
    import aiohttp

    incident_ids: list[int] = ids["incidents"]
    sessions = [web.process.pid for web in webs]

    def rss() -> float:
        return sum(session_rss_mib(session) for session in sessions)

    watchers = []
    for n in range(options.watchers):
        incident = incident_ids[n % len(incident_ids)]
        web = (n // len(incident_ids)) % len(webs)
        after = ids["after"][incident]
        url = f"{webs[web].url}/incidents/{incident}/events?after={after}"
        watchers.append(Watcher(incident, web, url))

    rss_idle = rss()
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:
        tasks = []
        rss_first = rss_idle
        print(f"Connecting {len(watchers)} watchers…", flush=True)
        for start in range(0, len(watchers), WAVE):
            wave = watchers[start : start + WAVE]
            tasks += [asyncio.create_task(w.watch(session, ids["cookie"])) for w in wave]
            await asyncio.wait_for(asyncio.gather(*(w.ready.wait() for w in wave)), 60)
            if start == 0:
                await asyncio.sleep(0.5)
                rss_first = rss()
        refused = [w.error for w in watchers if w.error]
        if refused:
            raise SystemExit(f"{len(refused)} watchers failed, e.g. {refused[0]}")
        await asyncio.sleep(1.0)
        rss_connected = rss()

        print(
            f"Writing {options.events} notes on each of {len(incident_ids)} incidents, "
            f"one every {options.interval * 1000:.0f} ms…",
            flush=True,
        )
        writer = await asyncio.create_subprocess_exec(
            sys.executable,
            __file__,
            "--write",
            str(ids["author"]),
            str(options.events),
            str(options.interval),
            *map(str, incident_ids),
            stdout=asyncio.subprocess.PIPE,
        )
        output, _ = await writer.communicate()
        if writer.returncode:
            raise SystemExit("the writer failed")
        committed = [tuple(note) for note in json.loads(output)]
        wanted: dict[int, list[int]] = {incident: [] for incident in incident_ids}
        for entry_id, incident, _ in committed:
            wanted[incident].append(entry_id)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(
            len(w.arrivals) < len(wanted[w.incident_id]) for w in watchers
        ):
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)  # anything arriving twice arrives now
        rss_after = rss()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    commit_at = {entry_id: at for entry_id, _, at in committed}
    slowest: dict[int, float] = {}
    latencies: list[list[float]] = [[] for _ in webs]
    exact = missing = doubled = unexpected = 0
    for w in watchers:
        received = [entry_id for entry_id, _ in w.arrivals]
        exact += received == wanted[w.incident_id]
        counts = Counter(received)
        missing += sum(1 for entry_id in wanted[w.incident_id] if not counts[entry_id])
        doubled += sum(n - 1 for n in counts.values() if n > 1)
        unexpected += sum(1 for entry_id in counts if entry_id not in commit_at)
        for entry_id, at in w.arrivals:
            if entry_id in commit_at:
                latency = (at - commit_at[entry_id]) * 1000
                latencies[w.web].append(latency)
                slowest[entry_id] = max(latency, slowest.get(entry_id, 0.0))
    every = [value for per_web in latencies for value in per_web]

    print()
    print(
        f"{len(watchers)} watchers on {len(incident_ids)} incidents over {len(webs)} web "
        f"processes; {len(committed)} entries, one every {options.interval * 1000:.0f} ms; "
        f"{os.cpu_count()} CPUs"
    )
    print(f"  commit → watcher, all        {latency_line(every)}")
    for number, per_web in enumerate(latencies):
        print(f"  commit → watcher, {webs[number].name:10s} {latency_line(per_web)}")
    p99 = quantile(every, 0.99)
    print(
        f"  target p99 ≤ {TARGET_P99_MS:g} ms: {'met' if p99 <= TARGET_P99_MS else 'not met'} "
        f"({p99:.1f} ms)"
    )
    late = [entry_id for entry_id, _, _ in committed if slowest.get(entry_id, 0) > TARGET_P99_MS]
    if late:
        began = committed[0][2]
        print(
            f"  entries some watcher read over {TARGET_P99_MS:g} ms after their commit: "
            f"{len(late)} of {len(committed)}, committed "
            + ", ".join(f"{commit_at[entry_id] - began:.2f}" for entry_id in late[:10])
            + f"{'…' if len(late) > 10 else ''} s into the writing"
        )
    print(
        f"  every entry of its incident, once, in commit order: {exact}/{len(watchers)} "
        f"watchers (missing {missing}, doubled {doubled}, unexpected {unexpected})"
    )
    added = len(watchers) - min(WAVE, len(watchers))
    per_watcher = (rss_connected - rss_first) * 1024 / added if added else float("nan")
    print(
        f"  web processes' memory (RSS, both): {rss_idle:.0f} MiB idle · {rss_first:.0f} MiB "
        f"with {min(WAVE, len(watchers))} watchers · {rss_connected:.0f} MiB with "
        f"{len(watchers)} · {rss_after:.0f} MiB after the entries"
    )
    print(
        f"  memory per watcher: {per_watcher:.0f} KiB (beyond the first wave); "
        f"{(rss_connected - rss_idle) * 1024 / len(watchers):.0f} KiB counting from idle"
    )


# -- the bench -------------------------------------------------------------------------------


def seed(incidents: int) -> dict[str, Any]:
    """The incidents, the writer and a signed-in viewer's session."""
    from django.contrib.auth import get_user_model
    from django.test import Client
    from django.utils import timezone

    from incidents import services
    from incidents.roles import ensure_roles
    from tests.factories import grant_roles

    ensure_roles()
    viewer = get_user_model().objects.create_user("bench-viewer", password=None)
    author = get_user_model().objects.create_user("bench-ic", password=None)
    grant_roles(viewer, ["Viewer"])
    grant_roles(author, ["Incident Commander"])
    now = timezone.now()
    opened = [
        services.incident_open(
            title=f"Live fan-out bench {number + 1}",
            severity="P2",
            environment="production",
            opened_by=None,
            started_at=now,
            detected_at=now,
        )
        for number in range(incidents)
    ]
    client = Client()
    client.force_login(viewer)
    return {
        "incidents": [incident.pk for incident in opened],
        "after": {
            incident.pk: incident.timeline.order_by("id").values_list("pk", flat=True).last()
            for incident in opened
        },
        "author": author.pk,
        "cookie": client.cookies["sessionid"].value,
    }


def bench(options: argparse.Namespace) -> int:
    import redis

    from devinfra.cluster import Cluster

    server_url = postgres_server_url()
    recreate_database(server_url, options.database)
    settings_env = {
        "SECRET_KEY": os.environ.get("SECRET_KEY") or secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "DATABASE_POOL_MAX_SIZE": str(options.pool),
        "LOG_LEVEL": "WARNING",
    }
    os.environ.update(
        {
            **settings_env,
            "DJANGO_SETTINGS_MODULE": "bench.settings",
            "PYTHONPATH": str(ROOT),
            "DATABASE_URL": database_url(server_url, options.database),
            "REDIS_URL": options.redis,
            "CELERY_BROKER_URL": options.redis,
            "DATABASE_POOL_MAX_SIZE": "4",
        }
    )
    cluster = Cluster(
        database_url=os.environ["DATABASE_URL"],
        redis_url=options.redis,
        broker_url=options.redis,
        directory=Path(tempfile.mkdtemp(prefix="bench-fanout-")),
        env=settings_env,
    )
    try:
        import django

        django.setup()
        from django.core.management import call_command
        from django.db import connections

        redis.Redis.from_url(options.redis).flushdb()
        call_command("migrate", verbosity=0)
        ids = seed(options.incidents)
        connections.close_all()
        print("Starting 2 web processes…", flush=True)
        cluster.start(web=2, workers=0)
        asyncio.run(fan_out(options, ids, cluster.web))
        shutil.rmtree(cluster.directory)  # the web processes' logs, kept when a run fails
        return 0
    finally:
        cluster.stop()
        redis.Redis.from_url(options.redis).flushdb()  # the notices nobody consumed
        drop_database(server_url, options.database)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--write"]:
        write_notes(int(argv[1]), int(argv[2]), float(argv[3]), [int(i) for i in argv[4:]])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--watchers", type=int, default=1000)
    parser.add_argument("--incidents", type=int, default=10)
    parser.add_argument("--events", type=int, default=20, help="notes per incident")
    parser.add_argument("--interval", type=float, default=0.05, help="seconds between notes")
    parser.add_argument("--pool", type=int, default=20, help="database pool per web process")
    parser.add_argument("--database", default="backout_bench_fanout")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/6")
    return bench(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
