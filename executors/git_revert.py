"""Revert commits on a branch of a git repository and push the result, with the `git` binary.

Target config: `repository` (a local path or file:// URL, or https:// / ssh:// / user@host:path
in production), `branch`, and the identity the revert commits carry (`author_name`,
`author_email`). Credentials are never part of the config: a URL with a password is refused.
For https, `token_env` names an environment variable holding a token, handed to git as an
`Authorization` header through GIT_CONFIG_* variables (never on a command line, never in a
URL, never in a log), for the repository's host only (an https address with a user part is
refused), and `ca_file` names the certificate authorities to trust (an internal
CA); for ssh, `ssh_key_file` names a private key file. `work_dir` is where the clones live
(default: `backout-git` in the worker's cache directory, `$XDG_CACHE_HOME` or
`~/.cache`); it must belong to the worker's user and be closed to others (0700: it is created
so, and anything else is refused), `timeout_seconds`
bounds every git process (its process group is killed past it), `push_attempts` bounds how
often a push rejected because the branch moved is retried.

When a step is drafted the branch is fetched (a missing repository or branch is refused
there) and its head is recorded in the step's `branch_head` parameter (set by the server,
never by people). What is reverted, in this order: the step's `commit` option (checked when
the plan is drafted: it must be a commit on the branch); else the chosen release's commit
(`target.artifact`): every first-parent commit after it up to the recorded head whose change
is still on the branch, newest first; else, for the previous revision, the recorded head,
unless it is itself a revert made by this backend's identity (then the previous revision is
already back). Commits pushed after the draft are never reverted, however often a push is
retried. A merge is reverted against its first
parent (`-m 1`). The live version is the branch head's commit id.

Apply works in a clone of its own (one per repository and branch, kept between steps, used
under a file lock): fetch, reset to the remote branch, revert each commit (`git revert
--no-commit`, then a commit whose message is git's own "This reverts commit <id>" followed by
the release it rolls back to), and push. Idempotent: a commit already reverted on the branch
(by anyone, recognised by that line), or whose change is already gone, is skipped, so a second
apply pushes nothing and says changed=False. A conflicting revert is aborted and raises a
permanent BackendError naming the conflicting files; nothing is pushed. A push rejected because
the branch moved meanwhile fetches again and starts over (the new commits may already revert
it); after `push_attempts` it is a retryable error.

Errors: a git process past its timeout, an unreachable host, a 5xx or 429 answer or a
dropped connection are retryable; refused credentials, a missing repository or branch are
permanent and name the repository (without credentials).
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import os
import re
import shlex
import stat
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

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
from executors.git_revert_options import (
    GIT_REVERT_OPTIONS,
    Commit,
    revert_message,
    rollback_note,
    still_to_revert,
    undone_commits,
)
from executors.git_workspace import ALLOWED_PROTOCOLS, BranchMoved, GitWorkspace
from executors.options import OptionError
from executors.url_credentials import mask_url_credentials

_SCP_LIKE = re.compile(r"^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:[^\s]+$")
# A branch name git accepts (git check-ref-format, roughly): no "..", "//", control
# characters, spaces or ~^:?*[\; not starting with "-", not ending in "/", "." or ".lock".
# The step parameter holding the branch head when the step was drafted (set by the server).
HEAD_PARAM = "branch_head"
BRANCH_PATTERN = r"^(?!-)(?!.*\.\.)(?!.*//)[^\x00-\x20~^:?*\[\\\x7f]+(?<!\.lock)(?<![/.])$"


@dataclass(frozen=True)
class Reverts:
    """What a target asks to revert, and how much of it is still on the branch."""

    head: str
    pending: tuple[Commit, ...]
    how: str


class GitRevertBackend(Backend):
    """A branch of a git repository: revert a commit (or a release's later commits) and push."""

    kind = "git_revert"
    label = "git revert"
    config_schema = {
        "type": "object",
        "properties": {
            "repository": {"type": "string", "minLength": 1, "maxLength": 2000},
            "branch": {
                "type": "string",
                "minLength": 1,
                "maxLength": 255,
                "pattern": BRANCH_PATTERN,
            },
            "author_name": {"type": "string", "minLength": 1, "maxLength": 200},
            "author_email": {"type": "string", "pattern": r"^[^\s<>@]+@[^\s<>@]+$"},
            "token_env": {"type": "string", "pattern": r"^[A-Za-z_][A-Za-z0-9_]*$"},
            "token_user": {"type": "string", "minLength": 1, "maxLength": 200},
            "ssh_key_file": {"type": "string", "minLength": 1},
            "ca_file": {"type": "string", "minLength": 1},
            "work_dir": {"type": "string", "minLength": 1},
            "timeout_seconds": {"type": "number", "exclusiveMinimum": 0, "maximum": 3600},
            "push_attempts": {"type": "integer", "minimum": 1, "maximum": 10},
        },
        "required": ["repository", "branch"],
        "additionalProperties": False,
    }
    options = GIT_REVERT_OPTIONS

    def __init__(
        self, config: Mapping[str, Any], connections: Connections, *, poll_interval: float = 1.0
    ) -> None:
        super().__init__(config, connections)
        self.poll_interval = poll_interval
        _check_repository(self.config["repository"])
        self.author_name = str(self.config.get("author_name", "Backout"))
        self.author_email = str(self.config.get("author_email", "backout@localhost"))

    @property
    def shown(self) -> str:
        """The repository and branch as messages name them (never with credentials)."""
        return f"{mask_url_credentials(self.config['repository'])}#{self.config['branch']}"

    # -- the clone -------------------------------------------------------------------------

    def _environment(self) -> tuple[dict[str, str], tuple[str, ...]]:
        environment = {
            name: os.environ[name]
            for name in ("PATH", "HOME", "TMPDIR", "SSL_CERT_FILE", "SSL_CERT_DIR")
            if name in os.environ
        }
        environment.update(
            {
                "LC_ALL": "C",
                "GIT_CONFIG_NOSYSTEM": "1",
                "GIT_CONFIG_GLOBAL": os.devnull,
                "GIT_TERMINAL_PROMPT": "0",
                "GIT_ALLOW_PROTOCOL": ALLOWED_PROTOCOLS,
                "GIT_AUTHOR_NAME": self.author_name,
                "GIT_AUTHOR_EMAIL": self.author_email,
                "GIT_COMMITTER_NAME": self.author_name,
                "GIT_COMMITTER_EMAIL": self.author_email,
            }
        )
        secrets: tuple[str, ...] = ()
        # Settings handed to git through the environment, never on a command line.
        settings: list[tuple[str, str]] = []
        if self.config.get("ca_file"):
            settings.append(("http.sslCAInfo", str(self.config["ca_file"])))
        token_env = self.config.get("token_env")
        if token_env:
            token = os.environ.get(token_env)
            if not token:
                raise ConfigError(f"{self.shown}: the environment variable {token_env} is not set")
            user = self.config.get("token_user", "x-access-token")
            basic = base64.b64encode(f"{user}:{token}".encode()).decode()
            # Scoped to the repository's scheme, host and port: never sent to another host
            # (a redirect, a submodule).
            parts = urlsplit(self.config["repository"])
            scope = f"{parts.scheme}://{parts.netloc}/"
            settings.append((f"http.{scope}.extraHeader", f"Authorization: Basic {basic}"))
            secrets = (token, basic)
        environment["GIT_CONFIG_COUNT"] = str(len(settings))
        for number, (key, value) in enumerate(settings):
            environment[f"GIT_CONFIG_KEY_{number}"] = key
            environment[f"GIT_CONFIG_VALUE_{number}"] = value
        key_file = self.config.get("ssh_key_file")
        if key_file:
            environment["GIT_SSH_COMMAND"] = (
                f"ssh -i {shlex.quote(key_file)} -o BatchMode=yes -o IdentitiesOnly=yes"
            )
        return environment, secrets

    @contextlib.contextmanager
    def workspace(self) -> Iterator[GitWorkspace]:
        """The clone of this repository and branch, locked for this process's use."""
        base = private_directory(self.config.get("work_dir"))
        key = hashlib.sha256(
            f"{self.config['repository']}\n{self.config['branch']}".encode()
        ).hexdigest()[:20]
        timeout = float(self.config.get("timeout_seconds", 120))
        environment, secrets = self._environment()
        with open(base / f"{key}.lock", "w") as lock:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise BackendError(
                            f"{self.shown}: the work clone stayed busy for {timeout:g} s",
                            retryable=True,
                        ) from None
                    time.sleep(0.05)
            try:
                clone = GitWorkspace(
                    url=self.config["repository"],
                    branch=self.config["branch"],
                    directory=base / key,
                    environment=environment,
                    secrets=secrets,
                    timeout=timeout,
                    shown=self.shown,
                )
                clone.discard_if_locked()
                yield clone
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    # -- what to revert ------------------------------------------------------------------

    def validate_params(self, params: Mapping[str, Any], *, live: bool = False) -> dict[str, Any]:
        """As the base class; with `live`, the branch is fetched (a missing repository or
        branch is refused), a `commit` must be on it (the step keeps its full id), and the
        branch head is recorded as `branch_head`: a release or "previous" reverts up to
        that head, and nothing pushed after the draft. A `branch_head` given is ignored."""
        if isinstance(params, Mapping):
            params = {name: value for name, value in params.items() if name != HEAD_PARAM}
        cleaned = super().validate_params(params, live=live)
        if not live:
            return cleaned
        commit = cleaned.get("commit")
        try:
            with self.workspace() as clone:
                head = clone.fetch()
                if commit:
                    full = clone.resolve(commit.lower())
                    if full is None or not clone.on_branch(full):
                        raise OptionError(
                            "commit", f"{commit} is not a commit on branch {self.shown}"
                        )
                    cleaned["commit"] = full
        except OptionError:
            raise
        except BackendError as error:
            raise OptionError(
                "commit" if commit else "repository", f"could not be checked: {error}"
            ) from error
        cleaned[HEAD_PARAM] = head
        return cleaned

    def live_options(self) -> dict[str, LiveOption]:
        """The branch's newest first-parent commits, as a note beside the commit option."""
        with self.workspace() as clone:
            clone.fetch()
            recent = clone.log("--first-parent", "-5", clone.remote_ref)
        listed = "; ".join(commit.shown() for commit in recent)
        return {"commit": LiveOption(note=f"newest on {self.config['branch']}: {listed}")}

    def _reverts(self, clone: GitWorkspace, target: RollbackTarget) -> Reverts:
        head = clone.fetch()
        chosen = target.params.get("commit")
        if chosen:
            full = clone.resolve(str(chosen))
            if full is None or not clone.on_branch(full):
                raise ConfigError(f"{chosen} is not a commit on branch {self.shown}")
            wanted = [clone.commit(full)]
            history = clone.log("--reverse", f"{full}..{clone.remote_ref}")
            undone = undone_commits(history)
            pending = [commit for commit in wanted if commit.sha not in undone]
            return Reverts(head, tuple(pending), f"revert {wanted[0].shown()}")
        if target.artifact:
            release = clone.resolve(target.artifact)
            if release is None or not clone.on_branch(release):
                raise ConfigError(
                    f"release commit {target.artifact[:60]} is not on branch {self.shown}"
                )
            drafted = self._drafted_head(clone, target)
            first_parent = clone.log("--first-parent", f"{release}..{drafted}")
            history = clone.log("--reverse", f"{release}..{clone.remote_ref}")
            pending = still_to_revert(first_parent, history)
            how = f"revert what came after {release[:12]} ({target.version or 'the release'})"
            return Reverts(head, tuple(pending), how)
        if target.previous:
            drafted = self._drafted_head(clone, target)
            latest = clone.commit(drafted)
            ours = latest.author_email == self.author_email and latest.reverts
            undone = undone_commits(clone.log("--reverse", f"{drafted}..{clone.remote_ref}"))
            done = ours or latest.sha in undone
            head_pending: tuple[Commit, ...] = () if done else (latest,)
            return Reverts(head, head_pending, f"revert the head {latest.shown()}")
        raise ConfigError(
            "a git revert step needs a commit (the option), a release (its commit), or the "
            "previous revision"
        )

    def _drafted_head(self, clone: GitWorkspace, target: RollbackTarget) -> str:
        """The branch head recorded when the step was drafted, still on the branch."""
        drafted = target.params.get(HEAD_PARAM)
        if not isinstance(drafted, str) or not re.fullmatch(r"[0-9a-f]{40}", drafted):
            raise ConfigError(
                f"{self.shown}: the step has no branch head recorded when it was drafted; "
                "draft it again"
            )
        if not clone.on_branch(drafted):
            raise ConfigError(
                f"{self.shown}: the head {drafted[:12]} recorded when the step was drafted is "
                "no longer on the branch (was it rewritten?)"
            )
        return drafted

    def _changes(self, reverts: Reverts) -> tuple[Change, ...]:
        resource = f"git {self.shown}"
        return tuple(
            Change(resource, "revert" + (" (merge, -m 1)" if c.is_merge else ""), c.shown(), None)
            for c in reverts.pending
        )

    # -- the interface ---------------------------------------------------------------------

    def live_version(self) -> str | None:
        """The commit id at the head of the branch."""
        with self.workspace() as clone:
            return clone.fetch()

    def plan(self, target: RollbackTarget) -> RollbackPlan:
        """Which commits would be reverted; the reverts are tried in the clone (never
        pushed), so that a conflict shows in the dry run."""
        with self.workspace() as clone:
            reverts = self._reverts(clone, target)
            summary = f"{self.shown}: {reverts.how}"
            if not reverts.pending:
                summary += ": already reverted on the branch"
            else:
                try:
                    made = self._revert_all(clone, reverts, target, discard_log)
                    if not made:
                        summary += ": the changes are already gone from the branch"
                finally:
                    clone.reset()
        return RollbackPlan(
            backend=self.kind,
            summary=summary,
            current_version=reverts.head,
            target_version=None,
            changes=self._changes(reverts) if reverts.pending else (),
        )

    def _revert_all(
        self, clone: GitWorkspace, reverts: Reverts, target: RollbackTarget, log: LogLine
    ) -> list[str]:
        """Revert each pending commit in the clone, newest first, one commit each; the
        commits made. Raises a permanent BackendError on a conflict, the clone reset."""
        clone.reset()
        made = []
        note = rollback_note(target.version)
        for commit in reverts.pending:
            mainline = ("-m", "1") if commit.is_merge else ()
            result = clone.run(
                "revert", "--no-commit", *mainline, commit.sha, what="revert", check=False
            )
            if result.status != 0:
                conflicted = clone.run(
                    "diff", "--name-only", "--diff-filter=U", what="list conflicts"
                ).stdout.split("\n")
                files = [name for name in conflicted if name]
                clone.run("revert", "--abort", what="abort the revert", check=False)
                clone.reset()
                if files:
                    shown = ", ".join(files[:20]) + (" …" if len(files) > 20 else "")
                    raise BackendError(
                        f"{self.shown}: reverting {commit.shown()} conflicts in {len(files)} "
                        f"file(s): {shown}; nothing was pushed"
                    )
                raise clone.failure(f"revert {commit.sha[:12]}", result)
            if clone.run("diff", "--cached", "--quiet", what="read", check=False).status == 0:
                log(f"{commit.shown()}: its change is already gone from the branch")
                clone.run("reset", "-q", "--hard", "HEAD", what="reset")
                clone.run("revert", "--quit", what="reset", check=False)
                continue
            self._commit(clone, revert_message(commit, note))
            made.append(clone.rev_parse("HEAD"))
            log(f"reverted {commit.shown()} as {made[-1][:12]}")
        return made

    def _commit(self, clone: GitWorkspace, message: str) -> None:
        message_file = clone.directory / ".git" / "BACKOUT_MSG"
        message_file.write_text(message, encoding="utf-8")
        clone.run("commit", "-q", "--no-verify", "-F", str(message_file), what="commit the revert")

    def apply(self, target: RollbackTarget, *, log: LogLine = discard_log) -> ApplyResult:
        """Revert and push; a branch that moved meanwhile is fetched again and the revert
        made again on it. Nothing to do when the branch already has the reverts."""
        attempts = int(self.config.get("push_attempts", 3))
        with self.workspace() as clone:
            for attempt in range(1, attempts + 1):
                reverts = self._reverts(clone, target)
                facts: dict[str, Any] = {
                    "repository": mask_url_credentials(self.config["repository"]),
                    "branch": self.config["branch"],
                    "previous_head": reverts.head,
                    "reverted": [commit.sha for commit in reverts.pending],
                }
                if not reverts.pending:
                    return ApplyResult(False, f"{self.shown}: already reverted", facts)
                log(f"{self.shown}: {reverts.how} at {reverts.head[:12]}")
                made = self._revert_all(clone, reverts, target, log)
                if not made:
                    clone.reset()
                    detail = f"{self.shown}: the changes are already gone; nothing to push"
                    return ApplyResult(False, detail, {**facts, "reverted": []})
                try:
                    clone.push()
                except BranchMoved as moved:
                    clone.reset()
                    if attempt == attempts:
                        raise BackendError(
                            f"{moved} {attempts} times; giving up for now", retryable=True
                        ) from moved
                    log(f"{moved}; fetching again (attempt {attempt + 1} of {attempts})")
                    continue
                head = made[-1]
                log(f"pushed {head[:12]} to {self.config['branch']}")
                detail = f"{self.shown}: {len(made)} revert commit(s) pushed, head {head[:12]}"
                return ApplyResult(True, detail, {**facts, "new_commit": head, "commits": made})
        raise AssertionError("unreachable")  # pragma: no cover

    def wait(self, target: RollbackTarget, *, deadline: float, log: LogLine = discard_log) -> None:
        """Until the remote branch has every revert (a push is visible at once; this reads
        it back from the remote)."""

        def reverted() -> tuple[bool, str]:
            with self.workspace() as clone:
                reverts = self._reverts(clone, target)
            left = len(reverts.pending)
            return left == 0, f"{self.shown} at {reverts.head[:12]}: {left} commit(s) to revert"

        poll_until(
            reverted, deadline=deadline, log=log, interval=self.poll_interval, what=self.shown
        )

    def checks(self, target: RollbackTarget) -> list[CheckResult]:
        """Every commit the step reverts is reverted on the remote branch."""
        with self.workspace() as clone:
            reverts = self._reverts(clone, target)
        left = [commit.shown() for commit in reverts.pending]
        return [
            CheckResult(
                "reverted on the branch",
                CheckStatus.FAILED if left else CheckStatus.PASSED,
                f"{self.shown} at {reverts.head[:12]}: "
                + (f"still to revert: {', '.join(left)}" if left else "every revert is there"),
                observed=reverts.head,
            )
        ]


def private_directory(configured: str | None) -> Path:
    """The directory the clones live in (`configured`, else `backout-git` in the worker's
    cache directory), created 0700; ConfigError unless it is a real directory owned by this
    user that no one else may read or write (a clone holds the repository, and a directory
    others can write is one they can plant hooks or a different clone in)."""
    if configured:
        base = Path(configured)
    else:
        cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        base = Path(cache) / "backout-git"
    try:
        base.parent.mkdir(parents=True, exist_ok=True)
        base.mkdir(mode=0o700, exist_ok=True)
        found = base.lstat()
    except OSError as error:
        raise ConfigError(f"work_dir {base} cannot be created ({error.strerror})") from None
    if not stat.S_ISDIR(found.st_mode):
        raise ConfigError(f"work_dir {base} is not a directory (a symbolic link is refused)")
    if found.st_uid != os.getuid():
        raise ConfigError(f"work_dir {base} belongs to another user")
    if found.st_mode & 0o077:
        raise ConfigError(
            f"work_dir {base} is open to other users (mode {found.st_mode & 0o777:o}); make it 0700"
        )
    return base


def _check_repository(url: str) -> None:
    """Refuse a repository address with a password in it, or a transport git must not use."""
    if "\x00" in url or any(ord(char) < 0x20 for char in url):
        raise ConfigError("repository: must not contain control characters")
    if url.startswith("-"):
        raise ConfigError("repository: must not start with '-'")
    if "://" in url:
        parts = urlsplit(url)
        if parts.scheme not in ("file", "https", "ssh"):
            raise ConfigError("repository: use a path, file://, https:// or ssh:// address")
        if parts.password is not None or (parts.scheme == "https" and "@" in parts.netloc):
            raise ConfigError(
                "repository: no password or user name in the address; name an environment "
                "variable holding a token in token_env (and the user in token_user)"
            )
        return
    if _SCP_LIKE.match(url) or url.startswith("/"):
        return
    raise ConfigError("repository: use an absolute path, file://, https:// or ssh:// address")
