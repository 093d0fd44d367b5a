"""Restore a self-managed PostgreSQL database from a custom-format dump, with the `pg_dump`
and `pg_restore` binaries and psycopg.

Target config (docs/backends-git-postgres.md): the connection, `password_env` (the name of an
environment variable holding the password: PGPASSWORD for the binaries, never a command line
nor a log), `dump_dir`, `pre_restore_dir`, `check_query`, `bin_dir` and timeouts.

Drafting connects (a missing database, refused credentials or a user that does not own the
database is a 400 naming `dbname`) and stamps the step (`restore_stamp`, set by the server
only). A step going back to a release restores that release's dump (its artifact), checked
then; with no dump and no release, the newest pre-deploy dump is recorded as `previous_dump`.

Apply, in order: check the dump is a readable archive (`pg_restore --list`; a corrupt file is a
permanent error before anything is touched); block new connections (CONNECT revoked, see
executors.pg_restore_session); end the database's other client sessions; take the pre-restore
dump to `pre-restore-<db>-<restore stamp>.dump` (its path goes into the facts); `pg_restore
--clean --if-exists --single-transaction` into the same database; record the restore on the
database (below); allow connections again, whatever happened. In place and in one
transaction: a restore failing halfway leaves the database as it was, and the database keeps
its owner, grants, settings and name. Objects the dump does not know are not dropped.

The live version is the database's own marker, the setting `backout.restored_from` (the dump
and the step's restore stamp, by `ALTER DATABASE ... SET`), None if never restored. A second
apply of the same step finds its stamp there and changes nothing.

`capture_backup` takes the pre-deploy dump `pre-deploy-<db>-<UTC time>.dump` into `dump_dir`.
Checks: the database answers, the marker names the dump, and `check_query` returns a row.

Errors: refused or timed-out connections, lock or statement timeouts, terminated sessions
and processes past their timeout are retryable; refused credentials, a missing database, a
corrupt dump and every other failure are permanent.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import re
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from executors.base import (
    ApplyResult,
    Backend,
    BackendError,
    Change,
    CheckResult,
    CheckStatus,
    ConfigError,
    Connections,
    LiveOption,
    LogLine,
    RollbackPlan,
    RollbackTarget,
    discard_log,
    poll_until,
)
from executors.options import OptionError
from executors.pg_restore_options import (
    PG_RESTORE_OPTIONS,
    PRE_DEPLOY_PREFIX,
    PRE_RESTORE_PREFIX,
    PREVIOUS_DUMP,
    RESTORE_STAMP,
    SERVER_PARAMS,
    STAMP_PATTERN,
    Dump,
    dump_choices,
    dump_named,
    list_dumps,
    stamp_now,
)
from executors.pg_restore_session import (
    OTHER_CLIENTS,
    connect_grantees,
    grant_connect,
    revoke_connect,
    stop_process,
)
from executors.url_credentials import MASK

MARKER = "backout.restored_from"
STDERR_SHOWN = 800
_RETRYABLE = re.compile(
    r"could not connect|connection refused|timeout expired|timed out|lock timeout|"
    r"statement timeout|"
    r"terminating connection|server closed the connection|the database system is "
    r"(starting up|shutting down|in recovery mode)|too many connections|could not translate",
    re.I,
)
_AUTHENTICATION = re.compile(r"password authentication failed|no password supplied|no pg_hba", re.I)
_NAME = {"type": "string", "minLength": 1, "maxLength": 63, "pattern": r"^[^\x00-\x1f\x7f]+$"}


class PostgresRestoreBackend(Backend):
    """A self-managed PostgreSQL database, restored in place from a dump file."""

    kind = "pg_restore"
    label = "PostgreSQL restore from a dump"
    restores_data = True
    config_schema = {
        "type": "object",
        "properties": {
            "host": {"type": "string", "minLength": 1, "maxLength": 255},
            "port": {"type": "integer", "minimum": 1, "maximum": 65535},
            "user": _NAME,
            "dbname": _NAME,
            "password_env": {"type": "string", "pattern": r"^[A-Za-z_][A-Za-z0-9_]*$"},
            "sslmode": {
                "enum": ["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]
            },
            "dump_dir": {"type": "string", "minLength": 1},
            "pre_restore_dir": {"type": "string", "minLength": 1},
            "check_query": {"type": "string", "minLength": 1, "maxLength": 4000},
            "bin_dir": {"type": "string", "minLength": 1},
            "timeout_seconds": {"type": "number", "exclusiveMinimum": 0, "maximum": 86400},
            "lock_timeout_seconds": {"type": "number", "exclusiveMinimum": 0, "maximum": 3600},
            "connect_timeout_seconds": {"type": "integer", "minimum": 1, "maximum": 300},
            "statement_timeout_seconds": {
                "type": "number",
                "exclusiveMinimum": 0,
                "maximum": 3600,
            },
        },
        "required": ["user", "dbname", "dump_dir"],
        "additionalProperties": False,
    }
    options = PG_RESTORE_OPTIONS

    def __init__(
        self, config: Mapping[str, Any], connections: Connections, *, poll_interval: float = 1.0
    ) -> None:
        super().__init__(config, connections)
        self.poll_interval = poll_interval
        self.dump_dir = Path(self.config["dump_dir"])
        self.pre_restore_dir = Path(self.config.get("pre_restore_dir") or self.dump_dir)
        self.timeout = float(self.config.get("timeout_seconds", 3600))

    @property
    def shown(self) -> str:
        """The database as messages name it (no credentials)."""
        host = self.config.get("host", "127.0.0.1")
        return f"PostgreSQL {host}:{self.config.get('port', 5432)}/{self.config['dbname']}"

    # -- connections -----------------------------------------------------------------------

    def _password(self) -> str | None:
        name = self.config.get("password_env")
        if not name:
            return None
        password = os.environ.get(name)
        if password is None:
            raise ConfigError(f"{self.shown}: the environment variable {name} is not set")
        return password

    def _statement_timeout_ms(self) -> int:
        return int(float(self.config.get("statement_timeout_seconds", 60)) * 1000)

    def _masked(self, text: str) -> str:
        password = self._password()
        return text.replace(password, MASK) if password else text

    def _failure(self, what: str, said: str) -> BackendError:
        said = self._masked(said.strip())[-STDERR_SHOWN:]
        if _AUTHENTICATION.search(said):
            return BackendError(f"{self.shown}: authentication failed ({what}): {said}")
        return BackendError(
            f"{self.shown}: {what} failed: {said}", retryable=bool(_RETRYABLE.search(said))
        )

    @contextlib.contextmanager
    def connect(self) -> Iterator[psycopg.Connection[Any]]:
        """An autocommit connection to the database, errors as BackendError."""
        try:
            connection = psycopg.connect(
                host=self.config.get("host", "127.0.0.1"),
                port=self.config.get("port", 5432),
                user=self.config["user"],
                dbname=self.config["dbname"],
                password=self._password(),
                sslmode=self.config.get("sslmode", "prefer"),
                connect_timeout=self.config.get("connect_timeout_seconds", 10),
                application_name="backout",
                autocommit=True,
                options=f"-c statement_timeout={self._statement_timeout_ms()}",
                keepalives=1,
                keepalives_idle=30,
                keepalives_interval=10,
                keepalives_count=3,
            )
        except psycopg.OperationalError as error:
            raise self._failure("connect", str(error)) from None
        try:
            with connection:
                yield connection
        except psycopg.OperationalError as error:
            raise self._failure("query", str(error)) from None
        except psycopg.Error as error:
            raise BackendError(f"{self.shown}: {self._masked(str(error))}") from None

    def _binary(self, name: str) -> str:
        directory = self.config.get("bin_dir")
        return str(Path(directory) / name) if directory else name

    def _run(self, what: str, argv: list[str], *, lock_timeout: bool = False) -> str:
        """Run a PostgreSQL client binary (a list, never a shell); its stdout, or a
        BackendError saying what failed."""
        environment = {
            name: os.environ[name] for name in ("PATH", "HOME", "LANG", "TZ") if name in os.environ
        }
        environment.update(
            {
                "LC_MESSAGES": "C",
                "PGCONNECT_TIMEOUT": str(self.config.get("connect_timeout_seconds", 10)),
                "PGSSLMODE": self.config.get("sslmode", "prefer"),
                "PGAPPNAME": "backout",
            }
        )
        password = self._password()
        if password is not None:
            environment["PGPASSWORD"] = password
        if lock_timeout:
            seconds = float(self.config.get("lock_timeout_seconds", 60))
            environment["PGOPTIONS"] = f"-c lock_timeout={int(seconds * 1000)}"
        try:
            process = subprocess.Popen(
                argv,
                env=environment,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
        except FileNotFoundError:
            raise ConfigError(
                f"{argv[0]} is not installed here (install postgresql-client, or set bin_dir)"
            ) from None
        try:
            out, err = process.communicate(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            stop_process(process)
            raise BackendError(
                f"{self.shown}: {what} took over {self.timeout:g} s and was stopped",
                retryable=True,
            ) from None
        if process.returncode != 0:
            raise self._failure(
                what, err.decode("utf-8", "replace") or f"exit {process.returncode}"
            )
        return out.decode("utf-8", "replace")

    def _connection_args(self) -> list[str]:
        return [
            "--host",
            str(self.config.get("host", "127.0.0.1")),
            "--port",
            str(self.config.get("port", 5432)),
            "--username",
            self.config["user"],
            "--no-password",
            "--dbname",
            self.config["dbname"],
        ]

    # -- the marker and the dumps ----------------------------------------------------------

    def marker(self) -> tuple[str, str] | None:
        """(dump, restore stamp) of the last restore this backend made, or None."""
        with self.connect() as connection:
            row = connection.execute(
                "SELECT s.setconfig FROM pg_db_role_setting s JOIN pg_database d "
                "ON d.oid = s.setdatabase WHERE d.datname = current_database() "
                "AND s.setrole = 0"
            ).fetchone()
        for setting in (row[0] if row else None) or []:
            name, _, value = str(setting).partition("=")
            if name == MARKER and " " in value:
                dump, _, stamp = value.rpartition(" ")
                return dump, stamp
        return None

    def _dump_of(self, target: RollbackTarget) -> Dump:
        """The dump a step restores: its option, else the release's, else the newest
        pre-deploy dump for the previous revision."""
        name = target.params.get("dump") or target.artifact
        if name:
            return dump_named(self.dump_dir, str(name))
        if target.previous:
            chosen = target.params.get(PREVIOUS_DUMP)
            if not chosen:
                raise ConfigError(
                    f"no pre-deploy dump was in {self.dump_dir} when the step was drafted; "
                    "there is nothing to go back to"
                )
            return dump_named(self.dump_dir, str(chosen))
        raise ConfigError("a restore needs a dump (the option), a release's dump or previous")

    def _stamp(self, target: RollbackTarget) -> str:
        stamp = target.params.get(RESTORE_STAMP)
        if not isinstance(stamp, str) or not STAMP_PATTERN.fullmatch(stamp):
            raise ConfigError(
                "a restore needs the restore_stamp set when it is drafted (draft it again)"
            )
        return stamp

    def _readable(self, dump: Dump) -> int:
        """The number of entries in the dump's table of contents; a permanent error when
        pg_restore cannot read it."""
        try:
            listing = self._run(
                f"read {dump.name}", [self._binary("pg_restore"), "--list", str(dump.path)]
            )
        except BackendError as error:
            raise BackendError(f"{dump.name} is not a readable dump: {error}") from None
        return sum(1 for line in listing.splitlines() if line and not line.startswith(";"))

    def validate_params(self, params: Mapping[str, Any], *, live: bool = False) -> dict[str, Any]:
        """As the base class, the dump held against the directory when `live` (a 400 naming
        `dump` when it cannot be read); the restore stamp is always set here, never taken
        from `params`."""
        if isinstance(params, Mapping):
            params = {name: value for name, value in params.items() if name not in SERVER_PARAMS}
        try:
            cleaned = super().validate_params(params, live=live)
        except OptionError:
            raise
        except BackendError as error:
            raise OptionError("dump", str(error)) from error
        cleaned[RESTORE_STAMP] = stamp_now()
        if live:
            try:
                self.require_owner()
            except BackendError as error:
                raise OptionError("dbname", str(error)) from error
            if not cleaned.get("dump"):
                try:
                    dumps = list_dumps(self.dump_dir)
                except ConfigError as error:
                    raise OptionError("dump", str(error)) from error
                newest = next((d for d in dumps if d.name.startswith(PRE_DEPLOY_PREFIX)), None)
                if newest is not None:
                    cleaned[PREVIOUS_DUMP] = newest.name
        return cleaned

    def pin_release(self, params: Mapping[str, Any], artifact: str) -> dict[str, Any]:
        """A release's artifact names its dump: restored unless another is chosen."""
        pinned = dict(params)
        if not pinned.get("dump"):
            pinned["dump"] = artifact
        return pinned

    def require_owner(self) -> None:
        """ConfigError unless the configured user owns the database (or is a superuser):
        the restore blocks connections and records its marker with ALTER DATABASE."""
        with self.connect() as connection:
            row = connection.execute(
                "SELECT pg_has_role(current_user, d.datdba, 'USAGE') FROM pg_database d "
                "WHERE d.datname = current_database()"
            ).fetchone()
        if not row or not row[0]:
            raise ConfigError(
                f"{self.shown}: {self.config['user']} does not own the database (a restore "
                "needs the owner, to block connections and record what it restored)"
            )

    def live_options(self) -> dict[str, LiveOption]:
        """The dumps in the dump directory, newest first; the one restored last marked."""
        dumps = list_dumps(self.dump_dir)
        try:
            marker = self.marker()
        except BackendError:
            marker = None
        note = f"dumps in {self.dump_dir}; a pre-restore dump is taken before any restore"
        return {
            "dump": LiveOption(
                choices=dump_choices(dumps, marker[0] if marker else None), note=note
            )
        }

    def writes_lost_after(self, params: Mapping[str, Any]) -> datetime.datetime | None:
        """When the chosen dump was written: later writes are not in it."""
        name = params.get("dump") or params.get(PREVIOUS_DUMP)
        if not name:
            return None
        try:
            return dump_named(self.dump_dir, str(name)).modified
        except ConfigError:
            return None

    def capture_backup(self) -> dict[str, Any]:
        """The pre-deploy dump, taken now into the dump directory."""
        name = f"{PRE_DEPLOY_PREFIX}{self.config['dbname']}-{stamp_now()}.dump"
        self.dump_to(self.dump_dir / name)
        return {"dump": name}

    def dump_to(self, path: Path) -> None:
        """`pg_dump -Fc` to a hidden file beside `path`, renamed into place when complete."""
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.partial")
        try:
            self._run(
                f"pg_dump to {path.name}",
                [self._binary("pg_dump"), "--format=custom", "--file", str(partial)]
                + self._connection_args(),
            )
            os.replace(partial, path)
        finally:
            partial.unlink(missing_ok=True)

    # -- the interface ---------------------------------------------------------------------

    def live_version(self) -> str | None:
        """The dump this backend restored last, from the database's marker; None if none."""
        marker = self.marker()
        return marker[0] if marker else None

    def _other_connections(self, connection: psycopg.Connection[Any]) -> int:
        row = connection.execute(
            f"SELECT count(*) FROM pg_stat_activity WHERE {OTHER_CLIENTS}"
        ).fetchone()
        return int(row[0]) if row else 0

    def _connect_rights(self, statement: sql.Composed | None) -> None:
        if statement is not None:
            with self.connect() as connection:
                connection.execute(statement)

    @contextlib.contextmanager
    def connections_blocked(self, stamp: str, log: LogLine) -> Iterator[None]:
        """CONNECT revoked from every role but the owner (and this user) while the block
        runs, granted back afterwards whatever happens. The grants taken away are written
        to a hidden file beside the pre-restore dump first, so that a retry after a worker
        died puts back the grants as they were, not the ones it left."""
        record = (
            self.pre_restore_dir / f".{PRE_RESTORE_PREFIX}{self.config['dbname']}-{stamp}.grants"
        )
        self.pre_restore_dir.mkdir(parents=True, exist_ok=True)
        with self.connect() as connection:
            now = connect_grantees(connection)
        if record.is_file():
            taken = json.loads(record.read_text(encoding="utf-8"))
        else:
            taken = now
            record.write_text(json.dumps(taken), encoding="utf-8")
        shown = ", ".join(name or "PUBLIC" for name in taken) or "no role"
        log(f"blocking new connections: CONNECT revoked from {shown}")
        try:
            self._connect_rights(revoke_connect(self.config["dbname"], now))
            yield
        finally:
            self._connect_rights(grant_connect(self.config["dbname"], taken))
            record.unlink(missing_ok=True)
            log("new connections allowed again")

    def plan(self, target: RollbackTarget) -> RollbackPlan:
        """The dump to restore, the connections it would end, the pre-restore dump it would
        take; reads only."""
        dump = self._dump_of(target)
        entries = self._readable(dump)
        stamp = self._stamp(target)
        self.require_owner()
        marker = self.marker()
        resource = self.shown
        if marker == (dump.name, stamp):
            summary = f"{self.shown} was restored from {dump.name} by this step already"
            changes: tuple[Change, ...] = ()
        else:
            with self.connect() as connection:
                others = self._other_connections(connection)
            summary = (
                f"restore {self.shown} from {dump.name} ({entries} entries, {dump.describe()}), "
                f"after a pre-restore dump to {self.pre_restore_dir} and ending {others} "
                "other connection(s)"
            )
            changes = (
                Change(resource, "restored from", marker[0] if marker else None, dump.name),
                Change(resource, "other connections", str(others), "0"),
            )
        return RollbackPlan(
            backend=self.kind,
            summary=summary,
            current_version=marker[0] if marker else None,
            target_version=dump.name,
            changes=changes,
        )

    def apply(self, target: RollbackTarget, *, log: LogLine = discard_log) -> ApplyResult:
        """Pre-restore dump, terminate the other connections, restore in one transaction,
        record the marker. Nothing to do when the marker carries this step's stamp."""
        dump = self._dump_of(target)
        stamp = self._stamp(target)
        pre_restore = (
            self.pre_restore_dir / f"{PRE_RESTORE_PREFIX}{self.config['dbname']}-{stamp}.dump"
        )
        facts: dict[str, Any] = {"dump": dump.name, "pre_restore_dump": str(pre_restore)}
        if self.marker() == (dump.name, stamp):
            return ApplyResult(False, f"{self.shown} was restored from {dump.name} already", facts)
        self.require_owner()
        log(f"checking {dump.name}: {self._readable(dump)} entries, {dump.describe()}")
        with self.connections_blocked(stamp, log):
            with self.connect() as connection:
                ended = connection.execute(
                    "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) "
                    f"FROM pg_stat_activity WHERE {OTHER_CLIENTS}"
                ).fetchone()
            facts["terminated_connections"] = int(ended[0]) if ended else 0
            log(f"terminated {facts['terminated_connections']} other connection(s)")
            if pre_restore.is_file():
                log(f"pre-restore dump {pre_restore} was taken by an earlier attempt; keeping it")
            else:
                log(f"taking the pre-restore dump {pre_restore}")
                self.dump_to(pre_restore)
            log(f"restoring {dump.name} into {self.shown} in one transaction")
            self._run(
                f"pg_restore of {dump.name}",
                [
                    self._binary("pg_restore"),
                    "--clean",
                    "--if-exists",
                    "--single-transaction",
                    "--exit-on-error",
                ]
                + self._connection_args()
                + [str(dump.path)],
                lock_timeout=True,
            )
            with self.connect() as connection:
                connection.execute(
                    sql.SQL("ALTER DATABASE {} SET {} = {}").format(
                        sql.Identifier(self.config["dbname"]),
                        sql.Identifier(*MARKER.split(".")),
                        sql.Literal(f"{dump.name} {stamp}"),
                    )
                )
        detail = f"{self.shown} restored from {dump.name}; pre-restore dump at {pre_restore}"
        log(detail)
        return ApplyResult(True, detail, facts)

    def wait(self, target: RollbackTarget, *, deadline: float, log: LogLine = discard_log) -> None:
        """Until the database answers with the marker of this restore."""
        dump, stamp = self._dump_of(target), self._stamp(target)

        def restored() -> tuple[bool, str]:
            try:
                marker = self.marker()
            except BackendError as error:
                if not error.retryable:
                    raise
                return False, f"{self.shown} does not answer yet"
            if marker == (dump.name, stamp):
                return True, f"{self.shown} answers, restored from {dump.name}"
            return False, f"{self.shown} answers; last restore: {marker[0] if marker else 'none'}"

        poll_until(
            restored, deadline=deadline, log=log, interval=self.poll_interval, what=self.shown
        )

    def checks(self, target: RollbackTarget) -> list[CheckResult]:
        """The database answers, names the dump as restored, and the check query (when
        configured) returns a row."""
        dump = self._dump_of(target)
        try:
            marker = self.marker()
        except BackendError as error:
            return [CheckResult("database answers", CheckStatus.FAILED, str(error)[:500])]
        results = [
            CheckResult("database answers", CheckStatus.PASSED, f"{self.shown} answers"),
            CheckResult(
                "restored from the dump",
                CheckStatus.PASSED if marker and marker[0] == dump.name else CheckStatus.FAILED,
                f"last restore: {marker[0] if marker else 'none'}; the step restores {dump.name}",
                observed=marker[0] if marker else None,
                threshold=dump.name,
            ),
        ]
        query = self.config.get("check_query")
        if query:
            results.append(self._check_query(query))
        return results

    def _check_query(self, query: str) -> CheckResult:
        try:
            with self.connect() as connection:
                connection.execute("SET default_transaction_read_only = on")
                connection.execute("SET statement_timeout = '30s'")
                row = connection.execute(query).fetchone()
        except BackendError as error:
            return CheckResult("check query", CheckStatus.FAILED, str(error)[:500])
        return CheckResult(
            "check query",
            CheckStatus.PASSED if row is not None else CheckStatus.FAILED,
            "returned a row" if row is not None else "returned no row",
        )
