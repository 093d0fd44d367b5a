"""The git revert backend against real git: a bare repository made by each test, a
developer's clone pushing to it, and the backend's own clone reverting and pushing."""

from __future__ import annotations

import base64
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from executors.base import BackendError, ConfigError, Connections, DeadlineExceeded, RollbackTarget
from executors.git_revert import GitRevertBackend
from executors.git_workspace import GitWorkspace
from executors.options import OptionError

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


@pytest.fixture
def repo(tmp_path: Path) -> Repository:
    repository = Repository(tmp_path)
    repository.commit({"app.py": "VERSION = 1\n", "README": "shop\n"}, "Initial version")
    return repository


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


def test_the_live_version_is_the_branch_head(repo, tmp_path):
    assert backend_for(repo, tmp_path).live_version() == repo.head()


def test_plan_names_the_commit_and_changes_nothing(repo, tmp_path):
    bad = repo.commit({"app.py": "VERSION = 2\n"}, "Bump to 2")
    backend = backend_for(repo, tmp_path)

    plan = backend.plan(commit_target(bad))

    assert [change.before for change in plan.changes] == [f'{bad[:12]} "Bump to 2"']
    assert plan.current_version == bad
    assert repo.head() == bad
    assert repo.show("app.py") == "VERSION = 2"


def test_apply_reverts_the_commit_pushes_it_and_does_nothing_the_second_time(repo, tmp_path):
    bad = repo.commit({"app.py": "VERSION = 2\n"}, "Bump to 2")
    backend = backend_for(repo, tmp_path)
    lines: list[str] = []

    first = backend.apply(commit_target(bad, "v1.4.0"), log=lines.append)
    second = backend.apply(commit_target(bad, "v1.4.0"))

    assert first.changed and not second.changed
    assert first.facts["new_commit"] == repo.head() != bad
    assert first.facts["previous_head"] == bad and first.facts["reverted"] == [bad]
    assert repo.show("app.py") == "VERSION = 1"
    message = repo.remote("log", "-1", "--format=%an <%ae>|%cn|%B")
    assert message.startswith('Backout <backout@example.com>|Backout|Revert "Bump to 2"')
    assert f"This reverts commit {bad}." in message
    assert "Rolled back by Backout to release v1.4.0." in message
    assert any("pushed" in line for line in lines)
    assert repo.remote("rev-list", "--count", "main") == "3"


def test_a_revert_made_by_hand_counts_as_done(repo, tmp_path):
    bad = repo.commit({"app.py": "VERSION = 2\n"}, "Bump to 2")
    git(repo.dev, "revert", "--no-edit", bad)
    git(repo.dev, "push", "-q", "origin", "HEAD:main")
    head = repo.head()

    result = backend_for(repo, tmp_path).apply(commit_target(bad))

    assert not result.changed and repo.head() == head


def test_a_change_already_gone_pushes_nothing(repo, tmp_path):
    bad = repo.commit({"app.py": "VERSION = 2\n"}, "Bump to 2")
    repo.commit({"app.py": "VERSION = 1\n"}, "Put version 1 back by hand")
    head = repo.head()

    result = backend_for(repo, tmp_path).apply(commit_target(bad))

    assert not result.changed and repo.head() == head


def test_a_merge_is_reverted_against_its_first_parent(repo, tmp_path):
    git(repo.dev, "checkout", "-q", "-b", "feature")
    repo.commit({"feature.py": "ENABLED = True\n"}, "Add the feature", push=False)
    git(repo.dev, "checkout", "-q", "main")
    repo.commit({"README": "shop, now with docs\n"}, "Document the shop")
    git(repo.dev, "merge", "-q", "--no-ff", "-m", "Merge feature", "feature")
    git(repo.dev, "push", "-q", "origin", "HEAD:main")
    merge = repo.head()
    backend = backend_for(repo, tmp_path)

    assert "merge, -m 1" in backend.plan(commit_target(merge)).changes[0].attribute
    assert backend.apply(commit_target(merge)).changed

    files = repo.remote("ls-tree", "--name-only", "main").split()
    assert "feature.py" not in files
    assert repo.show("README") == "shop, now with docs"
    assert "reversing\nchanges made to" in repo.remote("log", "-1", "--format=%B")
    assert not backend.apply(commit_target(merge)).changed


