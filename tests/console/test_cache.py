"""The cache keeps JSON in Redis, never pickles: a pickle planted in Redis is not run. A
Redis that asks for a password is reached through the password in the URL. The public status
page is cached as what it renders and dropped the moment something is published."""

from __future__ import annotations

import os
import pickle
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis
from django.core.cache import caches

from devinfra.processes import free_port
from tests.conftest import TEST_REDIS_URL

PLANTED = Path("/tmp/backout-cache-pickle-ran")


class Planted:
    """Unpickling this would create PLANTED."""

    def __reduce__(self):
        return (os.system, (f"touch {PLANTED}",))


def redis_cache(settings, url: str):
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": url,
            "OPTIONS": {"serializer": "console.cache.JsonSerializer"},
        }
    }
    return caches["default"]


def test_values_are_stored_as_json_and_counters_stay_numbers(settings):
    cache = redis_cache(settings, TEST_REDIS_URL)
    cache.set("state", {"status": "major_outage", "at": datetime(2026, 12, 3, tzinfo=UTC)})
    cache.set("hits", 1)
    cache.incr("hits")

    raw = redis.Redis.from_url(TEST_REDIS_URL).get(cache.make_key("state"))
    assert raw == b'{"status":"major_outage","at":"2026-12-03T00:00:00Z"}'
    assert cache.get("state") == {"status": "major_outage", "at": "2026-12-03T00:00:00Z"}
    assert cache.get("hits") == 2
    with pytest.raises(TypeError):
        cache.set("model", object())  # nothing but data goes in


def test_a_pickle_planted_in_redis_is_never_run(settings):
    PLANTED.unlink(missing_ok=True)
    cache = redis_cache(settings, TEST_REDIS_URL)
    redis.Redis.from_url(TEST_REDIS_URL).set(cache.make_key("state"), pickle.dumps(Planted()))

    with pytest.raises(ValueError):
        cache.get("state")
    assert not PLANTED.exists()


@pytest.fixture
def redis_with_password() -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(
        ["redis-server", "--port", str(port), "--save", "", "--requirepass", "s3cret-pw"],
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    url = f"redis://:s3cret-pw@127.0.0.1:{port}/0"
    while True:
        try:
            redis.Redis.from_url(url).ping()
            break
        except redis.ConnectionError:
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)
    yield url
    process.terminate()
    process.wait(timeout=10)


def test_a_redis_asking_for_a_password_is_reached_with_the_url(settings, redis_with_password):
    refused = redis_cache(settings, redis_with_password.replace(":s3cret-pw@", ""))
    with pytest.raises(redis.AuthenticationError):
        refused.set("k", "v")
    cache = redis_cache(settings, redis_with_password)
    cache.set("k", ["v", 1])
    assert cache.get("k") == ["v", 1]
