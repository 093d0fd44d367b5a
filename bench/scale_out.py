"""Ten incidents, each rolling back twenty Kubernetes Deployments at once, executed by two
Celery worker processes; then the same rollbacks made with direct kubernetes-client calls.

    .venv/bin/python bench/scale_out.py [--incidents 10] [--deployments 20] [--rounds 5]
        [--warm-ups 1] [--standin-priority 10]

What it starts and stops itself: the Kubernetes API stand-in (in this process, so it can
note every request it serves), a PostgreSQL database of its own (`backout_bench_scale`,
dropped at the end) and two Celery workers started by devinfra/cluster.py with the
production worker command for the `steps` queue (prefork pool), on Redis database 7 as
broker and cache. The workers read bench/settings.py: the console's settings with the
Kubernetes poll interval both paths use (`--poll`). No worker takes the other queue: the
runs' notices wait there unsent (production gives them machines of their own), so the two
cores go to the steps.

The stand-in's thread runs at a higher CPU priority (`--standin-priority`, 10 nice levels;
0 turns it off; it needs root or CAP_SYS_NICE, and says so when it cannot). It stands for
an API server, which has machines of its own: without it, the ten busy pool processes
leave the single-threaded stand-in a tenth of the CPU, and every request of both paths
waits on the scheduler rather than on the client under test. The direct paths run with it
too.

Connections: a running step holds a PostgreSQL connection until it ends, so 200 steps at
once need about 300 (pools sized as docs/deploy.md sizes them). When the benches' server
(BENCH_POSTGRES_URL) has too few free, the bench says so and starts a throwaway one of its
own (bench.common.postgres_server_with).

First, unmeasured, `--warm-ups` rounds (1) of a run per incident as large as the measured
ones: the pool processes import what they need and open their connections, as workers that
served such a group lately have. Then each of `--rounds` rounds (5), one after the other:

- Engine: `--incidents` runs (one per incident) of `--deployments` steps in one parallel
  group (undo to the previous revision), drafted and approved beforehand, all confirmed at
  the same instant from as many threads of a process of their own (as from web processes),
  warmed as a web process that has served: its backends loaded, a confirmation rehearsed
  and rolled back on each thread's connection, and a message sent on each thread's broker
  connection (a steps message with no steps, which claims nothing), so that Celery's
  message path and the queue's declaration are in place. Then executed by the workers:
  claim, apply, wait for the rollout, checks, timeline entries. Wall time: from the
  confirmations to the end the engine recorded for the last run (its `finished_at`,
  written in the transaction that ends it); the confirming process waits reading the runs
  every 100 ms (docs/rollback-engine.md has the bench's history).
- Direct: as many Deployments, seeded alike, rolled back by `bench/rollback_parallel.py
  --direct` in a process of its own, a thread per Deployment doing what `kubectl rollout
  undo` and `kubectl rollout status` do, then the read the engine's checks make (the pods
  of the ReplicaSet the undo chose; rollback_parallel.py's "direct + checks"): the same
  API work on both paths, so the ratio is the engine's own cost.
- Direct, a process per run: the same again with the engine's parallelism, one process
  per run (each run's message gets a pool process of its own) of a thread per Deployment,
  started at one instant once each has loaded the client: ten busy processes compete for
  the two cores, as the pool processes do. Its ratio is printed beside the main one.

Every Deployment sits in a namespace of its own (bench/rollback_parallel.py says why).
A run's steps travel in one message (ROLLBACK_STEPS_PER_MESSAGE, 25), which one pool
process executes on threads; `--concurrency` sizes each worker's pool (default: enough for
every run's message at once, 5 per worker for 10 incidents; with fewer, runs wait for a free
process and the ratio shows it).

It prints, side by side: the wall time of both paths and their ratio (the median of the
rounds' ratios; target ≤ 1.3), the requests the stand-in served and the CPU seconds of the
workers (or the direct process), this process, PostgreSQL and Redis, and when the steps
passed each milestone; enqueue → first API request served by the stand-in, p50/p95 over
every step of every round; how the steps and runs spread over the two workers; and whether
any step was applied twice: the PATCH requests the stand-in received for each Deployment
(one each) and each Deployment's image afterwards.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    database_url,
    drop_database,
    postgres_server_url,
    postgres_server_with,
    recreate_database,
)
from bench.direct_paths import direct, direct_per_run  # noqa: E402
from bench.measures import Arrivals, Phase, percentiles  # noqa: E402
from bench.milestones import (  # noqa: E402
    ms_after,
    print_milestones,
    print_rounds,
    request_milestones,
    requests_by_namespace,
)
from bench.rollback_parallel import instrument_standin  # noqa: E402

TARGET_RATIO = 1.3
STEPS_PER_MESSAGE = 25  # ROLLBACK_STEPS_PER_MESSAGE, the console's default


class EngineRounds:
    """The commander, the incidents, and each round's approved runs."""

    def __init__(self, incidents: int) -> None:
        from django.contrib.auth import get_user_model
        from django.utils import timezone

        from incidents.models import Incident, Severity
        from incidents.roles import INCIDENT_COMMANDER, ensure_roles

        self.commander = get_user_model().objects.create_user("bench-ic")
        self.commander.groups.add(ensure_roles()[INCIDENT_COMMANDER])
        now = timezone.now()
        self.incidents = [
            Incident.objects.create(
                title=f"Bench: scale-out, incident {number + 1}",
                severity=Severity.P2,
                started_at=now,
                detected_at=now,
            )
            for number in range(incidents)
        ]

    def approved_runs(self, namespaces: list[list[str]]) -> list[Any]:
        """One approved run per incident, of one parallel step per namespace of its list."""
        import rollbacks.services
        from incidents.models import Service

        runs = []
        for incident, own in zip(self.incidents, namespaces, strict=True):
            services = [
                Service.objects.create(
                    name=ns,
                    backend="kubernetes",
                    target_config={"namespace": ns, "deployment": "app"},
                )
                for ns in own
            ]
            run = rollbacks.services.run_create(
                incident=incident,
                steps=[
                    rollbacks.services.StepSpec(service=service, previous=True, group=1)
                    for service in services
                ],
                actor=self.commander,
            )
            runs.append(rollbacks.services.run_request_approval(run=run, actor=self.commander))
        return runs

    def execute(self, runs: list[Any], timeout: float) -> tuple[list[Any], float, float]:
        """Confirm every run at once and wait for all of them; returns them finished, the
        wall time and the instant the confirmations began.

        The confirmations come from a process of their own, as from the web processes: in
        this one they would take the interpreter from the stand-in as the steps start. That
        process also waits for the runs' end (reads from here would take the stand-in's
        interpreter); the wall time ends at the last run's recorded end, so that the waiting
        needs no frequent reads (the direct path times itself)."""
        from rollbacks.models import Run

        command = [sys.executable, __file__, "--confirm", str(self.commander.pk), str(timeout)]
        command += [str(run.pk) for run in runs]
        confirming = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert confirming.stdin is not None and confirming.stdout is not None
        if confirming.stdout.readline().strip() != "ready":
            raise SystemExit("the confirming process did not start")
        confirmed = time.time()
        confirming.stdin.write("go\n")
        confirming.stdin.flush()
        try:
            confirming.communicate(timeout=timeout + 30)
        except subprocess.TimeoutExpired:
            confirming.kill()  # its connections would keep the database from being dropped
            confirming.communicate()
            raise SystemExit("the confirming process did not end") from None
        if confirming.returncode:  # the error is printed above
            raise SystemExit("confirming the runs or waiting for them failed")
        done = list(Run.objects.filter(pk__in=[run.pk for run in runs]))
        ends = []
        for run in done:
            if run.state != "succeeded" or run.finished_at is None:
                raise SystemExit(f"run #{run.pk} {run.state}: {run.failure_reason}")
            ends.append(run.finished_at.timestamp())
        wall = max(ends) - confirmed
        return done, wall, confirmed


