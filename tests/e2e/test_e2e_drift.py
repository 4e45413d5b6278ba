"""e2e on the real node: drift monitoring seen through a real Prometheus with the shipped scrape
config and alert rules. Traffic drawn from the training rows keeps every feature's PSI under 0.1
and no drift alert fires; the same traffic with one feature scaled by 3 raises that feature's
PSI above 0.25 and fires MLModelFeatureDrift for it (the shipped expression; only its `for:` is
shortened, in a copy of the rules), while the other features stay under 0.1."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from devcluster.stack import mlstack

from .e2e_prometheus import MONITORING, alerts, prometheus, query, scrape_config
from .e2e_testlib import Stack

pytestmark = pytest.mark.node

WINDOW = 1000  # MODEL_SERVER_DRIFT_WINDOW's default
BATCH = 100
SCALED = 0  # the feature scaled by 3 (iris: sepal length)
SHORT_FOR = "5s"
SERVER = {"workers": 1}  # one worker, one window: what the pod exports is that window


def training_rows() -> np.ndarray:
    """The training rows of the e2e iris artifact (stack.v1): the same config and seed."""
    from mlmodel_trainer import TrainConfig, train

    return np.asarray(train(TrainConfig()).split.X_train, dtype=float)


def rules_with_short_for(workdir: Path) -> Path:
    """The shipped rules, every `for:` shortened so the test need not wait 5 minutes."""
    rules = yaml.safe_load((MONITORING / "alert-rules.yaml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            rule["for"] = SHORT_FOR
    path = workdir / "alert-rules.yaml"
    path.write_text(yaml.safe_dump(rules, sort_keys=False))
    return path


def send(url: str, rows: np.ndarray) -> None:
    for start in range(0, len(rows), BATCH):
        batch = rows[start : start + BATCH].tolist()
        assert mlstack.predict(url, "v2", "iris", batch) is not None


def feature_psi(prom: str, namespace: str) -> dict[str, float]:
    result = query(prom, f'model_server_feature_drift_psi{{namespace="{namespace}"}}')
    return {s["metric"]["feature"]: float(s["value"][1]) for s in result}


def window_rows(prom: str, namespace: str) -> float:
    result = query(prom, f'model_server_drift_window_rows{{namespace="{namespace}"}}')
    return float(result[0]["value"][1]) if result else -1.0


def drift_alerts(prom: str, namespace: str) -> list[dict[str, Any]]:
    return [
        a
        for a in alerts(prom)
        if a["labels"].get("alertname") == "MLModelFeatureDrift"
        and a["labels"].get("namespace") == namespace
    ]


@pytest.mark.timeout(480)
def test_a_scaled_feature_raises_its_psi_and_fires_the_drift_alert_in_prometheus(
    stack: Stack, model_ns: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = stack.deploy(model_ns, "iris", stack.v1, extra_spec={"server": SERVER})
    features = [name for name, _ in stack.v1.features]
    train = training_rows()
    assert train.shape[1] == len(features)
    rng = np.random.default_rng(18)
    config = scrape_config(stack.kube.kubeconfig, model_ns)
    config["global"]["evaluation_interval"] = "1s"
    config["rule_files"] = [str(rules_with_short_for(tmp_path))]
    with prometheus(config, tmp_path) as prom:
        mlstack.wait_for(
            "Prometheus to scrape the model pod",
            lambda: bool(query(prom, f'up{{namespace="{model_ns}"}} == 1')),
            90,
        )

        # traffic like the training data: a full window of rows drawn from the training rows
        send(url, train[rng.integers(0, len(train), WINDOW)])
        mlstack.wait_for(
            "Prometheus to see a full drift window and every feature's PSI",
            lambda: (
                window_rows(prom, model_ns) >= WINDOW
                and len(feature_psi(prom, model_ns)) == len(features)
            ),
            60,
        )
        time.sleep(3)  # a few rule evaluations on the full window
        calm = feature_psi(prom, model_ns)
        assert max(calm.values()) < 0.1, calm
        assert drift_alerts(prom, model_ns) == []

        # the same traffic, one feature scaled by 3: it fills the window again
        shifted = train[rng.integers(0, len(train), WINDOW)].copy()
        shifted[:, SCALED] *= 3
        send(url, shifted)
        seen: list[Any] = []

        def firing() -> bool:
            seen[:] = drift_alerts(prom, model_ns)
            return any(a["state"] == "firing" for a in seen)

        mlstack.wait_for("MLModelFeatureDrift to fire in Prometheus", firing, 90)
        drifted = feature_psi(prom, model_ns)
    scaled = features[SCALED]
    assert drifted[scaled] > 0.25, drifted
    others = {name: psi for name, psi in drifted.items() if name != scaled}
    assert max(others.values()) < 0.1, drifted
    (alert,) = seen
    assert alert["labels"]["feature"] == scaled
    assert alert["labels"]["mlmodel"] == "iris"
    assert alert["labels"]["severity"] == "warning"
    assert float(alert["value"]) == pytest.approx(drifted[scaled], rel=0.01)
    assert scaled in alert["annotations"]["description"]
    assert f"{model_ns}/iris" in alert["annotations"]["description"]
    with capsys.disabled():
        print(f"\nPSI, training-like traffic: {calm}\nPSI, {scaled} x3: {drifted}")
