"""The options of a PostgreSQL restore step, and the dumps a dump directory holds.

- `dump`: the file to restore, one of the custom-format dumps (`pg_dump -Fc`) in the
  service's dump directory, read when the plan is drafted (a missing one is refused there).
  Empty: the chosen release's artifact names the file; for the previous revision, the newest
  pre-deploy dump.
- `restore_stamp` (not an option: the server sets it when the step is drafted, replacing any
  value given, in the form `20261204T091500123456Z`). The database records the dump and the
  stamp of the last restore (see executors.pg_restore), so a retried step restores once.
- `acknowledge_loss`: the commander's written acknowledgement that the writes made after the
  dump are lost; the console asks for it when that loss exceeds the incident's RPO.

A dump is a regular file directly in the directory whose name is letters, digits and
`._+@-` (so that a name is never a path nor an option) and whose content starts with the
custom format's signature `PGDMP`. Files starting with a dot are half-written ones.
"""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass
from pathlib import Path

from executors.errors import ConfigError
from executors.options import Choice, Option

DUMP_NAME = r"[\w+@][\w.+@-]{0,199}"
_DUMP_NAME = re.compile(DUMP_NAME)
SIGNATURE = b"PGDMP"
PRE_DEPLOY_PREFIX = "pre-deploy-"
PRE_RESTORE_PREFIX = "pre-restore-"

DUMP = Option(
    "dump",
    "Dump to restore",
    type="choice",
    live=True,
    max_length=200,
    help="A custom-format dump in the service's dump directory. Empty: the chosen release's "
    "dump, or the newest pre-deploy dump for the previous revision.",
)
# The step parameter the server sets when a step is drafted (never people: a value given is
# replaced), and its only accepted form, `stamp_now()`'s. It goes into a file name.
RESTORE_STAMP = "restore_stamp"
STAMP_PATTERN = re.compile(r"\d{8}T\d{12}Z")
# Also set by the server when drafted with no dump chosen: the newest pre-deploy dump then,
# the one a "previous" step restores (and whose time the data-loss check uses).
PREVIOUS_DUMP = "previous_dump"
SERVER_PARAMS = frozenset({RESTORE_STAMP, PREVIOUS_DUMP})
ACKNOWLEDGE_LOSS = Option(
    "acknowledge_loss",
    "Acknowledgement of the data lost",
    max_length=1000,
    help="Required when the writes lost span more than the incident's RPO: say who agreed, "
    "and why it is acceptable.",
)
PG_RESTORE_OPTIONS = (DUMP, ACKNOWLEDGE_LOSS)


@dataclass(frozen=True)
class Dump:
    """A dump file in the dump directory."""

    name: str
    path: Path
    size: int
    modified: datetime.datetime

    def describe(self) -> str:
        megabytes = self.size / 1_000_000
        size = f"{megabytes:.1f} MB" if megabytes >= 0.1 else f"{self.size:,} bytes"
        return f"{size} · {self.modified:%Y-%m-%d %H:%M:%S} UTC"


def _dump_at(path: Path) -> Dump | None:
    if not _DUMP_NAME.fullmatch(path.name) or not path.is_file() or path.is_symlink():
        return None
    try:
        with path.open("rb") as content:
            if content.read(len(SIGNATURE)) != SIGNATURE:
                return None
        stat = path.stat()
    except OSError:
        return None
    modified = datetime.datetime.fromtimestamp(stat.st_mtime, datetime.UTC)
    return Dump(path.name, path, stat.st_size, modified)


def list_dumps(directory: Path) -> list[Dump]:
    """The dumps in `directory`, newest first; ConfigError when it cannot be read."""
    try:
        entries = list(directory.iterdir())
    except OSError as error:
        raise ConfigError(f"the dump directory {directory} cannot be read ({error})") from error
    dumps = [dump for dump in map(_dump_at, entries) if dump is not None]
    return sorted(dumps, key=lambda dump: (dump.modified, dump.name), reverse=True)


def dump_named(directory: Path, name: str) -> Dump:
    """The dump called `name` in `directory`; ConfigError when there is none."""
    if not _DUMP_NAME.fullmatch(name):
        raise ConfigError(f"{name[:80]!r} is not a dump file name")
    dump = _dump_at(directory / name)
    if dump is None:
        raise ConfigError(f"no custom-format dump {name!r} in {directory}")
    return dump


def dump_choices(dumps: list[Dump], live: str | None) -> tuple[Choice, ...]:
    return tuple(
        Choice(
            dump.name,
            dump.name + (" (restored last)" if dump.name == live else ""),
            dump.describe(),
            dump.name == live,
        )
        for dump in dumps
    )


def stamp_now() -> str:
    """A UTC stamp for file names and restores, to the microsecond."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%S%fZ")
