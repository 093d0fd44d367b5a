"""The Prometheus helpers the verification tests and the demo start."""

from __future__ import annotations

import pytest

from devinfra import prometheus as prometheus_module
from devinfra.prometheus import MetricsExporter, PrometheusMissing, find_prometheus


def test_a_missing_prometheus_binary_is_reported_with_how_to_install_it(monkeypatch, tmp_path):
    monkeypatch.setattr(prometheus_module, "DEFAULT_BINARY", str(tmp_path / "prometheus"))
    monkeypatch.delenv("PROMETHEUS_BINARY", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))

    with pytest.raises(PrometheusMissing, match="install-system-packages.sh prometheus"):
        find_prometheus()


def test_the_metrics_source_serves_what_was_set_in_the_text_format():
    exporter = MetricsExporter()
    exporter.set("errors_ratio", 0.25, {"service": "web"})
    exporter.set("errors_ratio", 0.5, {"service": "api"})
    exporter.set("p99_seconds", 1)

    exporter.remove("p99_seconds")

    assert exporter.render() == (
        "# TYPE errors_ratio gauge\n"
        'errors_ratio{service="api"} 0.5\n'
        'errors_ratio{service="web"} 0.25\n'
    )


def test_the_session_prometheus_scrapes_the_metrics_source_every_second(
    prometheus, exporter, metric
):
    exporter.set(metric, 3)
    assert prometheus.wait_for_value(metric, 3) == 3

    exporter.set(metric, 4)

    assert prometheus.wait_for_value(metric, 4, timeout=3) == 4
