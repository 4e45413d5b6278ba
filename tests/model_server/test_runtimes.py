"""Every runtime and the compiled fast path: agreement check and fallback with a log line."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from serverkit import Artifact, settings_for
from sklearn.ensemble import RandomForestClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import PolynomialFeatures, StandardScaler
from sklearn.svm import SVC

from mlmodel_artifact import ArtifactError, ModelFormat, OnnxModel, Task
from mlmodel_artifact.compiled import compile_estimator, disagreement, supported
from model_server.errors import InvalidInput
from model_server.lifecycle import INLINE_ROWS_CAP, inline_rows, load_and_warm
from model_server.runtimes import load_runtime
from model_server.storage import fetch_model, local_uri

ROWS = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]])


def load(artifact: Artifact, tmp_path: Path, **overrides: Any) -> Any:
    settings = settings_for(artifact, tmp_path, **overrides)
    return load_runtime(fetch_model(settings), settings)


def test_skops_artifact_is_served_through_the_compiled_path(
    iris_artifact: Artifact, iris_forest: RandomForestClassifier, tmp_path: Path
) -> None:
    runtime = load(iris_artifact, tmp_path)
    info = runtime.metadata
    assert (info.format, info.runtime, info.compiled) == ("skops", "onnxruntime", True)
    assert runtime.predict(ROWS).tolist() == iris_forest.predict(ROWS).tolist()
    np.testing.assert_allclose(
        runtime.predict_proba(ROWS), iris_forest.predict_proba(ROWS), atol=1e-5
    )


def test_compiled_off_serves_plain_scikit_learn(
    iris_artifact: Artifact, iris_forest: RandomForestClassifier, tmp_path: Path
) -> None:
    runtime = load(iris_artifact, tmp_path, compiled=False)
    assert (runtime.metadata.runtime, runtime.metadata.compiled, runtime.fast) == (
        "sklearn", False, False,
    )  # fmt: skip
    assert runtime.predict_proba(ROWS).tolist() == iris_forest.predict_proba(ROWS).tolist()


def test_joblib_artifact_loads_when_its_digest_is_pinned(
    iris_artifact: Artifact, iris_forest: RandomForestClassifier, tmp_path: Path
) -> None:
    pin = iris_artifact.card.files[ModelFormat.JOBLIB].sha256
    runtime = load(iris_artifact, tmp_path, model_format="joblib", model_sha256=pin)
    assert runtime.metadata.format == "joblib"
    assert runtime.metadata.digest == pin
    assert runtime.predict(ROWS).tolist() == iris_forest.predict(ROWS).tolist()


def test_joblib_artifact_is_refused_without_a_pinned_digest(
    iris_artifact: Artifact, tmp_path: Path
) -> None:
    with pytest.raises(ArtifactError) as caught:
        load(iris_artifact, tmp_path, model_format="joblib")
    assert caught.value.reason == "UntrustedType"
    assert "MODEL_SERVER_MODEL_SHA256" in str(caught.value)


def test_a_wrong_pinned_digest_stops_the_load(iris_artifact: Artifact, tmp_path: Path) -> None:
    with pytest.raises(ArtifactError) as caught:
        load(iris_artifact, tmp_path, model_sha256="0" * 64)
    assert caught.value.reason == "ArtifactDigestMismatch"


def test_onnx_artifact_runs_on_onnx_runtime(
    iris_artifact: Artifact, iris_forest: RandomForestClassifier, tmp_path: Path
) -> None:
    runtime = load(iris_artifact, tmp_path, model_format="onnx")
    info = runtime.metadata
    assert (info.format, info.runtime, info.compiled, runtime.fast) == (
        "onnx", "onnxruntime", False, True,
    )  # fmt: skip
    assert runtime.predict(ROWS).tolist() == iris_forest.predict(ROWS).tolist()
    labels, proba = runtime.predict_both(ROWS)
    assert labels.tolist() == iris_forest.predict(ROWS).tolist()
    np.testing.assert_allclose(proba, iris_forest.predict_proba(ROWS), atol=1e-5)


def test_regression_models_compile_and_have_no_probabilities(
    regression_artifact: Artifact, tmp_path: Path
) -> None:
    runtime = load(regression_artifact, tmp_path)
    assert runtime.metadata.compiled
    rows = np.asarray(regression_artifact.card.sample.inputs)
    np.testing.assert_allclose(
        runtime.predict(rows), regression_artifact.card.sample.outputs, rtol=1e-5
    )
    with pytest.raises(InvalidInput, match="regression model; it has no class probabilities"):
        runtime.predict_proba(rows)


def test_string_labels_survive_the_compiled_path(
    string_label_artifact: Artifact, tmp_path: Path
) -> None:
    runtime = load(string_label_artifact, tmp_path)
    assert runtime.metadata.compiled
    assert runtime.predict(ROWS).tolist() == ["setosa", "virginica", "versicolor"]


def test_unsupported_estimators_fall_back_to_scikit_learn_with_a_log_line(
    knn_artifact: Artifact, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="model_server"):
        runtime = load(knn_artifact, tmp_path)
    assert runtime.metadata.runtime == "sklearn"
    assert (
        "compiled path off, serving with scikit-learn: KNeighborsClassifier is not a tree "
        "ensemble or linear model" in caplog.messages
    )


def test_a_compiled_model_that_disagrees_falls_back_with_a_log_line(
    float32_trap_artifact: Artifact, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="model_server"):
        runtime = load(float32_trap_artifact, tmp_path)
    assert runtime.metadata.runtime == "sklearn"
    assert runtime.predict(np.array([[100000002.0]])).tolist() == [1]
    [line] = [m for m in caplog.messages if m.startswith("compiled path off")]
    assert "ONNX Runtime disagrees with scikit-learn" in line
    assert "row [100000002.0] gives label 0 instead of 1" in line


def test_a_converter_that_fails_leaves_scikit_learn_in_place(
    iris_artifact: Artifact, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(estimator: Any, n_features: int) -> Any:
        raise RuntimeError("no converter for this estimator")

    settings = settings_for(iris_artifact, tmp_path)
    with caplog.at_level(logging.WARNING, logger="model_server"):
        runtime = load_runtime(fetch_model(settings), settings, convert=broken)
    assert runtime.metadata.runtime == "sklearn"
    assert any("RuntimeError: no converter for this estimator" in m for m in caplog.messages)


def test_agreement_check_catches_a_graph_of_another_model(
    iris_artifact: Artifact, iris: tuple[np.ndarray, np.ndarray], iris_forest: Any
) -> None:
    x, y = iris
    other = RandomForestClassifier(n_estimators=3, max_depth=1, random_state=1).fit(x, y)
    outcome = compile_estimator(
        iris_forest, iris_artifact.card, convert=lambda _, n: OnnxModel.from_sklearn(other, n)
    )
    assert outcome.model is None
    assert outcome.reason.startswith("ONNX Runtime disagrees with scikit-learn")


def test_agreement_check_compares_probabilities_within_tolerance(
    iris: tuple[np.ndarray, np.ndarray], iris_forest: Any
) -> None:
    x, _ = iris
    graph = OnnxModel.from_sklearn(iris_forest, 4)
    assert disagreement(iris_forest, graph, x, Task.CLASSIFICATION) == ""

    class Shifted:
        """The same labels, probabilities moved by 1e-3."""

        def predict(self, rows: Any) -> Any:
            return graph.predict(rows)

        def predict_proba(self, rows: Any) -> Any:
            return graph.predict_proba(rows) + 1e-3

    assert "probabilities differ by up to 1.00e-03" in disagreement(
        iris_forest, Shifted(), x, Task.CLASSIFICATION
    )


def test_only_tree_ensembles_linear_models_and_scaled_pipelines_are_compiled() -> None:
    assert supported(RandomForestClassifier())
    assert supported(make_pipeline(StandardScaler(), RandomForestClassifier()))
    assert not supported(SVC())
    assert not supported(make_pipeline(PolynomialFeatures(), RandomForestClassifier()))


def test_warm_up_keeps_scikit_learn_predictions_off_the_event_loop(
    iris_artifact: Artifact, tmp_path: Path
) -> None:
    runtime = load_and_warm(settings_for(iris_artifact, tmp_path, compiled=False))
    assert runtime.inline_rows == 0
    compiled = load_and_warm(settings_for(iris_artifact, tmp_path))
    assert 0 <= compiled.inline_rows <= INLINE_ROWS_CAP


@pytest.mark.parametrize(
    ("one_s", "batch_s", "expected"),
    [
        (10e-6, 10e-6 + 63 * 1e-6, 990),  # 10 us a call, 1 us a row: 990 rows fit 1 ms
        (10e-6, 10e-6 + 63 * 1e-9, INLINE_ROWS_CAP),  # nearly free rows: capped
        (2e-3, 3e-3, 0),  # one row alone is over budget: always a thread
    ],
)
def test_inline_rows_fit_the_event_loop_budget(one_s: float, batch_s: float, expected: int) -> None:
    assert inline_rows(one_s, batch_s, 64) == expected


def test_pvc_uris_map_to_the_operator_mount() -> None:
    assert local_uri("pvc://models/iris/v1") == "/mnt/models/iris/v1"
    assert local_uri("s3://bucket/iris") == "s3://bucket/iris"
