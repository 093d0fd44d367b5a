"""Demo infrastructure: a moto AWS server and the Kubernetes stand-in, seeded with services
that sit at a bad release with a known-good one to roll back to.

    python -m devinfra.demo serve --env-file var/demo.env [--state var/demo-infra.json]
        [--kubeconfig PATH] [--status-delay 2.0] [--redis-url URL]
        [--orders-database-url URL] [--console-port PORT [--no-sso]]

It starts a moto server (a child process) and the Kubernetes API stand-in (a thread of this
process) on free ports of 127.0.0.1, seeds them, reads every service's live version back
through its own backend, writes the state file and a kubeconfig, and only then writes the
env file. It then blocks until SIGINT or SIGTERM, stops both servers and removes the env
file (the state file and kubeconfig stay, describing servers that are gone).

The services it seeds, each live at a bad release with a known-good one before it, are listed
in docs/demo.md; the seeds live in devinfra.demo_services and the demo_* modules beside it,
and the hosted-API stand-ins with theirs in devinfra.hosted (devinfra.demo_hosted).

Verification: storefront-web and payments-api carry `checks` in their target config (see
docs/verification.md): an http check of their health endpoint (served by
devinfra.demo_health from the stand-in's live state: 503 while pods are not Ready, the
version the pod template runs) that expects the version rolled back to, and a
kubernetes_pods check with no crash loops. When a Prometheus binary is installed (Debian's
package), the demo also starts one scraping the demo's error-ratio metrics, and
storefront-web gets an error-rate check against it (the check names that server's url); without
one, that check is left out and the start-up summary says so.

The Deployments are the stand-in's own "demo" seed (devinfra.kube_standin.DEMO_SEED): each
image is a revision, the last one live and bad, the earlier ones known-good. Pods of the bad
web image (v2.4.1) crash-loop, so that rollout shows stuck, with restarts, until rolled back.
Rollouts take `--status-delay` seconds to report complete, so a rollback visibly progresses.
The feature flag lives in the Redis at `--redis-url` (default: $REDIS_URL, else
redis://127.0.0.1:6379/0) under the prefix `backout-demo:flags:`; the console's REDIS_URL
must name the same Redis. When that Redis does not answer, the flag service is left out with
a warning.

Env file (`export KEY=VALUE` lines, values shell-quoted, so `. var/demo.env` sets them in a
shell; written via a temporary file and a rename once everything above is ready, so its
existence means "ready"; removed on shutdown):

    export AWS_ENDPOINT_URL=http://127.0.0.1:<moto port>
    export AWS_ACCESS_KEY_ID=testing
    export AWS_SECRET_ACCESS_KEY=testing
    export AWS_DEFAULT_REGION=us-east-1
    export KUBECONFIG=<absolute path of the kubeconfig written for the stand-in>
    export DEMO_INFRA_FILE=<absolute path of the state file>
    export REGISTERED_COMMANDS_FILE=<absolute path of demo-commands.json> (with the command service)

State file (JSON): {"services": [{"name", "environment", "backend" (a kind of
executors.registry.BACKENDS), "description", "target_config" (valid for that backend),
"releases": [{"version", "artifact", "shipped_hours_ago", "notes", "known_good"}, ...] oldest
first, "live_version"}]}. `live_version` is exactly what the backend's `live_version()` reads
from the running demo (checked at start-up): the live release's artifact for Kubernetes (the
image), ECS (the task-definition ARN), DNS (the record values), feature flags (`flag=state`)
and the database (the instance the secret points at); the release folder name, which is also
its version, for the static frontend. A release carries what was saved before the release
after it as "backup" (incidents.models.Release.backup): the DNS record set
(`{"record_sets": [...]}`) and, for Kubernetes, the Deployment manifest that ran it
(`{"manifest": {...}}`), which the plan builder offers to restore.

moto facts this leans on: ECS `create_service` leaves runningCount at 0 (all pending) until
an `update_service` passes desiredCount, so the seed does that once; the services use bridge
networking (awsvpc would need a moto VPC, subnets and security groups); moto never updates an
ECS service's deployments[], so after a rollback the ECS "deployments settled" check says
inconclusive. The account id and RDS endpoints are moto's fixed ones (123456789012,
`<id>.aaaaaaaaaa.<region>.rds.amazonaws.com`). A database rollback restores to a new instance
(`orders-db-restore-snap-<hash>`), so afterwards the live version names no listed release.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import FrameType

import redis

from devinfra.alertmanager import AlertmanagerMissing, AlertmanagerServer, start_alertmanager
from devinfra.demo_edge import seed_edge_functions
from devinfra.demo_git_postgres import database_passwords, seed_git_and_postgres
from devinfra.demo_health import DemoHealth
from devinfra.demo_hosted import HostedDemo, start_hosted_demo
from devinfra.demo_secrets_ecs import seed_ecs_restart, seed_parameter_switch, seed_secret_switch
from devinfra.demo_seeding import (
    check_live_version,
    kubernetes_services,
    start_demo_prometheus,
    with_saved_manifests,
    with_verification,
)
from devinfra.demo_services import (
    DemoService,
    orders_database_url,
    seed_commands,
    seed_database,
    seed_dns,
    seed_ecs,
    seed_feature_flag,
    seed_static_frontend,
)
from devinfra.demo_sso import sso_env, sso_summary, start_demo_sso
from devinfra.demo_state_versions import seed_s3_versions, seed_terraform_state
from devinfra.hosted.sentry import with_sentry_check
from devinfra.kube_standin import KubeStandinHandle, start_kube_standin
from devinfra.oidc_idp.launch import IdentityProvider
from devinfra.processes import ServerProcess, start_moto_server
from devinfra.prometheus import PrometheusMissing, PrometheusServer
from executors.base import Connections
from executors.registry import backend_class

AWS_REGION = "us-east-1"
DEFAULT_STATE_FILE = Path("var/demo-infra.json")
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/backout"
# The bad web release crash-loops, so its rollout is stuck and the checks say why.
CRASH_LOOPING_IMAGES = ("registry.example.com/storefront/web:v2.4.1",)
DEMO_BACKENDS = (
    "kubernetes",
    "ecs",
    "static_frontend",
    "dns",
    "database",
    "feature_flag",
    "command",
    "git_revert",
    "pg_restore",
    "secret_switch",
    "ecs_restart",
    "terraform_state",
    "s3_versions",
    "edge_functions",
    "github_actions",
    "docker_swarm",
    "doppler",
    "vercel",
)
# moto accepts any credentials; these are what the console is told to use.
AWS_TEST_ENVIRONMENT = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": AWS_REGION,
}


@dataclass
class DemoInfrastructure:
    """Running demo servers and the services seeded in them."""

    moto: ServerProcess
    kube: KubeStandinHandle
    connections: Connections
    services: list[DemoService]
    state_file: Path
    kubeconfig: Path
    # The registered commands file (REGISTERED_COMMANDS_FILE), once the command service is in.
    commands_file: Path | None = None
    warnings: list[str] = field(default_factory=list)
    health: DemoHealth | None = None
    prometheus: PrometheusServer | None = None
    identity_provider: IdentityProvider | None = None
    alertmanager: AlertmanagerServer | None = None
    # The token the demo's Alertmanager sends with (bin/demo adopts it for "alertmanager").
    alertmanager_token: str = ""
    # The hosted-API stand-ins (Vercel, GitHub, Doppler, ...) and their services.
    hosted: HostedDemo | None = None

    def service(self, name: str) -> DemoService:
        """The demo service called `name`."""
        return next(service for service in self.services if service.name == name)

    def env(self) -> dict[str, str]:
        """The env-file contract: what a console process needs to reach this demo."""
        return {
            "AWS_ENDPOINT_URL": self.moto.url,
            **AWS_TEST_ENVIRONMENT,
            "KUBECONFIG": str(self.kubeconfig.resolve()),
            "DEMO_INFRA_FILE": str(self.state_file.resolve()),
            **(
                {"REGISTERED_COMMANDS_FILE": str(self.commands_file.resolve())}
                if self.commands_file is not None
                else {}
            ),
            **(sso_env(self.identity_provider) if self.identity_provider else {}),
            **({"DEMO_ALERTMANAGER_TOKEN": self.alertmanager_token} if self.alertmanager else {}),
            # The decision helper reads its signals from the demo's Prometheus.
            **({"PROMETHEUS_URL": self.prometheus.url} if self.prometheus else {}),
            # The workers restore the inventory database with its password.
            **database_passwords(self.services),
            # The tokens the hosted stand-ins accept, under the names the services give.
            **(self.hosted.env() if self.hosted else {}),
        }

    def alive(self) -> bool:
        """Whether the servers still run."""
        provider = self.identity_provider
        return (
            self.moto.process.poll() is None
            and self.kube._thread.is_alive()
            and (provider is None or provider.server.process.poll() is None)
            and (self.hosted is None or self.hosted.alive())
        )

    def stop(self) -> None:
        """Stop Prometheus, the health server, the Kubernetes stand-in and the moto server."""
        try:
            if self.identity_provider is not None:
                self.identity_provider.stop()
            if self.alertmanager is not None:
                self.alertmanager.stop()
            if self.prometheus is not None:
                self.prometheus.stop()
            if self.health is not None:
                self.health.stop()
            if self.hosted is not None:
                self.hosted.stop()
            self.kube.stop()
        finally:
            self.moto.stop()


# -- running -------------------------------------------------------------------------------


@contextmanager
def environment(values: Mapping[str, str]) -> Iterator[None]:
    """`values` in this process's environment while the block runs, then as they were: the
    demo's tokens must not outlive it in a process that goes on (a test's)."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def start_demo_infrastructure(
    *,
    state_file: Path = DEFAULT_STATE_FILE,
    kubeconfig: Path | None = None,
    status_delay: float = 2.0,
    redis_url: str | None = None,
    orders_url: str | None = None,
    console_port: int | None = None,
    sso: bool = True,
) -> DemoInfrastructure:
    """Start, seed and check the demo servers; write the state file and the kubeconfig.

    `kubeconfig` defaults to demo-kubeconfig.yaml beside the state file. Sets the testing AWS
    credentials in this process's environment (where none are set) for the backends' clients.
    With `console_port`, an Alertmanager sending to that console starts too, and, unless `sso`
    is false, an identity provider for single sign-on that sends people back to it
    (devinfra.demo_sso).
    """
    for key, value in AWS_TEST_ENVIRONMENT.items():
        os.environ.setdefault(key, value)
    redis_url = redis_url or os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL
    state_file = Path(state_file)
    kubeconfig = Path(kubeconfig or state_file.with_name("demo-kubeconfig.yaml"))
    state_file.parent.mkdir(parents=True, exist_ok=True)
    kubeconfig.parent.mkdir(parents=True, exist_ok=True)

    with ThreadPoolExecutor(max_workers=10, thread_name_prefix="demo-seed") as pool:
        # moto takes about a second to start; the stand-in starts and the backends (the
        # kubernetes client alone takes a second to import) load meanwhile.
        starting_moto = pool.submit(start_moto_server)
        loading = pool.submit(lambda: [backend_class(kind) for kind in DEMO_BACKENDS])
        try:
            kube = start_kube_standin(
                status_delay=status_delay,
                restart_interval=5.0,
                crash_loop_images=CRASH_LOOPING_IMAGES,
                seed="demo",
            )
        except BaseException:
            starting_moto.result().stop()
            raise
        try:
            moto = starting_moto.result()
        except BaseException:
            kube.stop()
            raise
        connections = Connections(
            aws_endpoint_url=moto.url,
            aws_region=AWS_REGION,
            kubeconfig=str(kube.write_kubeconfig(kubeconfig).resolve()),
            redis_url=redis_url,
        )
        infrastructure = DemoInfrastructure(
            moto=moto,
            kube=kube,
            connections=connections,
            services=[],
            state_file=state_file,
            kubeconfig=kubeconfig,
        )
        try:
            # Each seed talks to its own AWS service, so they run side by side.
            seeding = [
                pool.submit(seed, connections)
                for seed in (
                    seed_ecs,
                    seed_static_frontend,
                    seed_dns,
                    seed_database,
                    seed_terraform_state,
                    seed_s3_versions,
                    seed_secret_switch,
                    seed_parameter_switch,
                    seed_ecs_restart,
                    seed_edge_functions,
                )
            ]
            hosted_seeding = pool.submit(start_hosted_demo, connections)
            flag_seeding = pool.submit(seed_feature_flag, redis_url)
            orders_url = orders_url or orders_database_url(
                os.environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL
            )
            commands_file = state_file.with_name("demo-commands.json")
            command_seeding = pool.submit(seed_commands, orders_url, commands_file)
            local_seeding = pool.submit(seed_git_and_postgres, state_file.parent, orders_url)
            kube_services = kubernetes_services()
            infrastructure.health = DemoHealth(
                kube, bad_images=[s.live_version for s in kube_services if s.live_version]
            )
            if console_port:
                try:
                    token = f"bko_{secrets.token_hex(4)}_{secrets.token_urlsafe(32)}"
                    infrastructure.alertmanager = start_alertmanager(
                        f"http://127.0.0.1:{console_port}/api/v1/alerts/alertmanager",
                        token,
                        group_wait="5s",
                        group_interval="10s",
                        log_file=state_file.with_name("demo-alertmanager.log"),
                    )
                    infrastructure.alertmanager_token = token
                except (AlertmanagerMissing, RuntimeError, OSError) as error:
                    infrastructure.warnings.append(f"no Alertmanager, so no alerts in ({error})")
            starting_prometheus = pool.submit(
                start_demo_prometheus,
                infrastructure.health,
                state_file.with_name("demo-prometheus.log"),
                infrastructure.alertmanager.target if infrastructure.alertmanager else None,
            )
            starting_sso = (
                pool.submit(
                    start_demo_sso,
                    state_file.parent,
                    console_port,
                    state_file.with_name("demo-idp.log"),
                )
                if console_port and sso
                else None
            )
            try:
                services = kube_services + [future.result() for future in seeding]
            finally:  # taken even when seeding failed, so that stop() stops it too
                try:
                    infrastructure.prometheus = starting_prometheus.result()
                except (PrometheusMissing, RuntimeError, OSError) as error:
                    infrastructure.warnings.append(
                        f"no Prometheus, so no error-rate check in the demo ({error})"
                    )
            try:
                services.append(flag_seeding.result())
            except redis.RedisError as error:
                infrastructure.warnings.append(
                    f"feature flag service left out: Redis at {redis_url} did not answer ({error})"
                )
            infrastructure.hosted = hosted_seeding.result()
            services += infrastructure.hosted.services
            infrastructure.warnings += infrastructure.hosted.warnings
            seeded, left_out = local_seeding.result()  # git and PostgreSQL dumps
            services += seeded
            infrastructure.warnings += left_out
            try:
                services += command_seeding.result()
                infrastructure.commands_file = commands_file
                connections = replace(
                    connections, registered_commands=json.loads(commands_file.read_text())
                )
                infrastructure.connections = connections
            except subprocess.CalledProcessError as error:
                infrastructure.warnings.append(
                    "registered command service left out: the orders database could not be "
                    f"set up ({error.stderr.decode(errors='replace').strip()})"
                )
            except subprocess.TimeoutExpired:
                infrastructure.warnings.append(
                    "registered command service left out: setting up the orders database "
                    "took over 60 s"
                )
            if starting_sso is not None:
                try:
                    infrastructure.identity_provider = starting_sso.result()
                except (RuntimeError, OSError) as error:
                    infrastructure.warnings.append(f"no single sign-on in the demo ({error})")
            services = with_verification(services, infrastructure.health, infrastructure.prometheus)
            services = with_sentry_check(services, infrastructure.hosted, infrastructure.health)
            services = with_saved_manifests(services, connections)
            loading.result()
            # The hosted services' live versions are read with the tokens their stand-ins
            # accept, which the console's processes get from the env file.
            with environment(infrastructure.hosted.env()):
                checks = [
                    pool.submit(check_live_version, service, connections) for service in services
                ]
                for check in checks:
                    check.result()
            infrastructure.services = services
            write_atomically(
                state_file,
                json.dumps({"services": [s.to_json() for s in services]}, indent=2) + "\n",
            )
        except BaseException:
            infrastructure.stop()
            raise
    return infrastructure