def test_a_conflicting_revert_is_refused_naming_the_files_and_nothing_is_pushed(repo, tmp_path):
    bad = repo.commit({"app.py": "VERSION = 2\n", "conf/é.ini": "a=1\n"}, "Bump to 2")
    repo.commit({"app.py": "VERSION = 3\n", "conf/é.ini": "a=2\n"}, "Bump to 3")
    head = repo.head()
    backend = backend_for(repo, tmp_path)

    with pytest.raises(BackendError) as refused:
        backend.apply(commit_target(bad))

    assert not refused.value.retryable
    assert "conflicts in 2 file(s)" in str(refused.value)
    assert "app.py" in str(refused.value) and "nothing was pushed" in str(refused.value)
    assert repo.head() == head
    # The clone is left clean: a plan afterwards sees the same conflict, not leftovers.
    with pytest.raises(BackendError, match="conflicts in 2 file"):
        backend.plan(commit_target(bad))


def test_a_branch_that_moved_before_the_push_is_fetched_again(repo, tmp_path, monkeypatch):
    bad = repo.commit({"app.py": "VERSION = 2\n"}, "Bump to 2")
    pushes = []
    real_push = GitWorkspace.push

    def push_after_a_colleague(self):
        if not pushes:
            repo.pull()
            repo.commit({"NOTES": "a colleague's note\n"}, "Add notes")
        pushes.append(repo.head())
        real_push(self)

    monkeypatch.setattr(GitWorkspace, "push", push_after_a_colleague)
    lines: list[str] = []

    result = backend_for(repo, tmp_path).apply(commit_target(bad), log=lines.append)

    assert result.changed and len(pushes) == 2
    assert any("moved while the revert was made" in line for line in lines)
    assert repo.show("NOTES") == "a colleague's note"
    assert repo.show("app.py") == "VERSION = 1"
    assert repo.remote("rev-parse", "main~1") == pushes[0]


def test_a_branch_that_keeps_moving_is_a_retryable_failure(repo, tmp_path, monkeypatch):
    bad = repo.commit({"app.py": "VERSION = 2\n"}, "Bump to 2")
    real_push = GitWorkspace.push
    count = iter(range(100))

    def push_after_a_colleague(self):
        repo.pull()
        repo.commit({"NOTES": f"note {next(count)}\n"}, "Add notes")
        real_push(self)

    monkeypatch.setattr(GitWorkspace, "push", push_after_a_colleague)

    with pytest.raises(BackendError, match="2 times") as failed:
        backend_for(repo, tmp_path, push_attempts=2).apply(commit_target(bad))

    assert failed.value.retryable
    assert repo.show("app.py") == "VERSION = 2"


def colleague_pushes_before_our_first_push(repo: Repository, monkeypatch) -> list[str]:
    """Make the first push be rejected: a colleague pushes a commit just before it."""
    pushes: list[str] = []
    real_push = GitWorkspace.push

    def push_after_a_colleague(self):
        if not pushes:
            repo.pull()
            pushes.append(repo.commit({"NOTES": "a colleague's note\n"}, "Add notes"))
        real_push(self)

    monkeypatch.setattr(GitWorkspace, "push", push_after_a_colleague)
    return pushes


def test_previous_after_a_rejected_push_reverts_the_head_drafted_not_a_colleagues(
    repo, tmp_path, monkeypatch
):
    bad = repo.commit({"app.py": "VERSION = 2\n"}, "Bump to 2")
    backend = backend_for(repo, tmp_path)
    previous = drafted(backend, previous=True)
    colleague = colleague_pushes_before_our_first_push(repo, monkeypatch)

    result = backend.apply(previous)

    assert result.changed and result.facts["reverted"] == [bad]
    assert repo.show("NOTES") == "a colleague's note"
    assert repo.show("app.py") == "VERSION = 1"
    assert repo.remote("rev-parse", "main~1") == colleague[0]
    assert not backend.apply(previous).changed


def test_a_release_target_after_a_rejected_push_leaves_later_commits_alone(
    repo, tmp_path, monkeypatch
):
    good = repo.head()
    repo.commit({"app.py": "VERSION = 2\n"}, "Bump to 2")
    backend = backend_for(repo, tmp_path)
    release = drafted(backend, version="v1", artifact=good)
    colleague_pushes_before_our_first_push(repo, monkeypatch)

    assert backend.apply(release).changed

    assert repo.show("NOTES") == "a colleague's note"
    assert repo.show("app.py") == "VERSION = 1"
    assert not backend.apply(release).changed


def test_previous_or_a_release_needs_the_head_recorded_at_draft(repo, tmp_path):
    backend = backend_for(repo, tmp_path)
    given = backend.validate_params({"branch_head": "0" * 40}, live=False)

    assert "branch_head" not in given
    with pytest.raises(ConfigError, match="no branch head recorded"):
        backend.apply(RollbackTarget(previous=True))


