"""Moving the rollback models from incidents/ to rollbacks/ keeps an existing database whole.

The move changed Django's state only (rollbacks 0001, statuspage 0003, incidents 0007): the
tables keep their names, so their rows, sequences and triggers carry over. Each test takes
the database back to the schema before the move, writes a small incident with the models
of that time, migrates forward and reads it back with today's models.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from importlib import import_module
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.contenttypes.models import ContentType
from django.db import IntegrityError, connection, transaction
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from incidents.models import Incident, Release, Service, TimelineEntry, TimelineKind, TimelineOrder
from rollbacks.models import (
    Approval,
    ApprovalDecision,
    ApprovalPolicy,
    ApprovalRequest,
    Run,
    RunState,
    Step,
    StepLog,
    StepState,
)
from statuspage.models import Notice, NoticeKind
from tests.factories import ensure_default_records

pytestmark = pytest.mark.django_db(transaction=True)

# The migration graph before rollbacks/ existed; postmortems had one migration then as now.
BEFORE_THE_MOVE = [
    ("incidents", "0006_timeline_commit_order"),
    ("statuspage", "0002_default_texts"),
    ("postmortems", "0001_initial"),
    ("rollbacks", None),
    ("playbooks", None),  # built on rollbacks, added later
    ("alerts", None),  # built on incidents, added later
]
MOVED_MODELS = ["approvalpolicy", "approvalrequest", "approval", "run", "step", "steplog"]


def migrate_to(targets: list[tuple[str, str | None]]) -> Any:
    """Migrate the test database to `targets` (every other app at its latest) and return
    the models of that state."""
    executor = MigrationExecutor(connection)
    named = {app for app, _ in targets}
    others = [node for node in executor.loader.graph.leaf_nodes() if node[0] not in named]
    return executor.migrate([*targets, *others]).apps


def migrate_to_latest() -> None:
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())
    ContentType.objects.clear_cache()


@dataclass(frozen=True)
class WrittenBefore:
    """The ids of what was written with the models from before the move."""

    requester: int
    approver: int
    service: int
    release: int
    incident: int
    entries: list[int]
    request: int
    approval: int
    run: int
    step: int
    log_lines: list[int]
    notice: int
    policies: dict[str, int]
    content_types: dict[str, int]


def write_before_the_move(old: Any) -> WrittenBefore:
    """An incident rolled back before the move: approved, run, logged, announced."""
    now = timezone.now()
    user = old.get_model("auth", "User")
    requester = user.objects.create(username="ic-before", email="ic@example.com")
    approver = user.objects.create(username="lead-before", email="lead@example.com")

    service = old.get_model("incidents", "Service").objects.create(
        name="web", backend="kubernetes", target_config={"namespace": "shop", "deployment": "web"}
    )
    release = old.get_model("incidents", "Release").objects.create(
        service=service, version="v1", artifact="registry.local/web:v1"
    )
    incident = old.get_model("incidents", "Incident").objects.create(
        title="Checkout errors after v2",
        severity="P1",
        commander=requester,
        started_at=now - timedelta(minutes=10),
        detected_at=now - timedelta(minutes=8),
    )
    incident.services.add(service)
    entries = [
        old.get_model("incidents", "TimelineEntry").objects.create(
            incident=incident, kind=TimelineKind.NOTE, actor=requester, body=body
        )
        for body in ("error rate at 30 %", "rolling web back to v1")
    ]

    request = old.get_model("incidents", "ApprovalRequest").objects.create(
        incident=incident,
        reason="v2 fails checkout",
        requested_by=requester,
        required_roles=["Engineering Lead"],
        status="approved",
        decided_at=now,
    )
    approval = old.get_model("incidents", "Approval").objects.create(
        request=request, approver=approver, role="Engineering Lead", decision="approve"
    )
    run = old.get_model("incidents", "Run").objects.create(
        incident=incident,
        state=RunState.SUCCEEDED,
        approval_request=request,
        created_by=requester,
        confirmation_text="web",
        confirmed_by=requester,
        confirmed_at=now,
        started_at=now,
        finished_at=now + timedelta(minutes=2),
    )
    step = old.get_model("incidents", "Step").objects.create(
        run=run,
        position=1,
        service=service,
        backend="kubernetes",
        release=release,
        to_version="v1",
        state=StepState.SUCCEEDED,
        started_at=now,
        deadline=now + timedelta(minutes=10),
        apply_started_at=now,
        applied_at=now,
        finished_at=now + timedelta(minutes=2),
        claim_token="a" * 32,
    )
    log_lines = [
        old.get_model("incidents", "StepLog").objects.create(step=step, seq=seq, line=line)
        for seq, line in enumerate(("undo to revision 1", "2/2 replicas updated"), start=1)
    ]
    notice = old.get_model("statuspage", "Notice").objects.create(
        incident=incident,
        kind=NoticeKind.ROLLBACK_FINISHED,
        run=run,
        dedupe_key=f"run:{run.pk}:finished",
        subject="Rollback finished",
        body="web is back on v1.",
    )

    # As a database from before the move had them: the default policies of incidents 0003
    # and content types labelled "incidents", one permission granted through them.
    import_module("incidents.migrations.0003_default_checklists_and_policies").add_defaults(
        old, None
    )
    content_type = old.get_model("contenttypes", "ContentType")
    content_type.objects.filter(app_label="rollbacks").delete()
    content_types = {
        model: content_type.objects.get_or_create(app_label="incidents", model=model)[0].pk
        for model in MOVED_MODELS
    }
    permission, _ = old.get_model("auth", "Permission").objects.get_or_create(
        content_type_id=content_types["run"],
        codename="change_run",
        defaults={"name": "Can change run"},
    )
    requester.user_permissions.add(permission)

    return WrittenBefore(
        requester=requester.pk,
        approver=approver.pk,
        service=service.pk,
        release=release.pk,
        incident=incident.pk,
        entries=[entry.pk for entry in entries],
        request=request.pk,
        approval=approval.pk,
        run=run.pk,
        step=step.pk,
        log_lines=[line.pk for line in log_lines],
        notice=notice.pk,
        policies=dict(
            old.get_model("incidents", "ApprovalPolicy").objects.values_list("name", "pk")
        ),
        content_types=content_types,
    )


@pytest.fixture(scope="module", autouse=True)
def default_records_restored(django_db_blocker: Any) -> Iterator[None]:
    """After the last test here has been emptied away, put back the default checklists and
    policies, so that the database looks freshly migrated to whatever runs next."""
    yield
    with django_db_blocker.unblock():
        ensure_default_records()


@pytest.fixture
def before() -> WrittenBefore:
    """What was written before the move, the database migrated on to the latest schema (even
    when writing fails, so that the tests after these find the schema they expect)."""
    try:
        written = write_before_the_move(migrate_to(BEFORE_THE_MOVE))
    finally:
        migrate_to_latest()
    return written


def test_rows_written_before_the_move_read_back_with_their_relations(
    before: WrittenBefore,
) -> None:
    incident = Incident.objects.get(pk=before.incident)
    run = Run.objects.get(pk=before.run)
    request = ApprovalRequest.objects.get(pk=before.request)
    step = Step.objects.get(pk=before.step)

    assert list(incident.services.values_list("pk", flat=True)) == [before.service]
    assert list(incident.timeline.values_list("pk", flat=True)) == before.entries
    assert list(
        TimelineOrder.objects.filter(incident=incident).order_by("seq").values_list("entry_id")
    ) == [(entry,) for entry in before.entries]
    assert list(incident.approval_requests.all()) == [request]
    assert request.requested_by_id == before.requester
    assert list(request.approvals.values_list("pk", "approver_id", "role", "decision")) == [
        (before.approval, before.approver, "Engineering Lead", ApprovalDecision.APPROVE)
    ]
    assert list(incident.runs.all()) == [run]
    assert (run.state, run.approval_request, run.created_by_id) == (
        RunState.SUCCEEDED,
        request,
        before.requester,
    )
    assert list(run.steps.all()) == [step]
    assert (step.service_id, step.release_id, step.state) == (
        before.service,
        before.release,
        StepState.SUCCEEDED,
    )
    assert Release.objects.get(pk=before.release).service_id == before.service
    assert list(step.log_lines.values_list("pk", "seq", "line")) == [
        (before.log_lines[0], 1, "undo to revision 1"),
        (before.log_lines[1], 2, "2/2 replicas updated"),
    ]
    assert list(run.notices.values_list("pk", flat=True)) == [before.notice]
    assert Notice.objects.get(pk=before.notice).run == run
    policies = dict(ApprovalPolicy.objects.values_list("name", "pk"))
    # Every policy kept, and the DBA one rollbacks 0003 adds.
    assert policies.pop("Database restores need a DBA") not in before.policies.values()
    assert policies == before.policies


def test_the_timeline_stays_append_only_after_the_move(before: WrittenBefore) -> None:
    entries = TimelineEntry.objects.filter(pk=before.entries[0])

    with pytest.raises(IntegrityError, match="append-only"), transaction.atomic():
        entries.update(body="nothing happened")
    with pytest.raises(IntegrityError, match="append-only"), transaction.atomic():
        entries.delete()
    assert TimelineEntry.objects.get(pk=before.entries[0]).body == "error rate at 30 %"


def test_the_two_person_rule_still_holds_after_the_move(before: WrittenBefore) -> None:
    with (
        pytest.raises(IntegrityError, match="cannot be decided by its requester"),
        transaction.atomic(),
    ):
        Approval.objects.create(
            request_id=before.request,
            approver_id=before.requester,
            role="Engineering Lead",
            decision=ApprovalDecision.APPROVE,
        )
    assert Approval.objects.filter(request_id=before.request).count() == 1


def test_new_rows_get_ids_after_the_ones_written_before_the_move(before: WrittenBefore) -> None:
    now = timezone.now()
    incident = Incident.objects.get(pk=before.incident)
    service = Service.objects.get(pk=before.service)
    entry = TimelineEntry.objects.create(incident=incident, kind=TimelineKind.NOTE, body="later")
    request = ApprovalRequest.objects.create(
        incident=incident, reason="again", requested_by_id=before.requester
    )
    approval = Approval.objects.create(
        request=request, approver_id=before.approver, role="CTO", decision="approve"
    )
    run = Run.objects.create(incident=incident)
    step = Step.objects.create(run=run, position=1, service=service, backend="kubernetes")
    line = StepLog.objects.create(step=step, seq=1, line="planned")
    notice = Notice.objects.create(
        incident=incident, kind=NoticeKind.CUSTOMER, dedupe_key="later", subject="s", body="b"
    )
    policy = ApprovalPolicy.objects.create(name="later", required_roles=["CTO"])
    release = Release.objects.create(service=service, version="v3", artifact="web:v3")
    later_incident = Incident.objects.create(
        title="later", severity="P3", started_at=now, detected_at=now
    )

    assert entry.pk > max(before.entries)
    assert request.pk > before.request
    assert approval.pk > before.approval
    assert run.pk > before.run
    assert step.pk > before.step
    assert line.pk > max(before.log_lines)
    assert notice.pk > before.notice
    assert policy.pk > max(before.policies.values())
    assert release.pk > before.release
    assert later_incident.pk > before.incident
    ordered = TimelineOrder.objects.filter(incident=incident).order_by("seq")
    assert list(ordered.values_list("entry_id", flat=True)) == [*before.entries, entry.pk]


def test_the_moved_models_content_types_say_rollbacks_and_keep_their_ids(
    before: WrittenBefore,
) -> None:
    labelled = ContentType.objects.filter(model__in=MOVED_MODELS)

    assert {(ct.app_label, ct.model): ct.pk for ct in labelled} == {
        ("rollbacks", model): pk for model, pk in before.content_types.items()
    }
    assert ContentType.objects.get_for_model(Run).pk == before.content_types["run"]
    assert get_user_model().objects.get(pk=before.requester).has_perm("rollbacks.change_run")
