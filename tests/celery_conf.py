"""Changing the Celery app's configuration from a test.

The app reads Django's settings under the CELERY_ namespace; with Celery 5.6 a key set later
without the prefix (`app.conf.broker_url = …`) does not win over the setting the app read
(CELERY_BROKER_URL), so a test meaning to send its tasks to its own broker would send them to
the console's. Setting both spellings works whichever is read.
"""

from __future__ import annotations

from typing import Any

from celery import Celery


def celery_conf_set(app: Celery, **values: Any) -> None:
    for name, value in values.items():
        app.conf[name] = value
        app.conf[f"CELERY_{name.upper()}"] = value
    if "broker_url" in values:
        # The app keeps the producer pool of the broker it first sent to, and `app.close()`
        # leaves it: a task sent after the switch would go to the old broker. Forget it, as
        # Celery does after a fork; kombu keeps each broker's pool for when it is used again.
        app.amqp._producer_pool = None
