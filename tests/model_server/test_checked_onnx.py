"""Compile at training time (issue 16): the artifact carries an ONNX form checked against the
model as it was written, and a server serves that file as is (no conversion, no scikit-learn)
when the pin allows: unpinned, or pinned to the ONNX file itself. A pin on the primary file
keeps converting at start-up (the card is not pinned, so its word on model.onnx is not enough).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from serverkit import Artifact, settings_for
from sklearn.neighbors import KNeighborsClassifier

from mlmodel_artifact import (
    ModelDescription,
    ModelFormat,
    OnnxCheck,
    write_artifact,
)
from mlmodel_artifact.compiled import GENERATED_ROWS, PROBA_TOLERANCE
from model_server.lifecycle import load_and_warm
from model_server.settings import ServerSettings
from model_server.storage import served_format

ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]


def description_of(artifact: Artifact) -> ModelDescription:
    return ModelDescription.model_validate(
        artifact.card.model_dump(include=set(ModelDescription.model_fields))
    )


@pytest.fixture(scope="module")
def checked(
    iris_forest: Any, iris_artifact: Artifact, tmp_path_factory: pytest.TempPathFactory
) -> Artifact:
    """The iris forest written as `train` writes it: skops primary, checked model.onnx beside."""
    root = tmp_path_factory.mktemp("checked")
    uri, card = write_artifact(
        iris_forest, description_of(iris_artifact), str(root / "iris"), check_onnx=True
    )
    return Artifact(uri, card)


def test_the_card_records_the_check(checked: Artifact) -> None:
    card = checked.card
    assert card.format is ModelFormat.SKOPS and ModelFormat.ONNX in card.files
    rows = len(card.sample.inputs) + GENERATED_ROWS
    assert card.onnx_check == OnnxCheck(
        agrees=True,
        rows=rows,
        tolerance=PROBA_TOLERANCE,
        detail=f"ONNX Runtime agrees with scikit-learn on {rows} rows",
    )


def test_a_model_that_does_not_compile_is_recorded_and_gets_no_onnx_file(
    iris_artifact: Artifact, tmp_path: Path
) -> None:
    knn = KNeighborsClassifier(n_neighbors=3).fit(ROWS * 3, [0, 1] * 3)
    description = description_of(iris_artifact).model_copy(
        update={"class_labels": [0, 1], "sample": iris_artifact.card.sample.model_copy(
            update={"outputs": knn.predict(iris_artifact.card.sample.inputs).tolist(),
                    "probabilities": None})}
    )  # fmt: skip
    _, card = write_artifact(knn, description, str(tmp_path / "knn"), check_onnx=True)
    assert set(card.files) == {ModelFormat.SKOPS}
    assert card.onnx_check is not None and not card.onnx_check.agrees
    assert card.onnx_check.rows == 0
    assert "KNeighborsClassifier is not a tree ensemble or linear model" in card.onnx_check.detail


def settings(artifact: Artifact, tmp_path: Path, **overrides: Any) -> ServerSettings:
    return settings_for(artifact, tmp_path, **overrides)


@pytest.mark.parametrize(
    ("pin", "overrides", "served"),
    [
        (None, {}, ModelFormat.ONNX),  # checked and unpinned: the graph as written
        ("onnx", {}, ModelFormat.ONNX),  # the pin names the ONNX file
        ("skops", {}, ModelFormat.SKOPS),  # the pin names the skops file: that one
        (None, {"compiled": False}, ModelFormat.SKOPS),  # scikit-learn asked for
        (None, {"model_format": "skops"}, ModelFormat.SKOPS),
    ],
)
def test_which_file_is_served(
    checked: Artifact, tmp_path: Path, pin: str | None, overrides: dict[str, Any], served: Any
) -> None:
    card = checked.card
    digest = None if pin is None else card.files[ModelFormat(pin)].sha256
    assert (
        served_format(card, settings(checked, tmp_path, model_sha256=digest, **overrides)) is served
    )


def test_an_unchecked_onnx_file_is_not_served_unasked(checked: Artifact, tmp_path: Path) -> None:
    card = checked.card.model_copy(update={"onnx_check": None})
    assert served_format(card, settings(checked, tmp_path)) is ModelFormat.SKOPS
    failed = OnnxCheck(agrees=False, rows=261, tolerance=1e-5, detail="disagrees")
    card = checked.card.model_copy(update={"onnx_check": failed})
    assert served_format(card, settings(checked, tmp_path)) is ModelFormat.SKOPS


def test_the_checked_graph_serves_and_says_so(
    checked: Artifact, iris_forest: Any, tmp_path: Path
) -> None:
    runtime = load_and_warm(settings(checked, tmp_path))
    info = runtime.metadata
    assert (info.format, info.runtime, info.compiled) == ("onnx", "onnxruntime", True)
    assert info.digest == checked.card.files[ModelFormat.ONNX].sha256
    assert runtime.predict(np.array(ROWS)).tolist() == iris_forest.predict(ROWS).tolist()


def test_a_pin_on_the_skops_file_converts_at_start_up(
    checked: Artifact, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pin = checked.card.files[ModelFormat.SKOPS].sha256
    with caplog.at_level("INFO", logger="model_server"):
        runtime = load_and_warm(settings(checked, tmp_path, model_sha256=pin))
    assert (runtime.metadata.format, runtime.metadata.compiled) == ("skops", True)
    assert "pin model.onnx's sha256 to serve it directly" in caplog.text


IMPORTS = """
import sys
from model_server.lifecycle import load_and_warm
from model_server.settings import ServerSettings
import numpy as np
runtime = load_and_warm(ServerSettings(model_uri={uri!r}, workdir={workdir!r}))
assert runtime.metadata.format == "onnx", runtime.metadata
runtime.predict(np.array({rows!r}))
heavy = ("sklearn", "scipy", "skl2onnx", "onnxmltools", "skops", "joblib", "pandas", "xgboost",
         "lightgbm", "onnx", "ml_dtypes")
