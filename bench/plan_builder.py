"""Time the plan builder with many services across backends: what the room costs, and how
long the live versions of the rows shown take.

    .venv/bin/python bench/plan_builder.py [--services 50] [--affected 5] [--repeat 5]

It starts the demo infrastructure (moto server, Kubernetes stand-in, Prometheus when
installed; devinfra.demo) and, in a PostgreSQL database of its own (`backout_bench_plan`,
dropped at the end), registers `--services` services cycling over the demo's targets of
every backend (Kubernetes, ECS, S3 + CloudFront, Route 53, RDS, Redis flag), one of them a
flag whose Redis never answers (a socket that accepts and stays silent). Through Django's
test client, as a commander, it then times (median and maximum of `--repeat`):

- the room, which lists the affected services only (`--affected`) and asks nothing live;
- the versions of the affected rows (what the page asks right after it loads);
- the versions of every service that answers, and of all of them with the silent flag, each
  backend kind waited for no longer than its limit (ROLLBACK_LIVE_READ_SECONDS; the silent
  flag's kind is cut at `--flag-limit`, 1 s by default);
- what the page does: one versions request per backend kind, all at once, and when each
  kind's rows fill in (the silent kind's after its limit, the others' long before);
- the same read of every service without per-kind limits, one kind after another, as a
  reference: the sum of what each kind costs on its own.

The target: the versions of 50 services in at most 1 s.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
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

TARGET_SECONDS = 1.0


def silent_socket() -> socket.socket:
    """A listening socket that accepts connections (the kernel does) and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    return listener


def timed(work: Callable[[], Any], repeat: int) -> tuple[float, float]:
    seconds = []
    for _ in range(repeat):
        started = time.perf_counter()
        work()
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds), max(seconds)


def seed(
    demo_services: list[Any], count: int, affected: int, silent_url: str
) -> tuple[int, list[int]]:
    from django.contrib.auth.models import Group, User

    from incidents.models import Service
    from incidents.services import incident_open

    commander = User.objects.create_user("bench-ic")
    commander.groups.set(Group.objects.filter(name__in=["Incident Commander", "Viewer"]))
    os.environ["BENCH_SILENT_REDIS_URL"] = silent_url
    created = []
    for number in range(count):
        template = demo_services[number % len(demo_services)]
        config = dict(template.target_config)
        if number == count - 1:  # the one whose store never answers
            config = {
                "store": "redis",
                "flag": "silent-flag",
                "redis_url_env": "BENCH_SILENT_REDIS_URL",
            }
        backend = "feature_flag" if number == count - 1 else template.backend
        created.append(
            Service.objects.create(
                name=f"svc-{number:03d}-{template.name}"[:80],
                backend=backend,
                target_config=config,
                environment="production",
            )
        )
    incident = incident_open(
        title="Plan builder bench",
        severity="P2",
        environment="production",
        services=created[:affected],
        opened_by=commander,
    )
    return incident.pk, [service.pk for service in created]


