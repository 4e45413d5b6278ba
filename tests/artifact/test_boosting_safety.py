"""XGBoost and LightGBM skops files: only their own model formats are parsed, callables and
other library objects are refused, and crafted indices never reach a prediction."""

from __future__ import annotations

import json
import os
import re
import zipfile
from pathlib import Path
from typing import Any

import lightgbm
import numpy as np
import pytest
import skops.io
import xgboost
from sklearn.datasets import load_iris
from sklearn.preprocessing import FunctionTransformer

from mlmodel_artifact import (
    ArtifactError,
    ModelDescription,
    Sample,
    Task,
    TrainingInfo,
    load_model,
    sha256_file,
    write_artifact,
)
from mlmodel_artifact.tree_checks import lightgbm_text_problem

X, Y = load_iris(return_X_y=True)
LABELS = np.array(["setosa", "versicolor", "virginica"])[Y]


def _description(model: Any) -> ModelDescription:
    return ModelDescription(
        name="iris",
        task=Task.CLASSIFICATION,
        estimator=type(model).__name__,
        params={},
        feature_names=[f"f{i}" for i in range(4)],
        class_labels=np.unique(model.predict(X)).tolist(),
        metrics={},
        training=TrainingInfo(
            dataset="iris", test_size=0.0, seed=0, n_train=150, n_test=0, data_fingerprint="0" * 64
        ),
        sample=Sample(inputs=X[::30].tolist(), outputs=model.predict(X[::30]).tolist()),
    )


def _xgb() -> xgboost.XGBClassifier:
    return xgboost.XGBClassifier(n_estimators=3, max_depth=2, n_jobs=1).fit(X, Y)


def _lgb() -> lightgbm.LGBMClassifier:
    return lightgbm.LGBMClassifier(n_estimators=3, num_leaves=4, verbose=-1, n_jobs=1).fit(
        X, LABELS
    )


def _artifact(model: Any, tmp_path: Path) -> Path:
    uri, _ = write_artifact(model, _description(model), str(tmp_path / "a"))
    return Path(uri)


def _replace_model(directory: Path, write: Any) -> None:
    """Put another skops file in the artifact and make the card name its digest."""
    path = directory / "model.skops"
    write(path)
    card = json.loads((directory / "model-card.json").read_text())
    card["sha256"] = card["files"]["skops"]["sha256"] = sha256_file(path)
    (directory / "model-card.json").write_text(json.dumps(card))


def _edit_schema(path: Path, edit: Any) -> None:
    """Rewrite schema.json inside a skops zip (what an attacker with the bucket can do)."""
    with zipfile.ZipFile(path) as archive:
        entries = {name: archive.read(name) for name in archive.namelist()}
    schema = json.loads(entries["schema.json"])
    edit(schema)
    entries["schema.json"] = json.dumps(schema).encode()
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)


def _booster_state(schema: Any) -> dict[str, Any]:
    stack = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if node.get("__class__") == "Booster":
                state: dict[str, Any] = node["content"]["content"]
                return state
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    raise AssertionError("no booster in the schema")


def _lgb_text(model: Any) -> str:
    return str(model.booster_.model_to_string())


def _set_lgb_text(text: str) -> Any:
    def edit(schema: Any) -> None:
        _booster_state(schema)["_handle"]["content"] = json.dumps(text)

    return edit


def _refused(directory: Path, reason: str, match: str) -> None:
    with pytest.raises(ArtifactError) as info:
        load_model(directory)
    assert info.value.reason == reason, info.value
    assert re.search(match, str(info.value)), info.value


def test_both_families_load_and_predict_like_the_original(tmp_path: Path) -> None:
    for model in (_xgb(), _lgb()):
        loaded = load_model(_artifact(model, tmp_path / type(model).__name__))
        assert loaded.model.predict(X).tolist() == model.predict(X).tolist()


def test_written_lightgbm_text_passes_its_check() -> None:
    assert lightgbm_text_problem(_lgb_text(_lgb())) == ""
    regressor = lightgbm.LGBMRegressor(n_estimators=3, verbose=-1).fit(X, X[:, 0])
    assert lightgbm_text_problem(regressor.booster_.model_to_string()) == ""


