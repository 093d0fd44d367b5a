"""The demo's pipeline stand-in: it sets a demo service's image through the Kubernetes API
under its own field manager, which release tracking then names."""

from __future__ import annotations

import pytest

from devinfra.demo_deploy import demo_deploy, main


@pytest.fixture
def demo_kube(kube_standin, tmp_path, monkeypatch):
    kube_standin.seed("demo")
    monkeypatch.setenv("KUBECONFIG", str(kube_standin.write_kubeconfig(tmp_path / "config")))
    return kube_standin


def test_a_deploy_sets_the_image_with_its_field_manager_and_cause(demo_kube):
    image = demo_deploy("payments-api", "v3.2.1", cause="fix refunds — 返金 🚀")
    assert image == "registry.example.com/payments/api:v3.2.1"
    deployment = demo_kube.get("deployments", "payments", "payments-api")
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == image
    assert deployment["metadata"]["annotations"]["kubernetes.io/change-cause"] == (
        "fix refunds — 返金 🚀"
    )
    managers = [entry["manager"] for entry in deployment["metadata"]["managedFields"]]
    assert managers == ["demo-pipeline"]


@pytest.mark.parametrize(
    ("service", "tag", "says"),
    [
        ("nope", "v1", "service: not a demo Kubernetes service"),
        ("payments-api", "v1 && rm", "tag: "),
        ("payments-api", "x" * 129, "tag: "),
        ("payments-api", "", "tag: "),
    ],
)
def test_a_bad_service_or_tag_is_refused_before_anything_is_asked(
    demo_kube, capsys, service, tag, says
):
    assert main([service, tag]) == 2
    assert says in capsys.readouterr().err
    image = demo_kube.get("deployments", "payments", "payments-api")["spec"]["template"]
    assert image["spec"]["containers"][0]["image"].endswith(":v3.2.0")
