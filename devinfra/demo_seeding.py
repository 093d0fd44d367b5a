"""Seeding helpers of the demo (devinfra.demo): the Kubernetes demo services, their saved
manifests, their verification checks and Prometheus, and the live-version check each service
passes before the demo says it is ready."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from devinfra.demo_health import DemoHealth
from devinfra.demo_services import DemoRelease, DemoService
from devinfra.kube_standin import DEMO_SEED
from devinfra.prometheus import PrometheusServer, start_prometheus
from executors.base import Connections
from executors.registry import backend_class

_BAD_KUBERNETES_NOTES = {
    "registry.example.com/storefront/web:v2.4.1": "Pods crash-loop on start; rollout stuck.",
    "registry.example.com/storefront/api:v1.9.0": "p99 latency doubled since this deploy.",
    "registry.example.com/payments/api:v3.2.0": "Refunds fail with 500 since this deploy.",
}


def kubernetes_services(seed: Sequence[Mapping[str, Any]] = DEMO_SEED) -> list[DemoService]:
    """One service per seeded Deployment: its last image is live and bad, the rest good."""
    services = []
    for spec in seed:
        if "name" not in spec:
            continue
        namespace, deployment = spec.get("namespace", "default"), spec["name"]
        images = list(spec["images"])
        name = deployment if deployment.startswith(namespace) else f"{namespace}-{deployment}"
        releases = []
        for age, image in enumerate(reversed(images)):
            bad = age == 0
            releases.append(
                DemoRelease(
                    version=image.rpartition(":")[2],
                    artifact=image,
                    shipped_hours_ago=2 if bad else 2 + 24 * age,
                    notes=(
                        _BAD_KUBERNETES_NOTES.get(image, "Error rate up since this deploy.")
                        if bad
                        else "Ran clean in production."
                    ),
                    known_good=not bad,
                )
            )
        services.append(
            DemoService(
                name=name,
                backend="kubernetes",
                description=f"Kubernetes Deployment {namespace}/{deployment}",
                target_config={"namespace": namespace, "deployment": deployment},
                releases=tuple(reversed(releases)),
                live_version=images[-1],
            )
        )
    return services


def with_saved_manifests(
    services: Sequence[DemoService], connections: Connections
) -> list[DemoService]:
    """`services` with, on each good Kubernetes release, the manifest a deploy pipeline
    would have saved before the next deploy: the live Deployment's, running that release's
    image."""
    result = []
    for service in services:
        if service.backend != "kubernetes":
            result.append(service)
            continue
        live = backend_class("kubernetes")(service.target_config, connections).capture_backup()
        releases = tuple(
            replace(release, backup={"manifest": with_image(live["manifest"], release.artifact)})
            if release.known_good
            else release
            for release in service.releases
        )
        result.append(replace(service, releases=releases))
    return result


def with_image(manifest: Mapping[str, Any], image: str) -> dict[str, Any]:
    """A copy of a Deployment manifest whose first container runs `image`."""
    copied = json.loads(json.dumps(manifest))
    copied["spec"]["template"]["spec"]["containers"][0]["image"] = image
    return copied


# Services whose verification the demo shows: (service, namespace, deployment, label).
VERIFIED_SERVICES = (
    ("storefront-web", "storefront", "web", "app=web"),
    ("payments-api", "payments", "payments-api", "app=payments-api"),
)
ERROR_RATIO_THRESHOLD = 0.05
# The service whose alert drafts a rollback by itself and whose releases bake into
# known-good (a short bake: DEMO_BAKE_MINUTES), for the walkthrough of releases and alerts
# flowing in. The others keep a bake of 0: they sit at bad releases with fewer checks.
AUTOMATIC_SERVICE = "payments-api"
AUTOMATIC_POLICY = {"enabled": True, "severities": ["P1"], "max_release_age_hours": 6}


def demo_bake_minutes() -> int:
    value = os.environ.get("DEMO_BAKE_MINUTES", "2")
    if not value.isdigit() or not 1 <= int(value) <= 1440:
        raise ValueError(f"DEMO_BAKE_MINUTES: {value!r} is not a whole number of 1 to 1440")
    return int(value)


def with_verification(
    services: Sequence[DemoService], health: DemoHealth, prometheus: PrometheusServer | None
) -> list[DemoService]:
    """`services` with verification checks on the VERIFIED_SERVICES (devinfra.demo says how)."""
    verified = {
        name: (namespace, deployment, label)
        for name, namespace, deployment, label in VERIFIED_SERVICES
    }
    result = []
    for service in services:
        if service.name not in verified:
            result.append(service)
            continue
        namespace, deployment, label = verified[service.name]
        checks: list[dict[str, Any]] = [
            {
                "kind": "http",
                "name": "health endpoint",
                "url": health.health_url(namespace, deployment),
                "json_field": "version",
                "expect": "{version}",
                "retries": 4,
                "backoff": 1,
            },
            {
                "kind": "kubernetes_pods",
                "name": "pods ready",
                "namespace": namespace,
                "selector": label,
                "max_restarts": 3,
            },
        ]
        if prometheus is not None:
            checks.append(
                {
                    "kind": "prometheus",
                    "name": "error rate",
                    "url": prometheus.url,
                    "query": f'demo_http_error_ratio{{service="{service.name}"}}',
                    "comparison": "below",
                    "threshold": ERROR_RATIO_THRESHOLD,
                    "measures": "error_rate",
                    # Prometheus sees the recovery only at its next scrapes.
                    "settle_seconds": 20,
                }
            )
        queries = (
            {"error_rate": f'100 * demo_http_error_ratio{{service="{service.name}"}}'}
            if prometheus is not None
            else {}
        )
        automatic = service.name == AUTOMATIC_SERVICE and prometheus is not None
        result.append(
            replace(
                service,
                target_config={**service.target_config, "checks": checks},
                signal_queries=queries,
                known_good_bake_minutes=demo_bake_minutes() if automatic else 0,
                auto_rollback=AUTOMATIC_POLICY if automatic else {},
            )
        )
    return result


def start_demo_prometheus(
    health: DemoHealth, log_file: Path, alertmanager: str | None = None
) -> PrometheusServer:
    """A Prometheus scraping the demo's metrics every second (PrometheusMissing without one),
    with the demo's alerting rules sent to `alertmanager` (host:port) when there is one."""
    return start_prometheus(
        [health.target],
        scrape_interval=1.0,
        log_file=log_file,
        rules=demo_alert_rules() if alertmanager else (),
        alertmanagers=[alertmanager] if alertmanager else (),
    )


def demo_alert_rules() -> list[dict[str, Any]]:
    """An error-rate alert per verified service, labelled with the console's service name."""
    return [
        {
            "alert": "HighErrorRate",
            # The metric is labelled with the service's name (devinfra.demo_health).
            "expr": f'100 * demo_http_error_ratio{{service="{name}"}} > 5',
            "for": "20s",
            "labels": {"service": name, "severity": "critical"},
            "annotations": {
                "summary": '{{ $value | printf "%.1f" }} % of requests fail',
                "description": f"5xx share of {name} above 5 % (demo metrics)",
            },
        }
        for name, _, _, _ in VERIFIED_SERVICES
    ]


def check_live_version(service: DemoService, connections: Connections) -> None:
    """Read the service's live version through its backend; raise if it is not the seed's."""
    backend = backend_class(service.backend)(service.target_config, connections)
    read = backend.live_version()
    if read != service.live_version:
        raise RuntimeError(
            f"demo service {service.name}: the {service.backend} backend reads the live "
            f"version as {read!r}, the seed says {service.live_version!r}"
        )
