"""Real git repositories for the git revert backend's tests: a bare repository (the
remote) and a developer's clone pushing to it, and the backend configured for them."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from executors.base import Connections, RollbackTarget
from executors.git_revert import GitRevertBackend

CJK_SUBJECT = '修复结账 🚀 תיקון <b>checkout</b> & "quotes" ' + "長" * 3000


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        text=True,
        env={
            "PATH": "/usr/bin:/bin",
            "HOME": str(cwd),
            "GIT_AUTHOR_NAME": "Dev",
            "GIT_AUTHOR_EMAIL": "dev@example.com",
            "GIT_COMMITTER_NAME": "Dev",
            "GIT_COMMITTER_EMAIL": "dev@example.com",
            "GIT_CONFIG_NOSYSTEM": "1",
        },
    ).stdout.strip()


class Repository:
    """A bare repository (the remote) and a developer's clone of it."""

    def __init__(self, root: Path) -> None:
        self.bare = root / "remote.git"
        self.dev = root / "dev"
        subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(self.bare)], check=True)
        subprocess.run(["git", "init", "-q", "-b", "main", str(self.dev)], check=True)
        git(self.dev, "remote", "add", "origin", str(self.bare))

    def commit(self, files: dict[str, str], subject: str, *, push: bool = True) -> str:
        for name, text in files.items():
            path = self.dev / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            git(self.dev, "add", name)
        git(self.dev, "commit", "-q", "-m", subject)
        if push:
            git(self.dev, "push", "-q", "origin", "HEAD:main")
        return git(self.dev, "rev-parse", "HEAD")

    def pull(self) -> None:
        git(self.dev, "fetch", "-q", "origin")
        git(self.dev, "reset", "-q", "--hard", "origin/main")

    def remote(self, *args: str) -> str:
        return git(self.bare, *args)

    def head(self) -> str:
        return self.remote("rev-parse", "main")

    def show(self, path: str, ref: str = "main") -> str:
        return self.remote("show", f"{ref}:{path}")


def backend_for(repo: Repository, tmp_path: Path, **config: object) -> GitRevertBackend:
    return GitRevertBackend(
        {
            "repository": f"file://{repo.bare}",
            "branch": "main",
            "author_name": "Backout",
            "author_email": "backout@example.com",
            "work_dir": str(tmp_path / "work"),
            **config,
        },
        Connections(),
        poll_interval=0.05,
    )


def commit_target(sha: str, version: str | None = None) -> RollbackTarget:
    return RollbackTarget(version=version, params={"commit": sha})


def drafted(backend: GitRevertBackend, **target: Any) -> RollbackTarget:
    """A release or "previous" target with the parameters a draft stores now."""
    return RollbackTarget(params=backend.validate_params({}, live=True), **target)