def confirm_runs(commander_id: int, timeout: float, run_ids: list[int]) -> None:
    """The commanders' side (run as a child process: `--confirm USER TIMEOUT RUN...`): a
    thread per run, each with its database connection open, as in a web process that has
    served before (its backends loaded, a confirmation rehearsed and rolled back on its
    connection, and its broker connections in Celery's pool); "ready" once they are, and on
    a line from the bench every run is confirmed at the same instant. Then it reads the runs
    every 100 ms until every one has finished."""
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.db import connections, transaction

    import rollbacks.services
    import rollbacks.tasks
    from console.celery import app
    from rollbacks.engine.backends import warm_up
    from rollbacks.models import RUN_FINISHED_STATES, Run

    commander = get_user_model().objects.get(pk=commander_id)
    runs = list(Run.objects.filter(pk__in=run_ids))
    warm_up()  # the backends a web process has loaded once it has shown a plan
    words = {run.pk: run.expected_confirmation() for run in runs}
    finished = Run.objects.filter(pk__in=run_ids, state__in=RUN_FINISHED_STATES)
    warm, go = threading.Barrier(len(runs) + 1), threading.Barrier(len(runs) + 1)

    class Rehearsed(Exception):
        """Rolls a rehearsed confirmation back."""

    def confirm(run: Any) -> None:
        try:
            # A web process's connection has served confirmations before: the server
            # process behind it has the tables' catalog entries cached, and this process
            # its code paths run once. The rehearsal is rolled back, and with it the
            # commit hooks that would send the steps; only sequence numbers are spent.
            with contextlib.suppress(Rehearsed), transaction.atomic():
                rollbacks.services.run_confirm_and_start(
                    run=Run.objects.get(pk=run.pk), actor=commander, confirmation=words[run.pk]
                )
                raise Rehearsed
            with app.producer_or_acquire() as producer:  # a broker connection in the pool
                producer.connection.ensure_connection()
                # A web process that has served has also sent: Celery's message path is set
                # up (its event dispatcher, the task classes) and the queue declared on the
                # connection. A message with no steps claims nothing.
                rollbacks.tasks.steps_execute.apply_async(args=([],), producer=producer)
            warm.wait()
            go.wait()
            rollbacks.services.run_confirm_and_start(
                run=run, actor=commander, confirmation=words[run.pk]
            )
        finally:
            connections.close_all()  # this thread's own

    with ThreadPoolExecutor(max_workers=len(runs)) as pool:
        confirming = [pool.submit(confirm, run) for run in runs]
        finished.count()  # this thread's connection, open before the start
        warm.wait()
        print("ready", flush=True)
        sys.stdin.readline()
        go.wait()
        deadline = time.monotonic() + timeout
        while finished.count() < len(run_ids):
            if time.monotonic() > deadline:
                raise SystemExit(f"the runs did not finish in {timeout:g} s")
            if any(future.done() and future.exception() for future in confirming):
                break  # raised below
            time.sleep(0.1)
        for future in confirming:
            future.result()


