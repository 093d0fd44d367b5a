"""Playbook documents: the built-ins validate, and a document that cannot be accepted is
refused saying where (a path, or the YAML line)."""

from __future__ import annotations

from pathlib import Path

import pytest

from playbooks.documents import MAX_SOURCE_BYTES, PlaybookError, document_parse

BUILTIN = Path(__file__).resolve().parents[2] / "playbooks" / "builtin"

MINIMAL = """
name: restart-web
title: Restart web
parameters:
  - name: target
    type: service
    backends: [kubernetes]
groups:
  - steps:
      - service: "{target}"
        options: {operation: restart}
"""


@pytest.mark.parametrize("name", ["database-recovery", "frontend-restore", "maintenance-window"])
def test_the_built_in_playbooks_validate(name):
    document = document_parse((BUILTIN / f"{name}.yaml").read_text())
    assert document["name"] == name and document["groups"]


def refused(source: str) -> PlaybookError:
    with pytest.raises(PlaybookError) as caught:
        document_parse(source)
    return caught.value


@pytest.mark.parametrize(
    ("change", "where", "says"),
    [
        (("{target}", "{tagret}"), "groups[0].steps[0].service", "unknown parameter {tagret}"),
        (
            ("{operation: restart}", "{operation: 'x{target}'}"),
            "groups[0].steps[0].options.operation",
            "whole value",
        ),
        (("type: service", "type: cluster"), "parameters[0].type", "is not one of"),
        (("name: restart-web", "name: Restart Web"), "name", "does not match"),
        (("  - steps:", "  - stepz:"), "groups[0]", "steps"),
    ],
)
def test_a_bad_document_is_refused_with_its_path(change, where, says):
    error = refused(MINIMAL.replace(*change))
    assert error.where == where and says in error.reason


def test_a_yaml_error_names_its_line():
    error = refused(MINIMAL.replace("title: Restart web", "title: [unclosed"))
    assert error.where.startswith("line ")


def test_limits():
    assert "100 KB" in str(refused("#" * (MAX_SOURCE_BYTES + 1)))
    many = "name: big\ntitle: Big\ngroups:\n" + "  - steps: [{service: web}]\n" * 51
    assert refused(many).where == "groups"
    assert refused("- just a list").where == "playbook"


def test_titles_and_labels_in_any_script_are_kept():
    source = MINIMAL.replace("title: Restart web", "title: 回滚 🚀 שחזור <script>")
    assert document_parse(source)["title"] == "回滚 🚀 שחזור <script>"
