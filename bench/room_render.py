"""Time the incident room as its timeline grows: the room shows the latest entries and loads
earlier ones as the reader scrolls, so its cost should stay flat.

    .venv/bin/python bench/room_render.py [--sizes 100,2000,10000] [--repeat 7]

In a PostgreSQL database of its own (`backout_bench_room`, dropped at the end) it opens one
incident per size and gives it that many timeline entries of mixed kinds and lengths,
committed in batches as a busy incident's would be. Through Django's test client, as a
viewer, it then times for each size (median and maximum of `--repeat`):

- the room: server time of GET /incidents/<id>/ and the size of its HTML;
- one page of earlier entries (GET …/timeline?before=<first entry shown>);
- as a reference, the rows of the whole timeline rendered at once (what the room rendered
  before it was paged), with its size.

Targets at 10,000 entries: the room in at most 100 ms and 300 KB.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import statistics
import sys
import time
from collections.abc import Callable
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

TARGET_SECONDS = 0.100
TARGET_BYTES = 300_000
BATCH = 500
PHRASES = [
    "rollout of checkout to v1.4.2: 3 of 6 replicas updated",
    "health https://checkout.internal/healthz answered 200, build=v1.4.2",
    "error rate back under 1% — エラー率が回復 ✅",
    "paging the DBA about the orders replica lag",
    "approval granted by on-call (ticket OPS-1234)",
    "כשל בתשלום: rolling back payments-api",
    "pods ready 6/6; no restarts in the last 5 minutes",
]


def timed(work: Callable[[], Any], repeat: int) -> tuple[float, float, Any]:
    seconds, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = work()
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds), max(seconds), result


def seed(entries: int, viewer: Any) -> int:
    """An incident with `entries` timeline entries in all; returns its id."""
    from django.db import transaction

    from incidents import services
    from incidents.models import TimelineEntry, TimelineKind
    from incidents.timeline import timeline_append_all

    incident = services.incident_open(
        title=f"Checkout errors — {entries:,} entries",
        severity="P1",
        environment="production",
        opened_by=viewer,
    )
    kinds = [TimelineKind.STEP_OUTPUT, TimelineKind.CHECK_RESULT, TimelineKind.NOTE]
    left = entries - incident.timeline.count()
    while left > 0:
        batch = min(BATCH, left)
        with transaction.atomic():
            timeline_append_all(
                [
                    TimelineEntry(
                        incident=incident,
                        kind=random.choice(kinds),
                        body=random.choice(PHRASES) * random.randint(1, 3),
                        actor_label="rollback engine",
                    )
                    for _ in range(batch)
                ]
            )
        left -= batch
    return incident.pk


def bench(options: argparse.Namespace) -> int:
    server_url = postgres_server_url()
    recreate_database(server_url, options.database)
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "console.settings",
            "DEBUG": "0",
            "SECRET_KEY": os.environ.get("SECRET_KEY", "bench-only-secret-key-not-for-use"),
            "ALLOWED_HOSTS": "testserver",
            "DATABASE_URL": database_url(server_url, options.database),
            "REDIS_URL": options.redis,
            "LOG_LEVEL": "WARNING",
            "REQUIRE_TWO_FACTOR": "0",
        }
    )
    try:
        import django

        django.setup()
        from django.contrib.auth.models import User
        from django.core.management import call_command
        from django.template.loader import render_to_string
        from django.test import Client, override_settings

        from incidents import selectors
        from incidents.models import Incident
        from incidents.roles import ensure_roles

        call_command("migrate", verbosity=0)
        random.seed(15)
        viewer = User.objects.create_user("bench-viewer")
        viewer.groups.add(ensure_roles()["Viewer"])
        sizes = [int(size) for size in options.sizes.split(",")]
        print(f"Seeding incidents with {', '.join(f'{s:,}' for s in sizes)} entries…", flush=True)
        incidents = {size: seed(size, viewer) for size in sizes}

        client = Client()
        client.force_login(viewer)
        first_row = re.compile(r'\?before=(\d+)"')
        rows: list[tuple[int, float, float, int, float, float, int]] = []
        # Plain static file names: the bench measures pages, not a collectstatic manifest.
        plain = {
            "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
            "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
        }
        with override_settings(STORAGES=plain):
            for size, incident_id in incidents.items():
                room_url = f"/incidents/{incident_id}/"

                def room(url: str = room_url) -> bytes:
                    response = client.get(url)
                    assert response.status_code == 200, response.status_code
                    return response.content

                room(room_url)  # warm-up: templates, connection
                median, worst, html = timed(room, options.repeat)
                found = first_row.search(html.decode())
                earlier = (0.0, 0.0)
                if found:
                    page_url = f"/incidents/{incident_id}/timeline?before={found[1]}"

                    def page(url: str = page_url) -> Any:
                        return client.get(url)

                    earlier = timed(page, options.repeat)[:2]
                incident = Incident.objects.get(pk=incident_id)

                def whole(incident: Incident = incident) -> str:
                    timeline = list(selectors.incident_timeline(incident))
                    return render_to_string(
                        "incidents/incident_room.html#timeline-update",
                        {"incident": incident, "timeline": timeline},
                    )

                whole_median, _, whole_html = timed(whole, options.repeat)
                rows.append(
                    (size, median, worst, len(html), earlier[0], whole_median, len(whole_html))
                )

        print()
        print(f"Incident room, median (max) of {options.repeat}, {os.cpu_count()} CPUs")
        print(
            f"  {'entries':>8}  {'room':>17}  {'HTML':>8}  {'earlier page':>12}"
            f"  {'whole timeline rows (reference)':>31}"
        )
        for size, median, worst, length, earlier_s, whole_s, whole_len in rows:
            print(
                f"  {size:>8,}  {median * 1000:6.1f} ms ({worst * 1000:5.1f})  "
                f"{length / 1000:5.0f} KB  {earlier_s * 1000:9.1f} ms"
                f"  {whole_s * 1000:10.1f} ms, {whole_len / 1000:7.0f} KB"
            )
        smallest, largest = rows[0], rows[-1]
        print(
            f"  room at {largest[0]:,} / at {smallest[0]:,}: time ×{largest[1] / smallest[1]:.2f}, "
            f"size ×{largest[3] / smallest[3]:.2f}"
        )
        within = largest[1] <= TARGET_SECONDS and largest[3] <= TARGET_BYTES
        print(
            f"  target at {largest[0]:,}: ≤ 100 ms and ≤ 300 KB: "
            + ("within" if within else "OVER")
        )
        return 0 if within else 1
    finally:
        if not options.keep_database:
            drop_database(server_url, options.database)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--sizes", default="100,2000,10000")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--database", default="backout_bench_room")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/9")
    parser.add_argument("--keep-database", action="store_true")
    return bench(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
