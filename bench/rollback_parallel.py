"""Roll back N Kubernetes Deployments in parallel through the console engine, then the same
through direct kubernetes-client calls, and compare.

    .venv/bin/python bench/rollback_parallel.py [--deployments 50] [--status-delay 1.0] [--rounds 5]

What it starts and stops itself: a PostgreSQL database of its own (`backout_bench`, dropped
at the end), the Kubernetes API stand-in (in this process, so it can time every request it
serves), and a Celery worker (thread pool, one thread per Deployment) on Redis database 12.
It seeds 3 × N settled Deployments per round with two revisions each, plus a few for
single runs. Each of `--rounds` rounds (5) runs the engine and both direct paths one after
the other; the ratios printed are the medians of the rounds' ratios (each round's is shown
too: one round on a 2-CPU machine varies by about ±5 %).

- Engine: one run whose N steps share one parallel group (undo to the previous revision),
  drafted and approved through rollbacks.services, started with the typed confirmation and
  executed by the worker: claim, apply, wait for the rollout, checks, timeline entries.
- Direct: a separate process with a thread per Deployment doing what `kubectl rollout undo`
  and `kubectl rollout status` do with the official client (read, list ReplicaSets, patch
  the template back, poll until the rollout is complete), with the same poll interval.
- Direct + checks: the same, then the read the engine's Kubernetes checks make (the pods
  of the ReplicaSet the undo chose; the Deployment and its image come from the last poll):
  equal API work, so the ratio shows the engine's own cost (Celery, PostgreSQL, timeline).

Per path it prints the wall time, the requests the stand-in served, and the CPU seconds of
the client side (the Celery worker, or the direct process), the stand-in (this process,
the bench's own polling included), PostgreSQL and Redis: where the engine's extra time goes.
For the median round, a table of milestones gives, at the median and for the last step,
when the steps were claimed, reached the API, patched, saw their rollout complete (last
poll), made their last request, finished, and when the run finished, beside the direct
path's. `--steps-per-message` sets ROLLBACK_STEPS_PER_MESSAGE for the worker.

For reference beside the burst's latency it prints the direct path's own: from its threads'
start to each Deployment's first request served (no queue, no claim, no database).

Latency: from a step being enqueued (and from the commander's confirmation) to the first API
request for it arriving at the stand-in, p50/p95; the worker's side of it (request sent,
step claimed) comes from a trace the worker notes in memory and sends to Redis every 0.1 s
from a thread of its own (bench/settings.py). Measured for the N-step burst and for
single-step runs one at a time.

Each Deployment sits in a namespace of its own: the stand-in copies every object of a
namespace on each list request, so N Deployments in one namespace would time the stand-in,
not the engine. The seeded store is frozen out of the collector (gc.freeze): full
collections of it paused the stand-in, and so whichever path was running, at random. The
bench also keeps the stand-in's request log short (kmock scans it per request; the tests
keep a longer one to count requests).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
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
from bench.measures import Arrivals, Phase, percentiles  # noqa: E402

REVISION = "deployment.kubernetes.io/revision"
HASH_LABEL = "pod-template-hash"
TRACE_KEY = "bench:client-requests"
# The engine's wall time against the direct path's, not to grow past it (1.2 until the
# scale-out work, which measured 1.15 and asked to keep it there).
TARGET_RATIO = 1.15


# -- the direct path (run as a child process: `--direct URL POLL VERIFY NS...`) --------------


def _rollout_complete(deployment: dict[str, Any]) -> bool:
    spec, status = deployment["spec"], deployment.get("status") or {}
    wanted = spec.get("replicas", 1)
    return (
        status.get("observedGeneration", 0) >= deployment["metadata"].get("generation", 0)
        and status.get("updatedReplicas", 0) == wanted
        and status.get("replicas", 0) == wanted
        and status.get("availableReplicas", 0) == wanted
    )


def direct_undo(url: str, namespace: str, poll: float, verify: bool) -> float:
    """`kubectl rollout undo` + `rollout status` for Deployment `app` (and, with `verify`,
    the reads the engine's checks make); returns the seconds it took."""
    from kubernetes import client

    started = time.monotonic()
    configuration = client.Configuration()
    configuration.host = url
    api = client.ApiClient(configuration)
    apps, core = client.AppsV1Api(api), client.CoreV1Api(api)

    def call(method: Any, *args: Any, **kwargs: Any) -> Any:
        return json.loads(method(*args, _preload_content=False, **kwargs).data)

    deployment = call(apps.read_namespaced_deployment, "app", namespace)
    labels = deployment["spec"]["selector"]["matchLabels"]
    selector = ",".join(f"{key}={value}" for key, value in labels.items())
    replica_sets = call(apps.list_namespaced_replica_set, namespace, label_selector=selector)
    current = int(deployment["metadata"]["annotations"][REVISION])
    history = sorted(
        ((int(rs["metadata"]["annotations"][REVISION]), rs) for rs in replica_sets["items"]),
        key=lambda pair: pair[0],
    )
    template = [rs for number, rs in history if number < current][-1]["spec"]["template"]
    template_hash = template["metadata"]["labels"].pop(HASH_LABEL, None)
    resource_version = deployment["metadata"]["resourceVersion"]
    patch = [
        {"op": "add", "path": "/metadata/resourceVersion", "value": resource_version},
        {"op": "replace", "path": "/spec/template", "value": template},
    ]
    call(apps.patch_namespaced_deployment, "app", namespace, patch)
    while not _rollout_complete(call(apps.read_namespaced_deployment, "app", namespace)):
        time.sleep(poll)
    if verify:  # as the engine's checks: the Deployment from the last poll, the ReplicaSet
        # from the listing before the patch, and the pods read now
        pods = f"{selector},{HASH_LABEL}={template_hash}"
        call(core.list_namespaced_pod, namespace, label_selector=pods)
    return time.monotonic() - started


def run_direct(
    url: str, poll: float, verify: bool, namespaces: list[str], *, on_go: bool = False
) -> None:
    """The direct path in this process. With `on_go`, print "ready" once the client is
    loaded and start on a line from stdin (several such processes start at one instant),
    and report only the CPU used from then on."""
    from kubernetes import client

    client.AppsV1Api, client.CoreV1Api  # noqa: B018  (load the client's models first)
    cpu_before = 0.0
    if on_go:
        print("ready", flush=True)
        sys.stdin.readline()
        cpu_before = time.process_time()
    began, started = time.time(), time.monotonic()
    with ThreadPoolExecutor(max_workers=len(namespaces)) as pool:
        list(pool.map(lambda ns: direct_undo(url, ns, poll, verify), namespaces))
    wall = time.monotonic() - started
    cpu = time.process_time() - cpu_before
    print(json.dumps({"wall": wall, "cpu": cpu, "began": began}), flush=True)


# -- measuring -------------------------------------------------------------------------------


def instrument_standin(arrivals: Arrivals) -> None:
    """Have the stand-in (in this process) note in `arrivals` every request it receives,
    and keep its own request log short (kmock scans it on each request)."""
    from devinfra import kube_server

    original = kube_server.KubeStandin.__call__

    async def recording(self: Any, raw_request: Any) -> Any:
        arrivals.seen.append((time.time(), raw_request.method, raw_request.path))
        return await original(self, raw_request)

    kube_server.KubeStandin.__call__ = recording  # type: ignore[method-assign]
    kube_server.REQUESTS_KEPT = 20


def _request_milestones(requests: list[tuple[float, str, str]]) -> dict[str, float]:
    """When a Deployment's first request, its patch, its last read of the Deployment (the
    poll that saw the rollout complete) and its last request reached the stand-in."""
    reads = [at for at, method, path in requests if method == "GET" and path.endswith("/app")]
    return {
        "first request": requests[0][0],
        "patch": next(at for at, method, _ in requests if method == "PATCH"),
        "last poll": reads[-1],
        "last request": requests[-1][0],
    }


def _print_milestones(engine: dict[str, list[float]], direct: dict[str, list[float]]) -> None:
    print("  where the time goes, ms after the confirmation (direct: after its start)")
    print("  milestone            engine p50    max    direct p50    max")
    names = list(engine) + [name for name in direct if name not in engine]
    for name in names:
        cells = []
        for found in (engine, direct):
            values = found.get(name)
            cells.append(
                f"{statistics.median(values):7.0f} {max(values):7.0f}" if values else " " * 15
            )
        print(f"  {name:18s}   {cells[0]}       {cells[1]}")


# -- processes and the database --------------------------------------------------------------


def _start_worker(
    env: dict[str, str], pool: str, concurrency: int, log: Path, number: int
) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "celery", "-A", "console", "worker"]
    command += ["--pool", pool, "--concurrency", str(concurrency)]
    command += ["--hostname", f"bench{number}@%h"]
    command += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
    command += ["--loglevel", "WARNING"]
    return subprocess.Popen(
        command,
        cwd=ROOT,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


# -- the bench -------------------------------------------------------------------------------


class Bench:
    def __init__(self, options: argparse.Namespace, standin: Any, arrivals: Arrivals) -> None:
        self.options = options
        self.standin = standin
        self.arrivals = arrivals
        from django.contrib.auth import get_user_model
        from django.utils import timezone

        from incidents.models import Incident, Severity
        from incidents.roles import INCIDENT_COMMANDER, ensure_roles

        self.commander = get_user_model().objects.create_user("bench-ic")
        self.commander.groups.add(ensure_roles()[INCIDENT_COMMANDER])
        now = timezone.now()
        self.incident = Incident.objects.create(
            title="Bench: roll back every Deployment",
            severity=Severity.P2,
            started_at=now,
            detected_at=now,
        )

    def approved_run(self, namespaces: list[str]) -> Any:
        import rollbacks.services
        from incidents.models import Service

        services = [
            Service.objects.create(
                name=ns, backend="kubernetes", target_config={"namespace": ns, "deployment": "app"}
            )
            for ns in namespaces
        ]
        run = rollbacks.services.run_create(
            incident=self.incident,
            steps=[
                rollbacks.services.StepSpec(service=s, previous=True, group=1) for s in services
            ],
            actor=self.commander,
        )
        return rollbacks.services.run_request_approval(run=run, actor=self.commander)

    def execute(self, run: Any) -> tuple[Any, float, float]:
        """Confirm `run` and wait for it; returns it finished, the wall time, the confirm
        instant."""
        import rollbacks.services
        from rollbacks.models import RUN_FINISHED_STATES, Run

        confirmed = time.time()
        started = time.monotonic()
        rollbacks.services.run_confirm_and_start(
            run=run, actor=self.commander, confirmation=run.expected_confirmation()
        )
        deadline = time.monotonic() + self.options.timeout
        state = Run.objects.filter(pk=run.pk).values_list("state", flat=True)
        # Every 10 ms, one indexed read of one column: the end is seen within 10 ms, and
        # the stand-in, which shares this process, loses about 2 % of a core to it.
        while state.get() not in RUN_FINISHED_STATES:
            if time.monotonic() > deadline:
                raise SystemExit(f"run #{run.pk} did not finish in {self.options.timeout} s")
            time.sleep(0.01)
        run = Run.objects.get(pk=run.pk)
        if run.state != "succeeded":
            raise SystemExit(f"run #{run.pk} {run.state}: {run.failure_reason}")
        return run, time.monotonic() - started, confirmed

    def latencies(self, run: Any, confirmed: float) -> dict[str, list[float]]:
        import redis

        time.sleep(0.3)  # the worker sends its trace every 0.1 s
        traced: list[bytes] = redis.Redis.from_url(self.options.redis).lrange(TRACE_KEY, 0, -1)  # type: ignore[assignment]
        sent = [(at, url) for at, _, url in (json.loads(raw) for raw in traced) if at >= confirmed]
        found: dict[str, list[float]] = {"served": [], "sent": [], "claimed": [], "confirm": []}
        for step in run.steps.select_related("service"):
            prefix = f"/apis/apps/v1/namespaces/{step.service.target_config['namespace']}/"
            enqueued = step.enqueued_at.timestamp()
            served = self.arrivals.first(prefix, confirmed)
            found["served"].append((served - enqueued) * 1000)
            found["confirm"].append((served - confirmed) * 1000)
            found["sent"].append(
                (min(at for at, url in sent if url.startswith(prefix)) - enqueued) * 1000
            )
            found["claimed"].append((step.started_at.timestamp() - enqueued) * 1000)
        return found

    def milestones(self, run: Any, confirmed: float) -> dict[str, list[float]]:
        """Per step, the instants (ms after the confirmation) it passed each milestone."""
        found: dict[str, list[float]] = {}
        for step in run.steps.select_related("service"):
            ns = step.service.target_config["namespace"]
            at = {
                "enqueued": step.enqueued_at.timestamp(),
                "claimed": step.started_at.timestamp(),
                **_request_milestones(self.arrivals.of_namespace(ns, confirmed)),
                "step finished": step.finished_at.timestamp(),
                "run finished": run.finished_at.timestamp(),
            }
            for name, instant in at.items():
                found.setdefault(name, []).append((instant - confirmed) * 1000)
        return found

    def direct(self, namespaces: list[str], *, verify: bool, env: dict[str, str]) -> dict[str, Any]:
        command = [sys.executable, __file__, "--direct", self.standin.url]
        command += [str(self.options.poll), "verify" if verify else "bare", *namespaces]
        phase = Phase(self.arrivals, set())
        child = subprocess.run(
            command, capture_output=True, text=True, timeout=self.options.timeout, env=env
        )
        if child.returncode:
            raise SystemExit(f"the direct path failed:\n{child.stderr[-2000:]}")
        reported = json.loads(child.stdout.strip().splitlines()[-1])
        # The same latency as the engine's, for reference: from the threads' start (no queue,
        # no claim) to each Deployment's first request served.
        began = reported["began"]
        first = [
            (self.arrivals.first(f"/apis/apps/v1/namespaces/{ns}/", began) - began) * 1000
            for ns in namespaces
        ]
        milestones: dict[str, list[float]] = {}
        for ns in namespaces:
            for name, instant in _request_milestones(self.arrivals.of_namespace(ns, began)).items():
                milestones.setdefault(name, []).append((instant - began) * 1000)
        milestones["finished"] = [reported["wall"] * 1000]
        return {
            **phase.end(client_cpu=reported["cpu"]),
            "wall": reported["wall"],
            "first": first,
            "milestones": milestones,
        }


def bench(options: argparse.Namespace) -> int:
    count = options.deployments
    arrivals = Arrivals()
    instrument_standin(arrivals)
    from devinfra.kube_standin import start_kube_standin

    singles = [f"single-{i}" for i in range(options.single_runs)]
    rounds = range(options.rounds)
    engine_ns = [[f"engine{r}-{i:02d}" for i in range(count)] for r in rounds]
    direct_ns = [[f"direct{r}-{i:02d}" for i in range(count)] for r in rounds]
    checked_ns = [[f"checked{r}-{i:02d}" for i in range(count)] for r in rounds]
    every_ns = singles + [
        ns for path in (engine_ns, direct_ns, checked_ns) for r in path for ns in r
    ]
    print(f"Seeding {len(every_ns)} Deployments…", flush=True)
    standin = start_kube_standin(status_delay=options.status_delay, restart_interval=5.0)
    standin.seed(
        [
            {"namespace": ns, "name": "app", "images": [f"app:{ns}-1", f"app:{ns}-2"]}
            for ns in every_ns
        ]
    )
    # The seeded store is large and lives to the end: keep the collector from scanning it
    # again and again while it serves (a full collection paused either path at random).
    gc.collect()
    gc.freeze()

    server_url = postgres_server_url()
    recreate_database(server_url, options.database)
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "bench.settings",
        "PYTHONPATH": str(ROOT),
        "DEBUG": "1",
        "DATABASE_URL": database_url(server_url, options.database),
        "REDIS_URL": options.redis,
        "CELERY_BROKER_URL": options.redis,
        "KUBE_HOST": standin.url,
        "BENCH_POLL_SECONDS": str(options.poll),
        "BENCH_STEPS_PER_MESSAGE": str(options.steps_per_message),
        "BENCH_TRACE_KEY": TRACE_KEY,
        "LOG_LEVEL": "WARNING",
    }
    os.environ.update(env)
    workers: list[subprocess.Popen[bytes]] = []
    log = Path(tempfile.mkdtemp(prefix="bench-")) / "worker.log"
    try:
        import django

        django.setup()
        import redis
        from celery import Celery
        from django.core.management import call_command

        redis.Redis.from_url(options.redis).flushdb()
        call_command("migrate", verbosity=0)
        bench = Bench(options, standin, arrivals)
        single_runs = [bench.approved_run([ns]) for ns in singles]
        bursts = [bench.approved_run(namespaces) for namespaces in engine_ns]

        size = -(-options.concurrency // options.workers)
        print(
            f"Starting {options.workers} Celery worker(s) ({options.pool} pool, {size} each)…",
            flush=True,
        )
        workers = [
            _start_worker(env, options.pool, size, log.with_suffix(f".{n}.log"), n)
            for n in range(options.workers)
        ]
        deadline = time.monotonic() + 60
        while len(Celery(broker=options.redis).control.ping(timeout=0.5) or []) < options.workers:
            if any(w.poll() is not None for w in workers) or time.monotonic() > deadline:
                print(log.with_suffix(".0.log").read_text(), file=sys.stderr)
                raise SystemExit("the workers did not start")
        time.sleep(1.0)

        print(f"Engine: {len(single_runs)} single-step runs, one at a time…", flush=True)
        single: dict[str, list[float]] = {}
        for run in single_runs:
            run, _, confirmed = bench.execute(run)
            for name, values in bench.latencies(run, confirmed).items():
                single.setdefault(name, []).extend(values)

        # Each round runs the three paths side by side; the ratios are per round, the figures
        # reported the median round's.
        measured: list[dict[str, dict[str, Any]]] = []
        parallel: dict[str, list[float]] = {}
        direct_first: list[float] = []
        for r in rounds:
            print(f"Round {r + 1}: engine, one run of {count} parallel steps…", flush=True)
            phase = Phase(arrivals, {w.pid for w in workers})
            burst, engine_wall, confirmed = bench.execute(bursts[r])
            engine: dict[str, Any] = {**phase.end(), "wall": engine_wall}
            engine["recorded"] = (burst.finished_at - burst.confirmed_at).total_seconds()
            engine["milestones"] = bench.milestones(burst, confirmed)
            for name, values in bench.latencies(burst, confirmed).items():
                parallel.setdefault(name, []).extend(values)
            print(f"Round {r + 1}: direct, kubernetes client, a thread per Deployment…")
            direct = bench.direct(direct_ns[r], verify=False, env=env)
            direct_first.extend(direct["first"])
            print(f"Round {r + 1}: direct, plus the engine's verification reads…", flush=True)
            checked = bench.direct(checked_ns[r], verify=True, env=env)
            measured.append({"engine": engine, "direct": direct, "checked": checked})

        wrong = []
        for ns in every_ns:
            deployment = standin.get("deployments", ns, "app") or {}
            if deployment["spec"]["template"]["spec"]["containers"][0]["image"] != f"app:{ns}-1":
                wrong.append(ns)
        if wrong:
            raise SystemExit(f"not rolled back: {', '.join(wrong)}")

        ratios = [m["engine"]["wall"] / m["direct"]["wall"] for m in measured]
        checked_ratios = [m["engine"]["wall"] / m["checked"]["wall"] for m in measured]
        middle = sorted(range(len(ratios)), key=lambda r: ratios[r])[len(ratios) // 2]
        engine, direct, checked = (measured[middle][k] for k in ("engine", "direct", "checked"))
        print()
        print(
            f"{count} Deployments in parallel, rollout {options.status_delay:g} s, poll "
            f"{options.poll:g} s, {os.cpu_count()} CPUs (all at their previous image after)"
        )
        each = ", ".join(f"{ratio:.2f}" for ratio in ratios)
        print(
            f"  ratio engine / direct          {statistics.median(ratios):7.2f}     "
            f"(target ≤ {TARGET_RATIO:g}; median of {len(ratios)} rounds: {each})"
        )
        each = ", ".join(f"{ratio:.2f}" for ratio in checked_ratios)
        print(
            f"  ratio engine / direct+checks   {statistics.median(checked_ratios):7.2f}     "
            f"(rounds: {each})"
        )
        print(f"  the median round ({middle + 1}):")
        print(f"  (engine run as recorded: confirmed → finished {engine['recorded']:.2f} s)")
        print("  path               wall  requests   CPU s: client  stand-in  PostgreSQL  Redis")
        for label, figures in (
            ("engine", engine),
            ("direct", direct),
            ("direct + checks", checked),
        ):
            print(
                f"  {label:16s} {figures['wall']:5.2f} s  {figures['requests']:8.0f}"
                f"          {figures['client']:6.2f}    {figures['standin']:6.2f}"
                f"      {figures['postgres']:6.2f} {figures['redis']:6.2f}"
            )
        per_step = engine["client"] / count * 1000
        print(f"  (client: the Celery worker for the engine, {per_step:.0f} ms per step)")
        _print_milestones(engine["milestones"], direct["milestones"])
        bursts_label = f"bursts of {count} ({len(ratios)} rounds)"
        for label, found in ((bursts_label, parallel), ("single-step runs", single)):
            print(f"Enqueue → first API call, {label}:")
            served = percentiles(found["served"])
            print(f"  served by the API              {served}   (target p50 ≤ 100 ms)")
            print(f"  sent by the worker             {percentiles(found['sent'])}")
            print(f"  step claimed by the worker     {percentiles(found['claimed'])}")
            print(f"  (confirm → served              {percentiles(found['confirm'])})")
            if found is parallel:
                print(f"  (direct: thread start → served {percentiles(direct_first)})")
        print(f"Timeline entries written: {bench.incident.timeline.count()}")
        return 0
    finally:
        for worker in workers:
            _stop(worker)
        standin.stop()
        if not options.keep_database:
            drop_database(server_url, options.database)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] in (["--direct"], ["--direct-on-go"]):
        run_direct(
            argv[1], float(argv[2]), argv[3] == "verify", argv[4:], on_go=argv[0] != "--direct"
        )
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--deployments", type=int, default=50)
    parser.add_argument("--status-delay", type=float, default=1.0, help="seconds per rollout")
    parser.add_argument("--poll", type=float, default=0.25, help="rollout poll, every path")
    parser.add_argument("--single-runs", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=5, help="engine/direct pairs, side by side")
    parser.add_argument(
        "--steps-per-message", type=int, default=25, help="ROLLBACK_STEPS_PER_MESSAGE"
    )
    parser.add_argument("--pool", default="threads", choices=["threads", "prefork"])
    parser.add_argument("--workers", type=int, default=1, help="worker processes")
    parser.add_argument("--concurrency", type=int, help="in all workers (default: N)")
    parser.add_argument("--database", default="backout_bench")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/12")
    parser.add_argument("--timeout", type=float, default=120.0, help="per phase")
    parser.add_argument("--keep-database", action="store_true")
    options = parser.parse_args(argv)
    options.concurrency = options.concurrency or options.deployments
    return bench(options)


if __name__ == "__main__":
    sys.exit(main())
