"""Signals sent after commit: receivers hear once the transaction commits, and one that
fails is logged without keeping the others from hearing or reaching the sender."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from django.db import transaction
from django.dispatch import Signal

from console.signals import send_after_commit

pytestmark = pytest.mark.django_db(transaction=True)


def test_receivers_hear_after_commit_and_a_failing_one_is_only_logged(caplog):
    signal = Signal()
    heard: list[dict[str, Any]] = []

    def failing(**kwargs: Any) -> None:
        raise RuntimeError("receiver broke")

    def listening(**kwargs: Any) -> None:
        heard.append({key: kwargs[key] for key in ("run_id",)})

    signal.connect(failing, weak=False)
    signal.connect(listening, weak=False)
    with caplog.at_level(logging.ERROR, logger="console.signals"), transaction.atomic():
        send_after_commit(signal, None, run_id=7)
        assert heard == []  # not before the commit

    assert heard == [{"run_id": 7}]
    assert "failed for {'run_id': 7}" in caplog.text
    assert "receiver broke" in caplog.text
