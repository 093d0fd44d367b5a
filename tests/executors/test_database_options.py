"""The database step's options against the moto server: the restorable window and the
snapshot list read live, values held against them, and the instant writes are lost after."""

from __future__ import annotations

import datetime
import time

import pytest

from executors.base import Connections, RollbackTarget
from executors.database import RdsRestoreBackend
from executors.database_options import restorable_window
from executors.options import OptionError, parse_instant
from tests.executors.rds_world import SECRET_CONFIG


@pytest.fixture
def backend(aws: Connections, secrets) -> RdsRestoreBackend:
    return RdsRestoreBackend(SECRET_CONFIG, aws, poll_interval=0.05)


def iso(instant: datetime.datetime) -> str:
    return instant.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def window(backend: RdsRestoreBackend) -> tuple[datetime.datetime, datetime.datetime]:
    facts = backend.live_options()["restore_time"]
    earliest, latest = parse_instant(facts.minimum or ""), parse_instant(facts.maximum or "")
    assert earliest is not None and latest is not None
    return earliest, latest


def test_the_window_runs_from_the_instance_creation_to_its_latest_restorable_time(backend, rds):
    instance = rds.describe_db_instances(DBInstanceIdentifier="orders")["DBInstances"][0]
    earliest, latest = window(backend)
    created = instance["InstanceCreateTime"].astimezone(datetime.UTC)
    assert datetime.timedelta(0) <= earliest - created < datetime.timedelta(seconds=1)
    assert (
        abs(latest - instance["LatestRestorableTime"].astimezone(datetime.UTC)).total_seconds() < 5
    )
    note = backend.live_options()["restore_time"].note
    assert note.startswith("restorable from ") and " to " in note


def test_the_window_of_an_old_instance_starts_with_its_retention_period(rds):
    week_later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=30)
    earliest, _ = restorable_window(rds, "orders", now=week_later)
    assert earliest == week_later - datetime.timedelta(days=7)


def test_a_restore_time_inside_the_window_is_accepted_in_utc(backend):
    time.sleep(2.1)  # moto's window ends now: let it span a few seconds after the creation
    _, latest = window(backend)
    given = latest.astimezone(datetime.timezone(datetime.timedelta(hours=2))).isoformat()
    params = backend.validate_params({"restore_time": given}, live=True)
    assert params == {"method": "point_in_time", "restore_time": iso(latest)}
    assert backend.writes_lost_after(params) == latest.replace(microsecond=0)


@pytest.mark.parametrize("shift", [datetime.timedelta(hours=-1), datetime.timedelta(hours=1)])
def test_a_restore_time_outside_the_window_is_refused_naming_it(backend, shift):
    earliest, latest = window(backend)
    outside = (earliest if shift.total_seconds() < 0 else latest) + shift
    with pytest.raises(OptionError) as refused:
        backend.validate_params({"restore_time": iso(outside)}, live=True)
    assert refused.value.option == "restore_time"
    assert "outside the restorable window" in str(refused.value)


def test_snapshots_are_listed_newest_first_and_only_the_instances_own(backend, rds):
    rds.create_db_snapshot(DBSnapshotIdentifier="before-migration", DBInstanceIdentifier="orders")
    rds.create_db_snapshot(DBSnapshotIdentifier="after-migration", DBInstanceIdentifier="orders")
    rds.create_db_instance(
        DBInstanceIdentifier="billing",
        Engine="postgres",
        DBInstanceClass="db.t3.micro",
        MasterUsername="app",
        MasterUserPassword="another-password",
        AllocatedStorage=20,
    )
    rds.create_db_snapshot(DBSnapshotIdentifier="billing-snap", DBInstanceIdentifier="billing")
    choices = [choice.value for choice in backend.live_options()["snapshot"].choices]
    assert choices.index("after-migration") < choices.index("before-migration")
    assert "billing-snap" not in choices

    params = backend.validate_params(
        {"method": "snapshot", "snapshot": "before-migration"}, live=True
    )
    created = rds.describe_db_snapshots(DBSnapshotIdentifier="before-migration")["DBSnapshots"][0]
    assert backend.writes_lost_after(params) == created["SnapshotCreateTime"].astimezone(
        datetime.UTC
    )
    for snapshot in ("billing-snap", "no-such-snapshot"):
        with pytest.raises(OptionError) as refused:
            backend.validate_params({"method": "snapshot", "snapshot": snapshot}, live=True)
        assert refused.value.option == "snapshot"


def test_the_chosen_snapshot_is_what_a_snapshot_restore_restores(backend, rds):
    rds.create_db_snapshot(DBSnapshotIdentifier="nightly", DBInstanceIdentifier="orders")
    params = backend.validate_params({"method": "snapshot", "snapshot": "nightly"})
    plan = backend.plan(RollbackTarget(params=params))
    assert "snapshot nightly" in plan.summary


@pytest.mark.parametrize(
    ("params", "option", "says"),
    [
        ({}, "restore_time", "is required when method is point_in_time"),
        ({"method": "snapshot", "restore_time": "2026-12-03T10:00:00Z"}, "restore_time", "only"),
        ({"method": "tape"}, "method", "must be one of point_in_time, snapshot"),
        ({"restore_time": "2026-12-03 10:00"}, "restore_time", "with a timezone"),
        (
            {"acknowledge_loss": "x" * 1001, "restore_time": "2026-12-03T10:00:00Z"},
            "acknowledge_loss",
            "1000",
        ),
        (
            {"acknowledge_loss": "ok\x07", "restore_time": "2026-12-03T10:00:00Z"},
            "acknowledge_loss",
            "control",
        ),
    ],
)
def test_bad_options_are_refused_naming_them(backend, params, option, says):
    with pytest.raises(OptionError) as refused:
        backend.validate_params(params)
    assert refused.value.option == option and says in str(refused.value)


def test_an_acknowledgement_at_its_limit_in_any_script_is_kept(backend):
    text = ("CTO 同意 — דנה אישרה 🚀 <b>" * 50)[:1000]
    params = backend.validate_params(
        {"restore_time": "2026-12-03T10:00:00Z", "acknowledge_loss": text}
    )
    assert params["acknowledge_loss"] == text.strip()


def test_what_is_saved_before_a_release(backend, rds):
    rds.create_db_snapshot(DBSnapshotIdentifier="pre-release", DBInstanceIdentifier="orders")
    saved = backend.capture_backup()
    assert saved["snapshot"] == "pre-release"
    assert parse_instant(saved["restorable_time"]) is not None
