"""Nothing is deserialized before its digest checks out; skops loads only allow-listed types."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import skops.io

from mlmodel_artifact import (
    MODEL_CARD_FILE,
    ArtifactError,
    ModelDescription,
    ModelFormat,
    load_model,
    verify_artifact,
    write_artifact,
)

Iris = tuple[Any, ModelDescription, np.ndarray]


class _Exploit:
    """Unpickling this touches a marker file: proof that a pickle was deserialized."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (Path(self.marker),))


class _Custom:
    """A type from outside scikit-learn and numpy: skops must not trust it."""


def _artifact(iris_model: Iris, tmp_path: Path, fmt: ModelFormat) -> tuple[Path, str]:
    model, description, _ = iris_model
    _, card = write_artifact(model, description, str(tmp_path / "a"), [fmt])
    return tmp_path / "a", card.sha256


def test_tampered_pickle_is_rejected_before_it_is_unpickled(
    iris_model: Iris, tmp_path: Path
) -> None:
    directory, digest = _artifact(iris_model, tmp_path, ModelFormat.JOBLIB)
    marker = tmp_path / "pwned"
    (directory / "model.joblib").write_bytes(pickle.dumps(_Exploit(str(marker))))
    with pytest.raises(ArtifactError) as info:
        load_model(directory, expected_sha256=digest)
    assert info.value.reason == "ArtifactDigestMismatch"
    assert "model.joblib" in str(info.value)
    assert not marker.exists(), "the tampered pickle was deserialized"


@pytest.mark.parametrize("fmt", [ModelFormat.SKOPS, ModelFormat.JOBLIB, ModelFormat.ONNX])
def test_truncated_file_is_rejected_before_load(
    fmt: ModelFormat, iris_model: Iris, tmp_path: Path
) -> None:
    directory, digest = _artifact(iris_model, tmp_path, fmt)
    path = directory / f"model.{fmt}"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ArtifactError) as info:
        load_model(directory, expected_sha256=digest)
    assert info.value.reason == "ArtifactDigestMismatch"
    with pytest.raises(ArtifactError, match="changed or truncated"):
        verify_artifact(str(directory))


def test_pinned_digest_must_match(iris_model: Iris, tmp_path: Path) -> None:
    directory, digest = _artifact(iris_model, tmp_path, ModelFormat.SKOPS)
    wrong = "f" * 64
    with pytest.raises(ArtifactError, match=f"pinned sha256 is {wrong}") as info:
        load_model(directory, expected_sha256=wrong)
    assert info.value.reason == "ArtifactDigestMismatch"
    with pytest.raises(ArtifactError, match=f"expected {wrong}"):
        verify_artifact(str(directory), wrong)
    assert load_model(directory, expected_sha256=digest).card.sha256 == digest


def test_skops_refuses_types_outside_the_allow_list(iris_model: Iris, tmp_path: Path) -> None:
    directory, _ = _artifact(iris_model, tmp_path, ModelFormat.SKOPS)
    skops.io.dump({"model": _Custom()}, directory / "model.skops")
    _rewrite_card_digest(directory, "model.skops", ModelFormat.SKOPS)
    with pytest.raises(ArtifactError) as info:
        load_model(directory)
    assert info.value.reason == "UntrustedType"
    assert "_Custom" in str(info.value)


def test_skops_refuses_a_callable_smuggled_into_an_estimator(
    iris_model: Iris, tmp_path: Path
) -> None:
    from sklearn.preprocessing import FunctionTransformer

    directory, _ = _artifact(iris_model, tmp_path, ModelFormat.SKOPS)
    skops.io.dump(FunctionTransformer(func=os.system), directory / "model.skops")
    _rewrite_card_digest(directory, "model.skops", ModelFormat.SKOPS)
    with pytest.raises(ArtifactError, match="not on the allow-list: .*system") as info:
        load_model(directory)
    assert info.value.reason == "UntrustedType"


