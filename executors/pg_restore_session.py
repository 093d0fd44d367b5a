"""The PostgreSQL sessions and rights around a restore (for executors.pg_restore): which
sessions it ends, how it keeps new ones out, and how it stops a client binary.

New connections are kept out by revoking CONNECT on the database from every role that has
it through a grant (PUBLIC included), and granting it back afterwards. Not by `ALTER
DATABASE ... ALLOW_CONNECTIONS false`: that refuses everyone, superusers and the owner too,
so pg_dump and pg_restore could not connect either. The owner and superusers keep their
right to connect; an application that connects as the owner is not kept out, so give it a
role of its own (or scale it to zero first).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from typing import Any

import psycopg
from psycopg import sql

KILL_GRACE_SECONDS = 5.0
# The sessions a restore ends: clients of this database, never this session nor the
# server's own processes (autovacuum, walsenders, background workers).
OTHER_CLIENTS = (
    "datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
)


def connect_grantees(connection: psycopg.Connection[Any]) -> list[str]:
    """The roles that may connect to the connection's database through a grant ("" for
    PUBLIC), except the owner and the connected user."""
    found = connection.execute(
        "SELECT CASE WHEN a.grantee = 0 THEN '' ELSE pg_get_userbyid(a.grantee) END "
        "FROM pg_database d, aclexplode(coalesce(d.datacl, acldefault('d', d.datdba))) a "
        "WHERE d.datname = current_database() AND a.privilege_type = 'CONNECT' "
        "AND a.grantee <> d.datdba "
        "AND a.grantee <> (SELECT oid FROM pg_roles WHERE rolname = current_user)"
    ).fetchall()
    return sorted({str(row[0]) for row in found})


def _roles(grantees: list[str]) -> sql.Composable:
    return sql.SQL(", ").join(
        sql.SQL("PUBLIC") if name == "" else sql.Identifier(name) for name in grantees
    )


def revoke_connect(dbname: str, grantees: list[str]) -> sql.Composed | None:
    """The statement taking CONNECT from `grantees`; None when there are none."""
    if not grantees:
        return None
    return sql.SQL("REVOKE CONNECT ON DATABASE {} FROM {}").format(
        sql.Identifier(dbname), _roles(grantees)
    )


def grant_connect(dbname: str, grantees: list[str]) -> sql.Composed | None:
    """The statement giving CONNECT back to `grantees`; None when there are none."""
    if not grantees:
        return None
    return sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(
        sql.Identifier(dbname), _roles(grantees)
    )


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group, SIGKILL it after a grace period."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=KILL_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
