"""XGBoost and LightGBM artifacts served: skops load, compiled path (onnxmltools) or scikit-learn
API, string labels answered as strings, and one real server process over loopback."""

from __future__ import annotations

import logging
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from server_process import start, stop, wait_ready
from serverkit import Artifact, settings_for
from sklearn.datasets import load_diabetes, load_wine

from mlmodel_artifact import write_artifact
from mlmodel_trainer.train import TrainConfig, TrainResult, train
from model_server.runtimes import load_runtime
from model_server.storage import fetch_model

FAMILIES = ["xgboost", "lightgbm"]
KINDS = ["barbera", "barolo", "grignolino"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two CSVs: wine (5 numeric features, string labels) and diabetes (regression)."""
    root = tmp_path_factory.mktemp("data")
    wine = load_wine()
    frame = pd.DataFrame(wine.data[:, :5], columns=[f"f{i}" for i in range(5)])
    frame["kind"] = np.array(["barolo", "grignolino", "barbera"])[wine.target]
    frame.to_csv(root / "wine.csv", index=False)
    diabetes = load_diabetes()
    frame = pd.DataFrame(diabetes.data, columns=diabetes.feature_names)
    frame["progression"] = diabetes.target
    frame.to_csv(root / "diabetes.csv", index=False)
    return root


def _trained(data_dir: Path, family: str, target: str) -> TrainResult:
    csv = data_dir / ("wine.csv" if target == "kind" else "diabetes.csv")
    return train(TrainConfig(csv=csv, target=target, estimator=family, params={"n_estimators": 8}))


def _artifact(result: TrainResult, root: Path) -> Artifact:
    uri, card = write_artifact(result.model, result.description, str(root / "model"))
    return Artifact(uri, card)


def _load(artifact: Artifact, tmp_path: Path, **overrides: Any) -> Any:
    settings = settings_for(artifact, tmp_path, **overrides)
    return load_runtime(fetch_model(settings), settings)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("target", ["kind", "progression"])
def test_served_predictions_are_the_in_memory_models(
    family: str, target: str, data_dir: Path, tmp_path: Path
) -> None:
    result = _trained(data_dir, family, target)
    artifact = _artifact(result, tmp_path / "a")
    X = np.asarray(result.split.X_test, dtype=np.float64)
    want = result.model.predict(X)

    plain = _load(artifact, tmp_path / "plain", compiled=False)
    assert (plain.metadata.runtime, plain.metadata.compiled) == ("sklearn", False)
    assert plain.predict(X).tolist() == want.tolist()  # identical, not close

    fast = _load(artifact, tmp_path / "fast")
    assert (fast.metadata.runtime, fast.metadata.compiled) == ("onnxruntime", True)
    if target == "kind":
        assert plain.metadata.class_labels == tuple(KINDS)
        assert set(want.tolist()) <= set(KINDS)
        assert fast.predict(X).tolist() == want.tolist()
        np.testing.assert_array_equal(plain.predict_proba(X), result.model.predict_proba(X))
        np.testing.assert_allclose(fast.predict_proba(X), result.model.predict_proba(X), atol=1e-5)
    else:
        np.testing.assert_allclose(fast.predict(X), want, rtol=1e-5, atol=1e-5)


def test_a_conversion_that_fails_is_declined_with_the_reason_logged(
    data_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    artifact = _artifact(_trained(data_dir, "lightgbm", "kind"), tmp_path / "a")
    settings = settings_for(artifact, tmp_path)

    def broken(estimator: Any, n_features: int) -> Any:
        raise RuntimeError("no converter today")

    with caplog.at_level(logging.WARNING, logger="model_server"):
        runtime = load_runtime(fetch_model(settings), settings, convert=broken)
    assert runtime.metadata.runtime == "sklearn"
    [line] = [m for m in caplog.messages if m.startswith("compiled path off")]
    assert "converting LGBMClassifier to ONNX failed: RuntimeError: no converter today" in line


@pytest.fixture(scope="module")
def live_xgboost(
    data_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Any, TrainResult]]:
    """A real server process serving an XGBoost classifier trained on string labels."""
    root = tmp_path_factory.mktemp("live")
    result = _trained(data_dir, "xgboost", "kind")
    artifact = _artifact(result, root)
    env = {
        "MODEL_SERVER_MODEL_URI": artifact.uri,
        "MODEL_SERVER_MODEL_NAME": "wine",
        "MODEL_SERVER_WORKERS": "1",
        "MODEL_SERVER_WORKDIR": str(root / "work"),
    }
    server = start(env, root / "server.log")
    try:
        wait_ready(server)
        yield server, result
    finally:
        code = stop(server)
    assert code in (0, -signal.SIGTERM), server.output()


def test_xgboost_on_string_labels_answers_strings_over_loopback(
    live_xgboost: tuple[Any, TrainResult],
) -> None:
    server, result = live_xgboost
    rows = np.asarray(result.split.X_test, dtype=np.float64)[:6]
    want = result.model.predict(rows).tolist()
    assert set(want) <= set(KINDS)
    with server.client() as client:
        one = client.post("/predict", json={"input": rows[0].tolist()})
        assert one.status_code == 200, one.text
        assert one.json() == {"prediction": want[0]}
        v1 = client.post("/v1/models/wine:predict", json={"instances": rows.tolist()})
        assert v1.json() == {"predictions": want}
        meta = client.get("/v2/models/wine").json()
        assert meta["platform"] == "onnxruntime"
    assert "compiled path on" in server.output()
