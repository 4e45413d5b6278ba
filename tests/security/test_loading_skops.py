"""skops loading runs no attacker code: only allow-listed classes load, and zip bombs are refused.

Each attack is a real skops file, put where a model file goes with its digest written into the
card (an attacker who can write the bucket can write both).
"""

from __future__ import annotations

import importlib
import io
import json
import struct
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import skops.io
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_breast_cancer, load_iris, make_classification
from sklearn.ensemble import RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import (
    FunctionTransformer,
    MinMaxScaler,
    OneHotEncoder,
    OrdinalEncoder,
    StandardScaler,
)

from mlmodel_artifact import (
    MODEL_CARD_FILE,
    ArtifactError,
    ModelDescription,
    ModelFormat,
    Sample,
    Task,
    TrainingInfo,
    load_model,
    sha256_file,
    write_artifact,
)
from mlmodel_artifact.serialization import deserialize, untrusted_skops_types
from mlmodel_artifact.skops_safety import (
    CALLABLE_NODES,
    MAX_RATIO,
    RATIO_FLOOR_BYTES,
    TRUSTED_TYPES,
    skops_types,
)
from mlmodel_trainer.estimators import ESTIMATORS
from mlmodel_trainer.train import TrainConfig, train

X, Y = load_iris(return_X_y=True)


def classifier() -> LogisticRegression:
    """A fitted iris classifier to end a pipeline with."""
    return LogisticRegression(max_iter=1000).fit(X, Y)


def describe(model: Any, rows: np.ndarray, features: list[str]) -> ModelDescription:
    """A card description of `model` with its outputs on `rows` as the sample."""
    return ModelDescription(
        name="m",
        task=Task.CLASSIFICATION,
        estimator=type(model).__name__,
        params={},
        feature_names=features,
        class_labels=sorted(np.unique(model.predict(rows)).tolist()),
        metrics={},
        training=TrainingInfo(
            dataset="t", test_size=0.0, seed=0, n_train=1, n_test=0, data_fingerprint="0" * 64
        ),
        sample=Sample(inputs=rows.tolist(), outputs=model.predict(rows).tolist()),
    )


@pytest.fixture
def artifact(tmp_path: Path) -> Path:
    """A genuine iris artifact (skops) whose model file a test may replace."""
    model = classifier()
    features = [f"f{i}" for i in range(4)]
    write_artifact(model, describe(model, X[::30], features), str(tmp_path / "a"))
    return tmp_path / "a"


def plant(directory: Path, obj: Any) -> Path:
    """Replace the artifact's model.skops by `obj` and write its digest into the card."""
    path = directory / "model.skops"
    skops.io.dump(obj, path)
    return rewrite_digest(directory)


def rewrite_digest(directory: Path) -> Path:
    """Make the card agree with whatever model.skops now holds (as an attacker would)."""
    path = directory / "model.skops"
    card = json.loads((directory / MODEL_CARD_FILE).read_text())
    card["sha256"] = card["files"]["skops"]["sha256"] = sha256_file(path)
    (directory / MODEL_CARD_FILE).write_text(json.dumps(card))
    return path


def code_running_pipeline(marker: Path) -> Pipeline:
    """The reviewed attack: numpy functions chained so that `predict` executes a string.

    full_like fills a string array with the source, take picks one element, runstring execs
    it; the estimator at the end makes the pipeline look like a classifier.
    """
    from numpy.testing._private.utils import runstring

    source = f"import pathlib; pathlib.Path({str(marker)!r}).write_text('pwned')"
    steps = [
        FunctionTransformer(
            np.full_like, kw_args={"fill_value": source, "dtype": f"U{len(source)}"}
        ),
        FunctionTransformer(np.take, kw_args={"indices": 0}),
        FunctionTransformer(runstring, kw_args={"dict": {}}),
    ]
    for step in steps:
        step.fit(X)  # fitting a FunctionTransformer does not call its function
    return Pipeline(
        [("fill", steps[0]), ("take", steps[1]), ("run", steps[2]),
         ("clf", classifier())]
    )  # fmt: skip


