"""The git revert backend's drafts and repository access against real git: commit ids
checked at draft, unsafe or missing repositories and branches, tokens kept to their host and
out of every message, and a git server that hangs, throttles or refuses."""

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

from executors.base import BackendError, ConfigError, Connections
from executors.git_revert import GitRevertBackend
from executors.options import OptionError
from tests.executors.git_repos import (
    backend_for,
    git,
)


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