@pytest.mark.parametrize("lock", [".git/index.lock", ".git/refs/remotes/origin/main.lock"])
def test_a_lock_left_by_a_killed_git_does_not_block_later_steps(repo, tmp_path, lock):
    bad = repo.commit({"app.py": "VERSION = 2\n"}, "Bump to 2")
    backend = backend_for(repo, tmp_path)
    backend.live_version()
    clones = [path for path in (tmp_path / "work").iterdir() if path.is_dir()]
    (clones[0] / lock).write_text("")

    assert backend.apply(commit_target(bad)).changed

    assert repo.show("app.py") == "VERSION = 1"
    assert not (clones[0] / lock).exists()


def test_unicode_and_long_subjects_are_kept_whole_in_the_revert(repo, tmp_path):
    bad = repo.commit({"app.py": "VERSION = 2\n"}, CJK_SUBJECT)
    backend = backend_for(repo, tmp_path)
    lines: list[str] = []

    result = backend.apply(commit_target(bad, "v1.4.0-リリース"), log=lines.append)

    assert result.changed
    message = repo.remote("log", "-1", "--format=%B")
    assert message.startswith(f'Revert "{CJK_SUBJECT}"')
    assert "to release v1.4.0-リリース." in message
    assert all(len(line) < 400 for line in lines)
    assert "修复结账 🚀 תיקון" in lines[-2]


def test_a_subject_with_control_characters_is_cleaned_in_logs(repo, tmp_path):
    bad = repo.commit({"app.py": "VERSION = 2\n"}, "Bump\x1b[31m red\x07")
    plan = backend_for(repo, tmp_path).plan(commit_target(bad))

    assert "\x1b" not in plan.changes[0].before and "\x07" not in plan.changes[0].before


def test_previous_reverts_the_head_once(repo, tmp_path):
    bad = repo.commit({"app.py": "VERSION = 2\n"}, "Bump to 2")
    backend = backend_for(repo, tmp_path)
    previous = drafted(backend, previous=True)

    assert backend.apply(previous).changed
    assert not backend.apply(previous).changed
    assert not backend.plan(previous).changes
    assert repo.show("app.py") == "VERSION = 1"
    assert f"This reverts commit {bad}." in repo.remote("log", "-1", "--format=%B")


def test_a_release_target_reverts_everything_after_its_commit(repo, tmp_path):
    good = repo.head()
    repo.commit({"app.py": "VERSION = 2\n"}, "Bump to 2")
    repo.commit({"extra.py": "X = 1\n"}, "Add extra")
    backend = backend_for(repo, tmp_path)
    release = drafted(backend, version="v1", artifact=good)

    assert len(backend.plan(release).changes) == 2
    assert backend.apply(release).changed
    assert not backend.apply(release).changed

    assert repo.remote("rev-parse", "main^{tree}") == repo.remote("rev-parse", f"{good}^{{tree}}")
    assert [check.status for check in backend.checks(release)] == ["passed"]


@pytest.mark.parametrize(
    "artifact", ["refs/remotes/origin/main~1", "HEAD~1", "--all", "-q", "main@{1}"]
)
def test_a_release_artifact_that_is_not_a_commit_id_is_refused(repo, tmp_path, artifact):
    repo.commit({"app.py": "VERSION = 2\n"}, "Bump to 2")
    backend = backend_for(repo, tmp_path)
    release = drafted(backend, version="v1", artifact=artifact)

    with pytest.raises(ConfigError, match="is not on branch"):
        backend.plan(release)

    assert repo.show("app.py") == "VERSION = 2"


def test_checks_fail_until_the_revert_is_on_the_branch(repo, tmp_path):
    bad = repo.commit({"app.py": "VERSION = 2\n"}, "Bump to 2")
    backend = backend_for(repo, tmp_path)

    assert [check.status for check in backend.checks(commit_target(bad))] == ["failed"]
    backend.apply(commit_target(bad))
    backend.wait(commit_target(bad), deadline=time.monotonic() + 5)
    assert [check.status for check in backend.checks(commit_target(bad))] == ["passed"]


def test_wait_past_the_deadline_says_what_is_left(repo, tmp_path):
    bad = repo.commit({"app.py": "VERSION = 2\n"}, "Bump to 2")
    lines: list[str] = []

    with pytest.raises(DeadlineExceeded, match="1 commit"):
        backend_for(repo, tmp_path).wait(
            commit_target(bad), deadline=time.monotonic() + 0.2, log=lines.append
        )

    assert lines and "1 commit(s) to revert" in lines[0]


