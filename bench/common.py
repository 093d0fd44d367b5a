"""What every bench does around its measurement: a throwaway PostgreSQL database of its
own, created before Django starts and dropped (with Django's connections closed) after;
and, for a bench that needs more connections than the shared server has free, a throwaway
PostgreSQL server of its own."""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator


def postgres_server_url() -> str:
    """The PostgreSQL server the benches create their databases on (BENCH_POSTGRES_URL)."""
    return os.environ.get("BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres")


def database_url(server_url: str, name: str) -> str:
    """The URL of database `name` on the server at `server_url`."""
    return server_url.rsplit("/", 1)[0] + f"/{name}"


def recreate_database(server_url: str, name: str, *, create: bool = True) -> None:
    """Drop database `name` (ending any session on it) and, unless `create` is False,
    create it again empty."""
    import psycopg

    with psycopg.connect(server_url, dbname="postgres", autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if create:
            connection.execute(f'CREATE DATABASE "{name}"')


def drop_database(server_url: str, name: str) -> None:
    """Close this process's Django connections, if Django got that far, then drop `name`."""
    try:
        from django.db import connections

        connections.close_all()
    except Exception:
        pass  # Django never started, or its settings never loaded: nothing to close.
    recreate_database(server_url, name, create=False)


def django_on_fresh_database(
    name: str, environment: dict[str, str], *, settings_module: str = "console.settings"
) -> str:
    """Recreate database `name`, start Django on it with the benches' defaults (a throwaway
    secret key, the test client's host, warnings only) and `environment` over them, and
    migrate it. Returns the server's URL, for drop_database once the bench is done."""
    server_url = postgres_server_url()
    recreate_database(server_url, name)
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": settings_module,
            "SECRET_KEY": os.environ.get("SECRET_KEY", "bench-only-secret-key-not-for-use"),
            "ALLOWED_HOSTS": "testserver",
            "LOG_LEVEL": "WARNING",
            "DATABASE_URL": database_url(server_url, name),
            **environment,
        }
    )
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)
    return server_url


def free_connections(server_url: str) -> int:
    """How many more connections the server at `server_url` takes right now."""
    import psycopg

    with psycopg.connect(server_url, dbname="postgres", autocommit=True) as connection:
        row = connection.execute(
            "SELECT current_setting('max_connections')::int"
            " - current_setting('superuser_reserved_connections')::int"
            " - (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')"
        ).fetchone()
    return int(row[0]) if row else 0


def _postgres_bindir() -> str:
    found = shutil.which("pg_config")
    if found:
        bindir = subprocess.run(
            [found, "--bindir"], capture_output=True, text=True, check=True
        ).stdout.strip()
        if os.access(os.path.join(bindir, "initdb"), os.X_OK):
            return bindir
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not candidates:
        raise SystemExit("no PostgreSQL server binaries (initdb) on this machine")
    return os.path.dirname(candidates[-1])


@contextlib.contextmanager
def postgres_server_with(connections: int, *, spare: int = 20) -> Iterator[str]:
    """The URL of a PostgreSQL server that takes `connections` more: the benches' server
    (BENCH_POSTGRES_URL) when it has them free with `spare` left for whoever else uses it;
    otherwise a throwaway server of the bench's own, made with initdb in a temporary folder
    (as the `postgres` user when run as root, which PostgreSQL refuses), listening on a free
    port of 127.0.0.1 with max_connections to match, and stopped and removed afterwards."""
    shared = postgres_server_url()
    if free_connections(shared) >= connections + spare:
        yield shared
        return
    bindir = _postgres_bindir()
    folder = tempfile.mkdtemp(prefix="bench-postgres-")
    as_owner: list[str] = []
    if os.geteuid() == 0:
        owner = pwd.getpwnam("postgres")
        os.chown(folder, owner.pw_uid, owner.pw_gid)
        as_owner = ["runuser", "-u", "postgres", "--"]
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    data = os.path.join(folder, "data")

    def run(*argv: str, check: bool = True) -> None:
        subprocess.run(
            [*as_owner, *argv], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, check=check
        )

    log = os.path.join(folder, "server.log")
    options = (
        f"-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={folder}"
        f" -c max_connections={connections + spare}"
    )
    try:
        run(f"{bindir}/initdb", "-D", data, "-U", "postgres", "--auth=trust", "--no-sync")
        run(f"{bindir}/pg_ctl", "-D", data, "-o", options, "-l", log, "-w", "start")
        yield f"postgres://postgres@127.0.0.1:{port}/postgres"
    finally:
        run(f"{bindir}/pg_ctl", "-D", data, "-m", "immediate", "-w", "stop", check=False)
        shutil.rmtree(folder, ignore_errors=True)