def _resized(text: str) -> str:
    """`text` with tree_sizes made right again (so only the check under test can refuse)."""
    blocks = re.split(r"(?m)^(?=Tree=|end of trees)", text)
    header, trees, tail = blocks[0], blocks[1:-1], blocks[-1]
    sizes = " ".join(str(len(t)) for t in trees)
    header = re.sub(r"(?m)^tree_sizes=.*$", f"tree_sizes={sizes}", header)
    return header + "".join(trees) + tail


def _swap_line(text: str, key: str, value: str) -> str:
    """Replace `key=` in the first tree with four leaves (three internal nodes)."""
    blocks = re.split(r"(?m)^(?=Tree=|end of trees)", text)
    header, trees, tail = blocks[0], blocks[1:-1], blocks[-1]
    tree = next(i for i, t in enumerate(trees) if "\nnum_leaves=4\n" in t)
    trees[tree] = re.sub(rf"(?m)^{key}=.*$", f"{key}={value}", trees[tree], count=1)
    sizes = " ".join(str(len(t)) for t in trees)
    header = re.sub(r"(?m)^tree_sizes=.*$", f"tree_sizes={sizes}", header)
    return header + "".join(trees) + tail


@pytest.mark.parametrize(
    ("key", "value", "match"),
    [
        ("left_child", "1000000 -1 -2", "left_child index is outside"),
        ("left_child", "0 -1 -2", "left_child index is outside"),  # a loop: LightGBM would hang
        ("right_child", "-1000 -3 -4", "right_child index is outside"),
        ("split_feature", "1000000 3 2", "feature outside its 4 input columns"),
        ("num_cat", "1", "categorical splits"),
        ("leaf_value", "1 2", "leaf_value of the wrong size"),
        ("threshold", "1 2 abc", "threshold is not a list of numbers"),
    ],
)
def test_crafted_lightgbm_tree_is_refused_before_lightgbm_parses_it(
    key: str, value: str, match: str, tmp_path: Path
) -> None:
    model = _lgb()
    text = _lgb_text(model)
    crafted = _swap_line(text, key, value)
    assert lightgbm_text_problem(crafted)
    directory = _artifact(model, tmp_path)
    _replace_model(
        directory, lambda p: (skops.io.dump(model, p), _edit_schema(p, _set_lgb_text(crafted)))
    )
    _refused(directory, "ArtifactLoadFailed", match)


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda t: t.replace("tree_sizes=", "tree_sizes=1", 1), "tree_sizes do not match"),
        (
            lambda t: _resized(t.replace("\nnum_leaves=", "\nnum_leaves", 1)),
            "line LightGBM does not write",
        ),
        (lambda t: t.replace("max_feature_idx=3", "max_feature_idx=9"), "do not match its 10"),
        (lambda t: t.replace("version=v4", "version=v3"), "another version"),
        (lambda t: t[: t.index("end of trees")], "header, trees and end"),
    ],
)
def test_malformed_lightgbm_text_is_refused(edit: Any, match: str, tmp_path: Path) -> None:
    model = _lgb()
    directory = _artifact(model, tmp_path)
    crafted = edit(_lgb_text(model))
    _replace_model(
        directory, lambda p: (skops.io.dump(model, p), _edit_schema(p, _set_lgb_text(crafted)))
    )
    _refused(directory, "ArtifactLoadFailed", match)


def test_lightgbm_model_text_must_be_a_plain_string(tmp_path: Path) -> None:
    model = _lgb()
    directory = _artifact(model, tmp_path)

    def as_list(schema: Any) -> None:  # anything but a JSON string is not the text format
        state = _booster_state(schema)
        state["_handle"] = {
            "__class__": "list",
            "__module__": "builtins",
            "__loader__": "ListNode",
            "content": [],
        }

    _replace_model(directory, lambda p: (skops.io.dump(model, p), _edit_schema(p, as_list)))
    _refused(directory, "ArtifactLoadFailed", "not stored as LightGBM's text model format")


def test_lightgbm_without_a_model_is_refused_not_run(tmp_path: Path) -> None:
    model = _lgb()
    directory = _artifact(model, tmp_path)

    def no_model(schema: Any) -> None:  # LightGBM would dereference a null booster
        _booster_state(schema)["_handle"]["content"] = "null"

    _replace_model(directory, lambda p: (skops.io.dump(model, p), _edit_schema(p, no_model)))
    _refused(directory, "ArtifactLoadFailed", "no loaded LightGBM booster")