def write_atomically(path: Path, text: str) -> None:
    """Write `text` to a temporary file beside `path`, then rename it into place."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def write_env_file(path: Path, infrastructure: DemoInfrastructure) -> None:
    """Write the env-file contract (see the module docstring), atomically: `export` lines a
    shell can source as they are (`. var/demo.env`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"export {key}={shlex.quote(value)}" for key, value in infrastructure.env().items()]
    write_atomically(path, "\n".join(lines) + "\n")


def summary(infrastructure: DemoInfrastructure, started_in: float) -> str:
    """A few lines saying what runs where."""
    lines = [
        f"demo infrastructure ready in {started_in:.1f} s",
        f"  AWS (moto)         {infrastructure.moto.url}",
        f"  Kubernetes         {infrastructure.kube.url}  (KUBECONFIG={infrastructure.kubeconfig})",
        f"  state file         {infrastructure.state_file}",
    ]
    if infrastructure.health is not None:
        lines.append(f"  health endpoints   {infrastructure.health.url}/health/<namespace>/<name>")
    if infrastructure.prometheus is not None:
        lines.append(f"  Prometheus         {infrastructure.prometheus.url}")
    if infrastructure.alertmanager is not None:
        lines.append(f"  Alertmanager       {infrastructure.alertmanager.url}  (alerts in)")
    if infrastructure.identity_provider is not None:
        lines += sso_summary(infrastructure.identity_provider, infrastructure.state_file.parent)
    for service in infrastructure.services:
        good = service.known_good.version if service.known_good else "—"
        if service.live_version is None:
            lines.append(f"  {service.name:<18} {service.backend:<16} good {good}")
            continue
        live = next(
            (
                release.version
                for release in service.releases
                if service.live_version in (release.artifact, release.version)
            ),
            service.live_version,
        )
        lines.append(f"  {service.name:<18} {service.backend:<16} live {live:<10} good {good}")
    lines += [f"  warning: {warning}" for warning in infrastructure.warnings]
    return "\n".join(lines)


