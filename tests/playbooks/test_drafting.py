"""Playbooks saved as versions and drafted as plans: from the services, the room and the
terminal, parameters checked and named, nothing drafted when one cannot be accepted."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse
from django.utils import timezone

from incidents.errors import DomainError
from incidents.models import Release
from playbooks.models import Playbook, PlaybookRun
from playbooks.services import PlaybookParameterError, playbook_draft, playbook_save
from rollbacks.models import Run
from tests.factories import ServiceFactory, UserFactory
from tests.rollbacks.engine_factories import IncidentFactory, KubeServiceFactory
from tests.rollbacks.engine_fixtures import seed_deployment

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.usefixtures("engine_settings", "isolated_celery"),
]
HTMX = {"HTTP_HX_REQUEST": "true"}
RECORD = [{"Name": "status.example.com.", "Type": "CNAME", "ResourceRecords": [{"Value": "a."}]}]
SCALE = """
name: drain
title: Drain the writers
parameters:
  - {name: writers, type: services, backends: [kubernetes], required: true}
groups:
  - label: Scale to zero
    steps:
      - {service: "{writers}", options: {operation: scale, replicas: 0}}
  - label: Back
    steps:
      - {service: "{writers}", options: {operation: scale, replicas: restore}}
"""


@pytest.fixture
def writers(kube):
    services = []
    for name in ("orders-api", "orders-worker"):
        seed_deployment(kube, name, [f"{name}:1", f"{name}:2"])
        services.append(KubeServiceFactory(name=name))
    return services


@pytest.fixture
def dns(settings, moto_server):
    settings.AWS_ENDPOINT_URL = moto_server.url  # its live read fails fast: no such zone
    service = ServiceFactory(
        name="status-dns",
        backend="dns",
        target_config={
            "hosted_zone_id": "Z1",
            "record_name": "status.example.com",
            "record_type": "CNAME",
            "maintenance_target": "maintenance.example.net",
        },
    )
    Release.objects.create(
        service=service,
        version="blue",
        artifact="a.",
        known_good=True,
        known_good_at=timezone.now(),
        backup={"record_sets": RECORD},
    )
    return service


def test_saving_again_makes_a_new_version_and_keeps_the_old(commander, roles):
    first = playbook_save(source=SCALE, actor=commander, comment="first")
    second = playbook_save(source=SCALE.replace("Drain the writers", "Drain"), actor=commander)
    assert (first.number, second.number) == (1, 2)
    first.refresh_from_db()
    assert first.title == "Drain the writers"
    with pytest.raises(DomainError, match="nothing changed since version 2"):
        playbook_save(source=SCALE.replace("Drain the writers", "Drain"), actor=commander)
    with pytest.raises(DomainError, match="groups\\[0\\].steps\\[0\\].service: unknown"):
        playbook_save(
            source=SCALE.replace('"{writers}", options: {operation: scale, replicas: 0}', '"{w}"'),
            actor=commander,
        )


def test_drafting_fills_the_parameters_in_group_by_group(commander, writers):
    version = playbook_save(source=SCALE, actor=commander)
    run = playbook_draft(
        incident=IncidentFactory(),
        version=version,
        parameters={"writers": "orders-api, orders-worker"},
        actor=commander,
    )
    steps = list(run.steps.order_by("position"))
    assert [(s.group, s.service.name, s.params["replicas"]) for s in steps] == [
        (1, "orders-api", 0),
        (1, "orders-worker", 0),
        (2, "orders-api", "restore"),
        (2, "orders-worker", "restore"),
    ]
    assert [s.group_label for s in steps] == ["Scale to zero"] * 2 + ["Back"] * 2
    recorded = PlaybookRun.objects.get(run=run)
    assert recorded.version == version
    assert recorded.parameters == {"writers": ["orders-api", "orders-worker"]}


@pytest.mark.parametrize(
    ("parameters", "says"),
    [
        ({}, "writers: is required"),
        ({"writers": "orders-api,nope"}, "writers: no production service is named 'nope'"),
        ({"writers": "orders-api", "colour": "red"}, "colour: this playbook has no such"),
        ({"writers": "x" * 2001}, "writers: at most 2000 characters"),
    ],
)
def test_a_parameter_that_cannot_be_accepted_drafts_nothing(commander, writers, parameters, says):
    version = playbook_save(source=SCALE, actor=commander)
    with pytest.raises(PlaybookParameterError, match=says):
        playbook_draft(
            incident=IncidentFactory(), version=version, parameters=parameters, actor=commander
        )
    assert not Run.objects.exists()


def test_a_service_of_the_wrong_kind_is_refused(commander, writers, dns):
    version = playbook_save(source=SCALE, actor=commander)
    with pytest.raises(PlaybookParameterError, match="status-dns is a dns service"):
        playbook_draft(
            incident=IncidentFactory(),
            version=version,
            parameters={"writers": "status-dns"},
            actor=commander,
        )


def test_the_built_in_maintenance_window_drafts_three_groups(commander, writers, dns):
    web = writers[0]
    Release.objects.create(
        service=web,
        version="v1",
        artifact="orders-api:1",
        known_good=True,
        known_good_at=timezone.now(),
    )
    version = Playbook.objects.get(name="maintenance-window").current()
    run = playbook_draft(
        incident=IncidentFactory(),
        version=version,
        parameters={"dns": "status-dns", "services": "orders-api"},
        actor=commander,
    )
    steps = list(run.steps.order_by("position"))
    assert [(s.group, s.service.name) for s in steps] == [
        (1, "status-dns"),
        (2, "orders-api"),
        (3, "status-dns"),
    ]
    assert steps[0].params == {
        "mode": "maintenance",
        "maintenance_target": "maintenance.example.net",
    }
    assert steps[1].to_version == "v1"
    assert steps[2].params["backup"] == RECORD and steps[2].params["backup_release"] == "blue"


def test_the_room_drafts_a_playbook_and_reports_a_missing_parameter(client, commander, writers):
    client.force_login(commander)
    playbook_save(source=SCALE, actor=commander)
    incident = IncidentFactory()
    incident.services.set(writers)
    page = client.get(reverse("incident_room", args=[incident.pk])).content.decode()
    assert "Use a playbook" in page and '<option value="drain">' in page
    form = client.get(reverse("incident_playbook_form", args=[incident.pk]), {"playbook": "drain"})
    assert 'name="param_writers"' in form.content.decode()

    url = reverse("incident_playbook_draft", args=[incident.pk, "drain"])
    missing = client.post(url, {"scenario": "any", "version": "1"}, **HTMX)
    assert missing.status_code == 400 and "writers: is required" in missing.content.decode()
    drafted = client.post(
        url, {"scenario": "any", "version": "1", "param_writers": ["orders-api"]}, **HTMX
    )
    assert drafted.status_code == 200
    assert Run.objects.get().steps.count() == 2


def test_editing_needs_the_commander_and_bad_yaml_is_a_400(client, commander, roles):
    playbook_save(source=SCALE, actor=commander)
    viewer = UserFactory(username="vic", roles=["Viewer"])
    client.force_login(viewer)
    assert client.get(reverse("playbook_detail", args=["drain"])).status_code == 200
    assert client.get(reverse("playbook_edit", args=["drain"])).status_code == 403
    client.force_login(commander)
    edit = reverse("playbook_edit", args=["drain"])
    bad = client.post(edit, {"source": SCALE.replace("title: Drain", "title: [oops")})
    assert bad.status_code == 400 and "line " in bad.content.decode()
    renamed = client.post(edit, {"source": SCALE.replace("name: drain", "name: other")})
    assert renamed.status_code == 400 and "import the YAML" in renamed.content.decode()
    saved = client.post(edit, {"source": SCALE.replace("Drain the", "Drain all the")})
    assert saved.status_code == 302
    exported = client.get(reverse("playbook_export", args=["drain"]), {"version": "1"})
    assert exported.content.decode() == SCALE
    assert exported["Content-Disposition"] == 'attachment; filename="drain-v1.yaml"'
    page = client.get(reverse("playbook_detail", args=["drain"])).content.decode()
    assert "v2" in page and "Drain all the writers" in page


@pytest.mark.django_db(transaction=True)
def test_the_terminal_runs_a_playbook(commander, writers, kube):
    playbook_save(source=SCALE, actor=commander)
    incident = IncidentFactory(severity="P4")
    out = StringIO()
    call_command(
        "rollback",
        "--playbook",
        "drain",
        "--param",
        "writers=orders-api",
        "--incident",
        str(incident.pk),
        "--as",
        "ic",
        "--yes",
        stdout=out,
        stderr=StringIO(),
    )
    assert "Rollback succeeded" in out.getvalue()
    deployment = kube.get("deployments", "shop", "orders-api")
    assert deployment["spec"]["replicas"] == 2  # scaled to zero, then back
    with pytest.raises(CommandError, match="No playbook is named 'nope'"):
        call_command(
            "rollback",
            "--playbook",
            "nope",
            "--incident",
            str(incident.pk),
            "--as",
            "ic",
            stdout=StringIO(),
            stderr=StringIO(),
        )
