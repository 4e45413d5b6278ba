"""Unit tier: the shipped monitoring assets match the operator's pods and the server's metrics.

The tests marked `prometheus` run promtool from the project's Prometheus build (`make e2e-deps`,
a prerequisite of `make test`): the alert rules and every dashboard query parse, prometheus.yml
loads with its rule file, and the alerts fire (and stay quiet) as documented on synthetic series
(`promtool test rules`).
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from mlmodel_operator.render.deployment import render_deployment
from mlmodel_operator.resource import MLModel
from mlmodel_operator.settings import OperatorSettings
from model_server.drift import DriftGauges
from model_server.metrics import Metrics
from model_server.runtimes.base import ModelInfo

MONITORING = Path(__file__).resolve().parents[2] / "operator" / "deploy" / "monitoring"
RULES = MONITORING / "alert-rules.yaml"
METRIC_NAME = re.compile(r"\b(model_server_[a-z0-9_]+)\b")
DRIFT_METRICS = (
    "model_server_feature_drift_psi",
    "model_server_feature_missing_share",
    "model_server_prediction_drift_psi",
    "model_server_drift_window_rows",
)
ALERTS = ("MLModelFeatureDrift", "MLModelPredictionDrift", "MLModelNoTraffic")


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
    # the drift gauges as a full window of one feature and the outputs sets them
    feature = SimpleNamespace(reference=SimpleNamespace(name="a"), missing_share=0.0, psi=0.01)
    window = SimpleNamespace(rows=1000, features=[feature], output_shares=[1.0], output_psi=0.01)
    DriftGauges(metrics.registry).show(window, min_rows=100)  # type: ignore[arg-type]
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


def test_dashboard_covers_requests_latency_predictions_model_info_and_drift() -> None:
    referenced = {name for expr in dashboard_exprs() for name in METRIC_NAME.findall(expr)}
    for family in (
        "model_server_requests_total",
        "model_server_request_duration_seconds_bucket",
        "model_server_predictions_total",
        "model_server_model_info",
        *DRIFT_METRICS,
    ):
        assert family in referenced


def test_dashboard_drift_panels_mark_the_psi_thresholds() -> None:
    """Panels showing a PSI color it green / orange from 0.1 / red from 0.25."""
    dashboard = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    psi_panels = [
        panel
        for panel in dashboard["panels"]
        if any(
            "_drift_psi" in target["expr"] and not target["expr"].startswith("count(")
            for target in panel["targets"]
        )
    ]
    assert len(psi_panels) >= 2
    for panel in psi_panels:
        steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
        assert [step["value"] for step in steps] == [None, 0.1, 0.25], panel["title"]


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


# --- alert rules --------------------------------------------------------------------------------


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def test_prometheus_yml_loads_the_alert_rules_from_beside_it() -> None:
    config = yaml.safe_load((MONITORING / "prometheus.yml").read_text())
    assert [MONITORING / name for name in config["rule_files"]] == [RULES]


def test_alert_rules_reference_only_metrics_the_server_exposes() -> None:
    exposed = exposed_metric_names()
    rules = alert_rules()
    assert [rule["alert"] for rule in rules] == list(ALERTS)
    for rule in rules:
        referenced = set(METRIC_NAME.findall(rule["expr"]))
        assert referenced, rule["alert"]
        assert referenced <= exposed, f"{rule['alert']}: {sorted(referenced - exposed)}"


def test_alert_annotations_name_only_labels_the_alert_keeps() -> None:
    """Each alert's outermost aggregation keeps the labels its summary and description use, and
    every alert has a severity, a summary and a description (as upstream mixins do)."""
    for rule in alert_rules():
        kept = re.search(r"\bby \(([^)]*)\)", rule["expr"])
        assert kept is not None, rule["alert"]
        labels = {label.strip() for label in kept.group(1).split(",")}
        assert {"namespace", "mlmodel"} <= labels, rule["alert"]
        assert rule["labels"]["severity"] in {"info", "warning", "critical"}
        assert set(rule["annotations"]) == {"summary", "description"}
        used = set(re.findall(r"\$labels\.(\w+)", " ".join(rule["annotations"].values())))
        assert used <= labels, f"{rule['alert']}: {sorted(used - labels)} are aggregated away"


def test_drift_alerts_need_a_major_psi_from_a_full_enough_window() -> None:
    rules = {rule["alert"]: rule for rule in alert_rules()}
    for name in ("MLModelFeatureDrift", "MLModelPredictionDrift"):
        expr = rules[name]["expr"]
        assert re.search(r"\) > 0\.25\s*$", expr), name
        assert "model_server_drift_window_rows >= 200" in expr, name


def promtool() -> str:
    """promtool from the project's Prometheus build (`make e2e-deps`); required."""
    from devcluster.stack import prometheus as build

    path = build.promtool()
    assert path.exists(), f"promtool is not built ({path}): run `make e2e-deps`"
    return str(path)


