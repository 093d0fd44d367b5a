"""The PostgreSQL restore backend against the real PostgreSQL at 127.0.0.1:5432: a scratch
database per test (a unique name, dropped afterwards), dumps made with pg_dump."""

from __future__ import annotations

import contextlib
import re
import socket
import struct
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from executors.base import BackendError, ConfigError, Connections, DeadlineExceeded, RollbackTarget
from executors.options import OptionError
from executors.pg_restore import PostgresRestoreBackend

ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"


def connect(database: str) -> psycopg.Connection[Any]:
    return psycopg.connect(
        f"host=127.0.0.1 port=5432 user=postgres dbname={database}", autocommit=True
    )


@pytest.fixture
def database() -> Iterator[str]:
    """A scratch database with an orders table of two rows."""
    name = f"backout_pgr_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(ADMIN, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    with connect(name) as connection:
        connection.execute("CREATE TABLE orders (id int PRIMARY KEY, total int NOT NULL)")
        connection.execute("INSERT INTO orders VALUES (1, 100), (2, 250)")
    yield name
    with psycopg.connect(ADMIN, autocommit=True) as admin:
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@pytest.fixture
def dumps(tmp_path: Path) -> Path:
    folder = tmp_path / "dumps"
    folder.mkdir()
    return folder


def pg_dump(database: str, path: Path) -> Path:
    subprocess.run(
        ["pg_dump", "-Fc", "-h", "127.0.0.1", "-U", "postgres", "-f", str(path), database],
        check=True,
        timeout=60,
    )
    return path


def rows(database: str) -> list[tuple[int, int]]:
    with connect(database) as connection:
        return connection.execute("SELECT id, total FROM orders ORDER BY id").fetchall()


def backend_for(database: str, dumps: Path, **config: Any) -> PostgresRestoreBackend:
    return PostgresRestoreBackend(
        {
            "host": "127.0.0.1",
            "port": 5432,
            "user": "postgres",
            "dbname": database,
            "dump_dir": str(dumps),
            **config,
        },
        Connections(),
        poll_interval=0.05,
    )


@pytest.fixture
def good_dump(database: str, dumps: Path) -> str:
    """`good.dump` of the two rows; then a bad release changes the data."""
    pg_dump(database, dumps / "good.dump")
    with connect(database) as connection:
        connection.execute("UPDATE orders SET total = total * 100")
        connection.execute("INSERT INTO orders VALUES (3, 999)")
    return "good.dump"


def restore(dump: str, stamp: str = "20261204T091500000000Z") -> RollbackTarget:
    return RollbackTarget(params={"dump": dump, "restore_stamp": stamp})


def test_plan_names_the_dump_and_the_connections_and_changes_nothing(database, dumps, good_dump):
    plan = backend_for(database, dumps).plan(restore(good_dump))

    assert plan.target_version == "good.dump" and plan.current_version is None
    assert [change.attribute for change in plan.changes] == ["restored from", "other connections"]
    assert "pre-restore dump" in plan.summary
    assert rows(database) == [(1, 10000), (2, 25000), (3, 999)]
    assert sorted(path.name for path in dumps.iterdir()) == ["good.dump"]


def test_apply_restores_after_a_pre_restore_dump_and_does_nothing_the_second_time(
    database, dumps, good_dump
):
    backend = backend_for(database, dumps)
    lines: list[str] = []

    first = backend.apply(restore(good_dump), log=lines.append)
    second = backend.apply(restore(good_dump))

    assert first.changed and not second.changed
    assert rows(database) == [(1, 100), (2, 250)]
    pre_restore = Path(first.facts["pre_restore_dump"])
    assert pre_restore.parent == dumps and pre_restore.name.startswith("pre-restore-")
    assert str(pre_restore) in first.detail
    assert backend.live_version() == "good.dump"
    # The pre-restore dump holds the data as it was before: the way back.
    back = backend.apply(restore(pre_restore.name, "20261204T092000000000Z"))
    assert back.changed and rows(database) == [(1, 10000), (2, 25000), (3, 999)]
    # A connection closed just before (the fixture's, the backend's own checks) can still be
    # listed while its server process exits, so the count is not always 0.
    assert any(re.fullmatch(r"terminated \d+ other connection\(s\)", line) for line in lines)