def test_the_code_running_pipeline_is_refused_and_its_payload_never_runs(
    artifact: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "pwned"
    path = plant(artifact, code_running_pipeline(marker))

    # The file is a working exploit: skops' own check passes once its reported types are
    # trusted (the old prefix rule trusted all of them), and predicting runs the payload.
    reported = skops.io.get_untrusted_types(file=path)
    assert all(name.startswith("numpy.") for name in reported), reported
    with pytest.raises(Exception):  # noqa: B017 - the payload runs, then the chain breaks
        skops.io.load(path, trusted=reported).predict(X[:1])
    assert marker.read_text() == "pwned"
    marker.unlink()

    with pytest.raises(ArtifactError) as caught:
        load_model(artifact)
    assert caught.value.reason == "UntrustedType"
    for name in ("numpy.full_like", "numpy.take", "numpy.testing._private.utils.runstring"):
        assert name in str(caught.value)
    assert not marker.exists(), "the payload ran while loading"


@pytest.mark.parametrize(
    ("func", "name"),
    [
        (np.save, "numpy.save"),
        (np.load, "numpy.load"),
        (np.lib._datasource.open, "numpy.lib._datasource.open"),
        (np.log1p, "numpy.log1p"),  # a ufunc: skops trusts these by default, we do not
    ],
)
def test_no_numpy_function_is_trusted(func: Any, name: str, artifact: Path) -> None:
    plant(artifact, make_pipeline(FunctionTransformer(func), classifier()))
    with pytest.raises(ArtifactError, match="not on the allow-list") as caught:
        load_model(artifact)
    assert caught.value.reason == "UntrustedType"
    assert name in str(caught.value)


def test_a_bound_method_is_refused(artifact: Path) -> None:
    method = LogisticRegression().fit
    plant(artifact, make_pipeline(FunctionTransformer(method), classifier()))
    with pytest.raises(ArtifactError, match="LogisticRegression") as caught:
        load_model(artifact)
    assert caught.value.reason == "UntrustedType"


def test_a_class_off_the_list_is_refused_even_from_sklearn(artifact: Path) -> None:
    from sklearn.kernel_approximation import Nystroem  # a real estimator, just not listed

    model = make_pipeline(Nystroem(n_components=4), LogisticRegression(max_iter=1000)).fit(X, Y)
    plant(artifact, model)
    with pytest.raises(ArtifactError, match="Nystroem") as caught:
        load_model(artifact)
    assert caught.value.reason == "UntrustedType"


def test_every_allow_listed_name_is_a_class_not_a_function() -> None:
    for name in sorted(TRUSTED_TYPES):
        module, _, attr = name.rpartition(".")
        obj = getattr(importlib.import_module(module), attr)
        assert isinstance(obj, type), f"{name} is {type(obj).__name__}, not a class"
    assert {"FunctionNode", "MethodNode", "PartialNode", "OperatorFuncNode"} <= CALLABLE_NODES


def test_a_zip_bomb_is_refused_before_anything_is_unpacked(artifact: Path) -> None:
    path = artifact / "model.skops"
    size = RATIO_FLOOR_BYTES + 16 * 1024**2  # zeros: deflate packs them ~1,000:1
    with (
        zipfile.ZipFile(path, "a", compression=zipfile.ZIP_DEFLATED) as archive,
        archive.open("bomb.npy", "w", force_zip64=True) as entry,
    ):
        for _ in range(size // 1024**2):
            entry.write(bytes(1024**2))
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo("bomb.npy")
    assert info.file_size > MAX_RATIO * info.compress_size  # it is a bomb
    rewrite_digest(artifact)
    with pytest.raises(ArtifactError, match="'bomb.npy' unpacks to 80.0 MiB") as caught:
        load_model(artifact)
    assert caught.value.reason == "ArtifactTooLarge"
    assert "zip bomb" in str(caught.value)


def test_a_forest_of_real_size_passes_the_bounds(tmp_path: Path) -> None:
    x, y = make_classification(n_samples=10_000, n_features=20, n_informative=10, random_state=0)
    model = RandomForestClassifier(n_estimators=30, random_state=0).fit(x, y)
    write_artifact(model, describe(model, x[:5], [f"f{i}" for i in range(20)]), str(tmp_path))
    assert load_model(tmp_path).model.n_estimators == 30


def tabular_pipeline() -> tuple[Pipeline, pd.DataFrame]:
    """Imputer, scalers, both encoders and a passthrough column in front of a forest."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {"a": rng.normal(size=80), "b": rng.normal(size=80), "c": rng.normal(size=80),
         "colour": rng.choice(["red", "green", "blue"], 80), "size": rng.choice(["S", "L"], 80)}
    )  # fmt: skip
    frame.loc[3, "a"] = np.nan
    columns = ColumnTransformer(
        [
            ("num", make_pipeline(SimpleImputer(), StandardScaler()), ["a"]),
            ("mm", MinMaxScaler(), ["b"]),
            ("onehot", OneHotEncoder(handle_unknown="ignore"), ["colour"]),
            ("ordinal", OrdinalEncoder(), ["size"]),
        ],
        remainder="passthrough",
    )
    model = Pipeline([("columns", columns), ("forest", RandomForestClassifier(n_estimators=3))])
    return model.fit(frame, rng.integers(0, 2, 80)), frame


def test_a_tabular_pipeline_holds_only_allow_listed_types(tmp_path: Path) -> None:
    model, frame = tabular_pipeline()
    path = tmp_path / "model.skops"
    skops.io.dump(model, path)
    assert untrusted_skops_types(path) == []
    loaded = deserialize(
        ModelFormat.SKOPS, path.read_bytes(), str(path), 5
    )  # every check, the tree ones too
    assert loaded.predict(frame).tolist() == model.predict(frame).tolist()


def forge_nodes(tree: Any, edit: Any, n_features: int | None = None) -> Any:
    """A copy of sklearn Tree `tree` with `edit` applied to its node array (and another width)."""
    from sklearn.tree._tree import Tree

    state = tree.__getstate__()
    state["nodes"] = state["nodes"].copy()
    edit(state["nodes"])
    width = tree.n_features if n_features is None else n_features
    forged = Tree(width, np.asarray(tree.n_classes), tree.n_outputs)
    forged.__setstate__(state)
    return forged


def forged_forest(edit: Any, n_features: int | None = None) -> RandomForestClassifier:
    """An iris forest whose second tree's nodes were edited (its estimator widened to match)."""
    forest = RandomForestClassifier(n_estimators=3, random_state=0).fit(X, Y)
    inner = forest.estimators_[1]
    inner.tree_ = forge_nodes(inner.tree_, edit, n_features)
    if n_features is not None:
        inner.n_features_in_ = n_features
    return forest


def far_child(nodes: np.ndarray) -> None:
    nodes["left_child"][0] = 10**6


def loop_to_root(nodes: np.ndarray) -> None:
    nodes["right_child"][0] = 0


def column_50(nodes: np.ndarray) -> None:
    nodes["feature"][0] = 50


@pytest.mark.parametrize(
    ("forest", "problem"),
    [
        (lambda: forged_forest(far_child), "left child index is outside"),
        (lambda: forged_forest(loop_to_root), "loops back"),
        (lambda: forged_forest(column_50), "outside its 4 input columns"),
        # The forest checks X has 4 columns and hands it to its trees unchecked: a tree (and its
        # estimator) claiming 100 columns must still be held to the forest's 4.
        (
            lambda: forged_forest(column_50, n_features=100),
            "takes 4 columns but declares 100",
        ),
    ],
    ids=["child-out-of-range", "child-loops-back", "feature-out-of-range", "widened-tree"],
)
def test_forged_tree_indices_are_refused_before_predict(
    forest: Any, problem: str, artifact: Path
) -> None:
    plant(artifact, forest())
    with pytest.raises(ArtifactError, match=problem) as caught:
        load_model(artifact)
    assert caught.value.reason == "ArtifactLoadFailed"
    assert "the fitted DecisionTreeClassifier" in str(caught.value)


def test_forged_histogram_boosting_indices_are_refused(artifact: Path) -> None:
    from sklearn.ensemble import HistGradientBoostingClassifier

    model = HistGradientBoostingClassifier(max_iter=3).fit(X, Y)
    model._predictors[1][0].nodes["right"][0] = 10**6
    plant(artifact, model)
    with pytest.raises(ArtifactError, match="right child index is outside") as caught:
        load_model(artifact)
    assert caught.value.reason == "ArtifactLoadFailed"


CLASSIFIERS = [name for name, spec in ESTIMATORS.items() if spec.classifier is not None]
FAST: dict[str, dict[str, Any]] = {
    "random_forest": {"n_estimators": 3},
    "extra_trees": {"n_estimators": 3},
    "gradient_boosting": {"n_estimators": 3},
    "hist_gradient_boosting": {"max_iter": 3},
}


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_every_trainer_classifier_loads_on_binary_data(name: str, tmp_path: Path) -> None:
    """Binary models carry other loss and link objects than the multiclass ones in tests/trainer."""
    result = train(TrainConfig(dataset="breast_cancer", estimator=name, params=FAST.get(name, {})))
    write_artifact(result.model, result.description, str(tmp_path))
    found = skops_types(tmp_path / "model.skops")
    assert not found.callables
    assert found.types <= TRUSTED_TYPES, sorted(found.types - TRUSTED_TYPES)
    loaded = load_model(tmp_path)
    x = load_breast_cancer().data[:20]
    assert loaded.model.predict(x).tolist() == result.model.predict(x).tolist()


def forged_neighbours(algorithm: str, edit: Any) -> Any:
    """An iris nearest-neighbours model whose search tree's state `edit` changed in place."""
    from sklearn.neighbors import KNeighborsClassifier

    model = KNeighborsClassifier(algorithm=algorithm).fit(X, Y)
    state = [a.copy() if isinstance(a, np.ndarray) else a for a in model._tree.__getstate__()]
    edit(state)
    model._tree.__setstate__(tuple(state))
    return model


def sample_out_of_range(state: list[Any]) -> None:
    state[1][0] = 10**6


def leaf_with_children(state: list[Any]) -> None:
    state[2]["is_leaf"][-1] = 0


@pytest.mark.parametrize("algorithm", ["kd_tree", "ball_tree"])
@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (lambda state: None, ""),
        (sample_out_of_range, "sample index outside its 150 samples"),
        (leaf_with_children, "child node outside its"),
    ],
    ids=["genuine", "sample-out-of-range", "leaf-with-children"],
)
def test_neighbour_search_trees_load_only_with_indices_in_range(
    algorithm: str, edit: Any, problem: str, artifact: Path
) -> None:
    plant(artifact, forged_neighbours(algorithm, edit))
    if not problem:
        assert load_model(artifact).model.predict(X[:1]).tolist() == [0]
        return
    with pytest.raises(ArtifactError, match=problem) as caught:
        load_model(artifact)
    assert caught.value.reason == "ArtifactLoadFailed"
    assert "the fitted KNeighborsClassifier" in str(caught.value)