def raise_priority(thread_id: int, options: argparse.Namespace) -> None:
    """Run the stand-in's thread `--standin-priority` nice levels above everything else
    (the threads and processes this one starts keep the usual level; threads the stand-in's
    own thread starts share its level); 0 if that is refused."""
    if not options.standin_priority:
        return
    try:
        os.setpriority(os.PRIO_PROCESS, thread_id, -options.standin_priority)
    except PermissionError:
        print(
            "Cannot raise the stand-in's priority (needs root or CAP_SYS_NICE): it shares "
            "the CPU equally.",
            flush=True,
        )
        options.standin_priority = 0


def connections_needed(options: argparse.Namespace) -> tuple[int, int]:
    """PostgreSQL connections each worker process may open, and the bench's in all.

    A running step holds a pooled connection until it ends (rollbacks/engine/batches.py),
    so a pool process needs one per step of its message, plus its task's and its beats'
    (docs/deploy.md sizes them the same way). A pool that PostgreSQL refuses to grow
    retries with backoff, and the steps would wait on that rather than on their work."""
    per_process = min(options.deployments, STEPS_PER_MESSAGE) + 4
    processes = 2 * (options.concurrency + 1)  # each worker and its pool processes
    return per_process, processes * per_process + options.incidents + 3


def bench(options: argparse.Namespace, server_url: str) -> int:
    import redis

    from devinfra.cluster import Cluster, WorkerSpec
    from devinfra.kube_standin import start_kube_standin

    incidents, per_run = options.incidents, options.deployments
    rounds = range(options.rounds)

    def names(path: str, r: int) -> list[list[str]]:
        return [[f"{path}{r}-{i:02d}-{d:02d}" for d in range(per_run)] for i in range(incidents)]

    engine_ns = [names("engine", r) for r in rounds]
    warm_ns = [
        [[f"warm{w}-{i:02d}-{d}" for d in range(per_run)] for i in range(incidents)]
        for w in range(options.warm_ups)
    ]
    direct_ns = [[ns for run in names("direct", r) for ns in run] for r in rounds]
    per_run_ns = [names("perrun", r) for r in rounds]
    every_engine = [ns for r in engine_ns for run in r for ns in run]
    every_direct = [ns for r in direct_ns for ns in r]
    every_per_run = [ns for r in per_run_ns for run in r for ns in run]

    seeded = (
        every_engine
        + every_direct
        + every_per_run
        + [ns for w in warm_ns for run in w for ns in run]
    )

    arrivals = Arrivals()
    instrument_standin(arrivals)
    print(f"Seeding {len(seeded)} Deployments…", flush=True)
    # No crash-looping pods here, and no rollout near its progress deadline: the clock that
    # drives them scans every ReplicaSet of the store (140 ms with 3,200 Deployments,
    # holding the server), so it ticks once an hour rather than in the middle of a round.
    standin = start_kube_standin(status_delay=options.status_delay, restart_interval=3600.0)
    raise_priority(standin.thread_id, options)
    standin.seed(
        [
            {"namespace": ns, "name": "app", "images": [f"app:{ns}-1", f"app:{ns}-2"]}
            for ns in seeded
        ]
    )
    gc.collect()
    gc.freeze()  # as in rollback_parallel.py: no full collections of the seeded store

    recreate_database(server_url, options.database)
    settings_env = {
        "DJANGO_SETTINGS_MODULE": "bench.settings",
        "SECRET_KEY": os.environ.get("SECRET_KEY") or secrets.token_urlsafe(50),
        "KUBE_HOST": standin.url,
        "BENCH_POLL_SECONDS": str(options.poll),
        "LOG_LEVEL": "WARNING",
    }
    per_process, _ = connections_needed(options)
    settings_env["DATABASE_POOL_MAX_SIZE"] = str(per_process)
    os.environ.update(
        {
            **settings_env,
            "DATABASE_POOL_MAX_SIZE": str(incidents + 3),
            "PYTHONPATH": str(ROOT),
            "DATABASE_URL": database_url(server_url, options.database),
            "REDIS_URL": options.redis,
            "CELERY_BROKER_URL": options.redis,
        }
    )
    cluster = Cluster(
        database_url=os.environ["DATABASE_URL"],
        redis_url=options.redis,
        broker_url=options.redis,
        directory=Path(tempfile.mkdtemp(prefix="bench-scale-")),
        env=settings_env,
    )
    try:
        import django

        django.setup()
        from django.core.management import call_command

        from rollbacks.models import Step

        redis.Redis.from_url(options.redis).flushdb()
        call_command("migrate", verbosity=0)
        engine = EngineRounds(incidents)
        runs = [engine.approved_runs(engine_ns[r]) for r in rounds]
        warm_runs = [engine.approved_runs(w) for w in warm_ns]

        print(
            f"Starting 2 Celery workers on the steps queue, {options.concurrency} pool "
            "processes each…",
            flush=True,
        )
        cluster.start(web=0, workers=[WorkerSpec("steps", options.concurrency)] * 2)
        sessions = {member.process.pid for member in cluster.workers}
        # As workers that have served before: every pool process with its imports done and
        # connections open. Not measured.
        for warm in warm_runs:
            print(f"Warm-up: {incidents} runs of {per_run} steps…", flush=True)
            engine.execute(warm, options.timeout)

        measured: list[dict[str, Any]] = []
        served_after: list[float] = []
        claimed_after: list[float] = []
        direct_first: list[float] = []
        spread: list[Counter[str]] = []
        runs_of: dict[str, set[int]] = defaultdict(set)
        for r in rounds:
            print(
                f"Round {r + 1}: engine, {incidents} runs of {per_run} steps, at once…",
                flush=True,
            )
            phase = Phase(arrivals, sessions)
            finished, wall, confirmed = engine.execute(runs[r], options.timeout)
            engine_figures: dict[str, Any] = {**phase.end(), "wall": wall}
            steps = list(
                Step.objects.filter(run__in=finished)
                .select_related("service", "run")
                .order_by("pk")
            )
            by_ns = requests_by_namespace(arrivals)
            engine_milestones: dict[str, list[float]] = defaultdict(list)
            for step in steps:
                requests = by_ns[step.service.target_config["namespace"]]
                at = {
                    "run confirmed": ms_after(step.run.confirmed_at, confirmed),
                    "enqueued": ms_after(step.enqueued_at, confirmed),
                    "claimed": ms_after(step.started_at, confirmed),
                    **request_milestones(requests, confirmed),
                    "step finished": ms_after(step.finished_at, confirmed),
                    "run finished": ms_after(step.run.finished_at, confirmed),
                }
                for name, instant in at.items():
                    engine_milestones[name].append(instant)
                served_after.append(at["first request"] - at["enqueued"])
                claimed_after.append(at["claimed"] - at["enqueued"])
                runs_of[step.worker].add(step.run_id)
            engine_figures["milestones"] = engine_milestones
            spread.append(Counter(step.worker for step in steps))

            print(
                f"Round {r + 1}: direct + checks, kubernetes client, a thread per Deployment…",
                flush=True,
            )
            phase = Phase(arrivals, set())
            reported = direct(standin.url, options.poll, direct_ns[r], options.timeout)
            direct_figures: dict[str, Any] = {
                **phase.end(client_cpu=reported["cpu"]),
                "wall": reported["wall"],
            }
            began = reported["began"]
            by_ns = requests_by_namespace(arrivals)
            direct_milestones: dict[str, list[float]] = defaultdict(list)
            for ns in direct_ns[r]:
                for name, instant in request_milestones(by_ns[ns], began).items():
                    direct_milestones[name].append(instant)
            direct_first += direct_milestones["first request"]
            direct_milestones["finished"] = [reported["wall"] * 1000]
            direct_figures["milestones"] = direct_milestones

            print(
                f"Round {r + 1}: direct + checks, a process per run, a thread per Deployment…",
                flush=True,
            )
            phase = Phase(arrivals, set())
            reported = direct_per_run(standin.url, options.poll, per_run_ns[r], options.timeout)
            per_run_figures = {
                **phase.end(client_cpu=reported["cpu"]),
                "wall": reported["wall"],
            }
            measured.append(
                {"engine": engine_figures, "direct": direct_figures, "per run": per_run_figures}
            )

        by_ns = requests_by_namespace(arrivals)
        patches = {
            path: Counter(sum(method == "PATCH" for _, method, _ in by_ns[ns]) for ns in namespaces)
            for path, namespaces in (
                ("engine", every_engine),
                ("direct", every_direct),
                ("per run", every_per_run),
            )
        }
        not_back = [
            ns
            for ns in every_engine + every_direct + every_per_run
            if (standin.get("deployments", ns, "app") or {})["spec"]["template"]["spec"][
                "containers"
            ][0]["image"]
            != f"app:{ns}-1"
        ]

        ratios = [m["engine"]["wall"] / m["direct"]["wall"] for m in measured]
        per_run_ratios = [m["engine"]["wall"] / m["per run"]["wall"] for m in measured]
        middle = sorted(range(len(ratios)), key=lambda r: ratios[r])[len(ratios) // 2]
        total = incidents * per_run
        print()
        print(
            f"{total} Deployments ({incidents} incidents × {per_run}, one run each, confirmed "
            f"at once), 2 steps workers of {options.concurrency} pool processes, rollout "
            f"{options.status_delay:g} s, poll {options.poll:g} s, {os.cpu_count()} CPUs, "
            f"stand-in {options.standin_priority} nice levels up"
        )
        each = ", ".join(f"{ratio:.2f}" for ratio in ratios)
        print(
            f"  ratio engine / direct   {statistics.median(ratios):5.2f}     "
            f"(target ≤ {TARGET_RATIO:g}; median of {len(ratios)} rounds: {each})"
        )
        each = ", ".join(f"{ratio:.2f}" for ratio in per_run_ratios)
        print(
            f"  ratio engine / direct, a process per run   {statistics.median(per_run_ratios):5.2f}"
            f"     (the engine's parallelism: {options.incidents} processes of {per_run} "
            f"threads; rounds: {each})"
        )
        print(f"  the median round ({middle + 1}):")
        print("  path        wall  requests   CPU s: client  stand-in  PostgreSQL  Redis")
        for label in ("engine", "direct", "per run"):
            figures = measured[middle][label]
            print(
                f"  {label:8s} {figures['wall']:5.2f} s  {figures['requests']:8.0f}"
                f"          {figures['client']:6.2f}    {figures['standin']:6.2f}"
                f"      {figures['postgres']:6.2f} {figures['redis']:6.2f}"
            )
        print(
            "  (client: both workers with their pool processes, or the direct process(es); "
            "stand-in: this process, which also polls for the end)"
        )
        print_milestones(
            measured[middle]["engine"]["milestones"], measured[middle]["direct"]["milestones"]
        )
        print_rounds(measured)
        print(f"Enqueue → first API call, {len(served_after)} steps ({len(ratios)} rounds):")
        print(f"  served by the API              {percentiles(served_after)}")
        print(f"  step claimed by the worker     {percentiles(claimed_after)}")
        print(f"  (direct: thread start → served {percentiles(direct_first)})")
        print("Steps per worker:")
        for worker in sorted(runs_of):
            per_round = " + ".join(str(counted[worker]) for counted in spread)
            print(
                f"  {worker:28s} {sum(c[worker] for c in spread):5d} steps ({per_round}), "
                f"in {len(runs_of[worker])} of {incidents * len(ratios)} runs"
            )
        print("Applied once (PATCH requests per Deployment at the stand-in):")
        for path, counted in patches.items():
            shown = ", ".join(f"{n} × {k}" for k, n in sorted(counted.items()))
            print(f"  {path:8s} {shown}   (count × PATCHes)")
        print(
            f"  at their previous image after: "
            f"{len(every_engine) + len(every_direct) + len(every_per_run) - len(not_back)} of "
            f"{len(every_engine) + len(every_direct) + len(every_per_run)}"
            + (f" (not: {', '.join(not_back[:5])}…)" if not_back else "")
        )
        shutil.rmtree(cluster.directory)  # the workers' logs, kept only when a run fails
        return 0
    finally:
        cluster.stop()
        standin.stop()
        redis.Redis.from_url(options.redis).flushdb()  # the notices nobody sent
        drop_database(server_url, options.database)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--confirm"]:
        confirm_runs(int(argv[1]), float(argv[2]), [int(run_id) for run_id in argv[3:]])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--incidents", type=int, default=10, help="runs, one per incident")
    parser.add_argument("--deployments", type=int, default=20, help="steps per run")
    parser.add_argument("--rounds", type=int, default=5, help="engine/direct pairs")
    parser.add_argument("--warm-ups", type=int, default=1, help="unmeasured engine rounds first")
    parser.add_argument("--status-delay", type=float, default=1.0, help="seconds per rollout")
    parser.add_argument("--poll", type=float, default=0.25, help="rollout poll, both paths")
    parser.add_argument("--concurrency", type=int, help="pool processes per worker")
    parser.add_argument(
        "--standin-priority",
        type=int,
        default=10,
        help="nice levels the stand-in's thread runs above the rest (0: none)",
    )
    parser.add_argument("--database", default="backout_bench_scale")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/7")
    parser.add_argument("--timeout", type=float, default=120.0, help="per phase")
    options = parser.parse_args(argv)
    options.concurrency = options.concurrency or -(-options.incidents // 2)
    _, connections = connections_needed(options)
    with postgres_server_with(connections) as server_url:
        if server_url != postgres_server_url():
            print(
                f"The PostgreSQL server has fewer than {connections} connections free: "
                "using a throwaway server of the bench's own.",
                flush=True,
            )
        return bench(options, server_url)


if __name__ == "__main__":
    sys.exit(main())
