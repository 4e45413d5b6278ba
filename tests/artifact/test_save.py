"""`mlmodel_artifact.save`: a notebook's fitted model becomes an artifact the server accepts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import make_column_transformer
from sklearn.datasets import load_diabetes, load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import accuracy_score, f1_score, mean_absolute_error, r2_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder

from mlmodel_artifact import (
    ArtifactError,
    FeatureKind,
    ModelFormat,
    PackageError,
    Task,
    encode_rows,
    load_model,
    model_input,
    read_model_card,
    save,
    sha256_file,
)


@pytest.fixture(scope="module")
def iris() -> pd.DataFrame:
    frame: pd.DataFrame = load_iris(as_frame=True).frame
    return frame.rename(columns={"target": "species"})


@pytest.fixture(scope="module")
def forest(iris: pd.DataFrame) -> RandomForestClassifier:
    """Fitted on a DataFrame, as in a notebook: it records its feature names."""
    return RandomForestClassifier(n_estimators=10, random_state=0).fit(
        iris.drop(columns=["species"]), iris["species"]
    )


def mixed_frame() -> tuple[pd.DataFrame, np.ndarray]:
    """Text, booleans and gaps: what a real table looks like."""
    rng = np.random.default_rng(0)
    n = 60
    frame = pd.DataFrame(
        {
            "size": rng.normal(10, 3, n),
            "colour": rng.choice(["red", "green", "blue"], n).astype(object),
            "sold": rng.choice([True, False], n),
        }
    )
    frame.loc[[3, 17], "size"] = np.nan
    frame.loc[[5, 40], "colour"] = None
    y = np.where(frame["colour"].eq("red") | (frame["size"] > 11), "yes", "no")
    return frame, y


def mixed_pipeline(frame: pd.DataFrame, y: np.ndarray) -> Any:
    pre = make_column_transformer(
        (SimpleImputer(strategy="median"), ["size"]),
        (
            make_pipeline(
                SimpleImputer(strategy="most_frequent"), OneHotEncoder(handle_unknown="ignore")
            ),
            ["colour"],
        ),
        ("passthrough", ["sold"]),
    )
    return make_pipeline(pre, LogisticRegression(max_iter=500)).fit(frame, y)


def test_save_writes_a_skops_artifact_that_loads_and_predicts_like_the_model(
    tmp_path: Path, iris: pd.DataFrame, forest: RandomForestClassifier
) -> None:
    uri, card = save(forest, str(tmp_path / "iris-rf"), sample=iris, target="species")

    assert uri == str(tmp_path / "iris-rf")
    assert card == read_model_card(uri)
    assert (card.name, card.task, card.format) == ("iris-rf", Task.CLASSIFICATION, "skops")
    assert card.estimator == "RandomForestClassifier" and card.params["n_estimators"] == 10
    assert card.feature_names == list(forest.feature_names_in_)
    assert card.class_labels == [0, 1, 2]
    assert card.sha256 == sha256_file(tmp_path / "iris-rf" / "model.skops")
    X, y = iris.drop(columns=["species"]), iris["species"]
    assert card.metrics == {
        "accuracy": accuracy_score(y, forest.predict(X)),
        "f1_macro": f1_score(y, forest.predict(X), average="macro"),
    }
    assert card.training.n_test == len(iris)
    assert card.input_schema is not None and card.input_schema.plain_numeric
    assert len(card.sample.inputs) == 5 and card.sample.probabilities is not None
    # iris is sorted by class: the sample still shows every class the model predicts
    assert set(card.sample.outputs) == {0, 1, 2}

    loaded = load_model(Path(uri))
    assert loaded.format is ModelFormat.SKOPS
    np.testing.assert_array_equal(loaded.model.predict(X), forest.predict(X))
    np.testing.assert_allclose(loaded.model.predict_proba(X), forest.predict_proba(X))


def test_a_model_fitted_on_a_matrix_takes_the_samples_column_names(tmp_path: Path) -> None:
    data = load_diabetes(as_frame=True)
    model = Ridge().fit(data.data.to_numpy(), data.target.to_numpy())  # no feature names
    uri, card = save(model, str(tmp_path / "d"), sample=data.data, target=data.target.to_numpy())

    assert card.task is Task.REGRESSION and card.class_labels is None
    assert card.feature_names == list(data.data.columns)
    predicted = model.predict(data.data.to_numpy())
    assert card.metrics == pytest.approx(
        {
            "r2": r2_score(data.target, predicted),
            "mae": mean_absolute_error(data.target, predicted),
        }
    )
    loaded = load_model(Path(uri))
    np.testing.assert_allclose(loaded.model.predict(data.data.to_numpy()), predicted)


def test_a_pipeline_on_a_mixed_type_frame_is_saved_with_its_schema(tmp_path: Path) -> None:
    frame, y = mixed_frame()
    pipeline = mixed_pipeline(frame, y)
    uri, card = save(
        pipeline, str(tmp_path / "shop"), sample=frame.assign(bought=y), target="bought"
    )

    schema = card.feature_schema
    kinds = {f.name: (f.kind, f.nullable) for f in schema.features}
    assert kinds == {
        "size": (FeatureKind.NUMERIC, True),
        "colour": (FeatureKind.CATEGORICAL, True),
        "sold": (FeatureKind.BOOLEAN, False),
    }
    assert schema.features[1].categories == ["blue", "green", "red"]
    assert card.estimator == "LogisticRegression" and card.class_labels == ["no", "yes"]
    assert card.format is ModelFormat.SKOPS
    # One sample row has a gap, so every reader checks that the model takes missing values.
    assert any(None in row for row in card.sample.inputs)

    loaded = load_model(Path(uri))
    served = model_input(encode_rows(schema, _rows(frame)), frame=True)
    np.testing.assert_array_equal(loaded.model.predict(served), pipeline.predict(served))
    assert card.metrics["accuracy"] == accuracy_score(y, pipeline.predict(served))

    # the drift reference comes from the sample (all package sees) and the model's answers
    reference = card.drift_reference
    assert reference is not None
    by_name = {f.name: f for f in reference.features}
    assert by_name["colour"].categories == sorted(
        by_name["colour"].categories or [], key=lambda c: -int((frame["colour"] == c).sum())
    )
    assert by_name["sold"].labels == ["false", "true", "__missing__"]
    assert by_name["size"].shares[-1] == pytest.approx(frame["size"].isna().mean())
    assert reference.outputs is not None and reference.outputs.classes == ["no", "yes"]
    predicted = pipeline.predict(served)
    assert reference.outputs.shares[:2] == pytest.approx(
        [float((predicted == "no").mean()), float((predicted == "yes").mean())]
    )


def _rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """The frame's rows as a request sends them (None for gaps, Python scalars)."""
    records: list[dict[str, Any]] = (
        frame.astype(object).where(frame.notna(), None).to_dict("records")
    )
    return [{k: (bool(v) if isinstance(v, np.bool_) else v) for k, v in r.items()} for r in records]


