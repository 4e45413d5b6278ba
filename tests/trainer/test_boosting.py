"""XGBoost and LightGBM through the trainer: defaults, labels, pipelines, artifacts, ONNX."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import VotingClassifier

from mlmodel_artifact import ModelFormat, Task, load_model, write_artifact
from mlmodel_trainer.errors import TrainerError
from mlmodel_trainer.estimators import build_estimator, encode_labels
from mlmodel_trainer.train import TrainConfig, TrainResult, train

FAMILIES = ["xgboost", "lightgbm"]
FAST = {"n_estimators": 5}


@pytest.fixture(scope="module")
def string_label_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Numeric features, string class labels (no ColumnTransformer: plain float input)."""
    from sklearn.datasets import load_wine

    data = load_wine()
    frame = pd.DataFrame(data.data[:, :5], columns=[f"f{i}" for i in range(5)])
    frame["kind"] = np.array(["barolo", "grignolino", "barbera"])[data.target]
    path = tmp_path_factory.mktemp("csv") / "wine.csv"
    frame.to_csv(path, index=False)
    return path


def _round_trip(result: TrainResult, tmp_path: Path, formats: list[ModelFormat]) -> None:
    """write -> read for each format; skops predicts exactly like the in-memory model."""
    uri, card = write_artifact(result.model, result.description, str(tmp_path / "a"), formats)
    X = result.split.X_test
    for fmt in formats:
        loaded = load_model(Path(uri), format=fmt)  # also: the card's sample reproduces
        assert loaded.warnings == []
        got, want = np.asarray(loaded.model.predict(X)), np.asarray(result.model.predict(X))
        if fmt is ModelFormat.SKOPS:
            assert got.tolist() == want.tolist()
            if card.task is Task.CLASSIFICATION:
                np.testing.assert_array_equal(
                    loaded.model.predict_proba(X), result.model.predict_proba(X)
                )
        elif card.task is Task.CLASSIFICATION:
            assert got.tolist() == want.tolist()
            np.testing.assert_allclose(
                loaded.model.predict_proba(X), result.model.predict_proba(X), atol=1e-5
            )
        else:
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("family", FAMILIES)
def test_defaults_are_seeded_single_threaded_and_quiet(family: str) -> None:
    for task in Task:
        params = build_estimator(family, task, {}, seed=7).get_params()
        assert params["random_state"] == 7
        assert params["n_jobs"] == 1
        assert params["n_estimators"] == 100
        assert params["verbosity" if family == "xgboost" else "verbose"] in (0, -1)
    custom = build_estimator(family, Task.CLASSIFICATION, {"n_estimators": 3, "max_depth": 2}, 1)
    assert (custom.get_params()["n_estimators"], custom.get_params()["max_depth"]) == (3, 2)
    with pytest.raises(TrainerError, match="unknown parameter"):
        build_estimator(family, Task.REGRESSION, {"n_estimator": 3}, seed=1)


def test_only_xgboost_with_other_labels_than_0_to_n_is_wrapped() -> None:
    xgb = build_estimator("xgboost", Task.CLASSIFICATION, {}, seed=0)
    lgb = build_estimator("lightgbm", Task.CLASSIFICATION, {}, seed=0)
    assert encode_labels(xgb, np.array([0, 1, 2, 1])) is xgb
    assert encode_labels(lgb, np.array(["a", "b"])) is lgb
    for labels in (np.array(["a", "b"]), np.array([1, 2, 3]), np.array([True, False])):
        wrapped = encode_labels(xgb, labels)
        assert isinstance(wrapped, VotingClassifier)
        assert wrapped.estimators[0][1] is xgb


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("dataset", ["iris", "breast_cancer", "diabetes"])
def test_numeric_data_round_trips_as_skops_and_onnx(
    family: str, dataset: str, tmp_path: Path
) -> None:
    result = train(TrainConfig(dataset=dataset, estimator=family, params=FAST))
    _round_trip(result, tmp_path, [ModelFormat.SKOPS, ModelFormat.ONNX])


@pytest.mark.parametrize("family", FAMILIES)
def test_string_labels_stay_strings_in_card_sample_and_predictions(
    family: str, string_label_csv: Path, tmp_path: Path
) -> None:
    result = train(
        TrainConfig(csv=string_label_csv, target="kind", estimator=family, params=FAST, seed=3)
    )
    description = result.description
    assert description.estimator == ("XGBClassifier" if family == "xgboost" else "LGBMClassifier")
    assert description.class_labels == ["barbera", "barolo", "grignolino"]
    assert set(description.sample.outputs) <= {"barbera", "barolo", "grignolino"}
    predictions = result.model.predict(result.split.X_test)
    assert set(predictions.tolist()) <= {"barbera", "barolo", "grignolino"}
    # plain numeric input: ONNX converts (the VotingClassifier around XGBoost too)
    _round_trip(result, tmp_path, [ModelFormat.SKOPS, ModelFormat.ONNX])


@pytest.mark.parametrize("family", FAMILIES)
def test_penguins_pipeline_round_trips_as_skops_and_onnx(family: str, tmp_path: Path) -> None:
    result = train(TrainConfig(dataset="penguins", estimator=family, params=FAST))
    assert result.description.class_labels == ["Adelie", "Chinstrap", "Gentoo"]
    assert "Pipeline" in result.built
    if family == "xgboost":
        assert "XGBClassifier on encoded labels" in result.built
    # the ONNX graph takes one input per feature (strings for island and sex, NaN for gaps)
    _round_trip(result, tmp_path, [ModelFormat.SKOPS, ModelFormat.ONNX])


@pytest.mark.parametrize("family", FAMILIES)
def test_same_seed_same_model_and_bad_params_fail_at_fit(family: str) -> None:
    config = TrainConfig(dataset="diabetes", estimator=family, params={"n_estimators": 5})
    first, second = train(config), train(config)
    X = first.split.X_test
    assert first.model.predict(X).tolist() == second.model.predict(X).tolist()
    with pytest.raises(TrainerError, match="training .* failed"):
        train(TrainConfig(dataset="iris", estimator=family, params={"subsample": 5.0}))