def test_a_connection_held_open_during_the_restore_is_terminated(database, dumps, good_dump):
    held = connect(database)
    held.autocommit = False
    held.execute("SELECT * FROM orders").fetchall()  # holds a lock the restore needs

    result = backend_for(database, dumps, lock_timeout_seconds=5).apply(restore(good_dump))

    assert result.changed and result.facts["terminated_connections"] == 1
    assert rows(database) == [(1, 100), (2, 250)]
    with pytest.raises(psycopg.OperationalError):
        held.execute("SELECT 1")
    held.close()


def test_a_corrupt_dump_is_a_permanent_error_before_anything_is_touched(database, dumps, good_dump):
    (dumps / "broken.dump").write_bytes(b"PGDMP" + b"\x00garbage" * 50)
    backend = backend_for(database, dumps)

    with pytest.raises(BackendError, match="broken.dump is not a readable dump") as failed:
        backend.apply(restore("broken.dump"))

    assert not failed.value.retryable
    assert rows(database) == [(1, 10000), (2, 25000), (3, 999)]
    assert backend.live_version() is None


def test_a_dump_failing_halfway_leaves_the_database_as_it_was(database, dumps, good_dump):
    role = f"backout_gone_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE ROLE {}").format(sql.Identifier(role)))
    try:
        with connect(database) as connection:
            connection.execute("CREATE TABLE refunds (id int)")
            connection.execute(
                sql.SQL("ALTER TABLE refunds OWNER TO {}").format(sql.Identifier(role))
            )
        pg_dump(database, dumps / "needs-role.dump")
        with connect(database) as connection:
            connection.execute("DROP TABLE refunds")
    finally:
        with psycopg.connect(ADMIN, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
    backend = backend_for(database, dumps)

    with pytest.raises(BackendError, match="does not exist") as failed:
        backend.apply(restore("needs-role.dump"))

    assert not failed.value.retryable
    assert rows(database) == [(1, 10000), (2, 25000), (3, 999)]
    assert [path.name for path in dumps.glob("pre-restore-*")] != []
    assert backend.live_version() is None


def test_draft_refuses_a_dump_that_is_not_in_the_directory(database, dumps, good_dump):
    backend = backend_for(database, dumps)

    for name in ("missing.dump", "../good.dump", "good.dump\x00"):
        with pytest.raises(OptionError) as refused:
            backend.validate_params({"dump": name}, live=True)
        assert refused.value.option == "dump"


def test_draft_refuses_when_the_dump_directory_cannot_be_read(database, tmp_path):
    backend = backend_for(database, tmp_path / "nowhere")

    with pytest.raises(OptionError, match="cannot be read") as refused:
        backend.validate_params({"dump": "good.dump"}, live=True)

    assert refused.value.option == "dump"


def test_draft_stamps_the_restore_and_offers_the_dumps_newest_first(database, dumps, good_dump):
    time.sleep(0.01)
    pg_dump(database, dumps / "注文-v2.dump")
    (dumps / "notes.txt").write_text("not a dump")
    backend = backend_for(database, dumps)

    cleaned = backend.validate_params({"dump": "注文-v2.dump"}, live=True)
    choices = backend.live_options()["dump"].choices

    assert cleaned["dump"] == "注文-v2.dump" and cleaned["restore_stamp"]
    assert [choice.value for choice in choices] == ["注文-v2.dump", "good.dump"]
    assert backend.apply(restore("注文-v2.dump")).changed


def test_a_restore_stamp_given_is_replaced_so_a_second_step_restores_again(
    database, dumps, good_dump
):
    backend = backend_for(database, dumps)
    first = RollbackTarget(params=backend.validate_params({"dump": good_dump}, live=True))
    assert backend.apply(first).changed
    with connect(database) as connection:
        connection.execute("DELETE FROM orders")

    reused = backend.validate_params(dict(first.params), live=True)

    assert reused["restore_stamp"] != first.params["restore_stamp"]
    assert backend.apply(RollbackTarget(params=reused)).changed
    assert rows(database) == [(1, 100), (2, 250)]


@pytest.mark.parametrize("stamp", ["../../escaped", "s1", "20261204T091500000000Z/x", ""])
def test_a_stamp_not_set_by_the_server_is_refused_and_nothing_is_written(
    database, dumps, good_dump, tmp_path, stamp
):
    backend = backend_for(database, dumps)

    with pytest.raises(ConfigError, match="draft it again"):
        backend.apply(restore(good_dump, stamp))

    assert sorted(path.name for path in dumps.iterdir()) == ["good.dump"]
    assert not list(tmp_path.rglob("*escaped*"))


def test_a_dump_name_starting_with_a_dash_is_not_a_dump(database, dumps, good_dump):
    (dumps / "-list.dump").write_bytes((dumps / good_dump).read_bytes())

    with pytest.raises(OptionError) as refused:
        backend_for(database, dumps).validate_params({"dump": "-list.dump"}, live=True)

    assert refused.value.option == "dump"


def test_capture_backup_takes_a_pre_deploy_dump_that_previous_restores(database, dumps):
    backend = backend_for(database, dumps)

    saved = backend.capture_backup()
    with connect(database) as connection:
        connection.execute("DELETE FROM orders")

    assert saved["dump"].startswith(f"pre-deploy-{database}-")
    assert (dumps / saved["dump"]).is_file()
    previous = RollbackTarget(previous=True, params=backend.validate_params({}, live=True))
    assert previous.params["previous_dump"] == saved["dump"]
    assert backend.writes_lost_after(previous.params) is not None
    assert backend.plan(previous).target_version == saved["dump"]
    assert backend.apply(previous).changed
    assert rows(database) == [(1, 100), (2, 250)]


def test_previous_restores_the_pre_deploy_dump_chosen_when_drafted(database, dumps):
    backend = backend_for(database, dumps)
    approved = backend.capture_backup()["dump"]
    previous = RollbackTarget(previous=True, params=backend.validate_params({}, live=True))
    time.sleep(0.01)
    with connect(database) as connection:
        connection.execute("DELETE FROM orders")
    later = backend.capture_backup()["dump"]

    assert later != approved
    assert backend.apply(previous).facts["dump"] == approved
    assert rows(database) == [(1, 100), (2, 250)]


def test_previous_with_no_pre_deploy_dump_when_drafted_is_refused(database, dumps, good_dump):
    backend = backend_for(database, dumps)
    previous = RollbackTarget(previous=True, params=backend.validate_params({}, live=True))

    with pytest.raises(ConfigError, match="no pre-deploy dump"):
        backend.plan(previous)


@pytest.fixture
def role() -> Iterator[str]:
    """A login role that is not the database's owner."""
    name = f"backout_role_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(name)))
    yield name
    with psycopg.connect(ADMIN, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(name)))
        admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