def test_a_model_with_types_off_the_allow_list_is_saved_as_joblib_with_a_pin_warning(
    tmp_path: Path, iris: pd.DataFrame
) -> None:
    X, y = iris.drop(columns=["species"]), iris["species"]
    model = make_pipeline(FunctionTransformer(np.log1p), LogisticRegression(max_iter=500)).fit(X, y)
    with pytest.warns(UserWarning, match="spec.model.sha256: [0-9a-f]{64}") as caught:
        uri, card = save(model, str(tmp_path / "logs"), sample=X)

    assert card.format is ModelFormat.JOBLIB and list(card.files) == [ModelFormat.JOBLIB]
    assert card.sha256 in str(caught[0].message) and "numpy.log1p" in str(caught[0].message)
    assert card.metrics == {}  # no target, no metrics
    with pytest.raises(ArtifactError) as unpinned:
        load_model(Path(uri))
    assert unpinned.value.reason == "UntrustedType"
    loaded = load_model(Path(uri), expected_sha256=card.sha256)
    np.testing.assert_array_equal(loaded.model.predict(X), model.predict(X))


def test_explicit_formats_are_written_first_primary(
    tmp_path: Path, iris: pd.DataFrame, forest: RandomForestClassifier
) -> None:
    uri, card = save(
        forest, str(tmp_path / "two"), sample=iris, target="species", formats=["joblib", "skops"]
    )
    assert card.format is ModelFormat.JOBLIB
    # and the ONNX form, checked against the forest as it was written
    assert set(card.files) == {"joblib", "skops", "onnx"} and card.onnx_check.agrees
    assert load_model(Path(uri), format="skops").card.sha256 == card.sha256


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda s: s.drop(columns=["petal width (cm)"]),
            "the sample lacks the model's feature column(s) 'petal width (cm)'",
        ),
        (
            lambda s: s.assign(row_id=range(len(s))),
            "the sample has column(s) the model was not fitted on: 'row_id'",
        ),
    ],
)
def test_sample_columns_that_do_not_match_the_model_are_refused_by_name(
    tmp_path: Path, iris: pd.DataFrame, forest: RandomForestClassifier, change: Any, message: str
) -> None:
    with pytest.raises(PackageError, match=message.replace("(", r"\(").replace(")", r"\)")):
        save(forest, str(tmp_path / "x"), sample=change(iris), target="species")
    assert not (tmp_path / "x").exists()


