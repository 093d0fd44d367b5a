"""Several console processes on one machine, each started with its production command.

A `Cluster` runs web processes (uvicorn, each on a port of its own), Celery workers and
Celery beat, with the commands docs/deploy.md gives each role, on the one PostgreSQL
database and the one Redis database (and broker) its caller names. The processes take their
settings from the environment only, as in production: nothing here imports the console.

    with Cluster(database_url=..., redis_url=..., broker_url=..., directory=tmp) as cluster:
        cluster.start(web=2, workers=2, beat=True)
        cluster.kill(cluster.workers[0])

Tests start one to show that several processes keep one truth (tests/test_cluster.py); a
bench starts two web processes and two workers the same way. Each process leads a process
group of its own, so `kill` takes a worker's pool down with it, as a lost machine would.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from devinfra.processes import free_port, wait_until_ready

ROOT = Path(__file__).resolve().parent.parent

# The production commands, as docs/deploy.md and deploy/ run them (tests/console/
# test_deploy_files.py holds those files to these arguments). Every web process serves the
# live stream, whose connections never end by themselves: a stop waits this long for them.
WEB_OPTIONS = ("--lifespan", "off", "--no-proxy-headers", "--timeout-graceful-shutdown", "10")
WORKER_OPTIONS = ("--without-mingle", "--without-gossip", "--loglevel", "INFO")
BEAT_OPTIONS = ("--loglevel", "INFO")


def web_command(python: str, *, host: str, port: int, workers: int) -> list[str]:
    """The web role: the ASGI app under uvicorn with `workers` processes on one port."""
    return [
        *(python, "-m", "uvicorn", "console.asgi:application"),
        *("--host", host, "--port", str(port), "--workers", str(workers)),
        *WEB_OPTIONS,
    ]


def worker_command(
    python: str, *, hostname: str, concurrency: int, queues: str | None = None
) -> list[str]:
    """The worker role: every queue, or only `queues` (e.g. "steps")."""
    chosen = ("--queues", queues) if queues else ()
    return [
        *(python, "-m", "celery", "-A", "console", "worker"),
        *("--hostname", hostname, "--concurrency", str(concurrency), *chosen),
        *WORKER_OPTIONS,
    ]


def beat_command(python: str, *, schedule: Path) -> list[str]:
    """The beat role (run exactly one): the schedule in console/settings.py."""
    program = (python, "-m", "celery", "-A", "console", "beat")
    return [*program, "--schedule", str(schedule), *BEAT_OPTIONS]


@dataclass(frozen=True)
class WorkerSpec:
    """A worker to start: the queues it consumes ("steps"; None: every queue) and its
    pool's size (None: the cluster's `worker_concurrency`)."""

    queues: str | None = None
    concurrency: int | None = None


@dataclass
class Member:
    """One process of the cluster: its role ("web", "worker", "beat"), name, command, log,
    and a web process's port or a worker's queues."""

    role: str
    name: str
    argv: list[str]
    log: Path
    process: subprocess.Popen[bytes]
    port: int | None = None
    queues: str | None = None

    @property
    def url(self) -> str:
        """Where a web process answers."""
        if self.port is None:
            raise ValueError(f"{self.name} is not a web process")
        return f"http://127.0.0.1:{self.port}"

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def output(self) -> str:
        """What the process has logged so far."""
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def signal_group(self, signum: int) -> None:
        """Send `signum` to the process and everything it started (its process group)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signum)