def serve(
    *,
    env_file: Path,
    state_file: Path,
    kubeconfig: Path | None,
    status_delay: float,
    redis_url: str | None,
    orders_url: str | None = None,
    console_port: int | None = None,
    sso: bool = True,
) -> int:
    """Start the demo, write the env file, block until SIGINT/SIGTERM, then clean up.

    A signal only sets a flag, so it never interrupts start-up or clean-up half-way: one that
    arrives during start-up stops the demo as soon as it is up, before the env file appears.
    """
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        print(f"{signal.Signals(signum).name}: stopping the demo infrastructure", flush=True)
        stop.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    env_file.unlink(missing_ok=True)  # one left by a killed run would say "ready" too early
    os.environ.update(AWS_TEST_ENVIRONMENT)
    started = time.monotonic()
    try:
        infrastructure = start_demo_infrastructure(
            state_file=state_file,
            kubeconfig=kubeconfig,
            status_delay=status_delay,
            redis_url=redis_url,
            orders_url=orders_url,
            console_port=console_port,
            sso=sso,
        )
    except Exception:
        if stop.is_set():  # Ctrl-C also reaches moto, which then fails the seeding
            return 130
        raise
    try:
        if stop.is_set():
            return 0
        write_env_file(env_file, infrastructure)
        print(summary(infrastructure, time.monotonic() - started), flush=True)
        print(f"env file {env_file} written; Ctrl-C or SIGTERM stops the demo", flush=True)
        while not stop.wait(0.5):
            # A Ctrl-C reaches moto as well; give our own handler a moment to see it too.
            if not infrastructure.alive() and not stop.wait(1.0):
                print("a demo server stopped on its own; shutting down", file=sys.stderr)
                return 1
        return 0
    finally:
        env_file.unlink(missing_ok=True)
        infrastructure.stop()
        print("demo infrastructure stopped", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m devinfra.demo serve --env-file var/demo.env`."""
    parser = argparse.ArgumentParser(prog="python -m devinfra.demo", description=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    commands = parser.add_subparsers(dest="command", required=True)
    serve_parser = commands.add_parser("serve", help="run the demo infrastructure until stopped")
    serve_parser.add_argument("--env-file", type=Path, required=True)
    serve_parser.add_argument("--state", type=Path, default=DEFAULT_STATE_FILE)
    serve_parser.add_argument(
        "--kubeconfig", type=Path, help="default: demo-kubeconfig.yaml beside the state file"
    )
    serve_parser.add_argument(
        "--status-delay", type=float, default=2.0, help="seconds a rollout takes to complete"
    )
    serve_parser.add_argument("--redis-url", help="flag store (default: $REDIS_URL)")
    serve_parser.add_argument(
        "--orders-database-url",
        help="the command service's database (default: $DEMO_ORDERS_DATABASE_URL, else "
        "<database>_orders on $DATABASE_URL's server)",
    )
    serve_parser.add_argument(
        "--console-port",
        type=int,
        help="the console's port: starts an Alertmanager that sends alerts to it and a single "
        "sign-on provider that sends people back to it",
    )
    serve_parser.add_argument(
        "--no-sso",
        dest="sso",
        action="store_false",
        help="leave the single sign-on provider out (the Alertmanager still starts)",
    )
    options = parser.parse_args(argv)
    return serve(
        env_file=options.env_file,
        state_file=options.state,
        kubeconfig=options.kubeconfig,
        status_delay=options.status_delay,
        redis_url=options.redis_url,
        orders_url=options.orders_database_url,
        console_port=options.console_port,
        sso=options.sso,
    )


if __name__ == "__main__":
    sys.exit(main())