def test_a_matrix_model_refuses_a_sample_of_another_width(tmp_path: Path) -> None:
    data = load_diabetes(as_frame=True)
    model = Ridge().fit(data.data.to_numpy(), data.target.to_numpy())
    with pytest.raises(PackageError, match="takes 10 features but the sample has 11 .* target"):
        save(model, str(tmp_path / "d"), sample=data.frame)


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("kind", "the sample has no target column 'kind'; its columns are: 'sepal length"),
        ("petal width (cm)", "is one of the model's input features"),
        ("label", "the target 'label' holds none of the model's classes"),
    ],
)
def test_a_wrong_target_is_refused(
    tmp_path: Path, iris: pd.DataFrame, forest: RandomForestClassifier, target: str, message: str
) -> None:
    sample = iris.assign(label=iris["species"].map({0: "a", 1: "b", 2: "c"}))
    with pytest.raises(PackageError, match=message.replace("(", r"\(").replace(")", r"\)")):
        save(forest, str(tmp_path / "x"), sample=sample.drop(columns=["species"]), target=target)


def test_a_regressors_target_must_be_numbers(tmp_path: Path) -> None:
    data = load_diabetes(as_frame=True)
    model = Ridge().fit(data.data, data.target)
    sample = data.data.assign(target=["high"] * len(data.data))
    with pytest.raises(PackageError, match="the target 'target' is not numeric"):
        save(model, str(tmp_path / "d"), sample=sample, target="target")


def test_name_defaults_to_the_uris_last_part_and_is_checked(
    tmp_path: Path, iris: pd.DataFrame, forest: RandomForestClassifier
) -> None:
    _, card = save(forest, f"file://{tmp_path}/Churn Model_v2", sample=iris.drop(columns="species"))
    assert card.name == "churn-model-v2"
    _, card = save(forest, f"{tmp_path}/iris/v3", sample=iris.drop(columns="species"))
    assert card.name == "iris"  # not the version
    with pytest.raises(PackageError, match="'-bad' is not a valid model name"):
        save(forest, str(tmp_path / "n"), sample=iris.drop(columns="species"), name="-bad")


def test_a_read_only_location_is_refused(
    iris: pd.DataFrame, forest: RandomForestClassifier
) -> None:
    with pytest.raises(PackageError, match="read-only"):
        save(forest, "https://127.0.0.1:1/models/x", sample=iris.drop(columns="species"))


def test_importing_mlmodel_artifact_loads_no_numpy_pandas_or_sklearn() -> None:
    """The operator imports mlmodel_artifact: `save` must import its libraries lazily."""
    code = (
        "import sys, mlmodel_artifact\n"
        "assert callable(mlmodel_artifact.save)\n"
        "print(','.join(m for m in ('numpy', 'pandas', 'sklearn', 'onnx', 'skops')"
        " if m in sys.modules))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert loaded == ""
