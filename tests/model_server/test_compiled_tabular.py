"""The compiled path for mixed-type pipelines (issue 14): a graph with one ONNX input per feature
fed by the typed path, the typed agreement check, and each way it is declined with the reason
logged (scikit-learn then serves, answering the same)."""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from serverkit import Artifact, settings_for
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, PolynomialFeatures

from mlmodel_artifact import FeatureKind, InputSchema, OnnxModel, write_artifact
from mlmodel_artifact.compiled import (
    PROBA_TOLERANCE,
    UNSEEN_CATEGORY,
    compile_estimator,
    typed_agreement_rows,
)
from mlmodel_artifact.schema import (
    MISSING_CATEGORY,
    encode_rows,
    frame_rows,
    model_input,
    normalize_frame,
)
from mlmodel_trainer.train import TrainConfig, TrainResult, train
from model_server.runtimes import load_runtime
from model_server.storage import fetch_model

FAMILIES = ["random_forest", "xgboost", "lightgbm", "logistic_regression"]
SMALL = {"random_forest": {"n_estimators": 20}, "xgboost": {"n_estimators": 20}}


@functools.cache
def penguins(family: str) -> TrainResult:
    params = SMALL.get(family, {"n_estimators": 20} if family == "lightgbm" else {})
    return train(TrainConfig(dataset="penguins", estimator=family, params=params))


def artifact(result: TrainResult, root: Path) -> Artifact:
    uri, card = write_artifact(result.model, result.description, str(root / "model"))
    return Artifact(uri, card)


def load(art: Artifact, tmp_path: Path, **overrides: Any) -> Any:
    settings = settings_for(art, tmp_path / "work", **overrides)
    return load_runtime(fetch_model(settings), settings)


def client_rows(result: TrainResult, schema: InputSchema) -> list[list[Any]]:
    """Held-out rows as JSON values, plus a row with every nullable feature null and one with
    categories never seen in training."""
    rows = frame_rows(result.split.X_test, schema)
    gaps = [None if f.nullable else rows[0][j] for j, f in enumerate(schema.features)]
    unseen = [
        "Atlantis" if f.kind is FeatureKind.CATEGORICAL else rows[1][j]
        for j, f in enumerate(schema.features)
    ]
    return [*rows, gaps, unseen]


def in_memory(model: Any, rows: list[list[Any]], schema: InputSchema) -> pd.DataFrame:
    return normalize_frame(pd.DataFrame(rows, columns=schema.names), schema)


