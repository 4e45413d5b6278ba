"""Drift monitoring (issue 18): the window of recent rows against the card's training reference.

The PSI the server reports (in /metrics and GET .../drift) is checked against the textbook
formula computed here, independently, on the same rows: numeric bins by numpy.histogram on the
card's edges, categories and missing values counted by hand. The window slides (old rows are
evicted), every protocol feeds it (REST and gRPC of a real server process), and it is off, with
no gauges and a 404 saying why, when MODEL_SERVER_DRIFT_WINDOW is 0 or the card has no
reference.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as triton
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from server_process import Server, start, stop, wait_ready
from serverkit import (
    IRIS_FEATURES,
    Artifact,
    describe,
    penguins_inputs,
    ready,
    server_env,
    settings_for,
    write,
)
from sklearn.ensemble import RandomForestClassifier

from mlmodel_artifact import ModelFormat, Task
from mlmodel_artifact.drift import MISSING_BIN, OTHER_BIN, drift_reference
from mlmodel_artifact.schema import InputSchema
from mlmodel_trainer.train import TrainResult
from model_server import drift as server_drift

RNG = np.random.default_rng(18)
WINDOW = 500
DRIFT_METRICS = (
    "model_server_feature_drift_psi",
    "model_server_feature_missing_share",
    "model_server_prediction_drift_psi",
    "model_server_drift_window_rows",
)


# --- the textbook, independently of mlmodel_artifact.drift ------------------------------------


def textbook_psi(expected: list[float], actual: np.ndarray, floor: float = 1e-4) -> float:
    e = np.maximum(np.asarray(expected), floor)
    a = np.maximum(actual, floor)
    return float(np.sum((a - e) * np.log(a / e)))


def histogram_shares(values: np.ndarray, edges: list[float]) -> np.ndarray:
    """Right-closed bins by numpy.histogram (negated: numpy's are [lo, hi)), missing last."""
    values = np.asarray(values, dtype=np.float64)
    present = values[~np.isnan(values)]
    outer = [-np.inf, *edges, np.inf]
    hist, _ = np.histogram(-present, bins=[-x for x in reversed(outer)])
    per_bin = np.append(hist[::-1], np.isnan(values).sum()).astype(float)
    return per_bin / len(values)


def category_shares(values: list[Any], categories: list[str]) -> np.ndarray:
    """A bin per category, then every other string, then missing (None)."""
    per_bin = [sum(v == c for v in values) for c in categories]
    per_bin.append(sum(v is not None and v not in categories for v in values))
    per_bin.append(sum(v is None for v in values))
    return np.asarray(per_bin, dtype=float) / len(values)


def class_shares(labels: list[Any], classes: list[Any]) -> np.ndarray:
    per_bin = [sum(label == c for label in labels) for c in classes]
    per_bin.append(len(labels) - sum(per_bin))
    return np.asarray(per_bin, dtype=float) / len(labels)


# --- what the server says ---------------------------------------------------------------------


def gauges(client: Any) -> dict[tuple[str, str], float]:
    """The drift samples of /metrics by (name, feature label or "")."""
    answer = client.get("/metrics")
    assert answer.status_code == 200
    found = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            if sample.name in DRIFT_METRICS:
                found[(sample.name, sample.labels.get("feature", ""))] = sample.value
    return found


def report(client: Any, name: str) -> dict[str, Any]:
    answer = client.get(f"/v2/models/{name}/drift")
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


# --- a plain numeric model with a reference ----------------------------------------------------


@pytest.fixture(scope="module")
def iris_drift_artifact(
    artifact_root: Path, iris: tuple[np.ndarray, np.ndarray], iris_forest: RandomForestClassifier
) -> Artifact:
    """The iris forest with a drift reference from its training rows and its answers."""
    x, _ = iris
    desc = describe(iris_forest, "iris-drift", x[::15], IRIS_FEATURES, Task.CLASSIFICATION)
    reference = drift_reference(
        InputSchema.numeric(IRIS_FEATURES),
        [x[:, j] for j in range(x.shape[1])],
        iris_forest.predict(x),
        iris_forest.classes_.tolist(),
    )
    desc = desc.model_copy(update={"drift_reference": reference})
    return write(artifact_root, iris_forest, desc, ModelFormat.SKOPS, ModelFormat.ONNX)


@pytest.fixture(scope="module")
def drift_client(
    iris_drift_artifact: Artifact, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient]:
    workdir = tmp_path_factory.mktemp("drift-workdir")
    with ready(settings_for(iris_drift_artifact, workdir, drift_window=WINDOW)) as client:
        yield client


def training_like(iris: tuple[np.ndarray, np.ndarray], n: int) -> np.ndarray:
    """Rows drawn from the training rows (with replacement)."""
    x, _ = iris
    return x[RNG.integers(0, len(x), n)]


def send(client: TestClient, rows: np.ndarray) -> list[Any]:
    """Rows through every REST protocol, in batches of 1 to 97; the labels answered."""
    labels: list[Any] = []
    i, turn = 0, 0
    while i < len(rows):
        size = [1, 7, 97, 3][turn % 4]
        batch = rows[i : i + size].tolist()
        protocol = turn % 3
        if protocol == 0:
            answer = client.post("/predict", json={"inputs": batch})
            assert answer.status_code == 200, answer.text
            labels += answer.json()["predictions"]
        elif protocol == 1:
            answer = client.post("/v1/models/iris-drift:predict", json={"instances": batch})
            assert answer.status_code == 200, answer.text
            labels += answer.json()["predictions"]
        else:
            flat = [v for row in batch for v in row]
            tensor = {"name": "x", "shape": [len(batch), 4], "datatype": "FP64", "data": flat}
            answer = client.post("/v2/models/iris-drift/infer", json={"inputs": [tensor]})
            assert answer.status_code == 200, answer.text
            labels += answer.json()["outputs"][0]["data"]
        i += size
        turn += 1
    return labels


def test_reported_psi_is_the_textbook_formula_on_the_window_rows(
    drift_client: TestClient, iris_drift_artifact: Artifact, iris: tuple[np.ndarray, np.ndarray]
) -> None:
    rows = training_like(iris, WINDOW + 321)
    rows[:, 1] += RNG.normal(0.0, 0.4, len(rows))  # some drift in sepal_width
    labels = send(drift_client, rows)
    window, window_labels = rows[-WINDOW:], labels[-WINDOW:]
    reference = iris_drift_artifact.card.drift_reference
    assert reference is not None and reference.outputs is not None

    found = gauges(drift_client)
    body = report(drift_client, "iris-drift")
    assert found[("model_server_drift_window_rows", "")] == WINDOW == body["rows"]
    assert body["window"] == WINDOW and body["thresholds"] == {"moderate": 0.1, "major": 0.25}
    for j, ref in enumerate(reference.features):
        expected = histogram_shares(window[:, j], ref.edges or [])
        psi = textbook_psi(ref.shares, expected)
        feature = body["features"][j]
        assert feature["name"] == ref.name and feature["kind"] == "numeric"
        assert feature["bins"] == ref.labels and feature["bins"][-1] == MISSING_BIN
        assert feature["reference_shares"] == pytest.approx(ref.shares, abs=1e-12)
        np.testing.assert_allclose(feature["window_shares"], expected, atol=1e-12)
        assert feature["psi"] == pytest.approx(psi, abs=1e-6)
        assert found[("model_server_feature_drift_psi", ref.name)] == pytest.approx(psi, abs=1e-6)
        assert found[("model_server_feature_missing_share", ref.name)] == 0.0
    assert body["features"][1]["psi"] > body["features"][0]["psi"]  # the noisy one moved

    classes = reference.outputs.classes or []
    out_psi = textbook_psi(reference.outputs.shares, class_shares(window_labels, classes))
    assert body["outputs"]["kind"] == "classes"
    assert body["outputs"]["bins"] == [*(str(c) for c in classes), OTHER_BIN]
    assert body["outputs"]["psi"] == pytest.approx(out_psi, abs=1e-6)
    assert found[("model_server_prediction_drift_psi", "")] == pytest.approx(out_psi, abs=1e-6)


def test_the_window_forgets_old_rows(
    drift_client: TestClient, iris: tuple[np.ndarray, np.ndarray]
) -> None:
    send(drift_client, training_like(iris, 2 * WINDOW))
    calm = gauges(drift_client)
    for name in IRIS_FEATURES:
        assert calm[("model_server_feature_drift_psi", name)] < 0.1, name

    shifted = training_like(iris, WINDOW)
    shifted[:, 0] *= 3  # sepal_length tripled
    send(drift_client, shifted)
    moved = gauges(drift_client)
    assert moved[("model_server_feature_drift_psi", "sepal_length")] > 0.25
    for name in IRIS_FEATURES[1:]:
        assert moved[("model_server_feature_drift_psi", name)] < 0.1, name
    assert moved[("model_server_drift_window_rows", "")] == WINDOW

    send(drift_client, training_like(iris, WINDOW))  # a window of normal rows again
    assert gauges(drift_client)[("model_server_feature_drift_psi", "sepal_length")] < 0.1


def test_psi_is_exported_only_once_the_window_holds_enough_rows(
    iris_drift_artifact: Artifact,
    iris: tuple[np.ndarray, np.ndarray],
    tmp_path: Path,
) -> None:
    with ready(settings_for(iris_drift_artifact, tmp_path, drift_window=WINDOW)) as client:
        found = gauges(client)
        assert found[("model_server_drift_window_rows", "")] == 0
        assert ("model_server_feature_drift_psi", "sepal_length") not in found
        send(client, training_like(iris, server_drift.PSI_MIN_ROWS - 1))
        body = report(client, "iris-drift")
        assert body["rows"] == server_drift.PSI_MIN_ROWS - 1 == body["rows_seen"]
        assert body["min_rows"] == server_drift.PSI_MIN_ROWS
        assert body["features"][0]["psi"] is None and body["outputs"]["psi"] is None
        assert ("model_server_feature_drift_psi", "sepal_length") not in gauges(client)
        assert ("model_server_prediction_drift_psi", "") not in gauges(client)
        send(client, training_like(iris, 1))
        found = gauges(client)
        assert found[("model_server_drift_window_rows", "")] == server_drift.PSI_MIN_ROWS
        assert ("model_server_feature_drift_psi", "sepal_length") in found
        assert ("model_server_prediction_drift_psi", "") in found


def test_the_drift_page_takes_the_version_and_refuses_other_models(
    drift_client: TestClient,
) -> None:
    assert drift_client.get("/v2/models/iris-drift/versions/1/drift").status_code == 200
    for path in ("/v2/models/rose/drift", "/v2/models/iris-drift/versions/7/drift"):
        answer = drift_client.get(path)
        assert answer.status_code == 404 and "error" in answer.json()
    paths = drift_client.get("/openapi.json").json()["paths"]
    assert "/v2/models/{name}/drift" in paths
    assert "/v2/models/{name}/versions/{version}/drift" in paths


def test_window_zero_turns_drift_off(iris_drift_artifact: Artifact, tmp_path: Path) -> None:
    with ready(settings_for(iris_drift_artifact, tmp_path, drift_window=0)) as client:
        assert client.app.state.plane._observe is None  # no drift work per request
        assert client.post("/predict", json={"input": [5.1, 3.5, 1.4, 0.2]}).status_code == 200
        text = client.get("/metrics").text
        assert not any(name in text for name in DRIFT_METRICS)
        answer = client.get("/v2/models/iris-drift/drift")
        assert answer.status_code == 404
        assert "MODEL_SERVER_DRIFT_WINDOW is 0" in answer.json()["error"]


def test_a_card_without_a_reference_has_no_drift(iris_client: TestClient) -> None:
    assert iris_client.post("/predict", json={"input": [5.1, 3.5, 1.4, 0.2]}).status_code == 200
    assert not any(name in iris_client.get("/metrics").text for name in DRIFT_METRICS)
    answer = iris_client.get("/v2/models/iris/drift")
    assert answer.status_code == 404
    assert "has no drift_reference" in answer.json()["error"]


def test_an_error_while_binning_stops_drift_not_requests(
    iris_drift_artifact: Artifact, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_: Any) -> Any:
        raise RuntimeError("bins on fire")

    monkeypatch.setattr(server_drift, "feature_bins", broken)
    with ready(settings_for(iris_drift_artifact, tmp_path, drift_window=5)) as client:
        for _ in range(7):  # binning happens later (at the page, a scrape, the 0.5 s tick)
            answer = client.post("/predict", json={"input": [5.1, 3.5, 1.4, 0.2]})
            assert answer.status_code == 200
        answer = client.get("/v2/models/iris-drift/drift")
        assert answer.status_code == 404
        assert (
            "stopped after an unexpected error: RuntimeError: bins on fire"
            in (answer.json()["error"])
        )
        assert client.get("/metrics").status_code == 200


# --- a mixed-type model: categories, booleans, missing values -------------------------------


@pytest.mark.parametrize("compiled", [True, False], ids=["onnx-object-array", "sklearn-frame"])
def test_categories_and_missing_values_are_counted(
    penguins: TrainResult, tmp_path: Path, compiled: bool
) -> None:
    """On the compiled path the model takes an object array, on scikit-learn a DataFrame."""
    from mlmodel_artifact import write_artifact

    uri, card = write_artifact(penguins.model, penguins.description, str(tmp_path / "model"))
    reference = card.drift_reference
    assert reference is not None
    window = 120
    rows = []
    for i in range(150):
        rows.append(
            {
                "island": ["Biscoe", "Dream", "Torgersen", "Atlantis"][i % 4],  # one never seen
                "bill_length_mm": None if i % 5 == 0 else 35.0 + (i % 20),
                "bill_depth_mm": 15.0 + (i % 7) * 0.5,
                "flipper_length_mm": 180.0 + (i % 40),
                "body_mass_g": None if i % 3 == 0 else 3000.0 + 25 * i,
                "sex": [None, "male", "female", "female"][i % 4],
                "year": 2007 + i % 3,
            }
        )
    settings = settings_for(
        Artifact(uri, card), tmp_path / "work", drift_window=window, compiled=compiled
    )
    with ready(settings) as client:
        labels: list[Any] = []
        for start in range(0, len(rows), 23):
            answer = client.post("/predict", json={"inputs": rows[start : start + 23]})
            assert answer.status_code == 200, answer.text
            labels += answer.json()["predictions"]
        body = report(client, card.name)
        found = gauges(client)
        runtime = client.app.state.plane.runtime().metadata.runtime
        assert runtime == ("onnxruntime" if compiled else "sklearn")
    kept = rows[-window:]
    assert body["rows"] == window
    for ref, feature in zip(reference.features, body["features"], strict=True):
        values = [row[ref.name] for row in kept]
        if ref.categories is not None:
            expected = category_shares(values, ref.categories)
        else:
            column = np.array([math.nan if v is None else v for v in values], dtype=float)
            expected = histogram_shares(column, ref.edges or [])
        np.testing.assert_allclose(feature["window_shares"], expected, atol=1e-12)
        missing = sum(v is None for v in values) / window
        assert feature["missing_share"] == pytest.approx(missing, abs=1e-12)
        assert found[("model_server_feature_missing_share", ref.name)] == pytest.approx(missing)
        psi = textbook_psi(ref.shares, expected)
        assert feature["psi"] == pytest.approx(psi, abs=1e-6)
        assert found[("model_server_feature_drift_psi", ref.name)] == pytest.approx(psi, abs=1e-6)
    assert reference.outputs is not None and reference.outputs.classes is not None
    expected = class_shares(labels[-window:], reference.outputs.classes)
    np.testing.assert_allclose(body["outputs"]["window_shares"], expected, atol=1e-12)
    assert body["outputs"]["psi"] == pytest.approx(
        textbook_psi(reference.outputs.shares, expected), abs=1e-6
    )
    island = body["features"][0]
    assert island["bins"] == [*(reference.features[0].categories or []), OTHER_BIN, MISSING_BIN]
    assert island["window_shares"][-2] == pytest.approx(0.25)  # Atlantis: the other bin
    assert body["features"][5]["missing_share"] == pytest.approx(0.25)  # sex: null


def test_grpc_and_rest_both_feed_the_window(penguins_server: Server, penguins: TrainResult) -> None:
    with penguins_server.client() as http:
        before = report(http, "penguins")["rows_seen"]
        inputs, _ = penguins_inputs(penguins, triton.InferInput, 13)
        grpc = triton.InferenceServerClient(penguins_server.grpc_target)
        try:
            grpc.infer("penguins", inputs)
        finally:
            grpc.close()
        row = {
            "island": "Dream", "bill_length_mm": 41.5, "bill_depth_mm": 18.5,
            "flipper_length_mm": 201.0, "body_mass_g": 4000.0, "sex": "male", "year": 2009,
        }  # fmt: skip
        assert http.post("/predict", json={"inputs": [row, row]}).status_code == 200
        assert (
            http.post("/v1/models/penguins:predict", json={"instances": [row]}).status_code == 200
        )
        after = report(http, "penguins")
        assert after["rows_seen"] - before == 13 + 2 + 1
        found = gauges(http)
        assert found[("model_server_drift_window_rows", "")] == after["rows"] > 0
        assert ("model_server_feature_missing_share", "sex") in found


def test_several_workers_export_the_largest_window_values(
    penguins: TrainResult, tmp_path: Path
) -> None:
    """Each worker keeps its own window; /metrics (multiprocess mode) shows one sample per
    feature, the largest of the workers' (multiprocess_mode max), refreshed every 0.5 s."""
    from mlmodel_artifact import write_artifact

    uri, card = write_artifact(penguins.model, penguins.description, str(tmp_path / "model"))
    env = server_env(
        uri,
        card.sha256,
        "penguins",
        tmp_path,
        MODEL_SERVER_WORKERS="2",
        MODEL_SERVER_DRIFT_WINDOW="60",
    )
    row = {
        "island": "Atlantis", "bill_length_mm": None, "bill_depth_mm": 18.5,
        "flipper_length_mm": 201.0, "body_mass_g": 4000.0, "sex": "male", "year": 2009,
    }  # fmt: skip
    server = start(env, tmp_path / "server.log")
    try:
        wait_ready(server)
        for _ in range(40):  # a new connection each time, so both workers get requests
            with server.client() as client:
                answer = client.post("/predict", json={"inputs": [row] * 5})
                assert answer.status_code == 200, answer.text
        time.sleep(3 * server_drift.UPDATE_SECONDS)  # every worker refreshes its gauges
        with server.client() as client:
            text = client.get("/metrics").text
            found = gauges(client)
    finally:
        assert stop(server) == 0, server.output()
    assert found[("model_server_drift_window_rows", "")] == 60
    assert found[("model_server_feature_missing_share", "bill_length_mm")] == 1.0
    assert found[("model_server_feature_drift_psi", "island")] > 0.25  # all "other"
    psi_lines = [line for line in text.splitlines() if line.startswith(DRIFT_METRICS[0] + "{")]
    assert len(psi_lines) == len(card.feature_names)  # one per feature, no pid label
    assert all("pid" not in line for line in psi_lines)


@pytest.mark.parametrize("window", [7, 1000, server_drift.FLUSH_ROWS + 904])
def test_the_window_holds_exactly_the_last_rows_whatever_the_batches(window: int) -> None:
    """Rows a window's worth of newer ones follows are dropped unbinned; a window bigger than
    FLUSH_ROWS bins on the request path: either way the window is the last `window` rows."""
    from prometheus_client import CollectorRegistry

    from model_server.runtimes.base import ModelInfo

    training = RNG.normal(0.0, 1.0, (400, 2))
    reference = drift_reference(
        InputSchema.numeric(["a", "b"]), [training[:, 0], training[:, 1]], None, None
    )
    info = ModelInfo(
        name="m", version="1", format="onnx", digest="0" * 64, task="regression",
        estimator="x", feature_names=("a", "b"), class_labels=None, runtime="onnxruntime",
        compiled=True,
    )  # fmt: skip
    monitor = server_drift.DriftMonitor(window, CollectorRegistry())
    monitor.start(info, reference)
    sent = []
    for size in [1, 3, 700, 1, 2500, 13, 4000, 2, 1, 1, 90, 3000, 5]:
        rows = RNG.normal(0.5, 2.0, (size, 2))
        sent.append(rows)
        monitor.observe(rows, np.zeros(size))
    body = monitor.report()
    assert body is not None
    everything = np.concatenate(sent)
    assert body["rows"] == min(window, len(everything)) and body["rows_seen"] == len(everything)
    for j, ref in enumerate(reference.features):
        expected = histogram_shares(everything[-window:, j], ref.edges or [])
        np.testing.assert_allclose(body["features"][j]["window_shares"], expected, atol=1e-12)
        assert body["features"][j]["psi"] == pytest.approx(textbook_psi(ref.shares, expected))
