"""Several processes, one truth: two web processes, two Celery workers on the steps queue, one
on the other queue and Celery beat (twice, by mistake), each started with its production
command (devinfra/cluster.py, docs/deploy.md), on this test's PostgreSQL database and Redis
databases, through one rollback during which a steps worker and a web process are killed.

The record must come out as if one process had done everything: each Deployment changed
once, a viewer on either web process sees every timeline entry once and in commit order (the
one whose process died reconnects to the other, as a browser behind a load balancer does,
and is replayed what it missed), and every notice is sent once.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from django.conf import LazySettings
from django.db import connection
from django.test import Client

import rollbacks.services
from devinfra.cluster import Cluster, WorkerSpec
from devinfra.kube_standin import KubeStandinHandle
from incidents import services as incident_services
from incidents.models import Incident, TimelineEntry, TimelineKind, TimelineOrder
from rollbacks.models import Run, RunState, Step, StepState
from rollbacks.services import StepSpec
from statuspage.models import Delivery, DeliveryState, Notice
from tests.celery_conf import celery_conf_set
from tests.factories import UserFactory, incident_open
from tests.rollbacks.engine_factories import CommanderFactory, KubeServiceFactory
from tests.rollbacks.engine_fixtures import (
    ENGINE_BROKER_URL,
    deployment_revision,
    patches_to,
    seed_deployment,
    wait_for,
)
from tests.sse import EventStream

pytestmark = [
    pytest.mark.processes,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("engine_settings"),
    pytest.mark.timeout(120),
]

DEPLOYMENTS = [f"shop-{n}" for n in range(1, 7)]
# Two messages of three steps: with one task at a time per steps worker, one message each.
STEPS_PER_MESSAGE = 3
# The production layout at its smallest: steps on machines of their own (one message at a
# time each, here), everything else (notices, sweeps: two at a time) on another.
WORKERS = [WorkerSpec("steps", 1), WorkerSpec("steps", 1), WorkerSpec("celery", 2)]
PROGRESS_EVERY = timedelta(seconds=1.2)
CADENCE = timedelta(seconds=2.4)


class NoticeInbox:
    """A Slack-compatible incoming webhook on 127.0.0.1 that keeps every text posted."""

    def __init__(self) -> None:
        self.texts: list[str] = []
        inbox = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                inbox.texts.append(json.loads(self.rfile.read(length))["text"])
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                """Quiet."""

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/services/T1/B1/secret"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Viewer(threading.Thread):
    """A browser following the incident's stream behind a load balancer: on one web process
    until its stream drops, then, after the second the stream asks for (`retry:`), on the
    next one, sending the last entry id it saw as Last-Event-ID."""

    def __init__(self, session: requests.Session, web_urls: list[str], incident_id: int) -> None:
        super().__init__(name=f"viewer-{web_urls[0]}", daemon=True)
        self.session, self.web_urls, self.incident_id = session, web_urls, incident_id
        self.entries: list[int] = []
        # Each connection: the web process it went to, and the entries it brought.
        self.connections: list[tuple[str, list[int]]] = []
        self.finished = threading.Event()
        self.stream: EventStream | None = None

    def run(self) -> None:
        turn = 0
        while not self.finished.is_set():
            url = self.web_urls[turn % len(self.web_urls)]
            brought: list[int] = []
            self.connections.append((url, brought))
            try:
                self.stream = EventStream(
                    self.session,
                    f"{url}/incidents/{self.incident_id}/events",
                    last_event_id=self.entries[-1] if self.entries else 0,
                    read_timeout=5,
                )
                while not self.finished.is_set():
                    event = self.stream.next_event()
                    if event.name == "entry" and event.id is not None:
                        self.entries.append(int(event.id))
                        brought.append(int(event.id))
            except (requests.RequestException, EOFError, OSError, AttributeError):
                # The stream dropped; closing it from stop() can leave urllib3 without its
                # socket (AttributeError).
                pass
            turn += 1
            self.finished.wait(1.0)

    def stop(self) -> None:
        self.finished.set()
        if self.stream is not None:
            self.stream.close()
        self.join(timeout=10)


def _signed_in(user: Any) -> requests.Session:
    client = Client()
    client.force_login(user)
    session = requests.Session()
    session.cookies.set("sessionid", client.cookies["sessionid"].value)
    return session


@pytest.fixture
def inbox() -> Iterator[NoticeInbox]:
    server = NoticeInbox()
    yield server
    server.close()


@pytest.fixture
def cluster(
    transactional_db: None,
    settings: LazySettings,
    kube: KubeStandinHandle,
    broker: Any,
    isolated_celery: Any,
    inbox: NoticeInbox,
    tmp_path: Path,
) -> Iterator[Cluster]:
    """Two web processes, the WORKERS and beat, on the test's database, its live-stream
    Redis and the engine tests' broker; this process sends its tasks there too. Intervals
    are shortened through the environment, as production sets them."""
    celery_conf_set(isolated_celery, task_always_eager=False)
    settings.ROLLBACK_STEPS_PER_MESSAGE = STEPS_PER_MESSAGE
    database = connection.settings_dict
    password = f":{database['PASSWORD']}" if database["PASSWORD"] else ""
    env = {
        "SECRET_KEY": settings.SECRET_KEY,  # the test's sessions sign in the viewers
        "KUBE_HOST": kube.url,
        "ROLLBACK_STEPS_PER_MESSAGE": str(STEPS_PER_MESSAGE),
        "ROLLBACK_HEARTBEAT_SECONDS": "0.2",
        "ROLLBACK_STALE_AFTER_SECONDS": "1.5",
        "ROLLBACK_RECOVERY_INTERVAL_SECONDS": "0.3",
        "LIVE_KEEPALIVE_SECONDS": "1",
        "COMMS_SLACK_WEBHOOK_URL": inbox.url,
        "COMMS_EMAIL_TO": "",
        "STATUS_SWEEP_SECONDS": "0.3",
        "COMMS_PROGRESS_MINUTES": str(PROGRESS_EVERY.total_seconds() / 60),
        "COMMS_CADENCE_MINUTES": str(CADENCE.total_seconds() / 60),
    }
    with Cluster(
        database_url=(
            f"postgres://{database['USER']}{password}@{database['HOST'] or '127.0.0.1'}:"
            f"{database['PORT'] or 5432}/{database['NAME']}"
        ),
        redis_url=settings.REDIS_URL,
        broker_url=ENGINE_BROKER_URL,
        directory=tmp_path / "cluster",
        env=env,
    ) as running:
        running.start(web=2, workers=WORKERS, beat=True)
        yield running


def _started_rollback(commander: Any, incident: Incident) -> Run:
    services = incident.services.all()
    specs = [StepSpec(service=service, previous=True, group=1) for service in services]
    run = rollbacks.services.run_create(incident=incident, steps=specs, actor=commander)
    run = rollbacks.services.run_request_approval(run=run, actor=commander)
    return rollbacks.services.run_confirm_and_start(
        run=run, actor=commander, confirmation=run.expected_confirmation(), enqueue=True
    )


def _entries_in_commit_order(incident: Incident) -> list[int]:
    return list(
        TimelineOrder.objects.filter(incident=incident)
        .order_by("seq")
        .values_list("entry_id", flat=True)
    )


def _notices_settled(run: Run) -> bool:
    finished = Notice.objects.filter(run=run, kind="rollback_finished").exists()
    unsent = Delivery.objects.filter(notice__run=run).exclude(state=DeliveryState.SENT)
    return finished and not unsent.exists()


def _gaps(instants: list[Any]) -> list[timedelta]:
    ordered = sorted(instants)
    return [later - earlier for earlier, later in zip(ordered, ordered[1:], strict=False)]


def test_two_web_processes_and_two_step_workers_keep_one_record_through_kills(
    cluster: Cluster, kube: KubeStandinHandle, inbox: NoticeInbox, roles: dict
) -> None:
    kube.set_status_delay(3.0)  # each rollout completes 3 s after its change
    for name in DEPLOYMENTS:
        seed_deployment(kube, name, [f"registry.local/{name}:v1", f"registry.local/{name}:v2"])
    revisions = {name: deployment_revision(kube, name) for name in DEPLOYMENTS}
    commander = CommanderFactory(username="ic")
    incident = incident_open(services=[KubeServiceFactory(name=name) for name in DEPLOYMENTS])
    incident_services.incident_change_status(
        incident=incident, to_status="mitigating", actor=commander
    )
    cluster.start_beat()  # a second beat, started by mistake

    web_a, web_b = (member.url for member in cluster.web)
    viewer = UserFactory(username="viewer", roles=["Viewer"])
    on_a = Viewer(_signed_in(viewer), [web_a, web_b], incident.pk)
    on_b = Viewer(_signed_in(viewer), [web_b, web_a], incident.pk)
    for follower in (on_a, on_b):
        follower.start()
    try:
        opened = _entries_in_commit_order(incident)
        wait_for(
            lambda: on_a.entries[: len(opened)] == on_b.entries[: len(opened)] == opened,
            20,
            "both viewers to follow",
        )

        run = _started_rollback(commander, incident)
        wait_for(
            lambda: Step.objects.filter(run=run, applied_at__isnull=False).count() == 6,
            30,
            "every step to be applied",
        )
        first_workers = Counter(Step.objects.filter(run=run).values_list("worker", flat=True))
        assert len(first_workers) == 2 and set(first_workers.values()) == {3}, first_workers

        # A steps worker dies while its steps wait for their rollouts, then web process A.
        dead_worker, survivor = (member for member in cluster.workers if member.queues == "steps")
        cluster.kill(dead_worker)
        cluster.kill(cluster.web[0])
        missed = incident_services.note_add(
            incident=incident, author=commander, body="web process A is down"
        )

        wait_for(lambda: Run.objects.get(pk=run.pk).is_finished, 40, "the run to finish")
        wait_for(lambda: _notices_settled(run), 20, "the notices to be sent")
        end = incident_services.note_add(incident=incident, author=commander, body="the end")
        for follower in (on_a, on_b):
            wait_for(lambda f=follower: end.pk in f.entries, 20, f"{follower.name} to see the end")
    finally:
        on_a.stop()
        on_b.stop()

    run.refresh_from_db()
    steps = list(run.steps.all())
    assert run.state == RunState.SUCCEEDED, run.failure_reason
    assert all(step.state == StepState.SUCCEEDED for step in steps)
    # The dead worker's three steps were finished by the other, each change made once.
    assert all(step.worker.startswith(f"{survivor.name}@") for step in steps), [
        step.worker for step in steps
    ]
    takeovers = TimelineEntry.objects.filter(incident=incident, body__contains="taken over")
    assert takeovers.count() == 3
    for name in DEPLOYMENTS:
        assert patches_to(kube, name) == 1, name
        assert deployment_revision(kube, name) == revisions[name] + 1, name

    # Both viewers saw every entry once, in commit order; A's second connection, to B's
    # process, began with what was written while it was away.
    record = _entries_in_commit_order(incident)
    record = record[: record.index(end.pk) + 1]
    for follower in (on_a, on_b):
        assert follower.entries[: len(record)] == record, follower.name
    assert [url for url, _ in on_a.connections[:2]] == [web_a, web_b]
    assert missed.pk in on_a.connections[1][1]
    assert [url for url, _ in on_b.connections] == [web_b]

    # Two beats, each sweeping every 0.3 s: every notice written once and posted once,
    # progress notices and cadence reminders no closer than their interval.
    wait_for(lambda: _notices_settled(run), 20, "the last notices to be sent")
    notices = list(Notice.objects.filter(run=run).order_by("created_at"))
    kinds = Counter(notice.kind for notice in notices)
    assert kinds["rollback_started"] == kinds["rollback_finished"] == 1, kinds
    assert kinds["rollback_progress"] >= 1, kinds
    for before, progress in zip(notices, notices[1:], strict=False):
        if progress.kind == "rollback_progress":
            assert progress.created_at - before.created_at >= PROGRESS_EVERY
    assert Counter(inbox.texts) == Counter(f"*{n.subject}*\n{n.body}" for n in notices)
    assert set(Delivery.objects.filter(notice__run=run).values_list("attempts", flat=True)) == {1}
    reminders = TimelineEntry.objects.filter(
        incident=incident, kind=TimelineKind.REMINDER, payload__reason="status_cadence"
    ).values_list("created_at", flat=True)
    assert len(reminders) >= 2
    assert min(_gaps(list(reminders))) >= CADENCE
