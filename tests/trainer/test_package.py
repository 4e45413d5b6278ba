"""`mlmodel-train package`: a model file trained elsewhere becomes an artifact the server takes."""

from __future__ import annotations

import json
import pickle
import zipfile
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest
import skops.io
from sklearn.compose import make_column_transformer
from sklearn.datasets import load_diabetes, load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder

from mlmodel_artifact import (
    ArtifactError,
    FeatureKind,
    ModelFormat,
    OnnxModel,
    encode_rows,
    load_model,
    model_input,
    read_model_card,
    sha256_file,
)
from mlmodel_trainer.cli import main


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, out: str, err: str, *fragments: str) -> None:
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and err.startswith("mlmodel-train: error: "), err
    for fragment in fragments:
        assert fragment in err, err


@pytest.fixture(scope="module")
def iris() -> pd.DataFrame:
    frame: pd.DataFrame = load_iris(as_frame=True).frame
    return frame.rename(columns={"target": "species"})


@pytest.fixture(scope="module")
def notebook(tmp_path_factory: pytest.TempPathFactory, iris: pd.DataFrame) -> dict[str, Any]:
    """The seed guide's notebook: fit a forest on a DataFrame, `joblib.dump(model, 'model.pkl')`;
    a sample CSV with the true labels."""
    where = tmp_path_factory.mktemp("notebook")
    X, y = iris.drop(columns=["species"]), iris["species"]
    model = RandomForestClassifier(n_estimators=10, random_state=0).fit(X, y)
    joblib.dump(model, where / "model.pkl")
    iris.to_csv(where / "sample.csv", index=False)
    return {"dir": where, "model": model, "X": X, "y": y}