def test_lightgbm_parameter_that_turns_off_the_width_check_is_refused(tmp_path: Path) -> None:
    model = _lgb()
    directory = _artifact(model, tmp_path)
    model.set_params(predict_disable_shape_check=True)
    _replace_model(directory, lambda p: skops.io.dump(model, p))
    _refused(directory, "ArtifactLoadFailed", "predict_disable_shape_check")


def _xgb_with_tree(edit: Any) -> xgboost.XGBClassifier:
    model = _xgb()
    document = json.loads(bytes(model.get_booster().save_raw(raw_format="json")))
    edit(document["learner"])
    model._Booster = xgboost.Booster(model_file=bytearray(json.dumps(document).encode()))
    return model


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (
            lambda learner: learner["gradient_booster"]["model"]["trees"][0][
                "left_children"
            ].__setitem__(0, 10**6),
            "left child index is outside",
        ),
        (
            lambda learner: learner["gradient_booster"]["model"]["trees"][0][
                "left_children"
            ].__setitem__(0, 0),
            "left child index is outside",
        ),
        (
            lambda learner: learner["gradient_booster"]["model"]["trees"][0][
                "split_indices"
            ].__setitem__(0, 10**6),
            "feature index outside its 4 input columns",
        ),
        (
            lambda learner: learner["gradient_booster"]["model"]["tree_info"].__setitem__(0, 7),
            "outputs beyond its 3",
        ),
    ],
)
def test_crafted_xgboost_tree_is_refused_before_any_prediction(
    edit: Any, match: str, tmp_path: Path
) -> None:
    crafted = _xgb_with_tree(edit)  # XGBoost loads it without complaint (and would crash)
    directory = _artifact(_xgb(), tmp_path)
    _replace_model(directory, lambda p: skops.io.dump(crafted, p))
    _refused(directory, "ArtifactLoadFailed", match)


def test_xgboost_linear_booster_is_refused(tmp_path: Path) -> None:
    model = xgboost.XGBClassifier(n_estimators=2, booster="gblinear", n_jobs=1).fit(X, Y)
    directory = _artifact(_xgb(), tmp_path)
    _replace_model(directory, lambda p: skops.io.dump(model, p))
    _refused(directory, "ArtifactLoadFailed", "'gblinear' booster")


@pytest.mark.parametrize(
    "callable_",
    [
        xgboost.core._check_call,
        lightgbm.basic._safe_call,
        xgboost.training.train,
        lightgbm.basic.Booster.save_model,
    ],
    ids=lambda c: c.__qualname__,
)
def test_other_xgboost_and_lightgbm_callables_are_refused(callable_: Any, tmp_path: Path) -> None:
    directory = _artifact(_xgb(), tmp_path)
    _replace_model(directory, lambda p: skops.io.dump(FunctionTransformer(func=callable_), p))
    _refused(directory, "UntrustedType", "not on the allow-list")


@pytest.mark.parametrize("cls", [xgboost.Booster, lightgbm.Booster, xgboost.XGBClassifier])
def test_allow_listed_boosting_classes_are_refused_as_callables(cls: type, tmp_path: Path) -> None:
    directory = _artifact(_xgb(), tmp_path)
    _replace_model(directory, lambda p: skops.io.dump(FunctionTransformer(func=cls), p))
    _refused(directory, "UntrustedType", "names classes where a function")


def test_callable_objective_in_an_xgboost_model_is_refused(tmp_path: Path) -> None:
    model = _xgb()
    model.set_params(objective=os.system)
    directory = _artifact(_xgb(), tmp_path)
    _replace_model(directory, lambda p: skops.io.dump(model, p))
    _refused(directory, "UntrustedType", "system")


def test_other_library_objects_are_refused(tmp_path: Path) -> None:
    model = _xgb()
    model.set_params(callbacks=[xgboost.callback.EarlyStopping(rounds=2)])
    directory = _artifact(_xgb(), tmp_path)
    _replace_model(directory, lambda p: skops.io.dump(model, p))
    _refused(directory, "UntrustedType", "xgboost.callback.EarlyStopping")