@pytest.mark.parametrize("family", FAMILIES)
def test_each_family_behind_the_column_transformer_is_compiled_and_answers_like_sklearn(
    family: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    result = penguins(family)
    art = artifact(result, tmp_path)
    schema = art.card.feature_schema
    with caplog.at_level(logging.INFO, logger="model_server"):
        runtime = load(art, tmp_path)
    info = runtime.metadata
    assert (info.runtime, info.compiled, runtime.fast) == ("onnxruntime", True, True)
    assert isinstance(runtime.model, OnnxModel)
    assert runtime.model.input_names == schema.names  # one input per feature
    assert info.schema == schema and not info.frame  # the typed path, an object array
    assert any(m.startswith("compiled path on: ONNX Runtime agrees") for m in caplog.messages)

    rows = client_rows(result, schema)
    x = model_input(encode_rows(schema, rows), frame=False)
    frame = in_memory(result.model, rows, schema)
    assert runtime.predict(x).tolist() == result.model.predict(frame).tolist()
    labels, proba = runtime.predict_both(x)
    assert labels.tolist() == result.model.predict(frame).tolist()
    np.testing.assert_allclose(
        proba, result.model.predict_proba(frame), rtol=0, atol=PROBA_TOLERANCE
    )


def test_a_regression_pipeline_with_text_booleans_and_gaps_is_compiled(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    n = 300
    frame = pd.DataFrame(
        {
            "income": rng.normal(50_000, 15_000, n).round(2),
            "city": rng.choice(["Oslo", "Bergen", "Tromsø"], n),
            "member": rng.random(n) < 0.4,
            "tenure": rng.integers(0, 120, n),
        }
    )
    frame["spend"] = frame["income"] / 1000 + np.where(frame["member"], 20.0, 0.0) + frame["tenure"]
    frame.loc[rng.random(n) < 0.05, "income"] = np.nan
    frame.loc[rng.random(n) < 0.05, "city"] = None
    csv = tmp_path / "spend.csv"
    frame.to_csv(csv, index=False)
    result = train(TrainConfig(csv=csv, target="spend", params={"n_estimators": 20}))
    art = artifact(result, tmp_path)
    schema = art.card.feature_schema
    assert [f.kind for f in schema.features] == [
        FeatureKind.NUMERIC, FeatureKind.CATEGORICAL, FeatureKind.BOOLEAN, FeatureKind.NUMERIC,
    ]  # fmt: skip
    runtime = load(art, tmp_path)
    assert runtime.metadata.compiled
    rows: list[list[Any]] = [
        *frame_rows(result.split.X_test, schema),
        [None, None, True, 7],
        [1.0, "Paris", False, 0],
    ]
    got = runtime.predict(model_input(encode_rows(schema, rows), frame=False))
    want = result.model.predict(in_memory(result.model, rows, schema))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_agreement_rows_cover_every_category_an_unseen_one_and_nulls_where_allowed(
    tmp_path: Path,
) -> None:
    card = artifact(penguins("random_forest"), tmp_path).card
    schema = card.feature_schema
    columns = typed_agreement_rows(card, schema)
    sample = len(card.sample.inputs)
    assert len(columns) == sample + 256
    # the card's sample rows come first, unchanged
    first = encode_rows(schema, card.sample.inputs)
    for got, want in zip(columns.arrays, first.arrays, strict=True):
        assert pd.Series(got[:sample]).equals(pd.Series(want))
    for feature, values in zip(schema.features, columns.arrays, strict=True):
        generated = pd.Series(values[sample:])
        assert generated.isna().any() == feature.nullable, feature.name
        if feature.kind is FeatureKind.CATEGORICAL:
            assert set(generated.dropna()) == {*(feature.categories or []), UNSEEN_CATEGORY}


def test_missing_categories_reach_the_graph_as_the_sentinel_its_imputers_look_for() -> None:
    frame = pd.DataFrame(
        {"colour": ["red", "red", "blue", None, "red", "green"], "size": [1.0, 2, 3, 4, 5, 6]}
    )
    y = [0, 0, 1, 1, 0, 1]
    schema = InputSchema.model_validate(
        {
            "features": [
                {"name": "colour", "kind": "categorical", "nullable": True},
                {"name": "size"},
            ]
        }
    )
    frame = normalize_frame(frame, schema)
    pipeline = Pipeline(
        [
            (
                "pre",
                ColumnTransformer(
                    [
                        (
                            "cat",
                            Pipeline(
                                [
                                    ("impute", SimpleImputer(strategy="most_frequent")),
                                    ("onehot", OneHotEncoder(handle_unknown="ignore")),
                                ]
                            ),
                            ["colour"],
                        ),
                        ("num", "passthrough", ["size"]),
                    ]
                ),
            ),
            ("model", RandomForestClassifier(n_estimators=5, random_state=0)),
        ]
    ).fit(frame, y)
    graph = OnnxModel.from_sklearn(pipeline, 2, schema)
    # the fitted pipeline is left as it was: its imputer still looks for NaN
    assert np.isnan(pipeline.steps[0][1].transformers_[0][1].steps[0][1].missing_values)
    missing = model_input(encode_rows(schema, [[None, 2.0], ["blue", 3.0]]), frame=False)
    want = pipeline.predict_proba(in_memory(pipeline, [[None, 2.0], ["blue", 3.0]], schema))
    np.testing.assert_allclose(graph.predict_proba(missing), want, atol=PROBA_TOLERANCE)
    # a client cannot send the sentinel itself
    with pytest.raises(ValueError, match="NUL character"):
        encode_rows(schema, [[MISSING_CATEGORY, 1.0]])


def test_a_step_outside_imputers_encoders_and_scalers_is_declined_naming_it(
    tmp_path: Path,
) -> None:
    result = penguins("random_forest")
    card = artifact(result, tmp_path).card
    pre = result.model.steps[0][1]
    odd = Pipeline(
        [
            ("pre", pre),
            ("poly", PolynomialFeatures(degree=2)),
            ("model", result.model.steps[-1][1]),
        ]
    )
    outcome = compile_estimator(odd, card, schema=card.feature_schema)
    assert outcome.model is None
    assert (
        outcome.reason == "the pipeline's PolynomialFeatures is not an imputer, encoder or scaler"
    )


def test_a_failed_conversion_is_declined_logged_and_sklearn_answers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    result = penguins("random_forest")
    art = artifact(result, tmp_path)
    schema = art.card.feature_schema

    def broken(estimator: Any, n_features: int) -> Any:
        raise RuntimeError("no converter for this")

    with caplog.at_level(logging.WARNING, logger="model_server"):
        settings = settings_for(art, tmp_path / "work")
        runtime = load_runtime(fetch_model(settings), settings, broken)
    assert (runtime.metadata.runtime, runtime.metadata.compiled) == ("sklearn", False)
    assert (
        "compiled path off, serving with scikit-learn: converting Pipeline to ONNX failed: "
        "RuntimeError: no converter for this" in caplog.messages
    )
    rows = client_rows(result, schema)
    x = model_input(encode_rows(schema, rows), frame=runtime.metadata.frame)
    assert (
        runtime.predict(x).tolist() == result.model.predict(in_memory(None, rows, schema)).tolist()
    )


def test_a_graph_that_disagrees_is_declined_with_the_row_that_differs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    forest, other = penguins("random_forest"), penguins("logistic_regression")
    art = artifact(forest, tmp_path)
    schema = art.card.feature_schema

    def wrong(estimator: Any, n_features: int) -> Any:
        return OnnxModel.from_sklearn(other.model, n_features, schema)

    with caplog.at_level(logging.WARNING, logger="model_server"):
        settings = settings_for(art, tmp_path / "work")
        runtime = load_runtime(fetch_model(settings), settings, wrong)
    assert runtime.metadata.runtime == "sklearn"
    [line] = [m for m in caplog.messages if m.startswith("compiled path off")]
    assert "ONNX Runtime disagrees with scikit-learn: " in line
    assert "rows differ; row [" in line or "probabilities differ" in line
