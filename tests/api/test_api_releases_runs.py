"""A pipeline registers releases (their backup read from the Kubernetes stand-in), marks
them known-good, drafts a rollback and reads the run, all with a token."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from incidents.models import Release
from rollbacks.models import Run, RunState
from tests.factories import incident_open
from tests.rollbacks.engine_factories import KubeServiceFactory
from tests.rollbacks.engine_fixtures import seed_deployment

pytestmark = pytest.mark.django_db
IC = ["Incident Commander"]


@pytest.fixture
def web(kube, engine_settings):
    seed_deployment(kube, "web", ["registry.local/web:v1", "registry.local/web:v2"])
    service = KubeServiceFactory(name="web")
    Release.objects.create(
        service=service,
        version="v1",
        artifact="registry.local/web:v1",
        shipped_at=timezone.now() - timedelta(days=2),
        known_good=True,
        known_good_at=timezone.now() - timedelta(days=1),
    )
    return service


def test_registering_a_release_saves_its_backup_and_a_retry_finds_it(api_as, web):
    api = api_as(IC, "releases:write")
    body = {"version": "v3", "artifact": "registry.local/web:v3", "notes": "新しい決済 🚀"}

    first = api.call("post", "/services/web/releases", body)
    assert first.status_code == 201, first.content
    assert first.json()["backup_saved"] == ["manifest"] and first.json()["created"] is True
    release = Release.objects.get(service=web, version="v3")
    assert release.backup["manifest"]["kind"] == "Deployment" and release.backup_at

    again = api.call("post", "/services/web/releases", body)
    assert again.status_code == 200 and again.json()["id"] == release.pk
    assert again.json()["created"] is False

    other = api.call("post", "/services/web/releases", {**body, "artifact": "registry.local/web:x"})
    assert other.status_code == 400 and "another artifact" in other.json()["detail"]


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"version": "v" * 101, "artifact": "a"}, "version"),
        ({"version": "v9", "artifact": "a" * 501}, "artifact"),
        ({"version": " ", "artifact": "a"}, "version"),
        ({"version": "v9"}, "body.artifact"),
    ],
)
def test_a_release_at_or_past_its_limits_is_refused_and_nothing_saved(api_as, web, body, says):
    response = api_as(IC, "releases:write").call("post", "/services/web/releases", body)
    assert response.status_code == 400
    assert says in (response.json()["detail"] + str(response.json().get("errors", {})))
    assert Release.objects.filter(service=web).count() == 1


def test_registering_needs_the_scope_the_role_and_a_real_service(api_as, web):
    body = {"version": "v3", "artifact": "registry.local/web:v3"}
    assert api_as(IC, "read").call("post", "/services/web/releases", body).status_code == 403
    responder = api_as(IC, "releases:write").demote("Responder")
    assert responder.call("post", "/services/web/releases", body).status_code == 403
    ic = api_as(IC, "releases:write")
    assert ic.call("post", "/services/nope/releases", body).status_code == 404
    staging = ic.call("post", "/services/web/releases?environment=staging", body)
    assert staging.status_code == 404
    assert not Release.objects.filter(version="v3").exists()


def test_known_good_is_marked_with_a_reason_and_refused_for_a_suspect(api_as, web):
    api = api_as(IC, "releases:write", "read")
    v2 = Release.objects.create(
        service=web,
        version="v2",
        artifact="registry.local/web:v2",
        shipped_at=timezone.now() - timedelta(hours=1),
    )
    marked = api.call(
        "put", f"/releases/{v2.pk}/known-good", {"known_good": True, "reason": "baked 30 min ✅"}
    )
    assert marked.status_code == 200 and marked.json()["known_good"] is True
    v2.refresh_from_db()
    assert v2.known_good_reason == "baked 30 min ✅" and v2.known_good_by is not None
    unmarked = api.call("put", f"/releases/{v2.pk}/known-good", {"known_good": False})
    assert unmarked.json()["known_good"] is False

    incident_open(services=[web])  # v2, the newest, is now the suspect
    refused = api.call("put", f"/releases/{v2.pk}/known-good", {"known_good": True})
    assert refused.status_code == 400 and "suspected" in refused.json()["detail"]
    too_long = api.call("put", f"/releases/{v2.pk}/known-good", {"reason": "x" * 501})
    assert too_long.status_code == 400 and "reason" in too_long.json()["errors"]
    listed = api.call("get", "/services/web/releases").json()
    assert [release["version"] for release in listed] == ["v2", "v1"]


def test_a_pipeline_drafts_a_rollback_to_known_good_and_reads_the_run(api_as, web):
    incident = incident_open(services=[web])
    api = api_as(IC, "runs:write", "read")
    response = api.call(
        "post", f"/incidents/{incident.pk}/rollbacks", {"services": ["web"], "reason": "p99 ×3"}
    )
    assert response.status_code == 201, response.content
    run = Run.objects.get()
    assert run.state == RunState.DRAFT and run.created_by is not None
    assert response.json()["steps"][0]["to_version"] == "v1"

    read = api.call("get", f"/runs/{run.pk}").json()
    assert read["state"] == "draft" and read["steps"][0]["service"] == "web"
    assert read["steps"][0]["from_version"]  # read live from the stand-in


def test_a_rollback_draft_names_what_it_cannot_do(api_as, web):
    incident = incident_open(services=[web])
    api = api_as(IC, "runs:write")
    path = f"/incidents/{incident.pk}/rollbacks"
    assert "services" in api.call("post", path, {"services": ["elsewhere"]}).json()["errors"]
    assert "services" in api.call("post", path, {"services": []}).json()["errors"]
    assert api.call("post", path, {"services": ["web"], "to": "sideways"}).status_code == 400
    Release.objects.filter(service=web).update(known_good=False, known_good_at=None)
    no_good = api.call("post", path, {"services": ["web"]})
    assert no_good.status_code == 400 and "no known-good" in str(no_good.json()["errors"])
    previous = api.call("post", path, {"services": ["web"], "to": "previous"})
    assert previous.status_code == 201 and previous.json()["steps"][0]["to_previous"] is True
    viewer = api_as(IC, "runs:write").demote("Viewer")
    assert viewer.call("post", path, {"services": ["web"], "to": "previous"}).status_code == 403
    assert Run.objects.count() == 1
