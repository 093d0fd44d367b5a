"""The plan builder with step options: rows for the affected services and those added by
search, each service's options with what the cluster offers, and drafting with options —
refused with the option named, nothing drafted, when one cannot be accepted."""

from __future__ import annotations

import pytest
from django.urls import reverse

from incidents.models import Release
from rollbacks.models import Run
from tests.factories import ServiceFactory, UserFactory, incident_open
from tests.rollbacks.engine_factories import KubeServiceFactory
from tests.rollbacks.engine_fixtures import seed_deployment

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.usefixtures("engine_settings", "isolated_celery"),
]

HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def ic(client, roles):
    user = UserFactory(username="ic", roles=["Incident Commander"])
    client.force_login(user)
    return user


@pytest.fixture
def web(kube):
    seed_deployment(kube, "web", ["registry.local/web:v1", "registry.local/web:v2"])
    service = KubeServiceFactory(name="web")
    for version in ("v1", "v2"):
        Release.objects.create(
            service=service, version=version, artifact=f"registry.local/web:{version}"
        )
    return service


def draft(client, incident, service, target, **options):
    data = {"scenario": "any", "parallel": "on", f"target_{service.pk}": target}
    data |= {f"opt-{service.pk}-{name}": value for name, value in options.items()}
    return client.post(reverse("run_create", args=[incident.pk]), data, **HTMX)


def test_the_room_lists_the_affected_services_only(client, ic, web):
    other = KubeServiceFactory(name="billing-api")
    incident = incident_open(services=[web])
    page = client.get(reverse("incident_room", args=[incident.pk])).content.decode()
    assert f'name="target_{web.pk}"' in page
    assert f'name="target_{other.pk}"' not in page
    assert f"service={web.pk}" in page  # only its live version is asked for


def test_each_backend_kind_is_asked_in_a_request_of_its_own(client, ic, web):
    flag = ServiceFactory(
        name="new-checkout",
        backend="feature_flag",
        target_config={"store": "redis", "flag": "new-checkout", "key_prefix": "test:flags:"},
    )
    api = KubeServiceFactory(name="api")
    incident = incident_open(services=[web, flag, api])
    page = client.get(reverse("incident_room", args=[incident.pk])).content.decode()
    versions = reverse("incident_versions", args=[incident.pk])
    assert f'hx-get="{versions}?service={api.pk}&amp;service={web.pk}"' in page  # by name
    assert f'hx-get="{versions}?service={flag.pk}"' in page


def test_search_finds_other_services_and_a_found_one_becomes_a_row(client, ic, web):
    found = KubeServiceFactory(name="billing-api", description="Invoices 請求書")
    KubeServiceFactory(name="search-api")
    incident = incident_open(services=[web])
    url = reverse("plan_search", args=[incident.pk])
    page = client.get(url, {"q": "請求", "service": [web.pk]}).content.decode()
    assert "billing-api" in page and "search-api" not in page
    assert reverse("plan_row", args=[incident.pk, found.pk]) in page
    assert "web</code>" not in client.get(url, {"q": "", "service": [web.pk]}).content.decode()
    assert client.get(url, {"q": "x" * 81}).status_code == 400
    assert client.get(url, {"q": "a", "service": ["1", "two"]}).status_code == 400
    assert "No other service matches" in client.get(url, {"q": "<b>zz"}).content.decode()
    assert "&lt;b&gt;zz" in client.get(url, {"q": "<b>zz"}).content.decode()

    row = client.get(reverse("plan_row", args=[incident.pk, found.pk]))
    assert row["HX-Trigger-After-Swap"] == "plan-row-added"
    assert f'name="target_{found.pk}"' in row.content.decode()


def test_a_service_of_another_environment_cannot_be_added(client, ic, web):
    staging = KubeServiceFactory(name="web-staging", environment="staging")
    incident = incident_open(services=[web])
    assert client.get(reverse("plan_row", args=[incident.pk, staging.pk])).status_code == 404
    assert client.get(reverse("plan_options", args=[incident.pk, staging.pk])).status_code == 404


def test_options_offer_the_rollout_history_read_from_the_cluster(client, ic, web):
    incident = incident_open(services=[web])
    page = client.get(reverse("plan_options", args=[incident.pk, web.pk])).content.decode()
    assert f'name="opt-{web.pk}-operation"' in page
    assert '<option value="2">revision 2 (running) — registry.local/web:v2' in page
    assert '<option value="1">revision 1 — registry.local/web:v1' in page
    assert "(when operation is scale)" in page


