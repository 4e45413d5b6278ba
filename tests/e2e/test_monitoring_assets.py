"""Unit tier: the shipped monitoring assets match the operator's pods and the server's metrics."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from mlmodel_operator.render.deployment import render_deployment
from mlmodel_operator.resource import MLModel
from mlmodel_operator.settings import OperatorSettings
from model_server.metrics import Metrics
from model_server.runtimes.base import ModelInfo

MONITORING = Path(__file__).resolve().parents[2] / "operator" / "deploy" / "monitoring"
METRIC_NAME = re.compile(r"\b(model_server_[a-z0-9_]+)\b")


def exposed_metric_names() -> set[str]:
    """Every sample name the model server's /metrics exposes once each family has a sample."""
    metrics = Metrics()
    metrics.observe_request("/predict", "POST", 200, 0.01)
    metrics.observe_rows("seed", 1)
    info = ModelInfo(
        name="iris",
        version="1",
        format="skops",
        digest="0" * 64,
        task="classification",
        estimator="RandomForestClassifier",
        feature_names=("a",),
        class_labels=(0, 1),
        runtime="sklearn",
        compiled=False,
    )
    metrics.model_loaded(info, 1.0)
    text = metrics.render()[0].decode()
    return {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line[:1].isalpha()}


def dashboard_exprs() -> list[str]:
    dashboard = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]
    exprs += [v["definition"] for v in dashboard["templating"]["list"] if "definition" in v]
    return exprs


def test_dashboard_references_only_metrics_the_server_exposes() -> None:
    exposed = exposed_metric_names()
    referenced = {name for expr in dashboard_exprs() for name in METRIC_NAME.findall(expr)}
    assert referenced, "the dashboard references no model_server_* metric"
    assert referenced <= exposed, f"not exposed by the server: {sorted(referenced - exposed)}"


def test_dashboard_covers_requests_latency_predictions_and_model_info() -> None:
    referenced = {name for expr in dashboard_exprs() for name in METRIC_NAME.findall(expr)}
    for family in (
        "model_server_requests_total",
        "model_server_request_duration_seconds_bucket",
        "model_server_predictions_total",
        "model_server_model_info",
    ):
        assert family in referenced


def test_every_dashboard_panel_queries_the_scrape_job_labels() -> None:
    dashboard = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    for panel in dashboard["panels"]:
        assert panel["targets"], f"panel {panel['title']!r} has no query"
        for target in panel["targets"]:
            assert 'namespace=~"$namespace"' in target["expr"], panel["title"]


def _iris() -> MLModel:
    return MLModel.from_body(
        {
            "apiVersion": "mlops.dev/v1alpha1",
            "kind": "MLModel",
            "metadata": {"name": "iris", "namespace": "models", "uid": "u-1", "generation": 1},
            "spec": {"model": {"uri": "s3://models/iris"}},
        }
    )


def test_scrape_config_selects_the_pods_the_operator_renders() -> None:
    config = yaml.safe_load((MONITORING / "prometheus.yml").read_text())
    (job,) = config["scrape_configs"]
    (sd,) = job["kubernetes_sd_configs"]
    assert sd["role"] == "pod"
    wanted = dict(part.split("=") for part in sd["selectors"][0]["label"].split(","))
    deployment = render_deployment(_iris(), OperatorSettings())
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert wanted.items() <= pod_labels.items()
    keep_port = next(
        r
        for r in job["relabel_configs"]
        if r["source_labels"] == ["__meta_kubernetes_pod_container_port_name"]
    )
    ports = deployment["spec"]["template"]["spec"]["containers"][0]["ports"]
    assert keep_port["action"] == "keep"
    assert [p["name"] for p in ports if re.fullmatch(keep_port["regex"], p["name"])] == ["http"]
    assert job["metrics_path"] == "/metrics"


def test_scrape_config_labels_series_with_the_dashboard_variables() -> None:
    config = yaml.safe_load((MONITORING / "prometheus.yml").read_text())
    targets = {r.get("target_label") for r in config["scrape_configs"][0]["relabel_configs"]}
    assert {"namespace", "pod", "mlmodel"} <= targets
