"""How a step's target reads in the room and on the timeline: the options in a few words,
saved content by the release that saved it, and nothing the engine keeps for itself."""

from __future__ import annotations

import pytest

from rollbacks.models import Step


@pytest.mark.parametrize(
    ("params", "to_version", "label"),
    [
        ({"operation": "scale", "replicas": 0}, "", "operation scale, replicas 0"),
        ({"operation": "undo"}, "v1", "v1"),
        (
            {"mode": "backup", "backup": [{"Name": "x"}], "backup_release": "blue"},
            "blue",
            "blue (saved backup of blue)",
        ),
        ({"arguments": {"migration": "0041_order_totals"}}, "", "migration 0041_order_totals"),
        ({"state": "off", "for_minutes": 45, "already_ran": True}, "", "state off, for minutes 45"),
        ({}, "", "as configured"),
    ],
)
def test_the_target_reads_as_people_say_it(params, to_version, label):
    assert Step(params=params, to_version=to_version).target_label == label
