"""Ship a release to one of the demo's Kubernetes services as a pipeline would, without
telling the console: the Deployment's image is set through the Kubernetes API under the
field manager "demo-pipeline", with a kubernetes.io/change-cause. Release tracking then
sees the new version, with who changed it, and bakes it into known-good once it has been
live for the service's bake time with its checks passing (README, "Alerts, pipelines and
services flowing in").

    . var/demo.env   # KUBECONFIG of the running demo
    .venv/bin/python -m devinfra.demo_deploy payments-api v3.2.1

A tag the demo counts as bad (each service's seeded live one) raises the error rate that
its alerting rule watches; any other tag is healthy.
"""

from __future__ import annotations

import argparse
import os
import re
import sys

from kubernetes import client as kube_client
from kubernetes import config as kube_config

from devinfra.demo_seeding import kubernetes_services

FIELD_MANAGER = "demo-pipeline"
TAG = re.compile(r"^[\w][\w.-]{0,127}$")


def demo_deploy(service_name: str, tag: str, *, cause: str = "") -> str:
    """Set the image tag of demo service `service_name`; return the image now set."""
    if not TAG.match(tag):
        raise ValueError(f"tag: {tag!r} is not an image tag (letters, digits, '_', '.', '-')")
    known = {service.name: service for service in kubernetes_services()}
    service = known.get(service_name)
    if service is None:
        raise ValueError(f"service: not a demo Kubernetes service (one of {', '.join(known)})")
    if not os.environ.get("KUBECONFIG"):
        raise ValueError("KUBECONFIG is not set: source the running demo's demo.env first")
    namespace = service.target_config["namespace"]
    deployment = service.target_config["deployment"]
    image = f"{(service.live_version or '').rpartition(':')[0]}:{tag}"
    kube_config.load_kube_config(config_file=os.environ["KUBECONFIG"])
    apps = kube_client.AppsV1Api()
    pod_spec = apps.read_namespaced_deployment(deployment, namespace).spec.template.spec
    container = pod_spec.containers[0].name if pod_spec is not None else deployment
    body = {
        "metadata": {
            "annotations": {
                "kubernetes.io/change-cause": cause or f"demo pipeline: deploy {tag}",
            }
        },
        "spec": {"template": {"spec": {"containers": [{"name": container, "image": image}]}}},
    }
    apps.patch_namespaced_deployment(deployment, namespace, body, field_manager=FIELD_MANAGER)
    return image


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("service", help="a demo Kubernetes service, e.g. payments-api")
    parser.add_argument("tag", help="the image tag to run, e.g. v3.2.1")
    parser.add_argument("--cause", default="", help="the change-cause recorded with it")
    options = parser.parse_args(argv)
    try:
        image = demo_deploy(options.service, options.tag, cause=options.cause)
    except (ValueError, kube_client.ApiException) as error:
        print(f"demo_deploy: {error}", file=sys.stderr)
        return 2
    print(f"{options.service} now runs {image} (field manager {FIELD_MANAGER})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