print(sorted(m for m in heavy if m in sys.modules))
"""


def test_serving_the_checked_graph_imports_no_scikit_learn(
    checked: Artifact, tmp_path: Path
) -> None:
    """What the slim image leaves out is never imported on this path (a fresh process); nor is
    `onnx`, whose import a request never needs (the graph is checked through protobuf)."""
    code = IMPORTS.format(uri=checked.uri, workdir=str(tmp_path), rows=ROWS)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_remote_artifacts_download_the_file_that_is_served(
    checked: Artifact, iris_forest: Any, s3_env: str, tmp_path: Path
) -> None:
    uri, card = write_artifact(
        iris_forest, description_of(checked), f"s3://{s3_env}/models/checked", check_onnx=True
    )
    runtime = load_and_warm(settings_for(Artifact(uri, card), tmp_path))
    assert runtime.metadata.format == "onnx"
    downloaded = sorted(p.name for p in (tmp_path / "artifacts").glob("*/*"))
    assert downloaded == ["model-card.json", "model.onnx"]


def test_without_scikit_learn_installed_a_skops_pin_is_refused_saying_what_to_do(
    checked: Artifact, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the slim image does with an artifact pinned to its skops file (the images tier runs
    the image itself; here the missing package is simulated)."""
    from model_server.errors import ModelLoadError

    monkeypatch.setitem(sys.modules, "skops", None)
    monkeypatch.setitem(sys.modules, "skops.io", None)
    pin = checked.card.files[ModelFormat.SKOPS].sha256
    with pytest.raises(ModelLoadError) as refused:
        load_and_warm(settings(checked, tmp_path, model_sha256=pin))
    assert "cannot load model.skops (the slim image serves ONNX graphs only)" in str(refused.value)
    assert "serve the artifact's model.onnx (pin its sha256" in str(refused.value)
