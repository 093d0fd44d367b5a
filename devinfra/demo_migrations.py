"""The demo's schema tool: the `orders` app's migrations, applied to and rolled back from a
real PostgreSQL database, so the demo's registered command (`orders-migrate`) changes
something that can be looked at.

    python -m devinfra.demo_migrations setup              # create the database, apply all
    python -m devinfra.demo_migrations migrate orders 0041_order_totals
    python -m devinfra.demo_migrations check              # the schema matches the record
    python -m devinfra.demo_migrations status

The database is named by $DEMO_ORDERS_DATABASE_URL (a libpq URL). Each migration has
statements forward and backward; `migrate APP NAME` applies the missing ones up to NAME
and unapplies, newest first, those after it, each in a transaction of its own, printing
what it does. The applied ones are rows of `demo_migrations`. `check` compares the
columns each applied migration leaves with the database's own catalogue and exits 1 on a
difference: the smoke test a rollback of the schema is verified with.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import psycopg
from psycopg import sql

URL_VARIABLE = "DEMO_ORDERS_DATABASE_URL"


@dataclass(frozen=True)
class Migration:
    name: str
    forward: tuple[str, ...]
    backward: tuple[str, ...]
    # (table, column) pairs that exist once the migration is applied, and not before.
    adds: tuple[tuple[str, str], ...]
    removes: tuple[tuple[str, str], ...] = ()


MIGRATIONS: dict[str, tuple[Migration, ...]] = {
    "orders": (
        Migration(
            "0040_initial",
            (
                "CREATE TABLE orders (id bigserial PRIMARY KEY, placed_at timestamptz NOT NULL"
                " DEFAULT now())",
                "CREATE TABLE addresses (order_id bigint REFERENCES orders (id), line text)",
            ),
            ("DROP TABLE addresses", "DROP TABLE orders"),
            (
                ("orders", "id"),
                ("orders", "placed_at"),
                ("addresses", "order_id"),
                ("addresses", "line"),
            ),
        ),
        Migration(
            "0041_order_totals",
            ("ALTER TABLE orders ADD COLUMN total_cents bigint NOT NULL DEFAULT 0",),
            ("ALTER TABLE orders DROP COLUMN total_cents",),
            (("orders", "total_cents"),),
        ),
        Migration(
            "0042_split_addresses",
            (
                "ALTER TABLE addresses ADD COLUMN street text, ADD COLUMN city text",
                "UPDATE addresses SET street = split_part(line, ',', 1),"
                " city = trim(split_part(line, ',', 2))",
                "ALTER TABLE addresses DROP COLUMN line",
            ),
            (
                "ALTER TABLE addresses ADD COLUMN line text",
                "UPDATE addresses SET line = concat_ws(', ', street, city)",
                "ALTER TABLE addresses DROP COLUMN street, DROP COLUMN city",
            ),
            (("addresses", "street"), ("addresses", "city")),
            (("addresses", "line"),),
        ),
    )
}
LATEST = {app: migrations[-1].name for app, migrations in MIGRATIONS.items()}
NAMES = {app: [m.name for m in migrations] for app, migrations in MIGRATIONS.items()}


class MigrationError(Exception):
    """A request the tool refuses, with the reason to print."""


def database_url() -> str:
    url = os.environ.get(URL_VARIABLE)
    if not url:
        raise MigrationError(f"{URL_VARIABLE} is not set")
    return url


def create_database(url: str) -> None:
    """Create the database `url` names, on the same server, if it does not exist."""
    info = psycopg.conninfo.conninfo_to_dict(url)
    name = str(info["dbname"])
    maintenance = psycopg.conninfo.make_conninfo(url, dbname="postgres")
    with psycopg.connect(maintenance, autocommit=True) as connection:
        exists = connection.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (name,)
        ).fetchone()
        if not exists:
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def applied(connection: psycopg.Connection, app: str) -> list[str]:
    connection.execute(
        "CREATE TABLE IF NOT EXISTS demo_migrations (app text NOT NULL, name text NOT NULL,"
        " applied_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (app, name))"
    )
    rows = connection.execute("SELECT name FROM demo_migrations WHERE app = %s", (app,)).fetchall()
    done = {row[0] for row in rows}
    return [name for name in NAMES[app] if name in done]


def migrate(connection: psycopg.Connection, app: str, target: str) -> list[str]:
    """Bring `app` to `target`; return what was done, one line per migration."""
    if app not in MIGRATIONS:
        raise MigrationError(f"no app {app!r} (apps: {', '.join(MIGRATIONS)})")
    if target not in NAMES[app]:
        raise MigrationError(f"{app} has no migration {target!r} (known: {', '.join(NAMES[app])})")
    with connection.transaction():
        done = applied(connection, app)
    position = NAMES[app].index(target)
    steps = []
    for migration in reversed(MIGRATIONS[app][position + 1 :]):
        if migration.name in done:
            with connection.transaction():
                for statement in migration.backward:
                    connection.execute(statement.encode())
                connection.execute(
                    "DELETE FROM demo_migrations WHERE app = %s AND name = %s",
                    (app, migration.name),
                )
            steps.append(f"unapplied {app}.{migration.name}")
    for migration in MIGRATIONS[app][: position + 1]:
        if migration.name not in done:
            with connection.transaction():
                for statement in migration.forward:
                    connection.execute(statement.encode())
                connection.execute(
                    "INSERT INTO demo_migrations (app, name) VALUES (%s, %s)",
                    (app, migration.name),
                )
            steps.append(f"applied {app}.{migration.name}")
    return steps


def schema_differences(connection: psycopg.Connection, app: str) -> list[str]:
    """How the database's columns differ from what the applied migrations leave."""
    done = set(applied(connection, app))
    expected: set[tuple[str, str]] = set()
    for migration in MIGRATIONS[app]:
        if migration.name in done:
            expected |= set(migration.adds)
            expected -= set(migration.removes)
    tables = sorted({table for migration in MIGRATIONS[app] for table, _ in migration.adds})
    rows = connection.execute(
        "SELECT table_name, column_name FROM information_schema.columns"
        " WHERE table_schema = current_schema() AND table_name = ANY(%s)",
        (tables,),
    ).fetchall()
    actual = {(table, column) for table, column in rows}
    return [f"missing column {t}.{c}" for t, c in sorted(expected - actual)] + [
        f"unexpected column {t}.{c}" for t, c in sorted(actual - expected)
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devinfra.demo_migrations")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("setup", help="Create the database and apply every migration")
    to = commands.add_parser("migrate", help="Apply or unapply migrations up to one")
    to.add_argument("app")
    to.add_argument("migration")
    commands.add_parser("check", help="Exit 1 when the schema differs from the record")
    commands.add_parser("status", help="Print each app's applied migrations")
    arguments = parser.parse_args(argv)
    try:
        url = database_url()
        if arguments.command == "setup":
            create_database(url)
        with psycopg.connect(url, autocommit=True) as connection:
            if arguments.command == "setup":
                for app in MIGRATIONS:
                    migrate(connection, app, LATEST[app])
                    print(f"{app}: at {LATEST[app]}")
            elif arguments.command == "migrate":
                steps = migrate(connection, arguments.app, arguments.migration)
                for line in steps or [f"{arguments.app} is already at {arguments.migration}"]:
                    print(line)
            elif arguments.command == "check":
                problems = [p for app in MIGRATIONS for p in schema_differences(connection, app)]
                for problem in problems:
                    print(problem)
                if problems:
                    return 1
                print("schema matches the applied migrations")
            else:
                for app in MIGRATIONS:
                    done = applied(connection, app)
                    print(f"{app}: {done[-1] if done else 'nothing applied'}")
    except (MigrationError, psycopg.Error) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