def connect_as(role: str, database: str) -> psycopg.Connection[Any]:
    return psycopg.connect(
        f"host=127.0.0.1 port=5432 user={role} dbname={database}", autocommit=True
    )


def test_no_client_connects_between_the_pre_restore_dump_and_the_restore(
    database, dumps, good_dump, role, monkeypatch
):
    with psycopg.connect(ADMIN, autocommit=True) as admin:
        admin.execute(
            sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(
                sql.Identifier(database), sql.Identifier(role)
            )
        )
    backend = backend_for(database, dumps)
    refused: list[str] = []
    real_dump_to = PostgresRestoreBackend.dump_to

    def dump_while_a_writer_tries(self, path):
        try:
            connect_as(role, database).close()
        except psycopg.OperationalError as error:
            refused.append(str(error))
        real_dump_to(self, path)

    monkeypatch.setattr(PostgresRestoreBackend, "dump_to", dump_while_a_writer_tries)

    assert backend.apply(restore(good_dump)).changed

    assert refused and "permission denied" in refused[0]
    connect_as(role, database).close()  # allowed again
    assert not list(dumps.glob(".*grants"))


def test_connections_are_allowed_again_when_the_restore_fails(
    database, dumps, good_dump, role, monkeypatch
):
    def disk_full(self, path):
        raise BackendError("pg_dump failed: No space left on device")

    monkeypatch.setattr(PostgresRestoreBackend, "dump_to", disk_full)

    with pytest.raises(BackendError, match="No space left"):
        backend_for(database, dumps).apply(restore(good_dump))

    connect_as(role, database).close()
    assert rows(database) == [(1, 10000), (2, 25000), (3, 999)]