def narrow_vectors(model: Any) -> None:
    model.support_vectors_ = np.ascontiguousarray(model.support_vectors_[:, :2])


def drop_a_coefficient(model: Any) -> None:
    model._dual_coef_ = np.ascontiguousarray(model._dual_coef_[:, :-1])


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (lambda model: None, ""),
        (narrow_vectors, "support vectors 2 wide for 4 input columns"),
        (drop_a_coefficient, "dual coefficients that do not match"),
    ],
    ids=["genuine", "narrow-support-vectors", "short-dual-coefficients"],
)
def test_svm_arrays_must_have_the_sizes_libsvm_assumes(
    edit: Any, problem: str, artifact: Path
) -> None:
    from sklearn.svm import SVC

    model = SVC().fit(X, Y)
    edit(model)
    plant(artifact, model)
    if not problem:
        assert load_model(artifact).model.predict(X[:1]).tolist() == [0]
        return
    with pytest.raises(ArtifactError, match=problem) as caught:
        load_model(artifact)
    assert caught.value.reason == "ArtifactLoadFailed"
    assert "the fitted SVC" in str(caught.value)


def test_the_writer_refuses_a_model_no_reader_would_load(tmp_path: Path) -> None:
    model = make_pipeline(FunctionTransformer(np.log1p), classifier())
    with pytest.raises(ArtifactError, match="numpy.log1p") as caught:
        write_artifact(model, describe(model, X[:3], [f"f{i}" for i in range(4)]), str(tmp_path))
    assert caught.value.reason == "SerializationFailed"
    assert not (tmp_path / MODEL_CARD_FILE).exists()