def bench(options: argparse.Namespace) -> int:
    from devinfra.demo import start_demo_infrastructure

    folder = Path(tempfile.mkdtemp(prefix="bench-plan-"))
    redis_url = options.redis
    infrastructure = start_demo_infrastructure(
        state_file=folder / "demo-infra.json", status_delay=0.2, redis_url=redis_url
    )
    silent = silent_socket()
    server_url = postgres_server_url()
    recreate_database(server_url, options.database)
    # What a console process of the demo is given (the hosted stand-ins' tokens among it),
    # so that every backend is read, not refused for want of a token.
    os.environ.update(infrastructure.env())
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "console.settings",
            "DEBUG": "1",  # the room's static URLs without a collectstatic manifest
            "REQUIRE_TWO_FACTOR": "0",  # the commander signs in without a device (.env may ask)
            "SECRET_KEY": os.environ.get("SECRET_KEY", "bench-only-secret-key-not-for-use"),
            "ALLOWED_HOSTS": "testserver",
            "DATABASE_URL": database_url(server_url, options.database),
            "REDIS_URL": redis_url,
            "LOG_LEVEL": "WARNING",
            "AWS_ENDPOINT_URL": infrastructure.connections.aws_endpoint_url or "",
            "KUBECONFIG": infrastructure.connections.kubeconfig or "",
            "ROLLBACK_LIVE_READ_SECONDS": f"feature_flag={options.flag_limit}",
            # Without it the command services fail at once instead of being asked.
            "REGISTERED_COMMANDS_FILE": str(infrastructure.commands_file or ""),
        }
    )
    try:
        import django

        django.setup()
        from django.contrib.auth.models import User
        from django.core.management import call_command
        from django.db import connections
        from django.test import Client

        from incidents.models import Service
        from rollbacks.live_versions import live_versions_read

        call_command("migrate", verbosity=0)
        call_command("create_roles", verbosity=0)
        incident_id, service_ids = seed(
            list(infrastructure.services),
            options.services,
            options.affected,
            f"redis://127.0.0.1:{silent.getsockname()[1]}/0",
        )
        client = Client()
        client.force_login(User.objects.get(username="bench-ic"))
        room_url = f"/incidents/{incident_id}/"
        versions_url = f"/incidents/{incident_id}/versions"
        affected_ids = service_ids[: options.affected]

        def get(url: str, data: dict[str, Any] | None = None) -> None:
            response = client.get(url, data or {})
            assert response.status_code == 200, (url, response.status_code)

        get(room_url)  # warm-up: templates, backends imported, clients made
        get(versions_url, {"service": service_ids})
        figures = {
            "room (affected rows listed, nothing asked live)": timed(
                lambda: get(room_url), options.repeat
            ),
            f"versions of the {len(affected_ids)} affected rows": timed(
                lambda: get(versions_url, {"service": affected_ids}), options.repeat
            ),
            f"versions of the {len(service_ids) - 1} services that answer": timed(
                lambda: get(versions_url, {"service": service_ids[:-1]}), options.repeat
            ),
            f"versions of all {len(service_ids)}, one silent (cut at its limit)": timed(
                lambda: get(versions_url, {"service": service_ids}), options.repeat
            ),
        }
        every = list(Service.objects.filter(pk__in=service_ids))
        kinds: dict[str, list[int]] = {}
        for service in every:
            kinds.setdefault(service.backend, []).append(service.pk)
        user = User.objects.get(username="bench-ic")

        def per_kind_requests() -> dict[str, float]:
            """What the page does: one versions request per backend kind, all at once."""
            started = time.perf_counter()

            def ask(ids: list[int]) -> float:
                own = Client()
                own.force_login(user)
                response = own.get(versions_url, {"service": ids})
                assert response.status_code == 200
                return time.perf_counter() - started

            with ThreadPoolExecutor(max_workers=len(kinds)) as pool:
                done = dict(zip(kinds, pool.map(ask, kinds.values()), strict=True))
            connections.close_all()
            return done

        per_kind_runs = [per_kind_requests() for _ in range(options.repeat)]
        services = list(Service.objects.filter(pk__in=service_ids[:-1]))
        by_kind: dict[str, list[Any]] = {}
        for service in services:
            by_kind.setdefault(service.backend, []).append(service)
        reference = timed(
            lambda: [live_versions_read(group) for group in by_kind.values()], options.repeat
        )
        answered = live_versions_read(
            list(Service.objects.filter(pk__in=service_ids)),
            timeout=lambda kind: options.flag_limit if kind == "feature_flag" else 3.0,
        )
    finally:
        drop_database(server_url, options.database)
        silent.close()
        infrastructure.stop()

    width = max(len(name) for name in figures) + 2
    print(f"\nPlan builder, {options.services} services over {len(by_kind) + 1} backend kinds")
    print(f"{'what':<{width}} {'median':>9} {'max':>9}")
    for name, (median, worst) in figures.items():
        print(f"{name:<{width}} {median * 1000:>7.0f} ms {worst * 1000:>7.0f} ms")
    print(
        f"{'reference: each kind read alone, in turn (no silent flag)':<{width}} "
        f"{reference[0] * 1000:>7.0f} ms {reference[1] * 1000:>7.0f} ms"
    )
    print("\nAs the page asks them, one request per kind at once (median of the runs):")
    for kind in per_kind_runs[0]:
        seconds = statistics.median(run[kind] for run in per_kind_runs)
        print(f"  {kind:<16} rows filled in after {seconds * 1000:>6.0f} ms")
    silent_answer = answered[service_ids[-1]]
    unanswered = sum(1 for version, _ in answered.values() if version is None)
    print(
        f"\nthe silent flag: {silent_answer[1] or 'answered'}; services without a live version: "
        f"{unanswered} of {len(answered)}"
    )
    kind_of = {service.pk: service.backend for service in every}
    reasons = Counter(
        (kind_of[pk], why[:100]) for pk, (version, why) in answered.items() if version is None
    )
    for (kind, why), count in sorted(reasons.items()):
        print(f"  {count} × {kind}: {why or 'none to read (the backend answers None)'}")
    worst = figures[f"versions of the {len(service_ids) - 1} services that answer"][1]
    print(
        f"target: the versions of {len(service_ids) - 1} services in ≤ {TARGET_SECONDS:g} s — "
        f"{'met' if worst <= TARGET_SECONDS else 'not met'} (worst {worst:.2f} s); a silent "
        f"backend adds up to its kind's limit ({options.flag_limit:g} s here)"
    )
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=50)
    parser.add_argument("--affected", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--flag-limit", type=float, default=1.0)
    parser.add_argument("--database", default="backout_bench_plan")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/12")
    return bench(parser.parse_args())


if __name__ == "__main__":
    sys.exit(main())