def test_draft_refuses_a_database_that_is_not_there(dumps):
    backend = backend_for("backout_no_such_database", dumps)

    with pytest.raises(OptionError) as refused:
        backend.validate_params({}, live=True)

    assert refused.value.option == "dbname" and "does not exist" in refused.value.reason


def test_a_user_that_does_not_own_the_database_is_refused_at_draft_and_plan(
    database, dumps, good_dump, role
):
    backend = backend_for(database, dumps, user=role)

    with pytest.raises(OptionError) as refused:
        backend.validate_params({"dump": good_dump}, live=True)
    assert refused.value.option == "dbname" and "does not own" in refused.value.reason
    with pytest.raises(ConfigError, match="does not own"):
        backend.plan(restore(good_dump))


def test_a_statement_past_its_time_limit_is_stopped_and_retryable(database, dumps, good_dump):
    holder = psycopg.connect(ADMIN)
    holder.execute(
        sql.SQL(
            "ALTER DATABASE {} SET backout.restored_from = 'held 20261204T000000000000Z'"
        ).format(sql.Identifier(database))
    )  # uncommitted: the restore's marker waits on it
    try:
        backend = backend_for(database, dumps, statement_timeout_seconds=1)
        started = time.monotonic()
        with pytest.raises(BackendError, match="statement timeout") as failed:
            backend.apply(restore(good_dump))
        assert failed.value.retryable and time.monotonic() - started < 30
    finally:
        holder.rollback()
        holder.close()


def test_checks_run_the_check_query(database, dumps, good_dump):
    passing = backend_for(database, dumps, check_query="SELECT 1 FROM orders WHERE total = 100")
    passing.apply(restore(good_dump))
    failing = backend_for(database, dumps, check_query="SELECT 1 FROM orders WHERE total < 0")
    writing = backend_for(database, dumps, check_query="DELETE FROM orders RETURNING id")

    assert {c.name: c.status for c in passing.checks(restore(good_dump))} == {
        "database answers": "passed",
        "restored from the dump": "passed",
        "check query": "passed",
    }
    assert failing.checks(restore(good_dump))[-1].status == "failed"
    read_only = writing.checks(restore(good_dump))[-1]
    assert read_only.status == "failed" and "read-only" in read_only.detail
    assert len(rows(database)) == 2


def test_wait_past_the_deadline_says_what_the_database_shows(database, dumps, good_dump):
    lines: list[str] = []

    with pytest.raises(DeadlineExceeded):
        backend_for(database, dumps).wait(
            restore(good_dump), deadline=time.monotonic() + 0.2, log=lines.append
        )

    assert lines == [f"PostgreSQL 127.0.0.1:5432/{database} answers; last restore: none"]


