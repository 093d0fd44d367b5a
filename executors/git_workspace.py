"""A clone of one branch of a git repository, and the git processes run in it (for
executors.git_revert).

Every process is the `git` binary run from a list of arguments (never a shell), in a session
of its own so that a timeout kills its helpers (ssh, the https remote helper) too. Errors are
classified from what git prints: an unreachable host, a timeout, a 429 or 5xx answer or a
dropped connection are retryable; anything else is permanent. Credentials (a token handed in
through the environment) are masked in every message.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from executors.errors import BackendError, ConfigError
from executors.git_revert_options import LOG_FORMAT, Commit, parse_log
from executors.url_credentials import MASK, mask_url_credentials

KILL_GRACE_SECONDS = 2.0
STDERR_SHOWN = 600
# Transports git may use: no ext::, no plain git:// or http://.
ALLOWED_PROTOCOLS = "file:https:ssh"
_RETRYABLE = re.compile(
    r"could not resolve host|connection refused|failed to connect|couldn't connect|"
    r"connection timed out|operation timed out|timed out|connection reset|early eof|"
    r"remote end hung up|rpc failed|"
    r"returned error: (429|5\d\d)|temporary failure|network is unreachable|"
    r"unable to lock|index\.lock",
    re.I,
)
_COMMIT_ID = re.compile(r"[0-9a-fA-F]{4,64}")
# Lock files git leaves behind when it is killed: while one exists every git command fails.
_TOP_LEVEL_LOCKS = ("index.lock", "HEAD.lock", "config.lock", "packed-refs.lock", "shallow.lock")
_MOVED = re.compile(r"\[rejected\].*\((fetch first|non-fast-forward|stale info)\)", re.I)
_MISSING_BRANCH = re.compile(r"couldn't find remote ref", re.I)
_REFUSED = re.compile(
    r"authentication failed|could not read username|returned error: 40[13]|"
    r"permission denied \(publickey",
    re.I,
)


class BranchMoved(BackendError):
    """The push was rejected: the branch moved since it was fetched."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=True)


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=KILL_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@dataclass(frozen=True)
class GitOutput:
    status: int
    stdout: str
    stderr: str


