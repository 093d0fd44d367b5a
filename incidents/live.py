"""The incident room's live stream: Server-Sent Events at `/incidents/<id>/events`.

Each timeline entry is one event whose `id:` is the entry's id. A watcher that connects
with `Last-Event-ID` (or `?after=` on its first connection) first gets every entry that
became visible after that one, read from PostgreSQL in commit order
(models.TimelineOrder), then follows. Following is shared: one `IncidentFeed` per incident
and server process subscribes to Redis `incident:<id>`, reads what each announcement
points at once, renders it once and hands it to every watcher's queue. An announcement
only says "look again"; the feed always reads everything after the last position it saw,
and it also looks every few seconds on its own, so an announcement lost while Redis
restarts costs latency, never an event. A watcher skips what it has already sent, so the
overlap between replay and follow is never sent twice.

Besides timeline entries the stream carries, without ids:
- `header`, `checklists`: that part of the room changed; each viewer fetches it again,
  since its controls depend on who is looking;
- what later apps registered in incidents.room: panels re-rendered after entries of some
  kinds (rollbacks' `runs`, the rollback panel, whose commander variant carries the step
  controls), lines appended without re-rendering (rollbacks' `log`, a step's new log lines
  as JSON), and their own cards to fetch again (rollbacks' `approvals`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import close_old_connections, connections
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.template.loader import render_to_string
from django.views.decorators.http import require_GET

from incidents import room, selectors
from incidents.models import Incident, TimelineEntry, TimelineKind
from incidents.roles import COMMAND_PERMISSION as COMMAND
from incidents.roles import VIEW_PERMISSION as VIEW
from incidents.timeline import channel_for

logger = logging.getLogger(__name__)


# The room's own parts each viewer fetches again (their controls depend on who looks) when
# an entry of these kinds arrives: the stream sends an event named after the part. Cards
# registered in incidents.room add theirs (RoomSection.refetch_after).
SECTION_KINDS = {
    "header": frozenset(
        {
            TimelineKind.STATUS_CHANGE,
            TimelineKind.SEVERITY_CHANGE,
            TimelineKind.COMMANDER_CHANGE,
            TimelineKind.INSTANT_RECORDED,
        }
    ),
    "checklists": frozenset({TimelineKind.CHECKLIST, TimelineKind.CHECK_RESULT}),
}
ENTRY_ID = re.compile(r"[0-9]{1,18}")
READ_BATCH = 500
WATCHER_QUEUE = 2000


def resync_seconds() -> float:
    """How often a feed reads PostgreSQL without being told to (Redis may be down)."""
    return float(settings.LIVE_RESYNC_SECONDS)


def keepalive_seconds() -> float:
    return float(settings.LIVE_KEEPALIVE_SECONDS)


def idle_seconds() -> float:
    """How long a feed with no watchers keeps its subscription before closing."""
    return float(settings.LIVE_IDLE_SECONDS)


@dataclass(frozen=True)
class LiveEvent:
    """One message on the stream; `seq` (commit order) is set for timeline entries."""

    name: str
    data: str
    entry_id: int | None = None
    seq: int | None = None
    commander_data: str | None = None
    _encoded: dict[bool, bytes] = field(default_factory=dict, compare=False, repr=False)

    def encode(self, *, commander: bool) -> bytes:
        """The message as sent; encoded once per variant however many watch."""
        variant = commander and self.commander_data is not None
        cached = self._encoded.get(variant)
        if cached is None:
            data = self.commander_data if variant and self.commander_data else self.data
            lines = [f"event: {self.name}"]
            if self.entry_id is not None:
                lines.append(f"id: {self.entry_id}")
            # Any of CR, LF or CRLF ends an SSE line: a lone CR in a note must not start a
            # field of its own (it could forge an event for every watcher).
            text = data.replace("\r\n", "\n").replace("\r", "\n")
            lines += [f"data: {part}" for part in text.split("\n")]
            cached = self._encoded[variant] = ("\n".join(lines) + "\n\n").encode()
        return cached


# The stream's own threads for ORM work, each keeping its database connection: the stream
# must not queue behind the server's sync views on their single thread.
DB_THREADS = 4
_executor = ThreadPoolExecutor(max_workers=DB_THREADS, thread_name_prefix="live-db")


async def _db[T](function: Callable[..., T], *args: Any) -> T:
    def call() -> T:
        close_old_connections()
        return function(*args)

    return await asyncio.get_running_loop().run_in_executor(_executor, call)


def close_connections() -> None:
    """Close the database connection of every stream thread (server shutdown, tests)."""
    barrier = threading.Barrier(DB_THREADS, timeout=10)

    def close() -> None:
        barrier.wait()  # one call per thread: each waits until all threads hold one
        connections.close_all()

    for future in [_executor.submit(close) for _ in range(DB_THREADS)]:
        future.result(timeout=15)


# Reading and rendering (sync; called through _db).


def _entry_html(entry: TimelineEntry) -> str:
    return render_to_string("incidents/incident_room.html#timeline-row", {"entry": entry})


def _panel_event(panel: room.LivePanel, incident_id: int) -> LiveEvent:
    html = panel.render(incident_id)
    return LiveEvent(name=panel.event, data=html.viewer, commander_data=html.commander)


def entries_after(incident_id: int, seq: int) -> list[LiveEvent]:
    """Every entry after commit position `seq`, then each registered panel that one of
    them concerns (the rollback panel after a run entry), then the parts to fetch again."""
    events: list[LiveEvent] = []
    panels = room.live_panels()
    section_kinds = SECTION_KINDS | {
        section.name: section.refetch_after
        for section in room.room_sections()
        if section.refetch_after
    }
    changed_panels: set[str] = set()
    sections: set[str] = set()
    while True:
        batch = selectors.timeline_after_seq(incident_id, seq, limit=READ_BATCH)
        for order in batch:
            events.append(
                LiveEvent(
                    name="entry",
                    data=_entry_html(order.entry),
                    entry_id=order.entry_id,
                    seq=order.seq,
                )
            )
            changed_panels.update(
                panel.event for panel in panels if order.entry.kind in panel.after_kinds
            )
            sections.update(
                name for name, kinds in section_kinds.items() if order.entry.kind in kinds
            )
            seq = order.seq
        if len(batch) < READ_BATCH:
            break
    events += [
        _panel_event(panel, incident_id) for panel in panels if panel.event in changed_panels
    ]
    events += [LiveEvent(name=name, data=name) for name in sorted(sections)]
    return events


def lines_after(source: tuple[str, int], seq: int | None) -> tuple[LiveEvent | None, int, bool]:
    """New lines of an announced source (`(event, id)`, e.g. a step's log) after `seq`
    (its last lines when `seq` is None) as one event, the position reached, and whether
    more may follow (a full batch)."""
    event, source_id = source
    lines = room.live_lines(event)
    if lines is None:
        return None, seq or 0, False
    read = lines.read(source_id, seq)
    if read.data is None:
        return None, read.reached, False
    return LiveEvent(name=lines.event, data=read.data), read.reached, read.more


def replay_start(incident_id: int, after_entry: int) -> int:
    if after_entry <= 0:
        return 0
    return selectors.entry_seq(incident_id, after_entry) or 0


# Following.


@dataclass(eq=False)
class Watcher:
    queue: asyncio.Queue[LiveEvent] = field(
        default_factory=lambda: asyncio.Queue(maxsize=WATCHER_QUEUE)
    )
    overflowed: bool = False


class IncidentFeed:
    """One incident's announcements, read once and handed to every watcher."""

    feeds: dict[int, IncidentFeed] = {}

    def __init__(self, incident_id: int) -> None:
        self.incident_id = incident_id
        self.watchers: set[Watcher] = set()
        self.seq: int | None = None
        self.line_seqs: dict[tuple[str, int], int] = {}
        self.task: asyncio.Task[None] | None = None
        self.pending_lines: set[tuple[str, int]] = set()
        self.watched_at = 0.0
        self.loop = asyncio.get_running_loop()

    @classmethod
    async def join(cls, incident_id: int) -> tuple[IncidentFeed, Watcher]:
        loop = asyncio.get_running_loop()
        feed = cls.feeds.get(incident_id)
        if feed is None or feed.loop is not loop or (feed.task is not None and feed.task.done()):
            feed = cls.feeds[incident_id] = IncidentFeed(incident_id)
        watcher = Watcher()
        feed.watchers.add(watcher)
        if feed.seq is None:
            try:
                latest = await _db(selectors.latest_seq, incident_id)
            except BaseException:
                feed.leave(watcher)  # gone (or failed) before it was watching
                raise
            # Another watcher may have joined and set it meanwhile: the earlier position
            # stands, or entries between the two would be handed to nobody.
            if feed.seq is None:
                feed.seq = latest
        if feed.task is None:
            feed.task = asyncio.create_task(feed.run(), name=f"incident-feed-{incident_id}")
        return feed, watcher

    def leave(self, watcher: Watcher) -> None:
        self.watchers.discard(watcher)

    def broadcast(self, event: LiveEvent) -> None:
        for watcher in list(self.watchers):
            if watcher.overflowed:
                continue
            try:
                watcher.queue.put_nowait(event)
            except asyncio.QueueFull:
                # The watcher will catch up from PostgreSQL instead of from memory.
                watcher.overflowed = True

    async def read(self) -> None:
        """Hand out everything after the last position, and the lines announced."""
        assert self.seq is not None
        for event in await _db(entries_after, self.incident_id, self.seq):
            if event.seq is not None:
                self.seq = event.seq
            self.broadcast(event)
        sources, self.pending_lines = self.pending_lines, set()
        for source in sources:
            more = True
            while more:
                lines, reached, more = await _db(lines_after, source, self.line_seqs.get(source))
                self.line_seqs[source] = reached
                if lines is not None:
                    self.broadcast(lines)

    async def run(self) -> None:
        while True:
            try:
                await self._follow()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.warning(
                    "incident %s feed lost Redis; reading PostgreSQL meanwhile",
                    self.incident_id,
                    exc_info=True,
                )
                await self._safe_read()
                await asyncio.sleep(1.0)
            if self._idle():
                if IncidentFeed.feeds.get(self.incident_id) is self:
                    del IncidentFeed.feeds[self.incident_id]
                return

    def _idle(self) -> bool:
        now = asyncio.get_running_loop().time()
        if self.watchers:
            self.watched_at = now
            return False
        return now - self.watched_at >= idle_seconds()

    async def _safe_read(self) -> None:
        try:
            await self.read()
        except Exception:
            logger.warning("incident %s feed could not read", self.incident_id, exc_info=True)

    async def _follow(self) -> None:
        """Subscribe, read what may have been missed, then read on every announcement and
        every few seconds; return when nobody has watched for a while."""
        client = aioredis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=2)
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(channel_for(self.incident_id))
            await self._safe_read()  # whatever was announced before the subscription
            while not self._idle():
                message = await pubsub.get_message(timeout=resync_seconds())
                if message is not None:
                    self._note(message)
                    # Drain what has queued up, so one read serves a burst.
                    while (more := await pubsub.get_message(timeout=0)) is not None:
                        self._note(more)
                await self._safe_read()
        finally:
            await pubsub.aclose()
            await client.aclose()

    def _note(self, message: dict[str, Any]) -> None:
        try:
            body = json.loads(message["data"])
        except (TypeError, ValueError):
            return
        if not isinstance(body, dict):
            return
        # `{"entry": id}` says look again (every read does); `{event: id}` names a source of
        # lines registered in incidents.room (`{"log": step_id}`: a step's log grew).
        for event, source_id in body.items():
            if isinstance(source_id, int) and room.live_lines(event) is not None:
                self.pending_lines.add((event, source_id))


