"""A database restore drafted from the console: what it loses is said before confirming, and
a loss beyond the incident's RPO needs a written acknowledgement, on the moto server."""

from __future__ import annotations

import datetime
import json
import time

import boto3
import pytest
from django.urls import reverse

import rollbacks.services
from devinfra.processes import reset_moto_server
from rollbacks.models import Run
from rollbacks.services import StepSpec
from rollbacks.services.step_options import StepOptionError
from tests.executors.rds_world import OLD_HOST, PASSWORD, SECRET_CONFIG, rds_secret
from tests.factories import ServiceFactory
from tests.rollbacks.engine_factories import IncidentFactory

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def orders_db(settings, moto_server):
    reset_moto_server(moto_server.url)
    settings.AWS_ENDPOINT_URL = moto_server.url
    rds = boto3.client("rds", endpoint_url=moto_server.url, region_name="us-east-1")
    rds.create_db_instance(
        DBInstanceIdentifier="orders",
        Engine="postgres",
        DBInstanceClass="db.t3.micro",
        MasterUsername="app",
        MasterUserPassword=PASSWORD,
        AllocatedStorage=20,
        BackupRetentionPeriod=7,
    )
    boto3.client(
        "secretsmanager", endpoint_url=moto_server.url, region_name="us-east-1"
    ).create_secret(Name="orders/db", SecretString=json.dumps(rds_secret(OLD_HOST)))
    time.sleep(2.1)  # moto's restorable window ends now: let it span a few seconds
    return ServiceFactory(name="orders-db", backend="database", target_config=SECRET_CONFIG)


def latest_restorable(moto_url: str) -> str:
    rds = boto3.client("rds", endpoint_url=moto_url, region_name="us-east-1")
    latest = rds.describe_db_instances(DBInstanceIdentifier="orders")["DBInstances"][0][
        "LatestRestorableTime"
    ]
    return (latest.astimezone(datetime.UTC) - datetime.timedelta(seconds=1)).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )


def test_a_loss_beyond_the_rpo_needs_a_written_acknowledgement(commander, orders_db, moto_server):
    incident = IncidentFactory(rpo=datetime.timedelta(0))  # any loss exceeds it
    when = latest_restorable(moto_server.url)
    spec = StepSpec(service=orders_db, params={"restore_time": when})
    with pytest.raises(StepOptionError) as refused:
        rollbacks.services.run_create(incident=incident, steps=[spec], actor=commander)
    assert refused.value.option == "acknowledge_loss"
    message = str(refused.value)
    assert f"writes after {when.replace('T', ' ').replace('Z', ' UTC')}" in message
    assert "are not in the restored data (the incident's RPO is 0 s)" in message
    assert not Run.objects.exists()

    acknowledged = StepSpec(
        service=orders_db,
        params={"restore_time": when, "acknowledge_loss": "CTO agreed on the bridge at 14:05"},
    )
    run = rollbacks.services.run_create(incident=incident, steps=[acknowledged], actor=commander)
    previews = rollbacks.services.run_dry_run(run=run, actor=commander)
    assert "are not in the restored data" in previews[0].summary


def test_a_loss_inside_the_rpo_needs_no_acknowledgement(commander, orders_db, moto_server):
    incident = IncidentFactory(rpo=datetime.timedelta(minutes=15))
    spec = StepSpec(service=orders_db, params={"restore_time": latest_restorable(moto_server.url)})
    run = rollbacks.services.run_create(incident=incident, steps=[spec], actor=commander)
    assert run.steps.get().params["method"] == "point_in_time"


def test_the_plan_builder_refuses_a_time_outside_the_window_naming_it(client, commander, orders_db):
    client.force_login(commander)
    incident = IncidentFactory()
    incident.services.set([orders_db])
    response = client.post(
        reverse("run_create", args=[incident.pk]),
        {
            "scenario": "any",
            f"target_{orders_db.pk}": "options",
            f"opt-{orders_db.pk}-restore_time": "2020-01-01T00:00:00Z",
        },
        **HTMX,
    )
    assert response.status_code == 400
    assert "orders-db: restore_time: 2020-01-01T00:00:00Z is outside the restorable window" in (
        response.content.decode()
    )
    assert not Run.objects.exists()


def test_the_options_show_the_window_and_snapshots(client, commander, orders_db, moto_server):
    boto3.client("rds", endpoint_url=moto_server.url, region_name="us-east-1").create_db_snapshot(
        DBSnapshotIdentifier="before-migration", DBInstanceIdentifier="orders"
    )
    client.force_login(commander)
    incident = IncidentFactory()
    page = client.get(reverse("plan_options", args=[incident.pk, orders_db.pk])).content.decode()
    assert "restorable from " in page
    assert '<option value="before-migration">before-migration — ' in page
