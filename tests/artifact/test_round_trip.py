"""Write, fetch, load: the model predicts as trained, for every format and location."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pytest

from mlmodel_artifact import (
    MODEL_CARD_FILE,
    MODEL_FILE_NAMES,
    ArtifactError,
    ModelDescription,
    ModelFormat,
    fetch_artifact,
    load_model,
    read_model_card,
    sha256_file,
    verify_artifact,
    write_artifact,
)

ALL_FORMATS = [ModelFormat.SKOPS, ModelFormat.JOBLIB, ModelFormat.ONNX]
Iris = tuple[Any, ModelDescription, np.ndarray]


def _assert_predicts_like(loaded_model: Any, model: Any, rows: np.ndarray) -> None:
    assert loaded_model.predict(rows).tolist() == model.predict(rows).tolist()
    np.testing.assert_allclose(
        loaded_model.predict_proba(rows), model.predict_proba(rows), atol=1e-5
    )


@pytest.mark.parametrize("fmt", ALL_FORMATS)
def test_local_round_trip_loads_a_model_that_predicts_as_trained(
    fmt: ModelFormat, iris_model: Iris, tmp_path: Path
) -> None:
    model, description, rows = iris_model
    uri, card = write_artifact(model, description, str(tmp_path / "iris"), [fmt])
    local = fetch_artifact(uri, tmp_path / "work")
    assert local == tmp_path / "iris"  # local artifacts are used in place
    loaded = load_model(local, expected_sha256=card.sha256)
    assert loaded.format is fmt
    assert loaded.card == card
    assert loaded.warnings == []
    _assert_predicts_like(loaded.model, model, rows)


def test_file_uri_and_card_fields(iris_model: Iris, tmp_path: Path) -> None:
    model, description, _ = iris_model
    uri, card = write_artifact(model, description, f"file://{tmp_path}/iris", ALL_FORMATS)
    assert card.format is ModelFormat.SKOPS
    assert set(card.files) == set(ALL_FORMATS)
    assert card.sha256 == sha256_file(tmp_path / "iris" / "model.skops")
    assert {"python", "scikit-learn", "numpy"} <= set(card.library_versions)
    assert read_model_card(f"file://{tmp_path}/iris") == card
    assert verify_artifact(uri, card.sha256) == card


@pytest.mark.parametrize("fmt", ALL_FORMATS)
def test_http_round_trip(
    fmt: ModelFormat, iris_model: Iris, tmp_path: Path, http_dir: tuple[Path, str]
) -> None:
    model, description, rows = iris_model
    root, base_url = http_dir
    _, card = write_artifact(model, description, str(root / "iris"), [fmt])
    uri = f"{base_url}/iris"
    local = fetch_artifact(uri, tmp_path / "work")
    assert sorted(p.name for p in local.iterdir()) == sorted(
        [MODEL_CARD_FILE, MODEL_FILE_NAMES[fmt]]
    )
    loaded = load_model(local, expected_sha256=card.sha256, uri=uri)
    _assert_predicts_like(loaded.model, model, rows)
    assert verify_artifact(uri).sha256 == card.sha256


@pytest.mark.parametrize("fmt", ALL_FORMATS)
def test_s3_round_trip(fmt: ModelFormat, iris_model: Iris, tmp_path: Path, s3_env: str) -> None:
    model, description, rows = iris_model
    uri, card = write_artifact(model, description, f"s3://{s3_env}/models/iris", [fmt])
    assert uri == f"s3://{s3_env}/models/iris"
    keys = {o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket=s3_env)["Contents"]}
    assert keys == {f"models/iris/{MODEL_CARD_FILE}", f"models/iris/{MODEL_FILE_NAMES[fmt]}"}
    # The digest the writer returned is this test's own pin (joblib loads only pinned).
    loaded = load_model(
        fetch_artifact(uri, tmp_path / "work"), expected_sha256=card.sha256, uri=uri
    )
    _assert_predicts_like(loaded.model, model, rows)
    assert read_model_card(uri) == card


def test_fetch_downloads_only_requested_formats(
    iris_model: Iris, tmp_path: Path, s3_env: str
) -> None:
    model, description, _ = iris_model
    uri, _ = write_artifact(model, description, f"s3://{s3_env}/iris", ALL_FORMATS)
    local = fetch_artifact(uri, tmp_path / "work", [ModelFormat.ONNX])
    assert sorted(p.name for p in local.iterdir()) == [MODEL_CARD_FILE, "model.onnx"]
    assert load_model(local, format="onnx", uri=uri).format is ModelFormat.ONNX


@pytest.mark.parametrize(
    "uri_template",
    ["{tmp}/nothing-here", "{http}/nothing-here", "s3://{bucket}/nothing-here"],
    ids=["file", "http", "s3"],
)
def test_missing_artifact_is_reported_as_not_found(
    uri_template: str, tmp_path: Path, http_dir: tuple[Path, str], s3_env: str
) -> None:
    uri = uri_template.format(tmp=tmp_path, http=http_dir[1], bucket=s3_env)
    with pytest.raises(ArtifactError) as info:
        fetch_artifact(uri, tmp_path / "work")
    assert info.value.reason == "ArtifactNotFound"
    assert "nothing-here" in str(info.value)


def test_writing_to_http_is_refused(iris_model: Iris) -> None:
    model, description, _ = iris_model
    with pytest.raises(ArtifactError, match="read-only") as info:
        write_artifact(model, description, "http://127.0.0.1:9/iris")
    assert info.value.reason == "InvalidURI"


def test_unsupported_scheme_names_the_scheme(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="unsupported URI scheme 'ftp'"):
        fetch_artifact("ftp://example/iris", tmp_path)


def test_onnx_and_joblib_files_are_byte_identical_across_writes(
    iris_model: Iris, tmp_path: Path
) -> None:
    model, description, _ = iris_model
    _, first = write_artifact(model, description, str(tmp_path / "a"), ALL_FORMATS)
    _, second = write_artifact(model, description, str(tmp_path / "b"), ALL_FORMATS)
    for fmt in (ModelFormat.ONNX, ModelFormat.JOBLIB):
        assert first.files[fmt].sha256 == second.files[fmt].sha256


def test_a_model_a_format_cannot_hold_is_a_clear_error(iris_model: Iris, tmp_path: Path) -> None:
    _, description, _ = iris_model
    with pytest.raises(ArtifactError, match="cannot write dict as onnx") as info:
        write_artifact({"not": "a model"}, description, str(tmp_path / "a"), [ModelFormat.ONNX])
    assert info.value.reason == "SerializationFailed"
    assert not (tmp_path / "a").exists(), "nothing is published when a format fails"