def lie_about_size(path: Path, name: str, declared: int) -> None:
    """Rewrite entry `name`'s uncompressed size in both of its zip headers to `declared`."""
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        local = archive.getinfo(name).header_offset
        offset = archive.start_dir
    struct.pack_into("<I", data, local + 22, declared)  # local file header
    while data[offset : offset + 4] == b"PK\x01\x02":  # central directory headers
        n, m, k = struct.unpack_from("<HHH", data, offset + 28)
        if data[offset + 46 : offset + 46 + n].decode() == name:
            struct.pack_into("<I", data, offset + 24, declared)
        offset += 46 + n + m + k
    path.write_bytes(bytes(data))


def test_an_entry_lying_about_its_size_unpacks_no_further_than_it_declared(
    artifact: Path,
) -> None:
    """The bounds trust declared sizes because zipfile stops at them: a bomb declared small
    fails its CRC after the declared bytes instead of filling memory."""
    path = artifact / "model.skops"
    with zipfile.ZipFile(path) as archive:
        entries = {i.filename: archive.read(i) for i in archive.infolist()}
    target = next(name for name in entries if name.endswith(".npy"))  # an array skops reads
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, content in entries.items():
            archive.writestr(name, bytes(80 * 1024**2) if name == target else content)
    lie_about_size(path, target, len(entries[target]))
    rewrite_digest(artifact)
    with pytest.raises(ArtifactError, match="Bad CRC-32") as caught:
        load_model(artifact)
    assert caught.value.reason == "ArtifactLoadFailed"