def run_promtool(*args: str) -> str:
    proc = subprocess.run(
        [promtool(), *args], capture_output=True, text=True, timeout=120, check=False
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"promtool {' '.join(args)}:\n{output}"
    return output


@pytest.mark.prometheus
def test_promtool_checks_the_alert_rules() -> None:
    output = run_promtool("check", "rules", str(RULES))
    assert f"SUCCESS: {len(ALERTS)} rules found" in output


@pytest.mark.prometheus
def test_promtool_checks_prometheus_yml_with_its_rule_file() -> None:
    output = run_promtool("check", "config", str(MONITORING / "prometheus.yml"))
    assert f"SUCCESS: {len(ALERTS)} rules found" in output


GRAFANA_INTERVAL = re.compile(r"\$__(rate_)?interval\b")
GRAFANA_VARIABLE = re.compile(r"\$\w+")
LABEL_VALUES = re.compile(r"^label_values\((.*),\s*\w+\)$")


def as_promql(expr: str) -> str:
    """A dashboard query as Prometheus sees it: Grafana's variables filled in the way Grafana
    does for "All" (regex .*) and a range for $__rate_interval; label_values(selector, label)
    queries the selector."""
    found = LABEL_VALUES.match(expr)
    expr = found.group(1) if found else expr
    return GRAFANA_VARIABLE.sub(".*", GRAFANA_INTERVAL.sub("1m", expr))


@pytest.mark.prometheus
def test_promtool_parses_every_dashboard_query(tmp_path: Path) -> None:
    """Every panel query and variable definition, as a recording rule that promtool checks."""
    exprs = dashboard_exprs()
    rules = [{"record": f"dashboard:query_{i}", "expr": as_promql(e)} for i, e in enumerate(exprs)]
    path = tmp_path / "dashboard-queries.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    output = run_promtool("check", "rules", str(path))
    assert f"SUCCESS: {len(exprs)} rules found" in output


def render(template: str, labels: dict[str, str], value: float) -> str:
    """The annotation templates' two forms, filled in as Prometheus does."""
    out = re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels[m.group(1)], template)
    out = out.replace('{{ $value | printf "%.2f" }}', f"{value:.2f}")
    assert "{{" not in out, f"a template form this test does not know: {template}"
    return out


def expected(alert: str, labels: dict[str, str], value: float = 0.0) -> dict[str, Any]:
    """One firing alert as `promtool test rules` compares it: labels and rendered annotations."""
    rule = next(rule for rule in alert_rules() if rule["alert"] == alert)
    return {
        "exp_labels": {**labels, **rule["labels"]},
        "exp_annotations": {k: render(v, labels, value) for k, v in rule["annotations"].items()},
    }


def series(metric: str, values: str, **labels: str) -> dict[str, str]:
    inner = ", ".join(f'{k}="{v}"' for k, v in labels.items())
    return {"series": f"{metric}{{{inner}}}", "values": values}


