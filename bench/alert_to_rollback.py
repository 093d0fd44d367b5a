"""Time the console's share of an automatic rollback: from Alertmanager's webhook call to
the rollback started.

    .venv/bin/python bench/alert_to_rollback.py [--alerts 20]

It starts, in this process, the Kubernetes API stand-in, a metrics source and a real
Prometheus (Debian's, scraping every second), and uses a PostgreSQL database of its own
(`backout_bench_alerts`, dropped at the end). N services each have a Deployment, a
known-good release, a live release an hour old, an error-rate query Prometheus answers with
31 %, and an automatic rollback policy that may start (no approval policy for P2). For each
service one webhook notification is posted through Django's test client with a token; the
alert_fired task runs in-process (Celery eager), so what is timed is the console's own work:
reading the payload, opening the incident, the timeline, reading the signals from
Prometheus, the decision, drafting, the approval check and the start. It prints p50, p95 and
the worst of (run started − webhook sent), and, beside them, the Prometheus read alone.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    django_on_fresh_database,
    drop_database,
    postgres_server_url,
)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def bench(options: argparse.Namespace) -> int:
    from devinfra.kube_standin import start_kube_standin
    from devinfra.prometheus import MetricsExporter, start_prometheus

    kube = start_kube_standin(status_delay=0.1)
    exporter = MetricsExporter.start()
    prometheus = start_prometheus([exporter.target], scrape_interval=1.0)
    server_url = postgres_server_url()
    try:
        django_on_fresh_database(
            options.database,
            {
                "DEBUG": "0",
                "REDIS_URL": options.redis,
                "KUBE_HOST": kube.url,
                "PROMETHEUS_URL": prometheus.url,
                "CELERY_TASK_ALWAYS_EAGER": "1",
                "ALERT_SEVERITY_MAP": json.dumps({"error": "P2"}),
            },
        )
        from django.contrib.auth.models import User
        from django.test import Client
        from django.utils import timezone

        from api.tokens import token_create
        from incidents.decisions.readings import signals_read
        from incidents.models import Release, Service
        from incidents.roles import ensure_roles
        from rollbacks.models import Run

        groups = ensure_roles()
        sender = User.objects.create_user("bench-alertmanager")
        sender.groups.add(groups["Incident Commander"])
        _, token = token_create(user=sender, name="bench", scopes=["alerts:write"])
        now = timezone.now()
        services = []
        for number in range(options.alerts):
            name = f"web{number}"
            kube.seed(
                [{"namespace": "shop", "name": name, "images": [f"r/{name}:v1", f"r/{name}:v2"]}]
            )
            exporter.set("bench_error_percent", 31.0, {"service": name})
            service = Service.objects.create(
                name=name,
                backend="kubernetes",
                target_config={"namespace": "shop", "deployment": name},
                signal_queries={"error_rate": f'bench_error_percent{{service="{name}"}}'},
                auto_rollback={
                    "enabled": True,
                    "severities": ["P2"],
                    "max_release_age_hours": 6,
                    "start": True,
                },
            )
            Release.objects.create(
                service=service,
                version="v1",
                artifact=f"r/{name}:v1",
                shipped_at=now - timedelta(days=2),
                known_good=True,
                known_good_at=now - timedelta(days=1),
            )
            Release.objects.create(
                service=service,
                version="v2",
                artifact=f"r/{name}:v2",
                shipped_at=now - timedelta(hours=1),
            )
            services.append(service)
        last = f"web{options.alerts - 1}"
        prometheus.wait_for_value(f'bench_error_percent{{service="{last}"}}', 31.0)

        reads = []
        for service in services:
            started = time.perf_counter()
            signals_read([service], watch_level=5)
            reads.append(time.perf_counter() - started)

        client = Client(HTTP_AUTHORIZATION=f"Bearer {token}")
        shares = []
        for number, service in enumerate(services):
            body = {
                "version": "4",
                "status": "firing",
                "receiver": "backout",
                "groupKey": f"bench-{number}",
                "alerts": [
                    {
                        "status": "firing",
                        "labels": {
                            "alertname": "HighErrorRate",
                            "service": service.name,
                            "severity": "error",
                        },
                        "annotations": {"summary": "31 % of requests fail"},
                        "startsAt": timezone.now().isoformat(),
                        "fingerprint": f"bench{number}",
                    }
                ],
            }
            sent = timezone.now()
            response = client.post(
                "/api/v1/alerts/alertmanager", body, content_type="application/json"
            )
            assert response.status_code == 200, response.content
            run = Run.objects.filter(steps__service=service).first()
            assert run is not None and run.started_at is not None, "no rollback started"
            shares.append((run.started_at - sent).total_seconds())

        print()
        print(
            f"Alert received → rollback started (console's share), {options.alerts} alerts, "
            f"{os.cpu_count()} CPUs"
        )
        print(
            f"  webhook → run started   p50 {percentile(shares, 0.5) * 1000:6.0f} ms   "
            f"p95 {percentile(shares, 0.95) * 1000:6.0f} ms   worst {max(shares) * 1000:6.0f} ms"
        )
        print(
            f"  of which the Prometheus read alone   p50 {statistics.median(reads) * 1000:6.0f} ms"
            f"   ({statistics.median(reads) / percentile(shares, 0.5):.0%} of the p50)"
        )
        return 0
    finally:
        if not options.keep_database:
            drop_database(server_url, options.database)
        prometheus.stop()
        exporter.stop()
        kube.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--alerts", type=int, default=20)
    parser.add_argument("--database", default="backout_bench_alerts")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/9")
    parser.add_argument("--keep-database", action="store_true")
    return bench(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
