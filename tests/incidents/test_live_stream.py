"""The room's Server-Sent Events stream, served by uvicorn and read over HTTP."""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest
from django.conf import LazySettings
from django.db import connections, transaction
from django.urls import reverse

from incidents import services, timeline
from incidents.models import TimelineEntry, TimelineKind
from incidents.timeline import timeline_append
from rollbacks.engine.step_logs import StepLogWriter
from rollbacks.models import Step
from tests.asgi import AsgiServer, free_port
from tests.factories import UserFactory, incident_open
from tests.rollbacks.engine_factories import RunFactory, StepFactory
from tests.sse import EventStream

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(60)]


@pytest.fixture(autouse=True)
def _quick_resync(settings: LazySettings) -> None:
    settings.LIVE_RESYNC_SECONDS = 0.3
    settings.LIVE_KEEPALIVE_SECONDS = 1.0


@pytest.fixture
def commander(roles: dict) -> object:
    return UserFactory(username="ic", roles=["Incident Commander"])


def events_url(server: AsgiServer, incident_id: int, **query: int) -> str:
    url = server.url + reverse("incident_events", args=[incident_id])
    return url + "".join(f"?{name}={value}" for name, value in query.items())


def note(incident: object, author: object, body: str) -> TimelineEntry:
    return services.note_add(incident=incident, author=author, body=body)


def test_stream_replays_entries_after_last_event_id_then_follows(asgi_server, commander):
    incident = incident_open()
    opened = incident.timeline.get()
    first = note(incident, commander, "error rate 12%")
    session = asgi_server.session(commander)
    with EventStream(
        session, events_url(asgi_server, incident.pk), last_event_id=opened.pk
    ) as stream:
        assert stream.entries(1) == [first.pk]
        second = note(incident, commander, "rolled back checkout")
        assert stream.entries(1) == [second.pk]


def test_stream_starts_after_the_after_parameter_when_no_header_is_sent(asgi_server, commander):
    incident = incident_open()
    later = note(incident, commander, "paging the DBA")
    session = asgi_server.session(commander)
    url = events_url(asgi_server, incident.pk, after=incident.timeline.first().pk)
    with EventStream(session, url) as stream:
        assert stream.entries(1) == [later.pk]


def test_reconnecting_with_last_event_id_loses_and_repeats_nothing(asgi_server, commander):
    incident = incident_open()
    session = asgi_server.session(commander)
    written = [incident.timeline.get().pk]
    with EventStream(session, events_url(asgi_server, incident.pk)) as stream:
        received = stream.entries(1)
        written += [note(incident, commander, f"update {n}").pk for n in range(3)]
        received += stream.entries(2)
    # Disconnected: more happens meanwhile.
    written += [note(incident, commander, f"while away {n}").pk for n in range(3)]
    with EventStream(
        session, events_url(asgi_server, incident.pk), last_event_id=received[-1]
    ) as stream:
        received += stream.entries(len(written) - len(received))
        written.append(note(incident, commander, "back").pk)
        received += stream.entries(1)
    assert received == written


def test_entries_stream_in_commit_order_when_ids_commit_out_of_order(asgi_server, commander):
    """An entry whose transaction commits late is still delivered, and resuming after the
    entry that overtook it still delivers it."""
    incident = incident_open()
    session = asgi_server.session(commander)
    inserted, release = threading.Event(), threading.Event()
    slow: list[int] = []

    def slow_writer() -> None:
        try:
            with transaction.atomic():
                slow.append(note(incident, commander, "slow: lower id, commits last").pk)
                inserted.set()
                release.wait(10)
        finally:
            connections.close_all()

    with EventStream(
        session, events_url(asgi_server, incident.pk, after=incident.timeline.get().pk)
    ) as stream:
        writer = threading.Thread(target=slow_writer)
        writer.start()
        assert inserted.wait(10)
        fast = note(incident, commander, "fast: higher id, commits first")
        assert stream.entries(1) == [fast.pk]
        release.set()
        writer.join(10)
        assert slow[0] < fast.pk
        assert stream.entries(1) == slow
    with EventStream(
        session, events_url(asgi_server, incident.pk), last_event_id=fast.pk
    ) as stream:
        assert stream.entries(1) == slow


