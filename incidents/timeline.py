"""The incident timeline's one writer, and the announcer that tells watchers about it.

`timeline_append` / `timeline_append_all` are the only code that inserts timeline entries:
each entry is written in the caller's transaction and announced on the Redis channel
`incident:<id>` after commit. The announcement only wakes watchers; the live stream replays
from PostgreSQL (incidents.live), so a lost message costs latency, never an event.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import queue
import threading
import time
from collections.abc import Sequence
from functools import cache
from typing import Any
from urllib.parse import parse_qs, urlsplit

import redis
from django.conf import settings
from django.db import transaction

from incidents.models import Incident, TimelineEntry
from incidents.roles import User

logger = logging.getLogger(__name__)


@cache
def _database_scope(redis_url: str) -> str:
    parts = urlsplit(redis_url)
    number = parts.path.strip("/") or parse_qs(parts.query).get("db", ["0"])[0]
    return f"db{number}:"


def channel_for(incident_id: int) -> str:
    """The Redis channel on which an incident's new timeline entries are announced.

    Redis channels are shared by every database of a server, so the name carries the
    database number of REDIS_URL: two consoles that share a Redis server on different
    databases (staging and production, or two test processes) never hear each other's
    incidents, whose ids overlap."""
    return f"{_database_scope(settings.REDIS_URL)}incident:{incident_id}"


_redis_client: redis.Redis | None = None


def redis_client_reset() -> None:
    """Forget the Redis client, so the next announcement connects to settings.REDIS_URL
    afresh (after the setting changed, or a fork)."""
    global _redis_client
    _redis_client = None


def _redis() -> redis.Redis:
    global _redis_client
    if _redis_client is None:
        _redis_client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2)
    return _redis_client


class Outage:
    """Says once that announcing fails, and once that it works again: a Redis outage during
    a busy rollback would otherwise print a traceback per batch (144 in a short one)."""

    def __init__(self) -> None:
        self.since: float | None = None
        self.lost = 0

    def failed(self, count: int, error: Exception) -> None:
        self.lost += count
        if self.since is None:
            self.since = time.monotonic()
            logger.warning(
                "cannot announce on Redis (%s: %s); watchers catch up from PostgreSQL. "
                "Quiet until Redis answers again.",
                type(error).__name__,
                error,
            )

    def succeeded(self) -> None:
        if self.since is None:
            return
        logger.warning(
            "announcing on Redis again after %.1f s; %d message(s) were not announced "
            "(watchers read those entries from PostgreSQL)",
            time.monotonic() - self.since,
            self.lost,
        )
        self.since, self.lost = None, 0


class _Announcer:
    """Sends this process's announcements to Redis from a thread of its own, a burst of
    them in one pipelined round trip: a committing thread hands its messages over and
    goes on, instead of waiting for Redis (and opening a connection of its own when
    dozens of rollback steps commit at once). Messages keep the order they were handed
    over in. Best effort: PostgreSQL is the record and watchers replay from it, so a lost
    announcement costs latency, never an event."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid = 0
        self._queue: queue.SimpleQueue[tuple[int, dict[str, int]] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._outage = Outage()

    def forget_parent(self) -> None:
        """In a forked child (a Celery prefork child): the parent's lock may have been held
        at the fork, and its thread is not here. Start afresh."""
        self._lock = threading.Lock()
        self._pid = 0
        self._thread = None

    def send(self, incident_id: int, message: dict[str, int]) -> None:
        with self._lock:
            if self._pid != os.getpid():  # first use, or a forked child: a thread of its own
                self._pid = os.getpid()
                self._queue = queue.SimpleQueue()
                self._thread = threading.Thread(
                    target=self._run, args=(self._queue,), name="announcer", daemon=True
                )
                self._thread.start()
                atexit.register(self.stop)
            self._queue.put((incident_id, message))

    def stop(self, timeout: float = 2.0) -> None:
        """Send what is queued and end the thread (at the process's exit). A daemon thread
        stopped in the middle of a send would hold the Redis client's lock for good, and the
        client's own clean-up at exit would wait for it forever."""
        with self._lock:
            thread, self._thread = self._thread, None
            if thread is None or self._pid != os.getpid():
                return
            self._queue.put(None)
            self._pid = 0  # a later send starts a thread again
        thread.join(timeout)

    def _run(self, messages: queue.SimpleQueue[tuple[int, dict[str, int]] | None]) -> None:
        stopping = False
        while not stopping:
            batch: list[tuple[int, dict[str, int]]] = []
            waiting = [messages.get()]
            while not messages.empty() and len(waiting) < 500:
                waiting.append(messages.get())
            for waited in waiting:
                if waited is None:
                    stopping = True
                else:
                    batch.append(waited)
            if not batch:
                continue
            # Hold the client for the whole batch: a pipeline keeps only its pool, and a
            # client dropped by redis_client_reset() meanwhile would disconnect that pool,
            # the connection this batch is using included.
            try:
                client = _redis()
                with client.pipeline(transaction=False) as pipe:
                    for incident_id, message in batch:
                        pipe.publish(channel_for(incident_id), json.dumps(message))
                    pipe.execute()
            except Exception as error:  # Redis down, or anything else: this thread must live on
                self._outage.failed(len(batch), error)
            else:
                self._outage.succeeded()


_announcer = _Announcer()
os.register_at_fork(after_in_child=_announcer.forget_parent)


def announce(incident_id: int, message: dict[str, int]) -> None:
    """Hand `message` to the announcer thread for the incident's channel (now, not after
    commit: callers inside a transaction use transaction.on_commit)."""
    _announcer.send(incident_id, message)


def announce_log_lines(incident_id: int, step_id: int) -> None:
    """Tell the incident's watchers that a step's log grew (after the current commit)."""
    transaction.on_commit(lambda: announce(incident_id, {"log": step_id}))


def timeline_append(
    *,
    incident: Incident,
    kind: str,
    body: str,
    actor: User | None = None,
    actor_label: str = "",
    payload: dict[str, Any] | None = None,
) -> TimelineEntry:
    """Append one entry to the incident's timeline and announce it after commit.

    Call inside the transaction that made the change the entry describes.
    """
    real_actor = actor if actor is not None and actor.is_authenticated else None
    entry = TimelineEntry(
        incident=incident,
        kind=kind,
        body=body,
        actor=real_actor,
        actor_label=actor_label,
        payload=payload or {},
    )
    return timeline_append_all([entry])[0]


def timeline_append_all(entries: Sequence[TimelineEntry]) -> list[TimelineEntry]:
    """timeline_append for entries built but not yet saved, in one INSERT; each is
    announced after commit. Call inside the transaction that made the changes."""
    created = TimelineEntry.objects.bulk_create(entries)
    announced = [(entry.incident_id, entry.pk) for entry in created]

    def announce_created() -> None:
        for incident_id, entry_id in announced:
            announce(incident_id, {"entry": entry_id})

    transaction.on_commit(announce_created)
    return created
