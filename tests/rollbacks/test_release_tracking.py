"""Release tracking (Celery beat): a live version nobody registered becomes a release, and a
release live for its bake time, unsuspected and passing its checks, becomes known-good."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
import requests
from django.utils import timezone

from incidents.models import Release
from rollbacks.release_tracking import releases_track, version_for
from tests.factories import incident_open
from tests.rollbacks.engine_factories import KubeServiceFactory
from tests.rollbacks.engine_fixtures import seed_deployment

pytestmark = pytest.mark.django_db


@pytest.fixture
def web(kube, engine_settings):
    seed_deployment(kube, "web", ["registry.local/web:v1", "registry.local/web:v2"])
    return KubeServiceFactory(name="web")


def shipped(service: Any, version: str, minutes_ago: float, **more: Any) -> Release:
    return Release.objects.create(
        service=service,
        version=version,
        artifact=f"registry.local/web:{version}",
        shipped_at=timezone.now() - timedelta(minutes=minutes_ago),
        **more,
    )


@pytest.mark.parametrize(
    ("live", "version"),
    [
        ("registry.local/web:v2", "v2"),
        ("registry.local:5000/web", "registry.local:5000/web"),
        ("registry.local/web@sha256:" + "a" * 64, "sha256:" + "a" * 12),
        ("arn:aws:ecs:us-east-1:1:task-definition/checkout:7", "7"),
    ],
)
def test_a_release_version_comes_from_an_images_tag(live, version):
    assert version_for(live) == version


def test_a_live_version_nobody_registered_becomes_a_release_once(web):
    shipped(web, "v1", 120)
    report = releases_track()
    assert report.seen == ["web v2"]
    seen = Release.objects.get(service=web, version="v2")
    assert seen.artifact == "registry.local/web:v2" and "release tracking" in seen.notes
    assert releases_track().seen == []
    assert Release.objects.filter(service=web).count() == 2


def test_a_release_live_past_its_bake_time_becomes_known_good_by_automation(web):
    shipped(web, "v1", 120, known_good=True, known_good_at=timezone.now())
    v2 = shipped(web, "v2", 31)
    assert releases_track().promoted == ["web v2"]
    v2.refresh_from_db()
    assert v2.known_good and v2.known_good_by is None and v2.known_good_at
    assert v2.known_good_reason == "live 30 min, no verification checks configured"


@pytest.mark.parametrize("case", ["too young", "suspected", "bake off", "not live"])
def test_a_release_that_has_not_earned_it_stays_as_it_is(web, case):
    v2 = shipped(web, "v2", 10 if case == "too young" else 31)
    if case == "suspected":
        incident_open(services=[web])
    if case == "bake off":
        web.known_good_bake_minutes = 0
        web.save()
    if case == "not live":
        v2.version, v2.artifact = "v3", "registry.local/web:v3"
        v2.save()
    releases_track()
    v2.refresh_from_db()
    assert not v2.known_good


@pytest.fixture
def health(health_endpoint):
    return health_endpoint


@pytest.mark.parametrize(("status", "promoted"), [(200, True), (503, False)])
def test_promotion_waits_for_the_services_checks_to_pass(web, health, settings, status, promoted):
    settings.VERIFY_ALLOW_PRIVATE_ADDRESSES = True
    health["status"] = status
    web.target_config = {
        **web.target_config,
        "checks": [{"kind": "http", "url": f"http://127.0.0.1:{health['port']}/healthz"}],
    }
    web.save()
    v2 = shipped(web, "v2", 45)
    releases_track()
    v2.refresh_from_db()
    assert v2.known_good is promoted
    if promoted:
        assert "passed" in v2.known_good_reason


def test_a_release_a_pipeline_registered_by_its_tag_is_the_live_one(web):
    """The pipeline said "v2" (no artifact): the live image's tag names it, so no
    timestamped twin appears, and it is the release promoted after its bake time."""
    v2 = Release.objects.create(
        service=web, version="v2", shipped_at=timezone.now() - timedelta(minutes=31)
    )
    report = releases_track()
    assert report.seen == [] and report.promoted == ["web v2"]
    assert list(Release.objects.filter(service=web)) == [v2]


def test_a_live_value_longer_than_an_artifact_is_one_release(kube, engine_settings):
    names = [f"{'very-long-deployment-name-' * 2}{index:02}" for index in range(12)]
    for name in names:
        seed_deployment(kube, name, [f"registry.local/{name}:v1"])
    whole = KubeServiceFactory(
        name="shop", target_config={"namespace": "shop", "all_in_namespace": True}
    )
    report = releases_track()
    assert len(report.seen) == 1, report
    assert len(Release.objects.get().artifact) == 500
    for _ in range(2):
        assert releases_track().seen == []
    assert Release.objects.filter(service=whole).count() == 1


def test_a_seen_release_says_who_changed_it_when_kubernetes_records_it(kube, web):
    shipped(web, "v2", 120)
    body = {
        "metadata": {"annotations": {"kubernetes.io/change-cause": "deploy v3 — 結帳 🚀"}},
        "spec": {"template": {"spec": {"containers": [{"name": "web", "image": "web:v3"}]}}},
    }
    requests.patch(
        f"{kube.url}/apis/apps/v1/namespaces/shop/deployments/web",
        params={"fieldManager": "ci-deploy"},
        data=json.dumps(body),
        headers={"Content-Type": "application/strategic-merge-patch+json"},
        timeout=5,
    ).raise_for_status()

    assert releases_track().seen == ["web v3"]
    v3 = Release.objects.get(service=web, version="v3")
    assert "Changed by ci-deploy at " in v3.notes and "(deploy v3 — 結帳 🚀)" in v3.notes
    assert timezone.now() - v3.shipped_at < timedelta(minutes=1)


def test_a_release_seen_where_the_platform_says_nothing_is_recorded_plainly(web):
    releases_track()
    assert "Changed by" not in Release.objects.get(service=web).notes