def test_card_that_does_not_parse_names_the_field(iris_model: Iris, tmp_path: Path) -> None:
    directory, _ = _artifact(iris_model, tmp_path, ModelFormat.SKOPS)
    card = json.loads((directory / MODEL_CARD_FILE).read_text())
    card["task"] = "clustering"
    (directory / MODEL_CARD_FILE).write_text(json.dumps(card))
    with pytest.raises(ArtifactError, match="task") as info:
        load_model(directory)
    assert info.value.reason == "InvalidModelCard"
    (directory / MODEL_CARD_FILE).write_text("{not json")
    with pytest.raises(ArtifactError, match="does not parse"):
        load_model(directory)


def test_a_card_s_own_keys_in_an_error_are_shown_short_and_on_one_line(
    iris_model: Iris, tmp_path: Path
) -> None:
    """A key is the card's text: a megabyte one holding a newline made a log line forging the
    server's 'model load failed: [Reason]', which the operator reads into status."""
    directory, _ = _artifact(iris_model, tmp_path, ModelFormat.SKOPS)
    card = json.loads((directory / MODEL_CARD_FILE).read_text())
    card["metrics"] = {"x" * 1_000_000 + "\nmodel load failed: [Forged] y": "not a number"}
    (directory / MODEL_CARD_FILE).write_text(json.dumps(card))
    with pytest.raises(ArtifactError) as info:
        load_model(directory)
    assert info.value.reason == "InvalidModelCard"
    assert "\n" not in str(info.value) and len(str(info.value)) < 1000
    assert f"metrics.{'x' * 64!r}…:" in str(info.value)


def test_unknown_format_is_named(iris_model: Iris, tmp_path: Path) -> None:
    directory, _ = _artifact(iris_model, tmp_path, ModelFormat.SKOPS)
    with pytest.raises(ArtifactError, match="unknown model format 'pmml'") as info:
        load_model(directory, format="pmml")
    assert info.value.reason == "UnknownFormat"
    with pytest.raises(ArtifactError, match="has no onnx model file"):
        load_model(directory, format="onnx")


def test_other_sklearn_version_warns_when_sample_reproduces(
    iris_model: Iris, tmp_path: Path
) -> None:
    directory, _ = _artifact(iris_model, tmp_path, ModelFormat.SKOPS)
    _edit_card(directory, lambda c: c["library_versions"].update({"scikit-learn": "1.0.0"}))
    loaded = load_model(directory)
    assert len(loaded.warnings) == 1
    assert "scikit-learn 1.0.0" in loaded.warnings[0]
    assert "reproduce" in loaded.warnings[0]


def test_other_sklearn_version_is_an_error_when_sample_differs(
    iris_model: Iris, tmp_path: Path
) -> None:
    directory, _ = _artifact(iris_model, tmp_path, ModelFormat.SKOPS)

    def edit(card: dict[str, Any]) -> None:
        card["library_versions"]["scikit-learn"] = "1.0.0"
        card["sample"]["outputs"] = [(v + 1) % 3 for v in card["sample"]["outputs"]]

    _edit_card(directory, edit)
    with pytest.raises(ArtifactError, match="scikit-learn 1.0.0") as info:
        load_model(directory)
    assert info.value.reason == "IncompatibleVersion"


def test_same_version_sample_mismatch_is_an_error(iris_model: Iris, tmp_path: Path) -> None:
    directory, digest = _artifact(iris_model, tmp_path, ModelFormat.JOBLIB)
    _edit_card(
        directory,
        lambda c: c["sample"].update(outputs=[(v + 1) % 3 for v in c["sample"]["outputs"]]),
    )
    with pytest.raises(ArtifactError) as info:
        load_model(directory, expected_sha256=digest)
    assert info.value.reason == "SampleMismatch"


def _edit_card(directory: Path, edit: Any) -> None:
    card = json.loads((directory / MODEL_CARD_FILE).read_text())
    edit(card)
    (directory / MODEL_CARD_FILE).write_text(json.dumps(card))


def _rewrite_card_digest(directory: Path, name: str, fmt: ModelFormat) -> None:
    from mlmodel_artifact import sha256_file

    digest = sha256_file(directory / name)

    def edit(card: dict[str, Any]) -> None:
        card["files"][fmt.value]["sha256"] = digest
        card["sha256"] = digest

    _edit_card(directory, edit)