async def stream(incident_id: int, after_entry: int, *, commander: bool) -> AsyncIterator[bytes]:
    """One watcher's events: replay after `after_entry`, then follow."""
    feed, watcher = await IncidentFeed.join(incident_id)
    try:
        yield b"retry: 1000\n\n"
        seq = await _db(replay_start, incident_id, after_entry)
        while True:
            # Replay from PostgreSQL: at connection, and after falling too far behind.
            watcher.overflowed = False
            for event in await _db(entries_after, incident_id, seq):
                if event.seq is not None:
                    seq = event.seq
                yield event.encode(commander=commander)
            while not watcher.overflowed:
                try:
                    event = await asyncio.wait_for(watcher.queue.get(), keepalive_seconds())
                except TimeoutError:
                    yield b": keepalive\n\n"
                    continue
                if event.seq is not None:
                    if event.seq <= seq:
                        continue  # already sent by the replay
                    seq = event.seq
                yield event.encode(commander=commander)
            while not watcher.queue.empty():
                watcher.queue.get_nowait()
    finally:
        feed.leave(watcher)


@require_GET
async def incident_events(request: HttpRequest, incident_id: int) -> HttpResponseBase:
    """`/incidents/<id>/events`: the room's Server-Sent Events (serve under ASGI)."""
    if "wsgi.version" in request.META:
        # A WSGI server would hold a worker thread per watcher, forever.
        return HttpResponse(
            "The live stream needs the ASGI server (uvicorn console.asgi:application); "
            "the room polls instead.",
            status=503,
            content_type="text/plain",
        )
    user = await request.auser()
    if not await user.ahas_perm(VIEW):
        return HttpResponse("You may not watch incidents.", status=403, content_type="text/plain")
    if not await Incident.objects.filter(pk=incident_id).aexists():
        return HttpResponse("No such incident.", status=404, content_type="text/plain")
    raw = request.headers.get("Last-Event-ID") or request.GET.get("after") or "0"
    if not ENTRY_ID.fullmatch(raw):
        return HttpResponse(
            "Last-Event-ID (or after) must be a timeline entry id.",
            status=400,
            content_type="text/plain",
        )
    commander = await user.ahas_perm(COMMAND)
    # The checks above ran on this request's own thread and connection; the stream reads
    # through the feed's threads, so give the connection back now rather than hold it for
    # as long as the watcher stays (hundreds of watchers would exhaust PostgreSQL).
    await sync_to_async(connections.close_all)()
    response = StreamingHttpResponse(
        stream(incident_id, int(raw), commander=commander), content_type="text/event-stream"
    )
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response
