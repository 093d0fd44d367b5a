"""The option of a git revert step, and what a branch's history says about reverts.

- `commit`: the commit to revert (7 to 40 hexadecimal digits). When drafted, it is fetched
  and must be a commit on the service's branch; the step stores its full id. Empty: the
  chosen release's commit says what to undo (every first-parent commit after it), else
  "previous" reverts the branch head.

A revert is recognised by the line git writes into its message, "This reverts commit
<40 hex digits>", whoever made it (`git revert` by hand counts). A revert of a revert puts
the change back, so the state of each commit is followed through the history in order.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from executors.options import Option

COMMIT = Option(
    "commit",
    "Commit to revert",
    max_length=40,
    pattern=r"[0-9a-fA-F]{7,40}",
    help="A commit on the branch (a merge is reverted against its first parent). Empty: "
    "the commits after the chosen release's, or the branch head for the previous revision.",
)
GIT_REVERT_OPTIONS = (COMMIT,)

_REVERTS = re.compile(r"^This reverts commit ([0-9a-f]{40})\b", re.M)
# Subjects go into log lines and change descriptions: no control characters, bounded.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
SUBJECT_SHOWN = 120


@dataclass(frozen=True)
class Commit:
    """A commit as the branch history gives it."""

    sha: str
    parents: tuple[str, ...]
    author_email: str
    message: str

    @property
    def subject(self) -> str:
        return self.message.split("\n", 1)[0]

    @property
    def is_merge(self) -> bool:
        return len(self.parents) > 1

    @property
    def reverts(self) -> tuple[str, ...]:
        """The commits this one says it reverts."""
        return tuple(_REVERTS.findall(self.message))

    def shown(self) -> str:
        """`abc1234 "subject"`, the subject cut and cleaned for a log line."""
        return f'{self.sha[:12]} "{subject_shown(self.subject)}"'


def subject_shown(subject: str) -> str:
    clean = _CONTROL.sub(" ", subject).strip()
    return clean if len(clean) <= SUBJECT_SHOWN else clean[: SUBJECT_SHOWN - 1] + "…"


# git log --format: fields separated by US, records by RS (neither appears in a message
# git accepts as text, and both are stripped from what is shown).
LOG_FORMAT = "%H%x1f%P%x1f%ae%x1f%B%x1e"


def parse_log(output: str) -> list[Commit]:
    """Commits from `git log --format=LOG_FORMAT` output, in the order given."""
    commits = []
    for record in output.split("\x1e"):
        record = record.lstrip("\n")
        if not record:
            continue
        sha, parents, email, message = record.split("\x1f", 3)
        commits.append(Commit(sha, tuple(parents.split()), email, message.strip()))
    return commits


def undone_commits(history: Iterable[Commit]) -> set[str]:
    """The commits whose change a later commit of `history` (oldest first) took back: a
    revert undoes its commit, and a revert of that revert puts it back."""
    undone: set[str] = set()
    reverted_by: dict[str, tuple[str, ...]] = {}
    for commit in history:
        for target in commit.reverts:
            undone.add(target)
            for restored in reverted_by.get(target, ()):
                undone.discard(restored)
        reverted_by[commit.sha] = commit.reverts
    return undone


def still_to_revert(first_parent: Sequence[Commit], history: Sequence[Commit]) -> list[Commit]:
    """Of the first-parent commits (newest first), those whose change is still on the
    branch: not undone by a later commit, and not themselves a revert of a commit in the
    range (such a pair cancels out)."""
    undone = undone_commits(history)
    in_range = {commit.sha for commit in history}
    return [
        commit
        for commit in first_parent
        if commit.sha not in undone and not set(commit.reverts) & in_range
    ]


def revert_message(commit: Commit, note: str) -> str:
    """The message of the commit reverting `commit`, in git's own words (so any tool,
    and this backend, recognises it), followed by `note`."""
    message = f'Revert "{commit.subject}"\n\nThis reverts commit {commit.sha}'
    if commit.is_merge:
        message += f", reversing\nchanges made to {commit.parents[0]}"
    return f"{message}.\n\n{note}\n"


def rollback_note(version: str | None) -> str:
    """The line saying who made the revert, and for which release when the step names one.
    (A step's target carries no incident or run; the timeline links the commit to them.)"""
    if version:
        return f"Rolled back by Backout to release {subject_shown(version)}."
    return "Rolled back by Backout."