def test_draft_keeps_the_full_id_of_a_commit_on_the_branch(repo, tmp_path):
    bad = repo.commit({"app.py": "VERSION = 2\n"}, "Bump to 2")

    cleaned = backend_for(repo, tmp_path).validate_params({"commit": bad[:8].upper()}, live=True)

    assert cleaned == {"commit": bad, "branch_head": bad}


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("deadbeefdeadbeef", "is not a commit on branch"),
        ("not-a-sha", "does not match the expected form"),
        ("abc\x00def", "control characters"),
        ("a" * 41, "at most 40 characters"),
    ],
)
def test_draft_refuses_a_commit_that_is_not_there(repo, tmp_path, value, reason):
    with pytest.raises(OptionError) as refused:
        backend_for(repo, tmp_path).validate_params({"commit": value}, live=True)

    assert refused.value.option == "commit" and reason in refused.value.reason


def test_draft_refuses_a_commit_of_another_branch(repo, tmp_path):
    git(repo.dev, "checkout", "-q", "-b", "elsewhere")
    other = repo.commit({"other.py": "\n"}, "Elsewhere", push=False)
    git(repo.dev, "push", "-q", "origin", "elsewhere")

    with pytest.raises(OptionError, match="not a commit on branch"):
        backend_for(repo, tmp_path).validate_params({"commit": other}, live=True)


def test_a_missing_repository_is_a_permanent_error_and_a_400_at_draft(tmp_path):
    backend = GitRevertBackend(
        {"repository": str(tmp_path / "nowhere.git"), "branch": "main", "work_dir": str(tmp_path)},
        Connections(),
    )
    with pytest.raises(BackendError) as failed:
        backend.live_version()
    assert not failed.value.retryable

    with pytest.raises(OptionError, match="could not be checked"):
        backend.validate_params({"commit": "abcdef1"}, live=True)


def test_a_missing_branch_is_a_400_at_draft_even_without_a_commit(repo, tmp_path):
    with pytest.raises(OptionError) as refused:
        backend_for(repo, tmp_path, branch="release").validate_params({}, live=True)

    assert refused.value.option == "repository"
    assert "branch 'release' not found" in refused.value.reason


def test_a_missing_branch_is_a_config_error(repo, tmp_path):
    with pytest.raises(ConfigError, match="branch 'release' not found"):
        backend_for(repo, tmp_path, branch="release").live_version()


def test_an_unreachable_host_is_retryable_and_the_token_never_shown(repo, tmp_path, monkeypatch):
    monkeypatch.setenv("GIT_TOKEN_FOR_TEST", "ghp_secret_value_123456")
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    backend = backend_for(
        repo,
        tmp_path,
        repository=f"https://127.0.0.1:{port}/shop.git",
        token_env="GIT_TOKEN_FOR_TEST",
    )

    with pytest.raises(BackendError) as failed:
        backend.live_version()

    assert failed.value.retryable
    assert "ghp_secret_value_123456" not in str(failed.value)


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP port that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    for connection in held:
        connection.close()
    server.close()


def test_a_git_process_past_its_timeout_is_stopped_and_retryable(repo, tmp_path, silent_server):
    backend = backend_for(
        repo, tmp_path, repository=f"https://127.0.0.1:{silent_server}/shop.git", timeout_seconds=1
    )
    started = time.monotonic()

    with pytest.raises(BackendError, match="took over 1 s") as failed:
        backend.live_version()

    assert failed.value.retryable and time.monotonic() - started < 10


@pytest.mark.parametrize(
    ("config", "reason"),
    [
        ({"repository": "https://bot:hunter2@git.example.com/shop.git"}, "no password"),
        ({"repository": "https://ghp_token123@git.example.com/shop.git"}, "user name"),
        ({"repository": "https://@git.example.com/shop.git"}, "user name"),
        ({"repository": "ext::sh -c touch% /tmp/pwned"}, "use an absolute path"),
        ({"repository": "http://git.example.com/shop.git"}, "use a path, file://"),
        ({"repository": "relative/path"}, "use an absolute path"),
        ({"repository": "--upload-pack=touch /tmp/x"}, "must not start"),
    ],
)
def test_unsafe_repository_addresses_are_refused(tmp_path, config, reason):
    with pytest.raises(ConfigError, match=reason):
        GitRevertBackend({"branch": "main", **config}, Connections())


