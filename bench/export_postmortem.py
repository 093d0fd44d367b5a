"""Time the post-mortem exports of an incident with a long timeline.

    .venv/bin/python bench/export_postmortem.py [--entries 10000] [--repeat 3]

In a PostgreSQL database of its own (`backout_bench_pm`, dropped at the end) it opens an
incident through the domain services, appends N timeline entries of mixed kinds and
lengths (step output, check results, notes, status changes, approvals; a few with URLs and
image digests too long for a line), runs a two-step rollback record, starts a post-mortem
(which stars the key entries), adds action items, and then times:

- gather: the report selector alone (the queries and the rows), once per repeat;
- md / pdf / json: each rendering of that one report;
- GET: each export through Django's test client, middleware and view included.

Each figure is the median of the repeats (the minimum beside it). The PDF target is 5 s.
A second incident of the same size, one entry in five written in Chinese, Japanese, Korean,
Hebrew, Arabic and emoji, is rendered to PDF beside the first: the cost of font fallback and
right-to-left lines, as a ratio.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    django_on_fresh_database,
    drop_database,
    postgres_server_url,
)

PDF_TARGET_SECONDS = 5.0

WORDS = [
    "rollout",
    "deployment",
    "replicas",
    "ready",
    "pods",
    "error",
    "rate",
    "latency",
    "p99",
    "checkout",
    "payments",
    "image",
    "verified",
    "restored",
    "flag",
    "approval",
    "health",
    "endpoint",
    "returned",
    "canary",
    "baseline",
    "connection",
    "pool",
]
# Words for the entries in other scripts (one in five in the second incident).
SCRIPT_WORDS = [
    "結帳",
    "失敗",
    "支払い",
    "エラー",
    "결제",
    "실패",
    "שגיאה",
    "שרת",
    "خطأ",
    "الدفع",
    "🚀",
    "🔥",
    "v1.5.0",
]


def _timed(action: Callable[[], Any], repeat: int) -> tuple[list[float], Any]:
    seconds, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = action()
        seconds.append(time.perf_counter() - started)
    return seconds, result


def _figure(seconds: list[float]) -> str:
    return f"{statistics.median(seconds):6.2f} s  (min {min(seconds):.2f} s)"


def seed(entries: int, scripts: bool = False) -> int:
    """An incident with `entries` timeline entries in all; returns its id. With `scripts`,
    one entry in five is written in other scripts."""
    from django.contrib.auth.models import User
    from django.utils import timezone

    from incidents import services
    from incidents.models import Service, TimelineEntry, TimelineKind
    from incidents.roles import ensure_roles
    from postmortems import services as postmortem_services
    from tests.postmortems.builders import finished_run

    random.seed(6)
    groups = ensure_roles()
    name = "bench-ic-scripts" if scripts else "bench-ic"
    commander = User.objects.create_user(name, password="bench-password-0")
    commander.groups.add(groups["Incident Commander"])
    now = timezone.now()
    start = now - timedelta(hours=3)
    service = Service.objects.create(
        name=f"checkout-{name}", backend="kubernetes", target_config={"namespace": "shop"}
    )
    incident = services.incident_open(
        title="Checkout errors after v1.5.0",
        severity="P1",
        environment="production",
        opened_by=commander,
        commander=commander,
        services=[service],
        summary="Payments failed for a third of checkouts.",
        started_at=start,
        detected_at=start + timedelta(minutes=4),
    )
    written = incident.timeline.count()
    kinds = [
        (TimelineKind.STEP_OUTPUT, "worker", 0.55),
        (TimelineKind.CHECK_RESULT, "verification", 0.15),
        (TimelineKind.NOTE, "", 0.15),
        (TimelineKind.STATUS_CHANGE, "", 0.03),
        (TimelineKind.APPROVAL, "", 0.04),
        (TimelineKind.COMMS_PUBLISHED, "", 0.04),
        (TimelineKind.ALERT_RECEIVED, "alertmanager", 0.04),
    ]
    weights = [weight for _, _, weight in kinds]
    batch = []
    # Four more entries follow the bulk: the run, two status changes, the post-mortem start.
    for number in range(entries - written - 4):
        kind, label, _ = random.choices(kinds, weights)[0]
        words = SCRIPT_WORDS if scripts and number % 5 == 0 else WORDS
        body = " ".join(random.choices(words, k=random.randint(4, 28)))
        if number % 97 == 0:
            body += " sha256:" + "".join(random.choices("0123456789abcdef", k=64))
        batch.append(
            TimelineEntry(
                incident=incident,
                kind=kind,
                body=f"{number:05d} {body}",
                actor=None if label else commander,
                actor_label=label,
                created_at=start + timedelta(seconds=number),
            )
        )
    TimelineEntry.objects.bulk_create(batch, batch_size=2000)
    finished_run(incident)
    for status in ("identified", "resolved"):
        services.incident_change_status(incident=incident, to_status=status, actor=commander)
    postmortem = postmortem_services.postmortem_start(incident=incident, actor=commander)
    for title in ("Contract tests for payments", "Alert on checkout error rate"):
        postmortem_services.action_item_add(
            postmortem=postmortem, actor=commander, title=title, owner=commander
        )
    return incident.pk


def bench(options: argparse.Namespace) -> int:
    server_url = postgres_server_url()
    try:
        django_on_fresh_database(
            options.database,
            {
                "DEBUG": "0",
                "REDIS_URL": options.redis,
                # The exports are measured, not the second factor of the commander's sign-in.
                "REQUIRE_TWO_FACTOR": "0",
            },
        )
        from django.contrib.auth.models import User
        from django.test import Client

        from postmortems.exports import EXPORT_FORMATS
        from postmortems.selectors import postmortem_report

        print(f"Seeding an incident with {options.entries:,} timeline entries…", flush=True)
        started = time.perf_counter()
        incident_id = seed(options.entries)
        scripts_id = seed(options.entries, scripts=True)
        print(f"  seeded both in {time.perf_counter() - started:.1f} s", flush=True)

        postmortem_report(incident_id)  # warm-up: imports, fonts, connection
        EXPORT_FORMATS["pdf"].render(postmortem_report(incident_id, timeline="starred"))
        gather, report = _timed(lambda: postmortem_report(incident_id), options.repeat)
        assert len(report.timeline) == options.entries, len(report.timeline)
        rendered: dict[str, tuple[list[float], bytes]] = {}
        for fmt, export in EXPORT_FORMATS.items():
            rendered[fmt] = _timed(partial(export.render, report), options.repeat)
        client = Client()
        client.force_login(User.objects.get(username="bench-ic"))
        scripts_report = postmortem_report(scripts_id)
        scripts_pdf = _timed(partial(EXPORT_FORMATS["pdf"].render, scripts_report), options.repeat)
        served = {}
        for fmt in EXPORT_FORMATS:
            url = f"/incidents/{incident_id}/postmortem.{fmt}"

            def get(url: str = url) -> Any:
                response = client.get(url)
                assert response.status_code == 200, response.status_code
                return response

            served[fmt] = _timed(get, options.repeat)

        print()
        print(
            f"Post-mortem exports, {options.entries:,} timeline entries, median of "
            f"{options.repeat}, {os.cpu_count()} CPUs"
        )
        print(f"  gather (selector)     {_figure(gather)}")
        for fmt in EXPORT_FORMATS:
            size = len(rendered[fmt][1])
            print(f"  render {fmt:<4}           {_figure(rendered[fmt][0])}   {size / 1e6:5.2f} MB")
        ratio = statistics.median(scripts_pdf[0]) / statistics.median(rendered["pdf"][0])
        print(
            f"  render pdf, 1 in 5 entries in CJK/Hebrew/Arabic/emoji {_figure(scripts_pdf[0])}"
            f"   {len(scripts_pdf[1]) / 1e6:5.2f} MB   ×{ratio:.2f} the Latin-only render"
        )
        for fmt in EXPORT_FORMATS:
            print(f"  GET .{fmt:<4}             {_figure(served[fmt][0])}")
        import io

        from pypdf import PdfReader

        pages = len(PdfReader(io.BytesIO(rendered["pdf"][1])).pages)
        pdf_seconds = statistics.median(served["pdf"][0])
        verdict = "within" if pdf_seconds <= PDF_TARGET_SECONDS else "OVER"
        print(f"  PDF: {pages} pages; GET {pdf_seconds:.2f} s, {verdict} the 5 s target")
        return 0 if pdf_seconds <= PDF_TARGET_SECONDS else 1
    finally:
        if not options.keep_database:
            drop_database(server_url, options.database)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--entries", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--database", default="backout_bench_pm")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/9")
    parser.add_argument("--keep-database", action="store_true")
    return bench(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