def test_package_wraps_a_notebook_pickle_with_trust(
    tmp_path: Path, notebook: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    pkl, csv, out_dir = (
        notebook["dir"] / "model.pkl",
        notebook["dir"] / "sample.csv",
        tmp_path / "a",
    )
    argv = ["package", str(pkl), "--sample", str(csv), "--target", "species", "--out", str(out_dir)]
    code, out, err = run([*argv, "--trust"], capsys)

    assert code == 0, err
    card = read_model_card(str(out_dir))
    assert f"source:   sha256 {sha256_file(pkl)}  (model.pkl)" in out  # to pin what was trusted
    assert f"sha256:   {card.sha256}  (model.skops" in out
    assert f"artifact: {out_dir}" in out
    assert card.format is ModelFormat.SKOPS  # the forest's types are on the allow-list
    assert (card.name, card.estimator, card.class_labels) == (
        "model",
        "RandomForestClassifier",
        [0, 1, 2],
    )
    assert card.metrics["accuracy"] == pytest.approx(
        float(np.mean(notebook["model"].predict(notebook["X"]) == notebook["y"]))
    )
    loaded = load_model(out_dir)
    np.testing.assert_array_equal(
        loaded.model.predict(notebook["X"]), notebook["model"].predict(notebook["X"])
    )


def test_a_pickle_is_refused_without_trust_and_never_loaded(
    tmp_path: Path, notebook: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    marker = tmp_path / "the-pickle-ran"

    class Payload:
        def __reduce__(self) -> tuple[Any, ...]:
            return (Path.touch, (marker,))

    pkl = tmp_path / "evil.pkl"
    pkl.write_bytes(pickle.dumps(Payload()))
    csv = notebook["dir"] / "sample.csv"
    code, out, err = run(
        ["package", str(pkl), "--sample", str(csv), "--out", str(tmp_path / "x")], capsys
    )

    assert_one_line_error(code, out, err, "evil.pkl is a pickle", "--trust")
    assert not marker.exists() and not (tmp_path / "x").exists()


def test_a_model_off_the_allow_list_is_written_as_joblib_with_the_digest_to_pin(
    tmp_path: Path, iris: pd.DataFrame, capsys: pytest.CaptureFixture[str]
) -> None:
    X, y = iris.drop(columns=["species"]), iris["species"]
    model = make_pipeline(FunctionTransformer(np.log1p), LogisticRegression(max_iter=500)).fit(X, y)
    joblib.dump(model, tmp_path / "logs.joblib")
    X.to_csv(tmp_path / "x.csv", index=False)
    argv = ["package", str(tmp_path / "logs.joblib"), "--sample", str(tmp_path / "x.csv")]
    code, out, err = run([*argv, "--out", str(tmp_path / "a"), "--trust", "--json"], capsys)

    assert code == 0, err
    result = json.loads(out)
    card = read_model_card(str(tmp_path / "a"))
    assert result["format"] == "joblib" and result["pin_required"] is True
    assert result["sha256"] == card.sha256 == sha256_file(tmp_path / "a" / "model.joblib")
    assert result["source_sha256"] == sha256_file(tmp_path / "logs.joblib")
    assert f"spec.model.sha256: {card.sha256}" in err and "numpy.log1p" in err
    assert result["name"] == "logs" and result["metrics"] == {}
    loaded = load_model(tmp_path / "a", expected_sha256=card.sha256)
    np.testing.assert_array_equal(loaded.model.predict(X), model.predict(X))


def test_package_wraps_a_skops_file(
    tmp_path: Path, notebook: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    skops.io.dump(notebook["model"], tmp_path / "forest.skops")
    argv = [
        "package",
        str(tmp_path / "forest.skops"),
        "--sample",
        str(notebook["dir"] / "sample.csv"),
    ]
    code, out, err = run([*argv, "--target", "species", "--out", str(tmp_path / "a")], capsys)

    assert code == 0, err
    assert f"source:   sha256 {sha256_file(tmp_path / 'forest.skops')}" in out
    loaded = load_model(tmp_path / "a")
    assert loaded.card.name == "forest" and loaded.format is ModelFormat.SKOPS
    np.testing.assert_array_equal(
        loaded.model.predict(notebook["X"]), notebook["model"].predict(notebook["X"])
    )


def test_a_skops_file_with_a_function_in_it_is_refused(
    tmp_path: Path, iris: pd.DataFrame, capsys: pytest.CaptureFixture[str]
) -> None:
    X, y = iris.drop(columns=["species"]), iris["species"]
    model = make_pipeline(FunctionTransformer(np.log1p), LogisticRegression(max_iter=500)).fit(X, y)
    skops.io.dump(model, tmp_path / "sneaky.skops")
    X.to_csv(tmp_path / "x.csv", index=False)
    argv = ["package", str(tmp_path / "sneaky.skops"), "--sample", str(tmp_path / "x.csv")]
    code, out, err = run([*argv, "--out", str(tmp_path / "a")], capsys)

    assert_one_line_error(code, out, err, "numpy.log1p", "allow-list")
    assert not (tmp_path / "a").exists()


def test_a_tampered_skops_file_is_refused(
    tmp_path: Path, notebook: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    skops.io.dump(notebook["model"], tmp_path / "forest.skops")
    with zipfile.ZipFile(tmp_path / "forest.skops") as src:
        entries = {info.filename: src.read(info) for info in src.infolist()}
    schema = json.loads(entries["schema.json"])
    schema["__module__"], schema["__class__"] = "os", "system"  # a function in place of the model
    entries["schema.json"] = json.dumps(schema).encode()
    with zipfile.ZipFile(tmp_path / "tampered.skops", "w") as dst:
        for name, data in entries.items():
            dst.writestr(name, data)
    (tmp_path / "truncated.skops").write_bytes((tmp_path / "forest.skops").read_bytes()[:500])
    csv = str(notebook["dir"] / "sample.csv")

    for name, fragment in (("tampered.skops", "os.system"), ("truncated.skops", "BadZipFile")):
        argv = ["package", str(tmp_path / name), "--sample", csv, "--target", "species"]
        code, out, err = run([*argv, "--out", str(tmp_path / "a")], capsys)
        assert_one_line_error(code, out, err, name, fragment)
    assert not (tmp_path / "a").exists()


def test_package_wraps_an_onnx_file(
    tmp_path: Path, notebook: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    from skl2onnx import to_onnx

    X = notebook["X"].to_numpy()
    graph = to_onnx(notebook["model"], X[:1].astype(np.float32))  # skl2onnx's defaults: ZipMap
    (tmp_path / "forest.onnx").write_bytes(graph.SerializeToString())
    argv = [
        "package",
        str(tmp_path / "forest.onnx"),
        "--sample",
        str(notebook["dir"] / "sample.csv"),
    ]
    code, _out, err = run([*argv, "--target", "species", "--out", str(tmp_path / "a")], capsys)

    assert code == 0, err
    card = read_model_card(str(tmp_path / "a"))
    assert card.format is ModelFormat.ONNX and card.class_labels == [0, 1, 2]
    assert card.sha256 == sha256_file(tmp_path / "forest.onnx")  # written unchanged
    assert card.estimator == "ONNX TreeEnsembleClassifier"
    assert card.feature_names == list(notebook["X"].columns)
    loaded = load_model(tmp_path / "a")
    assert isinstance(loaded.model, OnnxModel)
    np.testing.assert_array_equal(loaded.model.predict(X), notebook["model"].predict(notebook["X"]))


def test_package_wraps_an_onnx_regressor(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from skl2onnx import to_onnx

    data = load_diabetes(as_frame=True)
    model = Ridge().fit(data.data.to_numpy(), data.target.to_numpy())
    onnx_file = tmp_path / "ridge.onnx"
    onnx_file.write_bytes(
        to_onnx(model, data.data.to_numpy()[:1].astype(np.float32)).SerializeToString()
    )
    data.frame.to_csv(tmp_path / "d.csv", index=False)
    argv = ["package", str(onnx_file), "--sample", str(tmp_path / "d.csv"), "--target", "target"]
    code, _, err = run([*argv, "--out", str(tmp_path / "a")], capsys)

    assert code == 0, err
    loaded = load_model(tmp_path / "a")
    assert loaded.card.task.value == "regression" and set(loaded.card.metrics) == {"r2", "mae"}
    np.testing.assert_allclose(
        loaded.model.predict(data.data.to_numpy()), model.predict(data.data.to_numpy()), rtol=1e-4
    )


def test_a_pipeline_on_mixed_types_packages_with_its_schema(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = np.random.default_rng(1)
    n = 80
    frame = pd.DataFrame(
        {
            "tenure": rng.integers(1, 60, n).astype(float),
            "plan": rng.choice(["basic", "pro", "team"], n).astype(object),
            "monthly": rng.normal(30, 10, n),
        }
    )
    frame.loc[[2, 30], "tenure"] = np.nan
    frame.loc[[7], "plan"] = None
    churned = np.where((frame["plan"] == "basic") & (frame["monthly"] > 28), "yes", "no")
    pre = make_column_transformer(
        (SimpleImputer(strategy="median"), ["tenure", "monthly"]),
        (
            make_pipeline(
                SimpleImputer(strategy="most_frequent"), OneHotEncoder(handle_unknown="ignore")
            ),
            ["plan"],
        ),
    )
    model = make_pipeline(pre, LogisticRegression(max_iter=500)).fit(frame, churned)
    joblib.dump(model, tmp_path / "churn.pkl")
    # The CSV's columns in another order than the model's, the target among them.
    frame.assign(churned=churned)[["churned", "monthly", "plan", "tenure"]].to_csv(
        tmp_path / "churn.csv", index=False
    )
    argv = ["package", str(tmp_path / "churn.pkl"), "--sample", str(tmp_path / "churn.csv")]
    code, _out, err = run(
        [*argv, "--target", "churned", "--out", str(tmp_path / "a"), "--trust"], capsys
    )

    assert code == 0, err
    card = read_model_card(str(tmp_path / "a"))
    schema = card.feature_schema
    assert schema.names == ["tenure", "plan", "monthly"]  # the model's order, not the CSV's
    assert [(f.kind, f.nullable) for f in schema.features] == [
        (FeatureKind.NUMERIC, True),
        (FeatureKind.CATEGORICAL, True),
        (FeatureKind.NUMERIC, False),
    ]
    assert schema.features[1].categories == ["basic", "pro", "team"]
    assert card.format is ModelFormat.SKOPS and card.class_labels == ["no", "yes"]
    loaded = load_model(tmp_path / "a")
    rows = [[None, "pro", 31.5], [12.0, None, 20.0], [40.0, "basic", 45.0]]
    served = model_input(encode_rows(schema, rows), frame=True)
    np.testing.assert_array_equal(loaded.model.predict(served), model.predict(served))


@pytest.mark.parametrize(
    ("sample_change", "target", "fragments"),
    [
        (
            lambda s: s.drop(columns=["petal length (cm)"]),
            "species",
            ["lacks the model's feature column(s) 'petal length (cm)'"],
        ),
        (lambda s: s, None, ["not fitted on: 'species'", "target"]),
        (lambda s: s, "kind", ["no target column 'kind'"]),
        (
            lambda s: s.assign(species=s["species"].map({0: "a", 1: "b", 2: "c"})),
            "species",
            ["the target 'species' holds none of the model's classes"],
        ),
    ],
)
def test_a_sample_that_does_not_fit_the_model_is_a_one_line_error(
    tmp_path: Path,
    notebook: dict[str, Any],
    iris: pd.DataFrame,
    capsys: pytest.CaptureFixture[str],
    sample_change: Any,
    target: str | None,
    fragments: list[str],
) -> None:
    sample_change(iris).to_csv(tmp_path / "s.csv", index=False)
    argv = ["package", str(notebook["dir"] / "model.pkl"), "--sample", str(tmp_path / "s.csv")]
    argv += ["--target", target] if target else []
    code, out, err = run([*argv, "--out", str(tmp_path / "a"), "--trust"], capsys)

    assert_one_line_error(code, out, err, *fragments)
    assert not (tmp_path / "a").exists()


def test_an_unknown_file_type_or_missing_file_is_a_one_line_error(
    tmp_path: Path, notebook: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "model.h5").write_bytes(b"\x89HDF\r\n\x1a\n")
    csv = str(notebook["dir"] / "sample.csv")
    for model_file, fragment in (
        (tmp_path / "model.h5", "unknown file type '.h5'"),
        (tmp_path / "absent.skops", "does not exist"),
    ):
        argv = ["package", str(model_file), "--sample", csv, "--out", str(tmp_path / "a")]
        code, out, err = run([*argv, "--trust"], capsys)
        assert_one_line_error(code, out, err, fragment)


def test_a_skops_model_of_another_width_than_the_sample_is_refused(
    tmp_path: Path, iris: pd.DataFrame, capsys: pytest.CaptureFixture[str]
) -> None:
    X, y = iris.drop(columns=["species"]).to_numpy(), iris["species"]
    skops.io.dump(RandomForestClassifier(n_estimators=3).fit(X[:, :3], y), tmp_path / "m.skops")
    iris.to_csv(tmp_path / "s.csv", index=False)
    argv = ["package", str(tmp_path / "m.skops"), "--sample", str(tmp_path / "s.csv")]
    code, out, err = run([*argv, "--target", "species", "--out", str(tmp_path / "a")], capsys)
    assert_one_line_error(code, out, err, "takes 3 input columns", "the sample has 4 feature")
    assert not (tmp_path / "a").exists()


def test_packaging_refuses_nothing_loaded_as_an_artifact_error(tmp_path: Path) -> None:
    """A joblib artifact written by package still needs a pin to load, like any pickle."""
    X, y = np.random.default_rng(0).normal(size=(20, 2)), np.arange(20) % 2
    model = make_pipeline(FunctionTransformer(np.abs), LogisticRegression()).fit(X, y)
    from mlmodel_artifact import package_file

    joblib.dump(model, tmp_path / "m.pkl")
    result = package_file(
        tmp_path / "m.pkl", str(tmp_path / "a"), sample=pd.DataFrame(X), trust=True
    )
    assert result.fallback is not None and "numpy.absolute" in result.fallback
    with pytest.raises(ArtifactError, match="pinned by you"):
        load_model(tmp_path / "a")


def _load(out_dir: Path) -> Any:
    """Load as the server would: a joblib artifact with its digest pinned (the pin the note
    names), a skops one through the allow-list."""
    card = read_model_card(str(out_dir))
    return load_model(out_dir, expected_sha256=card.sha256)


@pytest.mark.parametrize("suffix", [".json", ".ubj"])
def test_package_wraps_an_xgboost_model_file(
    tmp_path: Path, iris: pd.DataFrame, capsys: pytest.CaptureFixture[str], suffix: str
) -> None:
    import xgboost

    X, y = iris.drop(columns=["species"]), iris["species"]
    model = xgboost.XGBClassifier(n_estimators=10, n_jobs=1).fit(X, y)
    model.save_model(tmp_path / f"booster{suffix}")
    iris.to_csv(tmp_path / "s.csv", index=False)
    argv = ["package", str(tmp_path / f"booster{suffix}"), "--sample", str(tmp_path / "s.csv")]
    code, out, err = run([*argv, "--target", "species", "--out", str(tmp_path / "a")], capsys)

    assert code == 0, err
    card = read_model_card(str(tmp_path / "a"))
    assert (card.estimator, card.class_labels, card.name) == ("XGBClassifier", [0, 1, 2], "booster")
    assert f"source:   sha256 {sha256_file(tmp_path / f'booster{suffix}')}" in out
    # XGBoost's types are on the skops allow-list: data, no pickle, nothing to pin
    assert card.format is ModelFormat.SKOPS and "spec.model.sha256" not in err
    loaded = _load(tmp_path / "a")
    np.testing.assert_array_equal(loaded.model.predict(X), model.predict(X))
    np.testing.assert_allclose(loaded.model.predict_proba(X), model.predict_proba(X))


def test_package_wraps_an_xgboost_regressor_fitted_on_a_matrix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import xgboost

    data = load_diabetes(as_frame=True)
    model = xgboost.XGBRegressor(n_estimators=10, n_jobs=1).fit(data.data.to_numpy(), data.target)
    model.save_model(tmp_path / "reg.json")
    data.frame.to_csv(tmp_path / "d.csv", index=False)
    argv = ["package", str(tmp_path / "reg.json"), "--sample", str(tmp_path / "d.csv")]
    code, _, err = run([*argv, "--target", "target", "--out", str(tmp_path / "a")], capsys)

    assert code == 0, err
    loaded = _load(tmp_path / "a")
    assert loaded.card.task.value == "regression" and loaded.card.feature_names[0] == "age"
    np.testing.assert_allclose(
        loaded.model.predict(data.data.to_numpy()), model.predict(data.data.to_numpy())
    )


def test_package_wraps_a_lightgbm_model_file(
    tmp_path: Path, iris: pd.DataFrame, capsys: pytest.CaptureFixture[str]
) -> None:
    import lightgbm

    X, y = iris.drop(columns=["species"]), iris["species"]
    model = lightgbm.LGBMClassifier(n_estimators=10, n_jobs=1, verbose=-1).fit(X, y)
    model.booster_.save_model(str(tmp_path / "gbm.txt"))
    # LightGBM wrote the names with '_' for blanks; the CSV has the originals, in another order
    iris[["species", *reversed(X.columns)]].to_csv(tmp_path / "s.csv", index=False)
    argv = ["package", str(tmp_path / "gbm.txt"), "--sample", str(tmp_path / "s.csv")]
    code, _, err = run([*argv, "--target", "species", "--out", str(tmp_path / "a")], capsys)

    assert code == 0, err
    loaded = _load(tmp_path / "a")
    assert loaded.card.feature_names == list(X.columns)  # the model's order
    assert loaded.card.estimator == "LGBMClassifier" and loaded.card.class_labels == [0, 1, 2]
    assert loaded.card.format is ModelFormat.SKOPS and "spec.model.sha256" not in err
    np.testing.assert_array_equal(loaded.model.predict(X.to_numpy()), model.predict(X))
    np.testing.assert_allclose(loaded.model.predict_proba(X.to_numpy()), model.predict_proba(X))


def test_a_json_file_that_is_no_xgboost_model_is_a_one_line_error(
    tmp_path: Path, notebook: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "config.json").write_text('{"learner": "not really"}')
    argv = [
        "package",
        str(tmp_path / "config.json"),
        "--sample",
        str(notebook["dir"] / "sample.csv"),
    ]
    code, out, err = run([*argv, "--target", "species", "--out", str(tmp_path / "a")], capsys)
    assert_one_line_error(code, out, err, "config.json is not an XGBoost model file")
    assert not (tmp_path / "a").exists()