def drift_test() -> dict[str, Any]:
    """Models m/iris (major drift of one feature and of its outputs, in a pod with a full
    window; a second pod with more drift but only 150 rows), m/wine (moderate drift only) and
    fresh/iris (major drift on 120 rows): only m/iris alerts, after 5 minutes, with the value of
    its full pod."""
    full = {"namespace": "m", "mlmodel": "iris", "pod": "iris-a"}
    small = {"namespace": "m", "mlmodel": "iris", "pod": "iris-b"}
    wine = {"namespace": "m", "mlmodel": "wine", "pod": "wine-a"}
    fresh = {"namespace": "fresh", "mlmodel": "iris", "pod": "iris-c"}
    psi, rows = "model_server_feature_drift_psi", "model_server_drift_window_rows"
    out_psi = "model_server_prediction_drift_psi"
    inputs = [
        series(psi, "0.4x20", **full, feature="petal_length"),
        series(psi, "0.05x20", **full, feature="sepal_length"),
        series(rows, "1000x20", **full),
        series(out_psi, "0.3x20", **full),
        series(psi, "0.9x20", **small, feature="petal_length"),
        series(psi, "0.9x20", **small, feature="sepal_length"),
        series(rows, "150x20", **small),
        series(out_psi, "0.9x20", **small),
        series(psi, "0.2x20", **wine, feature="alcohol"),
        series(rows, "1000x20", **wine),
        series(out_psi, "0.2x20", **wine),
        series(psi, "0.9x20", **fresh, feature="petal_length"),
        series(rows, "120x20", **fresh),
        series(out_psi, "0.9x20", **fresh),
    ]
    iris = {"namespace": "m", "mlmodel": "iris"}
    petal = {**iris, "feature": "petal_length"}
    return {
        "name": "drift",
        "interval": "1m",
        "input_series": inputs,
        "alert_rule_test": [
            {"eval_time": "4m", "alertname": "MLModelFeatureDrift", "exp_alerts": []},
            {"eval_time": "4m", "alertname": "MLModelPredictionDrift", "exp_alerts": []},
            {
                "eval_time": "10m",
                "alertname": "MLModelFeatureDrift",
                "exp_alerts": [expected("MLModelFeatureDrift", petal, 0.4)],
            },
            {
                "eval_time": "10m",
                "alertname": "MLModelPredictionDrift",
                "exp_alerts": [expected("MLModelPredictionDrift", iris, 0.3)],
            },
        ],
    }


def no_traffic_test() -> dict[str, Any]:
    """m/busy predicts every minute; m/idle predicted once, long ago; m/never never did (no
    predictions series at all); m/new is deployed at 20 m without traffic. Idle and never
    alert after 15 minutes, new 15 minutes after it came up, busy never."""
    info = "model_server_model_info"
    predictions = "model_server_predictions_total"
    served = {"name": "x", "format": "onnx", "digest": "0", "runtime": "onnxruntime"}

    def pod(model: str) -> dict[str, str]:
        return {"namespace": "m", "mlmodel": model, "pod": f"{model}-a"}

    inputs = [
        series(info, "1x40", **pod("busy"), **served),
        series(predictions, "0+10x40", **pod("busy"), protocol="v2"),
        series(info, "1x40", **pod("idle"), **served),
        series(predictions, "5x40", **pod("idle"), protocol="seed"),
        series(info, "1x40", **pod("never"), **served),
        series(info, "_x20 1x20", **pod("new"), **served),
    ]

    def alerts(*models: str) -> list[dict[str, Any]]:
        return [expected("MLModelNoTraffic", {"namespace": "m", "mlmodel": m}) for m in models]

    return {
        "name": "no traffic",
        "interval": "1m",
        "input_series": inputs,
        "alert_rule_test": [
            {"eval_time": "13m", "alertname": "MLModelNoTraffic", "exp_alerts": []},
            {
                "eval_time": "16m",
                "alertname": "MLModelNoTraffic",
                "exp_alerts": alerts("idle", "never"),
            },
            {
                "eval_time": "33m",
                "alertname": "MLModelNoTraffic",
                "exp_alerts": alerts("idle", "never"),
            },
            {
                "eval_time": "37m",
                "alertname": "MLModelNoTraffic",
                "exp_alerts": alerts("idle", "never", "new"),
            },
        ],
    }


@pytest.mark.prometheus
def test_alerts_fire_as_documented_on_synthetic_series(tmp_path: Path) -> None:
    """`promtool test rules` with the shipped rules, `for:` durations and all."""
    path = tmp_path / "alert-tests.yaml"
    tests = {
        "rule_files": [str(RULES)],
        "evaluation_interval": "1m",
        "tests": [drift_test(), no_traffic_test()],
    }
    path.write_text(yaml.safe_dump(tests, sort_keys=False))
    output = run_promtool("test", "rules", str(path))
    assert "SUCCESS" in output
