"""A small Server-Sent Events reader for tests, over a real HTTP connection."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import requests


@dataclass(frozen=True)
class Event:
    name: str
    id: str | None
    data: str

    def json(self) -> Any:
        return json.loads(self.data)


class EventStream:
    def __init__(
        self,
        session: requests.Session,
        url: str,
        *,
        last_event_id: int | None = None,
        read_timeout: float = 10.0,
    ) -> None:
        headers = {"Accept": "text/event-stream"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = str(last_event_id)
        self.response = session.get(url, headers=headers, stream=True, timeout=(5, read_timeout))
        self._lines: Iterator[str | bytes] = self.response.iter_lines(decode_unicode=True)

    def __enter__(self) -> EventStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.response.close()

    def next_event(self) -> Event:
        """The next event with a name (comments and `retry:` lines are skipped)."""
        name, event_id, data = "message", None, list[str]()
        seen_field = False
        for raw in self._lines:
            line = raw.decode() if isinstance(raw, bytes) else raw
            if line == "":
                if seen_field and (data or event_id is not None):
                    return Event(name, event_id, "\n".join(data))
                name, event_id, data, seen_field = "message", None, [], False
                continue
            if line.startswith(":"):
                continue
            key, _, value = line.partition(":")
            value = value.removeprefix(" ")
            seen_field = True
            if key == "event":
                name = value
            elif key == "id":
                event_id = value
            elif key == "data":
                data.append(value)
        raise EOFError("the stream ended")

    def entries(self, count: int, *, timeout: float = 10.0) -> list[int]:
        """The ids of the next `count` timeline entries (other events are passed over)."""
        ids: list[int] = []
        deadline = time.monotonic() + timeout
        while len(ids) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"only {len(ids)} of {count} entries arrived: {ids}")
            event = self.next_event()
            if event.name == "entry":
                assert event.id is not None
                ids.append(int(event.id))
        return ids

    def until(self, name: str, *, timeout: float = 10.0) -> Event:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            event = self.next_event()
            if event.name == name:
                return event
        raise AssertionError(f"no {name!r} event within {timeout} s")