def test_options_say_when_the_cluster_cannot_be_asked(client, ic, kube):
    gone = KubeServiceFactory(name="gone")
    incident = incident_open(services=[gone])
    page = client.get(reverse("plan_options", args=[incident.pk, gone.pk])).content.decode()
    assert "Could not ask the infrastructure about gone" in page
    assert f'name="opt-{gone.pk}-operation"' in page  # the fields are still offered


def test_drafting_with_a_revision_and_a_scale(client, ic, web):
    incident = incident_open(services=[web])
    assert draft(client, incident, web, "options", to_revision="1").status_code == 200
    step = Run.objects.get().steps.get()
    assert step.params == {"operation": "undo", "to_revision": "1"}

    assert draft(client, incident, web, "options", operation="scale", replicas="0").status_code
    step = Run.objects.latest("pk").steps.get()
    assert step.params == {"operation": "scale", "replicas": 0}


def test_a_restart_is_stamped_when_drafted(client, ic, web):
    incident = incident_open(services=[web])
    assert draft(client, incident, web, "options", operation="restart").status_code == 200
    assert Run.objects.get().steps.get().params["restarted_at"].endswith("Z")


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ({"to_revision": "9"}, "web: to_revision: 9 is not available (available: 2, 1)"),
        ({"operation": "scale"}, "web: replicas: is required when operation is scale"),
        ({"operation": "scale", "replicas": "-3"}, "web: replicas: must be at least 0"),
        ({"colour": "red"}, "web: colour: unknown option"),
        ({"operation": "apply_manifest", "manifest": "v1"}, "web: manifest: no release"),
        ({"operation": "scale", "replicas": "回滚🚀"}, "web: replicas: must be a whole number"),
    ],
)
def test_an_option_that_cannot_be_accepted_is_refused_and_nothing_drafted(
    client, ic, web, options, says
):
    incident = incident_open(services=[web])
    response = draft(client, incident, web, "options", **options)
    assert response.status_code == 400
    assert says in response.content.decode().replace("&quot;", '"').replace("&#x27;", "'")
    assert not Run.objects.exists()


def test_a_saved_manifest_is_taken_from_the_release_that_saved_it(client, ic, web, kube):
    from executors.kubernetes.step_options import manifest_backup
    from rollbacks.engine.backends import backend_for

    saved = backend_for(web).capture_backup()
    assert saved["manifest"]["kind"] == "Deployment"
    assert saved == {"manifest": manifest_backup(saved["manifest"])}
    Release.objects.filter(service=web, version="v1").update(backup=saved)
    incident = incident_open(services=[web])
    options = client.get(reverse("plan_options", args=[incident.pk, web.pk])).content.decode()
    assert '<option value="v1">v1 — registry.local/web:v2</option>' in options
    response = draft(client, incident, web, "options", operation="apply_manifest", manifest="v1")
    assert response.status_code == 200
    params = Run.objects.get().steps.get().params
    assert params["backup_release"] == "v1"
    assert params["manifest"]["metadata"]["name"] == "web"

    # Choosing the release as the target takes its saved manifest without naming it again.
    release = Release.objects.get(service=web, version="v1")
    response = draft(client, incident, web, str(release.pk), operation="apply_manifest")
    assert response.status_code == 200
    assert Run.objects.latest("pk").steps.get().params["backup_release"] == "v1"


def test_a_plan_takes_at_most_200_services(client, ic, web):
    incident = incident_open(services=[web])
    data = {"scenario": "any", f"target_{web.pk}": "previous"}
    data |= {f"target_{n}": "previous" for n in range(10_000, 10_250)}
    response = client.post(reverse("run_create", args=[incident.pk]), data, **HTMX)
    assert response.status_code == 400
    assert not Run.objects.exists()


@pytest.mark.parametrize(("state", "shown_open"), [("draft", True), ("succeeded", False)])
def test_a_steps_planned_changes_are_open_before_the_start_and_folded_after(
    client, ic, state, shown_open
):
    from tests.rollbacks.engine_factories import RunFactory, StepFactory

    incident = incident_open()
    run = RunFactory(incident=incident, state=state)
    StepFactory(
        run=run,
        plan_summary="scale: 1 of 1 Deployment(s) would change",
        planned_changes=[
            {
                "resource": "deployment/shop/web",
                "attribute": "replicas",
                "before": "2",
                "after": "0",
            }
        ],
    )
    page = client.get(reverse("incident_room", args=[incident.pk])).content.decode()
    assert "<code>deployment/shop/web</code> replicas: <code>2</code> → <code>0</code>" in page
    assert ('<details class="plan-detail" open>' in page) == shown_open