def test_the_token_header_is_scoped_to_the_repository_host(repo, tmp_path, monkeypatch):
    monkeypatch.setenv("GIT_TOKEN_FOR_TEST", "ghp_scoped_token")
    backend = backend_for(
        repo,
        tmp_path,
        repository="https://git.example.com:8443/shop.git",
        token_env="GIT_TOKEN_FOR_TEST",
    )

    def header_for(url: str) -> str:
        with backend.workspace() as clone:
            return subprocess.run(
                ["git", "config", "--get-urlmatch", "http.extraheader", url],
                env=clone.environment,
                capture_output=True,
                text=True,
            ).stdout.strip()

    assert header_for("https://git.example.com:8443/shop.git").startswith("Authorization: Basic")
    assert header_for("https://elsewhere.example.com/x.git") == ""
    assert header_for("https://git.example.com/other.git") == ""


def test_the_work_directory_is_private_to_the_worker(repo, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    backend = GitRevertBackend(
        {"repository": f"file://{repo.bare}", "branch": "main"}, Connections()
    )

    assert backend.live_version() == repo.head()
    made = tmp_path / "cache" / "backout-git"
    assert made.stat().st_mode & 0o777 == 0o700

    shared = tmp_path / "shared"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)
    with pytest.raises(ConfigError, match="open to other users"):
        backend_for(repo, tmp_path, work_dir=str(shared)).live_version()
    (tmp_path / "link").symlink_to(made)
    with pytest.raises(ConfigError, match="symbolic link"):
        backend_for(repo, tmp_path, work_dir=str(tmp_path / "link")).live_version()


@pytest.mark.parametrize("branch", ["a..b", "-x", "x.lock", "has space", "x\x07"])
def test_invalid_branch_names_are_refused(branch):
    with pytest.raises(ConfigError, match="branch"):
        GitRevertBackend({"repository": "/srv/git/shop.git", "branch": branch}, Connections())


def test_a_token_variable_that_is_not_set_is_a_config_error(repo, tmp_path, monkeypatch):
    monkeypatch.delenv("NO_SUCH_GIT_TOKEN", raising=False)
    backend = backend_for(repo, tmp_path, token_env="NO_SUCH_GIT_TOKEN")

    with pytest.raises(ConfigError, match="NO_SUCH_GIT_TOKEN is not set"):
        backend.live_version()


@pytest.fixture
def https_git_server(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """An https server on 127.0.0.1 answering git's first request with `answer["status"]`
    (and recording the Authorization header it got), its certificate in `answer["ca"]`."""
    key, certificate = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
        + ["-keyout", str(key), "-out", str(certificate), "-subj", "/CN=127.0.0.1"]
        + ["-addext", "subjectAltName=IP:127.0.0.1"],
        check=True,
        capture_output=True,
    )
    answer: dict[str, Any] = {"status": 503, "headers": [], "ca": str(certificate)}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            answer["headers"].append(self.headers.get("Authorization"))
            self.send_response(answer["status"])
            if answer["status"] == 401:
                self.send_header("WWW-Authenticate", 'Basic realm="git"')
            if answer["status"] == 429:
                self.send_header("Retry-After", "3")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certificate, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    answer["url"] = f"https://127.0.0.1:{server.server_address[1]}/shop.git"
    yield answer
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("status", [429, 500, 503])
def test_throttling_and_server_errors_are_retryable(repo, tmp_path, https_git_server, status):
    https_git_server["status"] = status
    backend = backend_for(
        repo, tmp_path, repository=https_git_server["url"], ca_file=https_git_server["ca"]
    )

    with pytest.raises(BackendError, match=f"returned error: {status}") as failed:
        backend.live_version()

    assert failed.value.retryable


def test_refused_credentials_are_permanent_name_the_repository_and_hide_the_token(
    repo, tmp_path, https_git_server, monkeypatch
):
    monkeypatch.setenv("GIT_TOKEN_FOR_TEST", "ghp_refused_token_987654")
    https_git_server["status"] = 401
    backend = backend_for(
        repo,
        tmp_path,
        repository=https_git_server["url"],
        ca_file=https_git_server["ca"],
        token_env="GIT_TOKEN_FOR_TEST",
    )

    with pytest.raises(BackendError) as failed:
        backend.live_version()

    assert not failed.value.retryable
    assert "refused the credentials" in str(failed.value)
    assert https_git_server["url"] in str(failed.value)
    assert "ghp_refused_token_987654" not in str(failed.value)
    sent = base64.b64decode(https_git_server["headers"][0].removeprefix("Basic ")).decode()
    assert sent == "x-access-token:ghp_refused_token_987654"