def test_a_server_that_does_not_answer_is_retryable(database, dumps, good_dump):
    backend = backend_for(database, dumps, port=1, connect_timeout_seconds=2)

    with pytest.raises(BackendError) as failed:
        backend.live_version()

    assert failed.value.retryable


@pytest.fixture
def password_refusing_server() -> Iterator[dict[str, Any]]:
    """A server speaking PostgreSQL's wire protocol that asks for a password and refuses it
    as PostgreSQL does (SQLSTATE 28P01), recording the passwords it was sent.

    Why not the tests' PostgreSQL: it trusts every connection from 127.0.0.1 (pg_hba.conf
    `trust`), so a wrong password is never checked there, and a private cluster cannot be
    made here (initdb refuses to run as root). The client side is the real one: psycopg and
    libpq, pg_dump and pg_restore."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    got: dict[str, Any] = {"passwords": [], "port": server.getsockname()[1]}
    stop = threading.Event()

    def read(connection: socket.socket, size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = connection.recv(size - len(data))
            if not chunk:
                raise ConnectionError
            data += chunk
        return data

    def refuse(connection: socket.socket) -> None:
        with connection:
            while True:
                length, code = struct.unpack("!ii", read(connection, 8))
                if code in (80877103, 80877104):  # SSLRequest, GSSENCRequest: not here
                    connection.sendall(b"N")
                    continue
                startup = read(connection, length - 8).split(b"\0")
                break
            user = startup[startup.index(b"user") + 1].decode()
            connection.sendall(b"R" + struct.pack("!ii", 8, 3))  # cleartext password
            kind, length = struct.unpack("!ci", read(connection, 5))
            got["passwords"].append(read(connection, length - 4).rstrip(b"\0").decode())
            fields = b"".join(
                key + value.encode() + b"\0"
                for key, value in (
                    (b"S", "FATAL"),
                    (b"V", "FATAL"),
                    (b"C", "28P01"),
                    (b"M", f'password authentication failed for user "{user}"'),
                )
            )
            body = fields + b"\0"
            connection.sendall(b"E" + struct.pack("!i", len(body) + 4) + body)

    def serve() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                connection, _ = server.accept()
            except OSError:
                continue
            with contextlib.suppress(OSError, ConnectionError, ValueError, struct.error):
                refuse(connection)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield got
    stop.set()
    thread.join()
    server.close()


def test_refused_credentials_are_permanent_and_the_password_never_shown(
    dumps, good_dump, password_refusing_server, monkeypatch
):
    monkeypatch.setenv("ORDERS_DB_PASSWORD", "s3cret-pass-word")
    backend = backend_for(
        "orders",
        dumps,
        port=password_refusing_server["port"],
        user="orders_app",
        password_env="ORDERS_DB_PASSWORD",
        sslmode="disable",
    )

    for attempt in (lambda: backend.apply(restore(good_dump)), backend.capture_backup):
        with pytest.raises(BackendError) as failed:
            attempt()
        assert not failed.value.retryable
        assert "authentication failed" in str(failed.value)
        assert "orders_app" in str(failed.value)
        assert "s3cret-pass-word" not in str(failed.value)
    # psycopg, then pg_dump: both were handed the password, and it was refused.
    assert password_refusing_server["passwords"] == ["s3cret-pass-word"] * 2


def test_a_password_variable_that_is_not_set_is_a_config_error(database, dumps, monkeypatch):
    monkeypatch.delenv("NO_SUCH_PG_PASSWORD", raising=False)
    backend = backend_for(database, dumps, password_env="NO_SUCH_PG_PASSWORD")

    with pytest.raises(ConfigError, match="NO_SUCH_PG_PASSWORD is not set"):
        backend.live_version()


def test_a_dump_past_its_timeout_is_stopped_and_retryable(database, dumps):
    backend = backend_for(database, dumps, timeout_seconds=0.001)

    with pytest.raises(BackendError, match="took over") as failed:
        backend.capture_backup()

    assert failed.value.retryable
    assert list(dumps.iterdir()) == []
