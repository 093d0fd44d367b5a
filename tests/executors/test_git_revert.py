"""The git revert backend against real git: a bare repository made by each test, a
developer's clone pushing to it, and the backend's own clone reverting and pushing."""

from __future__ import annotations

import time

import pytest

from executors.base import BackendError, ConfigError, DeadlineExceeded, RollbackTarget
from executors.git_workspace import GitWorkspace
from tests.executors.git_repos import (
    CJK_SUBJECT,
    Repository,
    backend_for,
    commit_target,
    drafted,
    git,
)


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