@dataclass
class Cluster:
    """Web processes, Celery workers and beat on one database, one Redis and one broker.

    `env` is laid over the inherited environment and the connection settings (a test's
    shorter intervals, SECRET_KEY, where Kubernetes answers). `directory` holds each
    process's log (`<name>.log`), beat schedules and, with DEBUG off, the collected static
    files. `web_workers` is uvicorn's process count per web process (1: killing a web
    process drops exactly its own connections), `worker_concurrency` each worker's pool.
    """

    database_url: str
    redis_url: str
    broker_url: str
    directory: Path
    env: Mapping[str, str] = field(default_factory=dict)
    web_workers: int = 1
    worker_concurrency: int = 2
    python: str = sys.executable
    members: list[Member] = field(default_factory=list, init=False)
    _static_collected: bool = field(default=False, init=False, repr=False)

    def environment(self) -> dict[str, str]:
        """What every process of the cluster is started with."""
        return {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "console.settings",
            "DEBUG": "0",
            "PYTHONUNBUFFERED": "1",
            "STATIC_ROOT": str(self.directory / "static"),
            "DATABASE_URL": self.database_url,
            "REDIS_URL": self.redis_url,
            "CELERY_BROKER_URL": self.broker_url,
            **self.env,
        }

    def _debug(self) -> bool:
        return self.environment()["DEBUG"].strip().lower() in {"1", "true", "yes", "on"}

    # -- roles ---------------------------------------------------------------------------

    def manage(self, *args: str, timeout: float = 300) -> str:
        """Run `manage.py args` with the cluster's environment; its output, or RuntimeError."""
        result = subprocess.run(
            [self.python, "manage.py", *args],
            cwd=ROOT,
            env=self.environment(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if result.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stderr[-3000:]}")
        return result.stdout

    def migrate(self) -> None:
        """The migration role: the schema, then the roles (both safe to run again)."""
        self.manage("migrate", "--noinput")
        self.manage("create_roles")

    def collect_static(self) -> None:
        """What a web process serves with DEBUG off (once per cluster)."""
        if not self._static_collected:
            self.manage("collectstatic", "--noinput")
            self._static_collected = True

    def start(
        self,
        *,
        web: int = 2,
        workers: int | Sequence[WorkerSpec] = 2,
        beat: bool = False,
        migrate: bool = False,
    ) -> Cluster:
        """Start `web` web processes, the workers (a number of them on every queue, or one
        per spec) and, if asked, beat, all at once; return when each is ready. Whatever
        fails to start stops the whole cluster."""
        specs = [WorkerSpec()] * workers if isinstance(workers, int) else list(workers)
        try:
            if migrate:
                self.migrate()
            # Workers and beat import the console while the static files are collected.
            starting = [
                self.start_worker(queues=spec.queues, concurrency=spec.concurrency, wait=False)
                for spec in specs
            ]
            if beat:
                starting.append(self.start_beat(wait=False))
            starting += [self.start_web(wait=False) for _ in range(web)]
            for member in starting:
                self.wait_ready(member)
        except BaseException:
            self.stop(grace=0)
            raise
        return self

    def start_web(self, *, wait: bool = True) -> Member:
        """One more web process, on a free port of its own."""
        if not self._debug():
            self.collect_static()
        name = f"web{self._count('web') + 1}"
        port = free_port()
        argv = web_command(self.python, host="127.0.0.1", port=port, workers=self.web_workers)
        return self._launch("web", name, argv, port=port, wait=wait)

    def start_worker(
        self, *, queues: str | None = None, concurrency: int | None = None, wait: bool = True
    ) -> Member:
        """One more Celery worker (`worker<n>@<host>`), on every queue or on `queues`."""
        name = f"worker{self._count('worker') + 1}"
        argv = worker_command(
            self.python,
            hostname=f"{name}@%h",
            concurrency=concurrency or self.worker_concurrency,
            queues=queues,
        )
        member = self._launch("worker", name, argv, wait=False)
        member.queues = queues
        if wait:
            self.wait_ready(member)
        return member

    def start_beat(self, *, wait: bool = True) -> Member:
        """Celery beat. Production runs exactly one; a second call is the mistake of
        running two, which the console must survive without doing anything twice."""
        name = f"beat{self._count('beat') + 1}"
        argv = beat_command(self.python, schedule=self.directory / f"{name}-schedule")
        return self._launch("beat", name, argv, wait=wait)

    # -- watching and stopping -----------------------------------------------------------

    @property
    def web(self) -> list[Member]:
        """The web processes still running, in start order."""
        return self._alive("web")

    @property
    def workers(self) -> list[Member]:
        return self._alive("worker")

    @property
    def beats(self) -> list[Member]:
        return self._alive("beat")

    def wait_ready(self, member: Member, timeout: float = 60.0) -> None:
        """Block until `member` serves: /readyz answers 200 (web), the worker says it is
        ready, beat says it starts. A web process that lost its port to another process
        started meanwhile is started again on another."""
        for attempt in range(3):
            try:
                if member.role == "web":
                    assert member.port is not None
                    wait_until_ready(
                        f"{member.url}/readyz",
                        member.port,
                        member.process,
                        timeout=timeout,
                        what=member.name,
                    )
                else:
                    _wait_for(member, _READY_LINES[member.role], timeout)
                return
            except RuntimeError as error:
                lost_port = member.role == "web" and "address already in use" in member.output()
                if not lost_port or attempt == 2:
                    tail = "\n".join(member.output().splitlines()[-30:])
                    raise RuntimeError(f"{error}; the end of {member.log}:\n{tail}") from None
                self._relaunch_web(member)

    def kill(self, member: Member) -> None:
        """SIGKILL `member` and its children: no shutdown, no acknowledgement, nothing."""
        member.signal_group(signal.SIGKILL)
        member.process.wait(timeout=10)

    def stop(self, grace: float = 5.0) -> None:
        """Ask every process to stop (SIGTERM), then kill those still running after
        `grace` seconds (a worker finishing a task, uvicorn waiting on open streams)."""
        running = [member for member in self.members if member.alive]
        for member in running:
            member.signal_group(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for member in running:
            try:
                member.process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.kill(member)
            # A prefork pool's children may outlive their parent for a moment.
            member.signal_group(signal.SIGKILL)

    def __enter__(self) -> Cluster:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # -- internals -----------------------------------------------------------------------

    def _count(self, role: str) -> int:
        return sum(member.role == role for member in self.members)

    def _alive(self, role: str) -> list[Member]:
        return [member for member in self.members if member.role == role and member.alive]

    def _launch(
        self, role: str, name: str, argv: Sequence[str], *, port: int | None = None, wait: bool
    ) -> Member:
        self.directory.mkdir(parents=True, exist_ok=True)
        log = self.directory / f"{name}.log"
        member = Member(role, name, list(argv), log, self._popen(argv, log), port=port)
        self.members.append(member)
        if wait:
            self.wait_ready(member)
        return member

    def _popen(self, argv: Sequence[str], log: Path) -> subprocess.Popen[bytes]:
        with log.open("ab") as output:
            return subprocess.Popen(
                list(argv),
                cwd=ROOT,
                env=self.environment(),
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def _relaunch_web(self, member: Member) -> None:
        member.process.wait(timeout=10)
        member.port = free_port()
        member.argv = web_command(
            self.python, host="127.0.0.1", port=member.port, workers=self.web_workers
        )
        member.log.write_text("")
        member.process = self._popen(member.argv, member.log)


# What a worker and beat log once they serve.
_READY_LINES = {"worker": " ready.", "beat": "beat: Starting"}


def _wait_for(member: Member, line: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while line not in member.output():
        if not member.alive:
            raise RuntimeError(f"{member.name} exited with {member.process.returncode}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{member.name} was not ready within {timeout:.0f} s")
        time.sleep(0.05)
