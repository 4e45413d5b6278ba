"""The compiled fast path: tree ensembles (scikit-learn's, XGBoost's, LightGBM's) and linear
models run by ONNX Runtime.

scikit-learn spends milliseconds per call in Python overhead (a 100-tree forest: ~5 ms for one
row); the same forest as an ONNX graph answers in microseconds. A conversion is only used after
it gives the same labels, and probabilities within PROBA_TOLERANCE, as scikit-learn on the model
card's sample plus generated rows; otherwise the server keeps scikit-learn and says why.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import numpy as np

from mlmodel_artifact import ModelCard, OnnxModel, Task
from model_server.runtimes.base import Array

PROBA_TOLERANCE: Final = 1e-5
GENERATED_ROWS: Final = 256

TREE_ENSEMBLES: Final = frozenset(
    {
        "DecisionTreeClassifier",
        "DecisionTreeRegressor",
        "ExtraTreeClassifier",
        "ExtraTreeRegressor",
        "RandomForestClassifier",
        "RandomForestRegressor",
        "ExtraTreesClassifier",
        "ExtraTreesRegressor",
        "GradientBoostingClassifier",
        "GradientBoostingRegressor",
        "HistGradientBoostingClassifier",
        "HistGradientBoostingRegressor",
    }
)
LINEAR_MODELS: Final = frozenset(
    {
        "LogisticRegression",
        "RidgeClassifier",
        "LinearRegression",
        "Ridge",
        "Lasso",
        "ElasticNet",
        "SGDClassifier",
        "SGDRegressor",
        "LinearSVC",
        "LinearSVR",
    }
)
SCALERS: Final = frozenset({"StandardScaler", "MinMaxScaler", "MaxAbsScaler", "RobustScaler"})
#: XGBoost and LightGBM through their scikit-learn APIs, converted by onnxmltools' converters
#: (registered with skl2onnx by mlmodel_artifact.onnx_model); also an XGBoost classifier inside
#: the trainer's one-member VotingClassifier that encodes string labels.
BOOSTING: Final = frozenset({"XGBClassifier", "XGBRegressor", "LGBMClassifier", "LGBMRegressor"})

Converter = Callable[[Any, int], Any]


@dataclass(frozen=True)
class Compiled:
    """Outcome of one compile attempt: the compiled model, or None and the reason."""

    model: Any | None
    reason: str


def supported(estimator: Any) -> bool:
    """Tree ensembles, linear models, XGBoost/LightGBM, and pipelines of scalers ending in one
    of those."""
    steps = getattr(estimator, "steps", None)
    if steps is not None:
        *pre, (_, last) = steps
        return all(type(step).__name__ in SCALERS for _, step in pre) and supported(last)
    if type(estimator).__name__ == "VotingClassifier":
        members = getattr(estimator, "estimators_", None)
        return (
            isinstance(members, list)
            and len(members) == 1
            and type(members[0]).__name__ in BOOSTING
        )
    return type(estimator).__name__ in TREE_ENSEMBLES | LINEAR_MODELS | BOOSTING


def compile_estimator(
    estimator: Any, card: ModelCard, convert: Converter = OnnxModel.from_sklearn
) -> Compiled:
    """Convert `estimator` and keep the result only if it agrees with scikit-learn."""
    name = type(estimator).__name__
    if not supported(estimator):
        return Compiled(None, f"{name} is not a tree ensemble or linear model")
    try:
        compiled = convert(estimator, card.n_features)
    except Exception as exc:  # skl2onnx raises many types for unsupported options
        return Compiled(None, f"converting {name} to ONNX failed: {type(exc).__name__}: {exc}")
    rows = agreement_rows(card)
    try:
        problem = disagreement(estimator, compiled, rows, card.task)
    except Exception as exc:  # a graph that converts but cannot run is as good as unsupported
        return Compiled(None, f"running the ONNX graph failed: {type(exc).__name__}: {exc}")
    if problem:
        return Compiled(None, f"ONNX Runtime disagrees with scikit-learn: {problem}")
    return Compiled(compiled, f"ONNX Runtime agrees with scikit-learn on {len(rows)} rows")


def agreement_rows(card: ModelCard, n: int = GENERATED_ROWS, seed: int = 0) -> Array:
    """The card's sample rows plus `n` rows drawn around their range (10% margin each side)."""
    sample = np.asarray(card.sample.inputs, dtype=np.float64).reshape(-1, card.n_features)
    if len(sample):
        low, high = sample.min(axis=0), sample.max(axis=0)
    else:
        low, high = np.full(card.n_features, -1.0), np.full(card.n_features, 1.0)
    span = np.where(high > low, high - low, 1.0)
    rng = np.random.default_rng(seed)
    generated = rng.uniform(low - 0.1 * span, high + 0.1 * span, size=(n, card.n_features))
    return np.vstack([sample, generated])


def disagreement(reference: Any, candidate: Any, rows: Array, task: Task) -> str:
    """Empty if `candidate` answers like `reference` on `rows`, else the first difference."""
    want, got = np.asarray(reference.predict(rows)), np.asarray(candidate.predict(rows))
    if task is Task.REGRESSION:
        close = np.isclose(got.astype(np.float64), want.astype(np.float64), rtol=1e-5, atol=1e-5)
        return "" if close.all() else _first_row("value", rows, want, got, close)
    same = np.asarray([a == b for a, b in zip(want.tolist(), got.tolist(), strict=True)])
    if not same.all():
        return _first_row("label", rows, want, got, same)
    if not hasattr(reference, "predict_proba"):
        return ""  # labels are all such a classifier answers
    want_p = np.asarray(reference.predict_proba(rows), dtype=np.float64)
    got_p = np.asarray(candidate.predict_proba(rows), dtype=np.float64)
    if want_p.shape != got_p.shape:
        return f"probability shape {got_p.shape} instead of {want_p.shape}"
    error = float(np.abs(want_p - got_p).max())
    if error > PROBA_TOLERANCE:
        return f"probabilities differ by up to {error:.2e} (tolerance {PROBA_TOLERANCE:.0e})"
    return ""


def _first_row(what: str, rows: Array, want: Array, got: Array, ok: Array) -> str:
    i = int(np.flatnonzero(~ok)[0])
    bad = int((~ok).sum())
    return (
        f"{bad} of {len(rows)} rows differ; row {rows[i].tolist()} gives {what} "
        f"{got[i].item()!r} instead of {want[i].item()!r}"
    )