# --- Widths from the attacker's own file (review H2). ---

# The review used Tree(10,000,000, …) and column 5,000,000: 20 MB past X, often still mapped
# memory, so predict returns what it read there (a leak) as often as it crashes. 200 GB past X is
# never mapped: the child process below always dies, which proves the file is an exploit.
HUGE_WIDTH = 100_000_000_000  # what the forged Tree(n_features, …) declares
FAR_COLUMN = 50_000_000_000  # the column every split reads, X[i, FAR_COLUMN] of a 4-column X


def far_splits(nodes: np.ndarray) -> None:
    nodes["feature"][nodes["left_child"] != -1] = FAR_COLUMN


def widthless_tree() -> Any:
    """The reviewed repro: no n_features_in_ (so scikit-learn skips the width check) and a tree
    built as Tree(HUGE_WIDTH, …) whose splits read column FAR_COLUMN."""
    from sklearn.tree import DecisionTreeClassifier

    model = DecisionTreeClassifier(random_state=0).fit(X, Y)
    model.tree_ = forge_nodes(model.tree_, far_splits, n_features=HUGE_WIDTH)
    del model.n_features_in_
    return model


def widthless_forest() -> RandomForestClassifier:
    """The same through a forest: neither the forest nor its trees (which the forest's predict
    asks for the width) have n_features_in_; each Tree declares a huge one."""
    forest = RandomForestClassifier(n_estimators=3, random_state=0).fit(X, Y)
    for inner in forest.estimators_:
        inner.tree_ = forge_nodes(inner.tree_, far_splits, n_features=HUGE_WIDTH)
        del inner.n_features_in_
    del forest.n_features_in_
    return forest


def widthless_pipeline_step() -> Pipeline:
    """The pipeline declares the card's 4 columns (its scaler's), the tree after it none."""
    tree = widthless_tree()
    return Pipeline([("scale", StandardScaler().fit(X)), ("tree", tree)])


CRASH = """
import sys
import numpy as np
import skops.io
path = sys.argv[1]
model = skops.io.load(path, trusted=skops.io.get_untrusted_types(file=path))
model.predict(np.zeros((1, 4)))
"""


