"""Trainer-written artifacts round-trip through every format and location (file, HTTP, S3)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pytest

from mlmodel_artifact import (
    ArtifactError,
    ModelFormat,
    Task,
    fetch_artifact,
    load_model,
    write_artifact,
)
from mlmodel_artifact.skops_safety import TRUSTED_TYPES, skops_types
from mlmodel_trainer.cli import main
from mlmodel_trainer.estimators import ESTIMATORS
from mlmodel_trainer.train import TrainConfig, TrainResult, train

# Small ensembles keep the matrix fast; the model kinds (and their serialized types) are the same.
FAST: dict[str, dict[str, Any]] = {
    "random_forest": {"n_estimators": 5},
    "extra_trees": {"n_estimators": 5},
    "gradient_boosting": {"n_estimators": 5},
    "hist_gradient_boosting": {"max_iter": 5},
    "xgboost": {"n_estimators": 5},
    "lightgbm": {"n_estimators": 5},
}
CASES = [
    (task, name)
    for name, spec in ESTIMATORS.items()
    for task, cls in ((Task.CLASSIFICATION, spec.classifier), (Task.REGRESSION, spec.regressor))
    if cls is not None
]
LOCATIONS = ["file", "http", "s3"]


def assert_predicts_like(loaded: Any, result: TrainResult, fmt: ModelFormat) -> None:
    X = result.split.X_test
    want, got = result.model.predict(X), loaded.predict(X)
    if result.description.task is Task.CLASSIFICATION:
        assert got.tolist() == want.tolist()
    else:
        # ONNX Runtime computes in float32.
        rtol = 1e-4 if fmt is ModelFormat.ONNX else 0
        np.testing.assert_allclose(got, want, rtol=rtol, atol=1e-3 if rtol else 0)
    if hasattr(result.model, "predict_proba"):
        np.testing.assert_allclose(
            loaded.predict_proba(X), result.model.predict_proba(X), atol=1e-5
        )


def cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def location(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    """(where the trainer writes, the URI a reader uses) for the parametrized location kind."""
    kind = request.param
    if kind == "file":
        return str(tmp_path / "iris"), f"file://{tmp_path}/iris"
    if kind == "http":
        root, base_url = request.getfixturevalue("http_dir")
        return str(root / "iris"), f"{base_url}/iris"
    bucket = request.getfixturevalue("s3_env")
    return f"s3://{bucket}/models/iris", f"s3://{bucket}/models/iris"


@pytest.mark.parametrize("location", LOCATIONS, indirect=True)
def test_cli_trained_model_round_trips_in_every_format_through_each_location(
    location: tuple[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dest, uri = location
    formats = ["--format", "skops", "--format", "joblib", "--format", "onnx"]
    code, out, err = cli(["train", "--out", dest, *formats, *_fast(), "--json"], capsys)
    assert code == 0, err
    written = json.loads(out)
    assert list(written["files"]) == ["skops", "joblib", "onnx"]

    code, out, err = cli(["verify", uri, "--sha256", written["sha256"], "--json"], capsys)
    assert code == 0, err
    assert json.loads(out)["files"] == written["files"]
    code, out, _ = cli(["inspect", uri, "--json"], capsys)
    assert json.loads(out)["sha256"] == written["sha256"]

    expected = train(TrainConfig(params={"n_estimators": 5}))
    local = fetch_artifact(uri, tmp_path / "fetched", list(ModelFormat))
    for fmt in ModelFormat:
        pinned = written["files"][fmt.value]["sha256"]
        loaded = load_model(local, format=fmt, expected_sha256=pinned, uri=uri)
        assert loaded.format is fmt
        assert loaded.warnings == []
        assert loaded.card.metrics == expected.description.metrics
        assert_predicts_like(loaded.model, expected, fmt)


@pytest.mark.parametrize(("task", "name"), CASES, ids=[f"{t.value}-{n}" for t, n in CASES])
def test_every_estimator_round_trips_in_every_format_it_supports(
    task: Task, name: str, tmp_path: Path
) -> None:
    dataset = "wine" if task is Task.CLASSIFICATION else "diabetes"
    result = train(TrainConfig(dataset=dataset, estimator=name, params=FAST.get(name, {})))
    formats = list(ModelFormat)  # every estimator converts to ONNX now
    uri, card = write_artifact(result.model, result.description, str(tmp_path / name), formats)
    for fmt in formats:
        # load_model also checks the card's sample rows reproduce, and skops' allow-list; the
        # digest the writer returned is this test's own pin (joblib loads only when pinned).
        loaded = load_model(Path(uri), format=fmt, expected_sha256=card.files[fmt].sha256)
        assert loaded.warnings == []
        assert_predicts_like(loaded.model, result, fmt)


def test_hist_gradient_boosting_converts_to_an_agreeing_onnx_form(tmp_path: Path) -> None:
    """skl2onnx used to fail on it ("Unable to create node"), so --format onnx was refused up
    front; it converts now, and the graph answers like the model."""
    result = train(TrainConfig(estimator="hist_gradient_boosting", params={"max_iter": 5}))
    _, card = write_artifact(result.model, result.description, str(tmp_path / "h"), check_onnx=True)
    assert card.onnx_check is not None and card.onnx_check.agrees, card.onnx_check
    assert ModelFormat.ONNX in card.files


def test_skops_file_holds_only_allow_listed_types(tmp_path: Path) -> None:
    result = train(TrainConfig(params={"n_estimators": 5}))
    uri, _ = write_artifact(result.model, result.description, str(tmp_path / "a"))
    found = skops_types(Path(uri) / "model.skops")
    assert "sklearn.ensemble._forest.RandomForestClassifier" in found.types
    assert not found.callables
    assert found.types <= TRUSTED_TYPES, sorted(found.types - TRUSTED_TYPES)


def test_changed_model_object_in_s3_fails_verify_and_load(
    s3_env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    uri = f"s3://{s3_env}/m/iris"
    code, out, _ = cli(["train", "--out", uri, "--format", "joblib", *_fast(), "--json"], capsys)
    assert code == 0
    pinned = json.loads(out)["sha256"]  # what the trainer printed: the person's pin
    s3 = boto3.client("s3")
    body = s3.get_object(Bucket=s3_env, Key="m/iris/model.joblib")["Body"].read()
    s3.put_object(Bucket=s3_env, Key="m/iris/model.joblib", Body=body[: len(body) // 2])

    code, _, err = cli(["verify", uri], capsys)
    assert code == 1
    assert "model.joblib" in err and "changed or truncated" in err
    with pytest.raises(ArtifactError) as info:
        load_model(fetch_artifact(uri, tmp_path / "work"), expected_sha256=pinned, uri=uri)
    assert info.value.reason == "ArtifactDigestMismatch"


def test_truncated_model_over_http_fails_verify(
    http_dir: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    root, base_url = http_dir
    assert cli(["train", "--out", str(root / "iris"), *_fast()], capsys)[0] == 0
    model_file = root / "iris" / "model.skops"
    model_file.write_bytes(model_file.read_bytes()[:100])
    code, out, err = cli(["verify", f"{base_url}/iris"], capsys)
    assert (code, out) == (1, "")
    assert f"{base_url}/iris" in err and "changed or truncated" in err


def _fast() -> list[str]:
    return ["--param", "n_estimators=5"]