class GitWorkspace:
    """A clone of one branch in a directory of its own, and the git processes run in it.

    Every process gets a fixed environment: no global or system git config (a developer's
    `commit.gpgsign` must not change what a rollback does), no terminal prompts, the allowed
    protocols, the commit identity, and the credentials. The token's value is masked in
    every message.
    """

    def __init__(
        self,
        *,
        url: str,
        branch: str,
        directory: Path,
        environment: Mapping[str, str],
        secrets: tuple[str, ...],
        timeout: float,
        shown: str,
    ) -> None:
        self.url = url
        self.branch = branch
        self.directory = directory
        self.environment = dict(environment)
        self.secrets = secrets
        self.timeout = timeout
        self.shown = shown

    @property
    def remote_ref(self) -> str:
        return f"refs/remotes/origin/{self.branch}"

    def masked(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, MASK)
        return mask_url_credentials(text)

    def run(self, *args: str, what: str, check: bool = True, cwd: Path | None = None) -> GitOutput:
        """Run `git args` (a list, never a shell); a BackendError when it fails and `check`."""
        process = subprocess.Popen(
            ["git", *args],
            cwd=cwd or self.directory,
            env=self.environment,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,  # a timeout kills ssh and the remote helpers too
        )
        try:
            out, err = process.communicate(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            _kill_group(process)
            raise BackendError(
                f"{what} ({self.shown}): git took over {self.timeout:g} s and was stopped",
                retryable=True,
            ) from None
        result = GitOutput(
            process.returncode,
            out.decode("utf-8", "replace"),
            err.decode("utf-8", "replace"),
        )
        if check and result.status != 0:
            raise self.failure(what, result)
        return result

    def failure(self, what: str, result: GitOutput) -> BackendError:
        said = self.masked(result.stderr.strip() or result.stdout.strip())[-STDERR_SHOWN:]
        message = f"{what} ({self.shown}) failed: {said or f'git exited with {result.status}'}"
        if _MISSING_BRANCH.search(result.stderr):
            return ConfigError(f"branch {self.branch!r} not found in {self.shown}")
        if _REFUSED.search(result.stderr):
            return BackendError(f"{self.shown}: the git server refused the credentials ({message})")
        return BackendError(message, retryable=bool(_RETRYABLE.search(result.stderr)))

    def discard_if_locked(self) -> bool:
        """Remove the clone when git left a lock file in it (`index.lock`, a ref's `.lock`):
        a git process killed with its worker leaves one, and every later git here would fail
        on it. Called under the backend's file lock, so no process of ours is using the
        clone; the next fetch clones afresh (an orphaned git still running keeps working in a
        directory that is gone, and cannot spoil the new clone)."""
        git_dir = self.directory / ".git"
        if not git_dir.is_dir():
            return False
        locks = [git_dir / name for name in _TOP_LEVEL_LOCKS if (git_dir / name).exists()]
        locks += list((git_dir / "refs").rglob("*.lock"))
        if not locks:
            return False
        moved = self.directory.with_name(f".{self.directory.name}.stale-{os.getpid()}")
        shutil.rmtree(moved, ignore_errors=True)
        try:
            os.replace(self.directory, moved)
        except OSError as error:
            raise BackendError(
                f"{self.shown}: the work clone {self.directory} has a stale {locks[0].name} "
                f"and cannot be removed ({error.strerror})"
            ) from None
        shutil.rmtree(moved, ignore_errors=True)
        return True

    def fetch(self) -> str:
        """Fetch the branch (creating the clone on first use); the remote head's id."""
        if not (self.directory / ".git").is_dir():
            self.directory.mkdir(parents=True, exist_ok=True)
            self.run("init", "-q", what="create the work clone")
            self.run("remote", "add", "origin", self.url, what="create the work clone")
        else:
            self.run("remote", "set-url", "origin", self.url, what="set the remote")
        self.run(
            "fetch",
            "-q",
            "--prune",
            "--no-tags",
            "origin",
            f"+refs/heads/{self.branch}:{self.remote_ref}",
            what=f"fetch {self.branch}",
        )
        return self.rev_parse(self.remote_ref)

    def rev_parse(self, name: str) -> str:
        return self.run(
            "rev-parse", "--verify", "-q", f"{name}^{{commit}}", what="read"
        ).stdout.strip()

    def resolve(self, commit: str) -> str | None:
        """The full id of `commit` (4 to 64 hexadecimal digits: never a ref name, never
        something git would read as an option) if it is a commit in the clone, else None."""
        if not _COMMIT_ID.fullmatch(commit):
            return None
        found = self.run(
            "rev-parse", "--verify", "-q", f"{commit}^{{commit}}", what="read", check=False
        )
        return found.stdout.strip() if found.status == 0 else None

    def on_branch(self, sha: str) -> bool:
        found = self.run(
            "merge-base", "--is-ancestor", sha, self.remote_ref, what="read", check=False
        )
        return found.status == 0

    def log(self, *range_args: str) -> list[Commit]:
        output = self.run("log", f"--format={LOG_FORMAT}", *range_args, what="read history")
        return parse_log(output.stdout)

    def commit(self, sha: str) -> Commit:
        return self.log("-1", sha)[0]

    def reset(self) -> None:
        """The work tree at the fetched remote head, nothing half done left from before."""
        self.run("revert", "--quit", what="reset", check=False)
        self.run("checkout", "-q", "-f", "-B", "backout-work", self.remote_ref, what="reset")
        self.run("reset", "-q", "--hard", self.remote_ref, what="reset")
        self.run("clean", "-q", "-f", "-d", "-x", what="reset")

    def push(self) -> None:
        """Push the work branch to the remote branch; BranchMoved if it moved meanwhile."""
        expected = self.rev_parse(self.remote_ref)
        result = self.run(
            "push",
            "--porcelain",
            f"--force-with-lease=refs/heads/{self.branch}:{expected}",
            "origin",
            f"HEAD:refs/heads/{self.branch}",
            what=f"push {self.branch}",
            check=False,
        )
        if result.status == 0:
            return
        if _MOVED.search(result.stdout + "\n" + result.stderr):
            raise BranchMoved(f"{self.shown}: {self.branch} moved while the revert was made")
        raise self.failure(f"push {self.branch}", result)