@pytest.mark.parametrize(
    ("forge", "problem"),
    [
        (widthless_tree, "DecisionTreeClassifier declares no input width"),
        (widthless_forest, "RandomForestClassifier declares no input width"),
        (widthless_pipeline_step, "DecisionTreeClassifier has no n_features_in_"),
    ],
    ids=["tree", "forest", "pipeline-step"],
)
def test_a_tree_without_its_input_width_is_refused_before_predict(
    forge: Any, problem: str, artifact: Path
) -> None:
    path = plant(artifact, forge())
    # The file is a working exploit: loaded as skops trusts it, predict on 4 columns reads 20 MB
    # past the input and the process dies (in a child process: never in this one).
    crashed = subprocess.run(
        [sys.executable, "-c", CRASH, str(path)], capture_output=True, timeout=120, check=False
    )
    assert crashed.returncode < 0, (crashed.returncode, crashed.stderr[-500:])  # a signal

    # Refused by the checks alone (deserialize never predicts), so a regression fails the test
    # instead of crashing it; load_model runs the same checks before the card's sample.
    with pytest.raises(ArtifactError, match=problem) as caught:
        deserialize(ModelFormat.SKOPS, path.read_bytes(), str(path), 4)
    assert caught.value.reason == "ArtifactLoadFailed"
    with pytest.raises(ArtifactError, match=problem):
        load_model(artifact)


def test_a_tree_is_bounded_by_the_card_not_by_what_the_model_declares(artifact: Path) -> None:
    """A model declaring a huge width is refused against a card of 4, and only the estimator's
    n_features_in_ bounds a tree: a huge Tree(n_features) under a 4-column estimator fails."""
    from sklearn.tree import DecisionTreeClassifier

    model = DecisionTreeClassifier(random_state=0).fit(X, Y)
    model.tree_ = forge_nodes(model.tree_, lambda nodes: None, n_features=HUGE_WIDTH)
    path = plant(artifact, model)
    with pytest.raises(ArtifactError, match=f"built for {HUGE_WIDTH} input columns, not its 4"):
        deserialize(ModelFormat.SKOPS, path.read_bytes(), str(path), 4)
    model.n_features_in_ = HUGE_WIDTH
    path = plant(artifact, model)
    with pytest.raises(
        ArtifactError, match=f"takes {HUGE_WIDTH} input columns .* names 4 features"
    ):
        deserialize(ModelFormat.SKOPS, path.read_bytes(), str(path), 4)


def test_a_forest_after_a_width_changing_step_is_held_to_its_own_width(tmp_path: Path) -> None:
    """After a ColumnTransformer with a one-hot encoder the forest sees 7 columns, not the
    card's 5: it is bounded by its own n_features_in_ (which predict checks)."""
    model, frame = tabular_pipeline()
    forest = model.named_steps["forest"]
    assert forest.n_features_in_ == 7
    path = tmp_path / "model.skops"
    skops.io.dump(model, path)
    assert deserialize(ModelFormat.SKOPS, path.read_bytes(), str(path), 5).predict(frame).shape == (
        80,
    )
    forest.estimators_[0].tree_ = forge_nodes(forest.estimators_[0].tree_, column_50)
    skops.io.dump(model, path)
    with pytest.raises(ArtifactError, match="outside its 7 input columns"):
        deserialize(ModelFormat.SKOPS, path.read_bytes(), str(path), 5)


def test_gradient_boosting_trees_must_match_its_initial_predictions(artifact: Path) -> None:
    """predict_stages adds tree k into raw-prediction column k unchecked: 3 trees per stage
    into the 1 column of a binary model would write past the array."""
    from sklearn.ensemble import GradientBoostingClassifier

    model = GradientBoostingClassifier(n_estimators=2, random_state=0).fit(X, Y > 0)
    model.estimators_ = np.concatenate([model.estimators_] * 3, axis=1)
    path = plant(artifact, model)
    with pytest.raises(ArtifactError, match="adds 3 trees per stage into 1 columns"):
        deserialize(ModelFormat.SKOPS, path.read_bytes(), str(path), 4)


# --- Zip entries that share bytes, and arrays read more than once (review M3). ---

BIG = "big.npy"


def npy(n_bytes: int) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.zeros(n_bytes, dtype=np.uint8))
    return buffer.getvalue()


