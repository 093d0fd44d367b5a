"""A Redis outage while the timeline grows: the announcer says so once, without a
traceback per batch, and once more when Redis answers again."""

from __future__ import annotations

import gc
import logging
import threading
import time

import redis

from devinfra.processes import free_port
from incidents.timeline import announce, channel_for, redis_client_reset
from tests.conftest import TEST_REDIS_URL


def wait_for(condition, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def announced_once_more(incident_id: int) -> None:
    """Announce on the tests' Redis and wait until it arrives: the announcer is then past
    any outage an earlier test left it in."""
    listener = redis.Redis.from_url(TEST_REDIS_URL).pubsub()
    listener.subscribe(channel_for(incident_id))
    wait_for(lambda: listener.get_message(timeout=0.05) is not None)  # the subscription
    announce(incident_id, {"entry": 0})
    wait_for(lambda: listener.get_message(timeout=0.05) is not None)
    listener.close()


def test_an_outage_is_reported_once_and_its_end_once(settings, caplog):
    settings.REDIS_URL = TEST_REDIS_URL
    redis_client_reset()
    announced_once_more(4242)
    caplog.set_level(logging.WARNING, logger="incidents.timeline")
    caplog.clear()
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    redis_client_reset()
    try:
        for number in range(30):
            announce(4242, {"entry": number})
            time.sleep(0.01)  # several batches, not one
        wait_for(lambda: any("cannot announce" in r.getMessage() for r in caplog.records))
        time.sleep(0.5)
        failing = [r for r in caplog.records if r.name == "incidents.timeline"]
        assert len(failing) == 1
        assert failing[0].exc_info is None
        assert "ConnectionError" in failing[0].getMessage()

        settings.REDIS_URL = TEST_REDIS_URL
        redis_client_reset()
        listener = redis.Redis.from_url(TEST_REDIS_URL).pubsub()
        listener.subscribe(channel_for(4242))
        announce(4242, {"entry": 99})
        wait_for(lambda: any("again after" in r.getMessage() for r in caplog.records))
        recovered = [r for r in caplog.records if "again after" in r.getMessage()]
        assert len(recovered) == 1
        assert "30 message(s) were not announced" in recovered[0].getMessage()
        listener.close()
    finally:
        settings.REDIS_URL = TEST_REDIS_URL
        redis_client_reset()


def test_each_outage_is_reported_on_its_own(settings, caplog):
    settings.REDIS_URL = TEST_REDIS_URL
    redis_client_reset()
    announced_once_more(4343)
    caplog.set_level(logging.WARNING, logger="incidents.timeline")
    caplog.clear()
    for _ in range(2):
        settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"
        redis_client_reset()
        announce(4343, {"entry": 1})
        wait_for(lambda: sum("cannot announce" in r.getMessage() for r in caplog.records) >= 1)
        settings.REDIS_URL = TEST_REDIS_URL
        redis_client_reset()
        before = sum("again after" in r.getMessage() for r in caplog.records)
        announce(4343, {"entry": 2})
        wait_for(lambda b=before: sum("again after" in r.getMessage() for r in caplog.records) > b)
        caplog.clear()


def test_a_reset_while_a_batch_is_on_the_wire_does_not_cut_it(settings, caplog, monkeypatch):
    """Forgetting the client (a settings change, a test's clean-up) while the announcer is
    reading Redis's answers must not close the socket under it: the dropped client's clean-up
    disconnects its pool, in-use connections included."""
    settings.REDIS_URL = TEST_REDIS_URL
    redis_client_reset()
    announced_once_more(4444)
    caplog.set_level(logging.WARNING, logger="incidents.timeline")
    caplog.clear()
    original = redis.connection.AbstractConnection.read_response
    resets: list[int] = []

    def reset_first(connection, *args, **kwargs):
        if not resets and threading.current_thread().name == "announcer":
            resets.append(1)
            redis_client_reset()
            gc.collect()
        return original(connection, *args, **kwargs)

    monkeypatch.setattr(redis.connection.AbstractConnection, "read_response", reset_first)
    listener = redis.Redis.from_url(TEST_REDIS_URL).pubsub()
    listener.subscribe(channel_for(4444))
    wait_for(lambda: listener.get_message(timeout=0.05) is not None)
    announce(4444, {"entry": 1})
    wait_for(lambda: listener.get_message(timeout=0.05) is not None)
    listener.close()
    # Redis hands a PUBLISH to subscribers before the announcer reads its answer: wait for
    # the read, then for one more batch, which goes out only after this one has ended.
    wait_for(lambda: bool(resets))
    announced_once_more(4444)
    assert not [r for r in caplog.records if r.name == "incidents.timeline"]
