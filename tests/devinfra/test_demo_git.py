"""The demo's git repository is made where bin/demo asks, a folder relative to the checkout
(var/…), although git runs in folders of its own."""

from __future__ import annotations

import subprocess
from pathlib import Path

from devinfra.demo_git_postgres import seed_git_repository


def test_the_repository_is_made_from_a_relative_state_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    service = seed_git_repository(Path("var/demo-8011"))
    bare = tmp_path / "var/demo-8011/demo-git/storefront-config.git"
    assert service.target_config["repository"] == bare.as_uri()
    head = subprocess.run(
        ["git", "--git-dir", str(bare), "rev-parse", "main"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert head == service.live_version
    assert Path(service.target_config["work_dir"]).is_absolute()
