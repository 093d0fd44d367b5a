"""The Celery application's settings that concern every process (console/celery.py)."""

from __future__ import annotations

import threading

from celery import Celery

from console.celery import app as celery_app


def test_threads_share_the_result_backend_object() -> None:
    """A step thread that sends a task uses the process's result backend rather than
    building one of its own (which scans every installed package's entry points)."""
    fresh = Celery("backout-backend-test")
    fresh.config_from_object("django.conf:settings", namespace="CELERY")
    in_main = fresh.backend
    seen: list[object] = []
    thread = threading.Thread(target=lambda: seen.append(fresh.backend))
    thread.start()
    thread.join()
    assert seen == [in_main]
    assert celery_app.conf.result_backend_thread_safe is True