def with_array_references(path: Path, count: int, array: bytes) -> None:
    """Rewrite the skops file at `path` with entry big.npy holding `array`, named by `count`
    extra attributes of the estimator (skops reads the entry once per reference)."""
    with zipfile.ZipFile(path) as archive:
        entries = {i.filename: archive.read(i) for i in archive.infolist()}
    schema = json.loads(entries["schema.json"])
    attrs = schema["content"]
    key_type = attrs["key_types"]["content"][0]
    for i in range(count):
        attrs["content"][f"pad{i}"] = {
            "__class__": "ndarray", "__module__": "numpy", "__loader__": "NdArrayNode",
            "type": "numpy", "file": BIG,
        }  # fmt: skip
        attrs["key_types"]["content"].append(dict(key_type))
    entries["schema.json"] = json.dumps(schema).encode()
    entries[BIG] = array
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, content in entries.items():
            archive.writestr(name, content)


def repeat_directory_record(path: Path, name: str, copies: int) -> None:
    """Add `copies` central-directory records for entry `name`, all pointing at its one local
    header and compressed data: overlapping entries."""
    data = path.read_bytes()
    end = data.rindex(b"PK\x05\x06")
    fields = list(struct.unpack_from("<4s4H2LH", data, end))
    size, offset = fields[5], fields[6]
    directory = data[offset : offset + size]
    records, at = [], 0
    while at < len(directory):
        n, m, k = struct.unpack_from("<HHH", directory, at + 28)
        records.append(directory[at : at + 46 + n + m + k])
        at += 46 + n + m + k
    record = next(r for r in records if r[46 : 46 + len(name)] == name.encode())
    directory += record * copies
    fields[3] += copies
    fields[4] += copies
    fields[5] = len(directory)
    tail = struct.pack("<4s4H2LH", *fields) + data[end + 22 :]
    path.write_bytes(data[:offset] + directory + tail)


def test_overlapping_zip_entries_are_refused(artifact: Path) -> None:
    """40 directory records of one 1 MiB entry (a kilobyte compressed), each named in the
    schema: the declared compressed sizes add up to 40 times what the file holds, so the ratio
    bound sees 40 honest-looking entries; scaled up (200 MB entries) that is ~8 GB from ~1 MB."""
    path = artifact / "model.skops"
    with_array_references(path, 40, npy(1024**2))
    repeat_directory_record(path, BIG, 39)
    with zipfile.ZipFile(path) as archive:
        infos = [i for i in archive.infolist() if i.filename == BIG]
    assert len(infos) == 40
    assert sum(i.compress_size for i in infos) > path.stat().st_size  # they share their bytes
    rewrite_digest(artifact)
    with pytest.raises(ArtifactError, match="so they overlap") as caught:
        load_model(artifact)
    assert caught.value.reason == "ArtifactTooLarge"


def test_an_entry_sharing_another_entrys_bytes_is_refused(artifact: Path) -> None:
    """One extra record for a small array: the sizes still fit the file, the layout does not."""
    path = artifact / "model.skops"
    with zipfile.ZipFile(path) as archive:
        small = next(i.filename for i in archive.infolist() if i.filename.endswith(".npy"))
    repeat_directory_record(path, small, 1)
    rewrite_digest(artifact)
    with pytest.raises(ArtifactError, match=f"entry '{small}' overlaps '{small}'") as caught:
        load_model(artifact)
    assert caught.value.reason == "ArtifactTooLarge"


def test_an_array_named_many_times_in_the_schema_counts_each_time(artifact: Path) -> None:
    """One 2 MiB entry of zeros (2 KiB compressed), named 40 times: skops reads 80 MiB while
    auditing, although the zip itself is small and honest."""
    path = artifact / "model.skops"
    with_array_references(path, 40, npy(2 * 1024**2))
    rewrite_digest(artifact)
    with pytest.raises(ArtifactError, match="what its schema reads unpacks to 80.0 MiB"):
        load_model(artifact)


# --- A class where a function goes (review M4). ---


