"""What every bench does around its measurement: a throwaway PostgreSQL database of its
own, created before Django starts and dropped (with Django's connections closed) after."""

from __future__ import annotations

import os


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