def test_entries_keep_arriving_while_redis_restarts(
    asgi_server, commander, settings, tmp_path: Path
) -> None:
    redis_server = shutil.which("redis-server")
    if redis_server is None:
        pytest.fail("redis-server is needed for this test (Debian package redis-server)")
    port = free_port()

    def start_redis() -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            [redis_server, "--port", str(port), "--save", "", "--appendonly", "no"],
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while (
            subprocess.run(
                ["redis-cli", "-p", str(port), "ping"], capture_output=True
            ).stdout.strip()
            != b"PONG"
        ):
            assert time.monotonic() < deadline, "private redis-server did not start"
            time.sleep(0.05)
        return process

    redis = start_redis()
    settings.REDIS_URL = f"redis://127.0.0.1:{port}/0"
    timeline.redis_client_reset()
    incident = incident_open()
    session = asgi_server.session(commander)
    try:
        with EventStream(
            session, events_url(asgi_server, incident.pk, after=incident.timeline.get().pk)
        ) as stream:
            before = note(incident, commander, "before the restart")
            assert stream.entries(1) == [before.pk]
            redis.kill()
            redis.wait()
            during = [note(incident, commander, f"Redis down {n}").pk for n in range(2)]
            redis = start_redis()
            after = note(incident, commander, "Redis back")
            assert stream.entries(3) == [*during, after.pk]
    finally:
        redis.kill()
        redis.wait()
        timeline.redis_client_reset()


def test_step_log_lines_stream_as_they_are_stored(asgi_server, commander):
    run = RunFactory(incident=incident_open(), state="running")
    step = StepFactory(run=run)
    session = asgi_server.session(commander)
    with EventStream(session, events_url(asgi_server, run.incident_id)) as stream:
        stream.entries(1)
        writer = StepLogWriter(Step.objects.select_related("run").get(pk=step.pk))
        for n in range(3):
            writer(f"replicas ready {n}/3")
        writer.flush()
        payload = stream.until("log").json()
    assert payload["step"] == step.pk
    assert [line[2] for line in payload["lines"]] == [f"replicas ready {n}/3" for n in range(3)]


def test_a_run_entry_sends_the_rollback_panel_again(asgi_server, commander):
    run = RunFactory(incident=incident_open(), state="running")
    StepFactory(run=run)
    session = asgi_server.session(commander)
    with EventStream(session, events_url(asgi_server, run.incident_id)) as stream:
        stream.entries(1)
        with transaction.atomic():
            timeline_append(
                incident=run.incident, kind=TimelineKind.STEP_FINISHED, body="step done"
            )
        panel = stream.until("runs").data
    assert f'id="run-{run.pk}"' in panel


def test_stream_refuses_a_bad_last_event_id(asgi_server, commander):
    incident = incident_open()
    response = asgi_server.session(commander).get(
        events_url(asgi_server, incident.pk), headers={"Last-Event-ID": "abc"}, timeout=5
    )
    assert response.status_code == 400
    assert "timeline entry id" in response.text


def test_stream_answers_404_for_an_unknown_incident(asgi_server, commander):
    response = asgi_server.session(commander).get(events_url(asgi_server, 999999), timeout=5)
    assert response.status_code == 404


def test_stream_is_refused_to_someone_without_a_role(asgi_server, roles):
    stranger = UserFactory(username="stranger")
    incident = incident_open()
    response = asgi_server.session(stranger).get(events_url(asgi_server, incident.pk), timeout=5)
    assert response.status_code == 403


def test_a_carriage_return_in_an_entry_cannot_start_a_field_of_its_own():
    from incidents.live import LiveEvent

    body = "x\r\revent: runs\rdata: gone\r\rid: 999\r\nlast"
    encoded = LiveEvent(name="entry", data=body, entry_id=7).encode(commander=False).decode()
    lines = encoded.replace("\r\n", "\n").split("\n")
    assert "\r" not in encoded
    assert [line for line in lines if line and not line.startswith("data: ")] == [
        "event: entry",
        "id: 7",
    ]