def test_an_allow_listed_class_is_never_a_function(artifact: Path) -> None:
    """dict is on the allow-list as data; as FunctionTransformer.func it is called with the
    file's kw_args on every predict."""
    transformer = FunctionTransformer(func=dict, kw_args={"pwned": True}, validate=False)
    path = plant(artifact, make_pipeline(transformer, classifier()))
    as_skops_trusts_it = skops.io.load(path, trusted=skops.io.get_untrusted_types(file=path))
    assert as_skops_trusts_it[0].transform([[1, 2]]) == {1: 2, "pwned": True}  # it runs

    assert untrusted_skops_types(path) == ["builtins.dict"]  # the writer refuses it too
    with pytest.raises(ArtifactError, match="names classes where .*: builtins.dict") as caught:
        load_model(artifact)
    assert caught.value.reason == "UntrustedType"


def test_a_class_reference_through_a_back_reference_is_refused(artifact: Path) -> None:
    """A dict key type (builtins.str, accepted there) given an id and named again, through a
    CachedNode, as FunctionTransformer.func."""
    path = plant(artifact, make_pipeline(FunctionTransformer(), classifier()))
    with zipfile.ZipFile(path) as archive:
        entries = {i.filename: archive.read(i) for i in archive.infolist()}
    schema = json.loads(entries["schema.json"])
    transformer = schema["content"]["content"]["steps"]["content"][0]["content"][1]["content"]
    key_type = transformer["key_types"]["content"][0]
    assert key_type["__loader__"] == "TypeNode"
    key_type["__id__"] = 424242
    transformer["content"]["func"] = {
        "__class__": "str", "__module__": "builtins", "__loader__": "CachedNode", "__id__": 424242
    }  # fmt: skip
    entries["schema.json"] = json.dumps(schema).encode()
    with zipfile.ZipFile(path, "w") as archive:
        for name, content in entries.items():
            archive.writestr(name, content)
    rewrite_digest(artifact)
    with pytest.raises(ArtifactError, match="names classes where .*: builtins.str") as caught:
        load_model(artifact)
    assert caught.value.reason == "UntrustedType"


@pytest.mark.parametrize(
    ("model", "where"),
    [
        (lambda: FunctionTransformer(func=dict), "FunctionTransformer.func is the class"),
        (lambda: FunctionTransformer(inverse_func=np.ndarray), "FunctionTransformer.inverse_func"),
        (
            lambda: make_pipeline(StandardScaler(), classifier()).set_params(
                logisticregression__C=LogisticRegression
            ),
            "LogisticRegression.C is the class",
        ),
    ],
    ids=["func", "inverse-func", "any-attribute"],
)
def test_no_callable_is_left_in_a_loaded_model(model: Any, where: str) -> None:
    """After the load (whatever got past the audit): only func=None, and nothing callable."""
    from mlmodel_artifact.skops_safety import check_loaded

    with pytest.raises(ArtifactError, match=where) as caught:
        check_loaded(model(), "m")
    assert caught.value.reason == "UntrustedType"


@pytest.mark.parametrize(
    ("model", "where"),
    [
        (lambda: _knn(weights=lambda d: d), "KNeighborsClassifier.weights"),
        (lambda: _knn(metric=LogisticRegression()), "KNeighborsClassifier.metric"),
        (lambda: _svc(kernel=np.dot), "SVC.kernel"),
    ],
    ids=["knn-weights", "knn-metric-object", "svm-kernel"],
)
def test_metrics_weights_and_kernels_load_only_by_name(model: Any, where: str) -> None:
    from mlmodel_artifact.skops_safety import check_loaded

    with pytest.raises(ArtifactError, match=where):
        check_loaded(model(), "m")


def _knn(**params: Any) -> Any:
    from sklearn.neighbors import KNeighborsClassifier

    return KNeighborsClassifier(**params)


def _svc(**params: Any) -> Any:
    from sklearn.svm import SVC

    return SVC(**params)


def test_genuine_dtypes_and_dict_keys_load(tmp_path: Path) -> None:
    """The two places a class is data: OneHotEncoder's dtype and dict key types."""
    model, _ = tabular_pipeline()
    path = tmp_path / "model.skops"
    skops.io.dump(model, path)
    found = skops_types(path)
    assert not found.misplaced
    assert "numpy.float64" in found.types  # the encoder's dtype, a class reference
    from mlmodel_artifact.skops_safety import check_loaded

    check_loaded(skops.io.load(path, trusted=skops.io.get_untrusted_types(file=path)), str(path))
