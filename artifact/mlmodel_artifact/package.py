"""Bring your own model: wrap a model trained elsewhere (a notebook) into an artifact.

`save(model, uri, sample=frame)` packages a fitted model held in memory; `package_file(path,
uri, sample=frame)` one saved to a file (a pickle only with `trust=True`, a skops file through
the safe loader, an ONNX graph, an XGBoost or LightGBM model file). Both derive the model card
from the model itself (its input columns or width, its classes, whether it classifies) and from
a sample of rows: the input schema, sample rows with the model's outputs and, when the sample
holds the true values, metrics. The artifact is checked to load through the same reader the
model server uses (`load_model`: digest, safe loading, the sample rows reproduce) before it is
published, and the model card is written last.

numpy, pandas and scikit-learn are imported inside the functions that need them: importing
`mlmodel_artifact` (the operator does) loads none of them.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from mlmodel_artifact import serialization
from mlmodel_artifact.artifact import library_versions, load_model, write_artifact
from mlmodel_artifact.card import (
    MODEL_CARD_FILE,
    MODEL_FILE_NAMES,
    Label,
    ModelCard,
    ModelDescription,
    ModelFile,
    ModelFormat,
    Sample,
    Task,
    TrainingInfo,
)
from mlmodel_artifact.digest import sha256_bytes, sha256_file
from mlmodel_artifact.drift import reference_from_frame
from mlmodel_artifact.errors import ArtifactError
from mlmodel_artifact.schema import (
    MAX_CATEGORIES,
    FeatureKind,
    InputSchema,
    frame_rows,
    infer_schema,
    sample_input,
)
from mlmodel_artifact.storage import parse_location, upload

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

__all__ = [
    "FILE_KINDS",
    "PackageError",
    "Packaged",
    "describe",
    "load_model_file",
    "package_file",
    "save",
]

#: Rows of the sample kept in the card (the reader checks the model reproduces them).
SAMPLE_ROWS: Final = 5
#: What a model file is, by its name's ending. A pickle runs code when it is loaded.
FILE_KINDS: Final[dict[str, str]] = {
    ".pkl": "pickle",
    ".pickle": "pickle",
    ".joblib": "pickle",
    ".skops": "skops",
    ".onnx": "onnx",
    ".json": "xgboost",  # XGBoost's JSON model (Booster.save_model / XGBModel.save_model)
    ".ubj": "xgboost",  # XGBoost's universal binary JSON
    ".txt": "lightgbm",  # LightGBM's text model (Booster.save_model)
}
_NAME: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
_VERSION: Final = re.compile(r"^v?\d+([._-]\d+)*$", re.I)


class PackageError(ValueError):
    """The model, the sample or the target do not fit together: one line saying which and why."""


@dataclass
class Packaged:
    """The result of packaging: where the artifact is, its card and what the user should know."""

    uri: str
    card: ModelCard
    source: str  # "memory", "pickle", "skops", "onnx"
    source_sha256: str | None = None  # digest of the model file that was packaged
    fallback: str | None = None  # why the primary format is joblib, not skops
    warnings: list[str] = field(default_factory=list)


# --- the Python API -------------------------------------------------------------------------


def save(
    model: Any,
    uri: str,
    *,
    sample: Any,
    target: Any = None,
    name: str | None = None,
    formats: Sequence[ModelFormat | str] | None = None,
    sample_rows: int = SAMPLE_ROWS,
) -> tuple[str, ModelCard]:
    """Write a fitted model (a notebook's) as an artifact the model server and operator accept.

    `sample` is a DataFrame of rows the model takes (best: the training or a held-out frame;
    the card's input schema, its categories and statistics come from it, and a feature is
    nullable when the sample has a gap in it). `target` is the name of a column of `sample`
    holding the true values, or those values themselves (`y_test`): then the card has metrics.
    `name` defaults to the last part of `uri`. `formats` defaults to skops when every type of
    the model is on the allow-list, else joblib (a pickle, which the server loads only with
    its sha256 pinned: a warning says so). Returns the artifact's URI and its model card.
    Raises PackageError for a sample that does not fit the model.
    """
    result = package_model(
        model,
        uri,
        sample=sample,
        target=target,
        name=name or _name_from(uri),
        formats=formats,
        sample_rows=sample_rows,
        dataset="sample",
        source="memory",
    )
    if result.fallback:
        warnings.warn(_fallback_message(result), UserWarning, stacklevel=2)
    return result.uri, result.card


def package_file(
    path: str | Path,
    uri: str,
    *,
    sample: Any,
    target: Any = None,
    name: str | None = None,
    trust: bool = False,
    dataset: str | None = None,
    sample_rows: int = SAMPLE_ROWS,
) -> Packaged:
    """Package the model saved at `path` (see FILE_KINDS) as an artifact at `uri`.

    A pickle (`.pkl`, `.pickle`, `.joblib`) runs code when it is loaded, so it is loaded only
    with `trust=True`; a skops file only through the allow-list (`UntrustedType` otherwise); an
    ONNX graph is checked before ONNX Runtime sees it and is written unchanged; XGBoost
    (`.json`, `.ubj`) and LightGBM (`.txt`) model files are data and load through their
    scikit-learn APIs.
    """
    path = Path(path)
    kind = file_kind(path)
    if not path.is_file():
        raise PackageError(f"model file {path} does not exist or is not a file")
    frame, _ = _split_target(_as_frame(sample), target)
    model, digest = load_model_file(path, trust=trust, n_features=frame.shape[1])
    dataset = dataset or "sample"
    common: dict[str, Any] = {
        "sample": sample,
        "target": target,
        "name": name or _name_from(str(path)),
        "sample_rows": sample_rows,
        "dataset": f"{dataset} (packaged from {path.name})",
        "source": kind,
        "source_sha256": digest,
    }
    if kind == "onnx":
        return _package_onnx(model, path, uri, **common)
    if kind == "lightgbm":
        order = lightgbm_feature_order(model, list(frame.columns))
        if order is not None:
            rest = [target] if isinstance(target, str) else []
            common["sample"] = _as_frame(sample)[order + rest]
    return package_model(model, uri, formats=None, **common)


def file_kind(path: Path) -> str:
    """`pickle`, `skops`, `onnx`, `xgboost` or `lightgbm` from the file name, or PackageError."""
    kind = FILE_KINDS.get(path.suffix.lower())
    if kind is None:
        known = ", ".join(FILE_KINDS)
        raise PackageError(
            f"model file {path.name}: unknown file type {path.suffix or '(no extension)'!r}; "
            f"packaged are: {known}"
        )
    return kind


def load_model_file(path: Path, *, trust: bool, n_features: int) -> tuple[Any, str]:
    """Load the model at `path` safely for its kind; returns (model, the file's sha256).

    `n_features` is the width the model will be given (the sample's feature columns): a skops
    model's trees are bounds-checked against it before anything predicts.
    """
    kind = file_kind(path)
    uri = str(path)
    if kind == "pickle" and not trust:
        raise PackageError(
            f"{path.name} is a pickle: loading it runs whatever code it holds. Package it only "
            "if you made it yourself (or trust who did): pass --trust (trust=True in Python); "
            "or save the model with mlmodel_artifact.save() or skops instead"
        )
    data = path.read_bytes()  # read once: the bytes hashed are the bytes loaded
    digest = sha256_bytes(data)
    if kind == "pickle":
        model = serialization.deserialize(ModelFormat.JOBLIB, data, uri, n_features)
    elif kind == "skops":
        try:
            model = serialization.deserialize(ModelFormat.SKOPS, data, uri, n_features)
        except ArtifactError as exc:
            if exc.reason != "ArtifactLoadFailed" or "n_features_in_" not in exc.message:
                raise
            raise PackageError(
                f"{path.name}: {_first_line(exc.message).split(';')[0]}, but the sample has "
                f"{n_features} feature columns (a skops model is checked against the sample's "
                "width before it is loaded: give the sample the model's columns only, and name "
                "the true-value column as the target)"
            ) from exc
    elif kind == "onnx":
        model = serialization.deserialize(ModelFormat.ONNX, data, uri, n_features)
    elif kind == "xgboost":
        model = _load_xgboost(path)
    else:
        model = _load_lightgbm(path)
    if not callable(getattr(model, "predict", None)):
        raise PackageError(
            f"{path.name} holds a {type(model).__name__}, not a fitted model with a predict method"
        )
    return model, digest


def _load_xgboost(path: Path) -> Any:
    """An XGBoost model file (JSON or UBJ: data, no code) through its scikit-learn API: the
    objective says whether it is an XGBClassifier or an XGBRegressor."""
    import xgboost

    booster = xgboost.Booster()
    try:
        booster.load_model(str(path))
        objective = str(json.loads(booster.save_config())["learner"]["objective"]["name"])
    except Exception as exc:  # XGBoostError, a JSON file of something else
        raise PackageError(
            f"{path.name} is not an XGBoost model file ({path.suffix} files are read as "
            f"XGBoost models): {type(exc).__name__}: {_first_line(exc)}"
        ) from exc
    if objective.startswith(("binary:", "multi:")):
        model: Any = xgboost.XGBClassifier(n_jobs=1)
    elif objective.startswith(("reg:", "count:", "survival:")):
        model = xgboost.XGBRegressor(n_jobs=1)
    else:
        raise PackageError(
            f"{path.name}: XGBoost objective {objective!r} is neither a classifier nor a "
            "regressor; only those are served"
        )
    model.load_model(str(path))
    return model


_LIGHTGBM_CLASSIFIERS: Final = frozenset({"binary", "multiclass", "multiclassova"})
_LIGHTGBM_REGRESSORS: Final = frozenset(
    {"regression", "regression_l1", "huber", "fair", "poisson", "quantile", "mape", "gamma"}
    | {"tweedie", "cross_entropy", "cross_entropy_lambda"}
)


def _load_lightgbm(path: Path) -> Any:
    """A LightGBM text model (data, no code) as an LGBMClassifier or LGBMRegressor.

    LightGBM's scikit-learn API has no loader for a model file, so the fitted state `fit`
    would leave is set on the wrapper, and the wrapper must then answer exactly what the
    Booster answers (otherwise this LightGBM version keeps other state: refused, not guessed).
    It is fitted without feature names: the sample's columns are matched to the file's names
    by `lightgbm_feature_order`, and the model takes them as a matrix in that order.
    """
    import lightgbm
    import numpy as np

    try:
        booster = lightgbm.Booster(model_file=str(path))
        dumped = booster.dump_model(num_iteration=1)
    except Exception as exc:  # LightGBMError
        raise PackageError(
            f"{path.name} is not a LightGBM model file (.txt files are read as LightGBM "
            f"models): {type(exc).__name__}: {_first_line(exc)}"
        ) from exc
    objective = str(dumped.get("objective", "")).split(" ")[0]
    n = booster.num_feature()
    model: Any
    if objective in _LIGHTGBM_CLASSIFIERS:
        from lightgbm.sklearn import _LGBMLabelEncoder  # type: ignore[attr-defined]

        n_classes = max(int(dumped.get("num_class", 1)), 2)
        model = lightgbm.LGBMClassifier(n_jobs=1, verbose=-1)
        classes = np.arange(n_classes)
        model._le = _LGBMLabelEncoder().fit(classes)
        model._classes, model._n_classes = classes, n_classes
        model._class_map, model._class_weight = {int(c): int(c) for c in classes}, None
    elif objective in _LIGHTGBM_REGRESSORS:
        model = lightgbm.LGBMRegressor(n_jobs=1, verbose=-1)
    else:
        raise PackageError(
            f"{path.name}: LightGBM objective {objective!r} is neither a classifier nor a "
            "regressor; only those are served"
        )
    model._Booster, model._objective = booster, objective
    model._n_features = model._n_features_in = n
    model._fitted_with_feature_names = False
    model._evals_result, model._best_iteration, model._best_score = {}, -1, {}
    model.fitted_ = True
    probe = np.random.default_rng(0).normal(size=(8, n))
    try:
        raw = np.asarray(booster.predict(probe))
        wrapped = model.predict_proba(probe) if objective in _LIGHTGBM_CLASSIFIERS else None
        same = (
            np.allclose(wrapped[:, -1] if raw.ndim == 1 else wrapped, raw)
            if wrapped is not None
            else np.allclose(model.predict(probe), raw)
        )
    except Exception as exc:
        raise PackageError(
            f"{path.name}: this LightGBM version's scikit-learn wrapper cannot be restored from "
            f"a model file: {type(exc).__name__}: {_first_line(exc)}"
        ) from exc
    if not same:
        raise PackageError(
            f"{path.name}: the restored LightGBM wrapper does not answer what the model file's "
            "Booster answers (another LightGBM version?); not packaged"
        )
    return model


def lightgbm_feature_order(model: Any, columns: Sequence[str]) -> list[str] | None:
    """The sample's columns in a LightGBM model's order, matched by the names in its file
    (LightGBM wrote them with blanks and JSON punctuation as '_'); None when the file names
    no features (Column_0, …). PackageError naming the unmatched ones."""
    names = [str(n) for n in model.booster_.feature_name()]
    if names == [f"Column_{i}" for i in range(len(names))]:
        return None
    by_name = {re.sub(r'[\s",:\[\]{}]', "_", c): c for c in columns}
    missing = [n for n in names if n not in by_name]
    if missing:
        raise PackageError(
            f"the sample lacks the model's feature column(s) {_names(missing)}; the model "
            f"file names: {_names(names)}"
        )
    extra = [c for c in columns if c not in {by_name[n] for n in names}]
    if extra:
        raise PackageError(
            f"the sample has column(s) the model was not fitted on: {_names(extra)} (if one is "
            "the true value, name it as the target)"
        )
    return [by_name[n] for n in names]


# --- describing a model ---------------------------------------------------------------------


@dataclass(frozen=True)
class _Target:
    name: str
    values: Any  # a pandas Series


def describe(
    model: Any,
    sample: Any,
    *,
    target: Any = None,
    name: str,
    dataset: str = "sample",
    sample_rows: int = SAMPLE_ROWS,
    task: Task | None = None,
    class_labels: list[Label] | None = None,
    estimator: str | None = None,
    params: dict[str, Any] | None = None,
) -> ModelDescription:
    """The model card's description of `model`, from the model and a sample of its input."""
    _check_name(name)
    frame, truth = _split_target(_as_frame(sample), target)
    frame = _match_features(model, frame, truth)
    schema = _schema(frame)
    rows = frame_rows(frame, schema)
    predictions = _predict(model, schema, rows)
    task = task or _task(model, predictions)
    if task is Task.CLASSIFICATION and class_labels is None:
        class_labels = _class_labels(model, predictions)
    metrics = _metrics(task, truth, predictions, class_labels) if truth is not None else {}
    final = _final_estimator(model)
    return ModelDescription(
        name=name,
        task=task,
        estimator=estimator or type(final).__name__,
        params=params if params is not None else _params(final),
        feature_names=schema.names,
        class_labels=class_labels if task is Task.CLASSIFICATION else None,
        metrics=metrics,
        training=TrainingInfo(
            dataset=dataset,
            test_size=0.0,
            seed=0,
            n_train=0,  # not known: the model was trained elsewhere
            n_test=len(rows),  # the rows the metrics (if any) were computed on
            data_fingerprint=_fingerprint(schema, rows, truth),
        ),
        sample=_card_sample(model, schema, rows, frame, sample_rows, task, predictions),
        input_schema=schema,
        # from the sample (the only data package sees) and the model's answers to it
        drift_reference=reference_from_frame(
            schema,
            frame,
            predictions,
            class_labels if task is Task.CLASSIFICATION else None,
        ),
    )


def _as_frame(sample: Any) -> pd.DataFrame:
    import numpy as np
    import pandas as pd

    if isinstance(sample, pd.DataFrame):
        frame = sample.copy()
    elif isinstance(sample, np.ndarray) and sample.ndim == 2:
        frame = pd.DataFrame(sample, columns=[f"x{i}" for i in range(sample.shape[1])])
    else:
        raise PackageError(
            f"the sample must be a pandas DataFrame of rows the model takes, got "
            f"{type(sample).__name__}"
        )
    if frame.shape[0] == 0:
        raise PackageError("the sample has no rows")
    frame.columns = [str(c) for c in frame.columns]
    duplicated = sorted({c for c in frame.columns if list(frame.columns).count(c) > 1})
    if duplicated:
        raise PackageError(f"the sample has column(s) {_names(duplicated)} more than once")
    return frame.reset_index(drop=True)


def _split_target(frame: pd.DataFrame, target: Any) -> tuple[pd.DataFrame, _Target | None]:
    import pandas as pd

    if target is None:
        return frame, None
    if isinstance(target, str):
        if target not in frame.columns:
            raise PackageError(
                f"the sample has no target column {target!r}; its columns are: "
                f"{_names(frame.columns)}"
            )
        features = frame.drop(columns=[target])
        if features.shape[1] == 0:
            raise PackageError(f"the sample has no feature columns besides the target {target!r}")
        return features, _Target(target, frame[target])
    values = pd.Series(list(target) if not hasattr(target, "__len__") else target).reset_index(
        drop=True
    )
    if len(values) != len(frame):
        raise PackageError(
            f"the target has {len(values)} values but the sample has {len(frame)} rows"
        )
    return frame, _Target(str(getattr(target, "name", None) or "target"), values)


def _match_features(model: Any, frame: pd.DataFrame, truth: _Target | None) -> pd.DataFrame:
    """The sample's feature columns in the model's input order; mismatches are refused by name."""
    names = getattr(model, "feature_names_in_", None)
    columns = list(frame.columns)
    if names is not None:
        names = [str(n) for n in names]
        if truth is not None and truth.name in names and truth.name not in columns:
            raise PackageError(
                f"the target {truth.name!r} is one of the model's input features; name the "
                "column the model predicts"
            )
        missing = [n for n in names if n not in columns]
        extra = [c for c in columns if c not in names]
        if missing:
            raise PackageError(
                f"the sample lacks the model's feature column(s) {_names(missing)}; the model "
                f"was fitted on: {_names(names)}"
            )
        if extra:
            hint = "" if truth is not None else " (if one is the true value, name it as the target)"
            raise PackageError(
                f"the sample has column(s) the model was not fitted on: {_names(extra)}{hint}"
            )
        return frame[names]
    width = getattr(model, "n_features_in_", None)
    if width is not None and int(width) != len(columns):
        hint = "" if truth is not None else " (name the true-value column as the target)"
        raise PackageError(
            f"the model takes {int(width)} features but the sample has {len(columns)} feature "
            f"columns: {_names(columns)}{hint}"
        )
    return frame


def _schema(frame: pd.DataFrame) -> InputSchema:
    empty = [str(c) for c in frame.columns if frame[c].isna().all()]
    if empty:
        raise PackageError(
            f"the sample's column(s) {_names(empty)} have no values at all; the sample must "
            "show each feature's values (numbers, true/false or text)"
        )
    for name in frame.columns:
        column = frame[name]
        if column.dtype == object and int(column.nunique(dropna=True)) > MAX_CATEGORIES:
            raise PackageError(
                f"the sample's column {name!r} has {int(column.nunique())} distinct text values "
                f"(a categorical feature has at most {MAX_CATEGORIES}); it looks like an identifier"
            )
    return infer_schema(frame)


def _predict(model: Any, schema: InputSchema, rows: list[Any]) -> np.ndarray:
    """The model's outputs for `rows`, given exactly as the model server will give them."""
    import numpy as np

    try:
        x = sample_input(schema, rows, model)
        return np.asarray(model.predict(x))
    except Exception as exc:
        raise PackageError(
            f"the model cannot predict the sample rows (given as the model server gives them: "
            f"{_input_kind(schema, model)}): {type(exc).__name__}: {_first_line(exc)}"
        ) from exc


def _input_kind(schema: InputSchema, model: Any) -> str:
    from mlmodel_artifact.schema import takes_frame

    if schema.plain_numeric and not takes_frame(model):
        return "a float64 matrix"
    if takes_frame(model):
        return "a DataFrame with the feature names, numbers as float64, text as str"
    return "a matrix of numbers and strings"


def _task(model: Any, predictions: np.ndarray) -> Task:
    try:
        from sklearn.base import is_classifier, is_regressor

        if is_classifier(model):
            return Task.CLASSIFICATION
        if is_regressor(model):
            return Task.REGRESSION
    except Exception:  # not a scikit-learn estimator: look at what it has
        pass
    if getattr(model, "classes_", None) is not None:
        return Task.CLASSIFICATION
    kind = getattr(model, "_estimator_type", None)
    if kind in ("classifier", "regressor"):
        return Task.CLASSIFICATION if kind == "classifier" else Task.REGRESSION
    raise PackageError(
        f"cannot tell whether {type(model).__name__} classifies or regresses (it has no "
        "classes_ and no estimator type)"
    )


def _class_labels(model: Any, predictions: np.ndarray) -> list[Label]:
    import numpy as np

    classes = getattr(model, "classes_", None)
    if classes is None:
        raise PackageError(f"the classifier {type(model).__name__} has no classes_")
    return [_label(v) for v in np.asarray(classes).tolist()]


def _label(value: Any) -> Label:
    if isinstance(value, int | float | str):
        return value
    return str(value)


def _metrics(
    task: Task, truth: _Target, predictions: np.ndarray, class_labels: list[Label] | None
) -> dict[str, float]:
    """accuracy/f1_macro or r2/mae over the sample, as the trainer computes them held out."""
    import numpy as np
    import pandas as pd
    from sklearn.metrics import accuracy_score, f1_score, mean_absolute_error, r2_score

    values = truth.values
    gaps = int(values.isna().sum())
    if gaps:
        raise PackageError(
            f"the target {truth.name!r} has {gaps} missing value(s); drop those rows of the sample"
        )
    if task is Task.REGRESSION:
        if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
            raise PackageError(
                f"the target {truth.name!r} is not numeric, but the model is a regressor; "
                "name the column holding the true values"
            )
        y_true = values.to_numpy(dtype=np.float64)
        y_pred = predictions.astype(np.float64)
        return {
            "r2": float(r2_score(y_true, y_pred)),
            "mae": float(mean_absolute_error(y_true, y_pred)),
        }
    y_list = values.tolist()
    labels = set(class_labels or np.unique(predictions).tolist())
    known = [v for v in y_list if _hashable(v) and v in labels]
    if not known:
        shown = ", ".join(repr(v) for v in list(dict.fromkeys(y_list))[:5])
        raise PackageError(
            f"the target {truth.name!r} holds none of the model's classes "
            f"({', '.join(repr(c) for c in sorted(labels, key=str)[:10])}); its values: {shown}; "
            "name the column holding the true labels"
        )
    if predictions.dtype.kind in "biuf":
        y_true, y_pred = np.asarray(y_list), predictions
    else:  # labels as text: compare as Python strings (a fixed-width dtype would truncate)
        y_true = np.asarray([str(v) for v in y_list], dtype=object)
        y_pred = np.asarray([str(v) for v in predictions.tolist()], dtype=object)
    try:
        return {
            "accuracy": float(accuracy_score(y_true, y_pred)),
            "f1_macro": float(f1_score(y_true, y_pred, average="macro")),
        }
    except (TypeError, ValueError) as exc:
        raise PackageError(
            f"the target {truth.name!r} cannot be compared with the model's labels: "
            f"{_first_line(exc)}"
        ) from exc


def _hashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


def _card_sample(
    model: Any,
    schema: InputSchema,
    rows: list[Any],
    frame: pd.DataFrame,
    n: int,
    task: Task,
    predictions: np.ndarray,
) -> Sample:
    """`n` rows with the model's outputs: for a classifier the first row of each predicted class
    first (a model that answers one class for everything then fails the reader's check), then
    the first rows; a row with a gap replaces the last one when none has one, so every reader
    checks that the model takes missing values."""
    import numpy as np

    n = min(n, len(rows))
    chosen: dict[int, None] = {}
    if task is Task.CLASSIFICATION:
        for label in dict.fromkeys(predictions.tolist()):
            if len(chosen) < n:
                chosen[int(np.flatnonzero(predictions == label)[0])] = None
    for i in range(len(rows)):
        if len(chosen) >= n:
            break
        chosen.setdefault(i, None)
    picked = sorted(chosen)
    gaps = np.flatnonzero(frame.isna().any(axis=1).to_numpy())
    if len(gaps) and picked and not set(picked) & set(gaps.tolist()):
        picked[-1] = int(gaps[0])
    inputs = [rows[i] for i in picked]
    x = sample_input(schema, inputs, model)
    probabilities = None
    if task is Task.CLASSIFICATION and _has_proba(model):
        probabilities = np.asarray(model.predict_proba(x), dtype=np.float64).tolist()
    outputs = [_label(v) for v in np.asarray(model.predict(x)).tolist()]
    return Sample(inputs=inputs, outputs=outputs, probabilities=probabilities)


def _has_proba(model: Any) -> bool:
    if hasattr(model, "has_proba"):  # OnnxModel: a graph with a probabilities output
        return bool(model.has_proba)
    return callable(getattr(model, "predict_proba", None))


def _final_estimator(model: Any) -> Any:
    steps = getattr(model, "steps", None)
    if isinstance(steps, list) and steps:
        return _final_estimator(steps[-1][1])
    return model


def _params(estimator: Any) -> dict[str, Any]:
    get_params = getattr(estimator, "get_params", None)
    if not callable(get_params):
        return {}
    safe: dict[str, Any] = {}
    for key, value in get_params(deep=False).items():
        if hasattr(value, "item") and not hasattr(value, "__len__"):
            value = value.item()  # numpy scalars
        if isinstance(value, float) and not math.isfinite(value):
            value = repr(value)
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            value = repr(value)
        safe[str(key)] = value
    return safe


def _fingerprint(schema: InputSchema, rows: list[Any], truth: _Target | None) -> str:
    digest = hashlib.sha256()
    digest.update(json.dumps({"feature_names": schema.names, "rows": len(rows)}).encode())
    digest.update(json.dumps(rows).encode())
    if truth is not None:
        digest.update(json.dumps(truth.values.tolist(), default=str).encode())
    return digest.hexdigest()


# --- writing --------------------------------------------------------------------------------


def package_model(
    model: Any,
    uri: str,
    *,
    sample: Any,
    target: Any,
    name: str,
    formats: Sequence[ModelFormat | str] | None,
    sample_rows: int,
    dataset: str,
    source: str,
    source_sha256: str | None = None,
) -> Packaged:
    """Describe a scikit-learn-style model, write it (skops, or joblib when skops refuses it)
    to a staging directory, check it loads like the server loads it, then publish it."""
    description = describe(
        model, sample, target=target, name=name, dataset=dataset, sample_rows=sample_rows
    )
    loc = parse_location(uri)
    if loc.scheme not in ("file", "s3"):
        raise PackageError(
            f"{uri}: {loc.scheme}:// locations are read-only; write to a local path, file:// "
            "or s3://bucket/prefix"
        )
    chosen = [ModelFormat(f) for f in formats] if formats else None
    fallback = None
    with tempfile.TemporaryDirectory(prefix="mlmodel-package-") as tmp:
        staging = Path(tmp)
        if chosen is None:
            try:
                card = _stage(model, description, staging, [ModelFormat.SKOPS])
                chosen = [ModelFormat.SKOPS]
            except ArtifactError as exc:
                if exc.reason not in ("SerializationFailed", "UntrustedType", "ArtifactLoadFailed"):
                    raise
                # "cannot write X as skops: ValueError: it holds types … (not on …)": the types
                fallback = re.sub(r"^.*?: \w+: | \(not on .*$", "", _first_line(exc.message))
                for leftover in staging.iterdir():
                    leftover.unlink()
                chosen = [ModelFormat.JOBLIB]
                card = _stage(model, description, staging, chosen)
        else:
            card = _stage(model, description, staging, chosen)
        published = _publish(staging, card, uri)
    return Packaged(
        uri=published,
        card=card,
        source=source,
        source_sha256=source_sha256,
        fallback=fallback,
    )


def _stage(
    model: Any, description: ModelDescription, staging: Path, formats: list[ModelFormat]
) -> ModelCard:
    _, card = write_artifact(model, description, str(staging), formats, check_onnx=True)
    _check_loads(staging, card)
    return card


def _check_loads(staging: Path, card: ModelCard) -> None:
    """Load the staged artifact as the model server will (the sample must reproduce)."""
    for fmt in card.files:
        pin = card.files[fmt].sha256 if fmt is ModelFormat.JOBLIB else None
        load_model(staging, format=fmt, expected_sha256=pin, uri=str(staging))


def _publish(staging: Path, card: ModelCard, uri: str) -> str:
    loc = parse_location(uri)
    upload(staging, [f.file for f in card.files.values()], loc)
    upload(staging, [MODEL_CARD_FILE], loc)  # last: a reader never sees a card without its file
    return str(loc.path.resolve()) if loc.path is not None else loc.uri


def _package_onnx(
    model: Any,
    path: Path,
    uri: str,
    *,
    sample: Any,
    target: Any,
    name: str,
    sample_rows: int,
    dataset: str,
    source: str,
    source_sha256: str | None,
) -> Packaged:
    """An ONNX graph is written unchanged: the card describes it, from the graph and the sample."""
    info = onnx_info(path.read_bytes(), str(path))
    description = describe(
        model,
        sample,
        target=target,
        name=name,
        dataset=dataset,
        sample_rows=sample_rows,
        task=info.task,
        class_labels=info.class_labels,
        estimator=info.estimator,
        params=info.params,
    )
    if not description.feature_schema.plain_numeric:
        raise PackageError(
            "an ONNX model takes one float tensor, so every sample feature must be a number "
            "with no gaps; the sample has other columns: "
            + _names(
                [
                    f.name
                    for f in description.feature_schema.features
                    if f.kind is not FeatureKind.NUMERIC or f.nullable
                ]
            )
        )
    with tempfile.TemporaryDirectory(prefix="mlmodel-package-") as tmp:
        staging = Path(tmp)
        target_file = staging / MODEL_FILE_NAMES[ModelFormat.ONNX]
        target_file.write_bytes(path.read_bytes())
        files = {
            ModelFormat.ONNX: ModelFile(
                file=target_file.name,
                sha256=sha256_file(target_file),
                size=target_file.stat().st_size,
            )
        }
        card = ModelCard(
            **description.model_dump(),
            format=ModelFormat.ONNX,
            sha256=files[ModelFormat.ONNX].sha256,
            files=files,
            library_versions=library_versions(),
            created_at=datetime.now(UTC).replace(microsecond=0),
        )
        (staging / MODEL_CARD_FILE).write_text(card.to_json())
        _check_loads(staging, card)
        published = _publish(staging, card, uri)
    return Packaged(uri=published, card=card, source=source, source_sha256=source_sha256)


@dataclass(frozen=True)
class OnnxInfo:
    """What an ONNX graph says about itself: task, classes and its main operator."""

    task: Task
    class_labels: list[Label] | None
    estimator: str
    params: dict[str, Any]


def onnx_info(onnx_bytes: bytes, uri: str) -> OnnxInfo:
    """Task and classes of a (checked) ONNX graph: one float input; a classifier's label output
    is integers or strings and its classes are the ML operator's `classlabels_*` attribute."""
    from onnx import ModelProto, TensorProto

    graph_model = ModelProto()
    graph_model.ParseFromString(onnx_bytes)
    graph = graph_model.graph
    inputs = [i for i in graph.input if i.name not in {t.name for t in graph.initializer}]
    if len(inputs) != 1 or inputs[0].type.tensor_type.elem_type != TensorProto.FLOAT:
        shown = ", ".join(
            f"{i.name} ({TensorProto.DataType.Name(i.type.tensor_type.elem_type)})"
            if i.type.HasField("tensor_type")
            else i.name
            for i in inputs
        )
        raise PackageError(
            f"{Path(uri).name}: the ONNX model must take one float tensor [rows, features] (as "
            f"skl2onnx writes with FloatTensorType); its inputs are: {shown}"
        )
    label = graph.output[0]
    elem = label.type.tensor_type.elem_type if label.type.HasField("tensor_type") else 0
    classes: list[Label] | None = None
    ml_ops = [n for n in graph.node if n.domain == "ai.onnx.ml"]
    for node in ml_ops:
        for attr in node.attribute:
            if attr.name == "classlabels_int64s" and len(attr.ints):
                classes = [int(v) for v in attr.ints]
            elif attr.name == "classlabels_strings" and len(attr.strings):
                classes = [v.decode() for v in attr.strings]
        if classes is not None:
            break
    classifier = elem in (TensorProto.INT64, TensorProto.INT32, TensorProto.STRING)
    if classifier and classes is None:
        raise PackageError(
            f"{Path(uri).name}: the ONNX model's label output is {TensorProto.DataType.Name(elem)}"
            " (a classifier) but no operator lists its classes (classlabels_*)"
        )
    producer = " ".join(p for p in (graph_model.producer_name, graph_model.producer_version) if p)
    models = [n.op_type for n in ml_ops if n.op_type.endswith(("Classifier", "Regressor"))]
    main_op = (
        models or [n.op_type for n in ml_ops] or [n.op_type for n in graph.node] or ["graph"]
    )[0]
    return OnnxInfo(
        task=Task.CLASSIFICATION if classifier else Task.REGRESSION,
        class_labels=classes if classifier else None,
        estimator=f"ONNX {main_op}",
        params={"producer": producer} if producer else {},
    )


# --- small helpers --------------------------------------------------------------------------


def _check_name(name: str) -> None:
    if not _NAME.match(name):
        raise PackageError(
            f"{name!r} is not a valid model name: use 1-63 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )


def _name_from(location: str) -> str:
    """A model name from a file name or URI: its last part that is not a version (`v1`)."""
    parts = [p for p in location.split("://")[-1].split("/") if p]
    base = next((p for p in reversed(parts) if not _VERSION.match(p)), parts[-1] if parts else "")
    base = re.sub(r"\.(pkl|pickle|joblib|skops|onnx|json|ubj|txt)$", "", base, flags=re.I)
    derived = re.sub(r"[^a-z0-9.-]+", "-", base.lower()).strip("-._")[:63]
    return derived or "model"


def _names(names: Any) -> str:
    listed = [repr(str(n)) for n in names]
    return ", ".join(listed[:20]) + (f" and {len(listed) - 20} more" if len(listed) > 20 else "")


def _first_line(exc: BaseException | str) -> str:
    text = str(exc).strip()
    return (
        text.splitlines()[0] if text else (type(exc).__name__ if not isinstance(exc, str) else "")
    )


def _fallback_message(result: Packaged) -> str:
    return (
        f"the model was written as joblib (a pickle), not skops, because {result.fallback}. "
        "The model server loads a pickle only with its digest pinned: set "
        f"spec.model.sha256: {result.card.sha256} in the MLModel"
    )
