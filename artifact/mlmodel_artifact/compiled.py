"""The compiled fast path: tree ensembles (scikit-learn's, XGBoost's, LightGBM's) and linear
models run by ONNX Runtime, alone or behind scalers or a ColumnTransformer.

scikit-learn spends milliseconds per call in Python overhead (a 100-tree forest: ~5 ms for one
row, ~8 ms behind the penguins ColumnTransformer); the same model as an ONNX graph answers in
tens of microseconds. A conversion is only used after it gives the same labels, and
probabilities within PROBA_TOLERANCE, as scikit-learn on the model card's sample plus generated
rows; otherwise the server keeps scikit-learn and says why.

Mixed-type models (categorical, boolean or nullable features) compile to a graph with one input
per feature (`mlmodel_artifact.onnx_model.sklearn_to_onnx_bytes`); their generated rows draw
every category seen in training, one never seen, and nulls where the schema allows them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import numpy as np

from mlmodel_artifact.card import ModelDescription, OnnxCheck, Task
from mlmodel_artifact.onnx_model import OnnxModel, sklearn_to_onnx_bytes
from mlmodel_artifact.schema import (
    Columns,
    Feature,
    FeatureKind,
    InputSchema,
    encode_rows,
    model_input,
    takes_frame,
)

Array = np.ndarray

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
#: What may sit in a ColumnTransformer in front of a compiled model (inside Pipelines too).
COLUMN_STEPS: Final = SCALERS | {"SimpleImputer", "OneHotEncoder", "OrdinalEncoder"}
#: In generated rows: the share of nulls in a nullable feature, and a category never seen.
NULL_SHARE: Final = 0.15
UNSEEN_CATEGORY: Final = "never seen in training"
#: XGBoost and LightGBM through their scikit-learn APIs, converted by onnxmltools' converters
#: (registered with skl2onnx by mlmodel_artifact.onnx_model); also an XGBoost classifier inside
#: the trainer's one-member VotingClassifier that encodes string labels.
BOOSTING: Final = frozenset({"XGBClassifier", "XGBRegressor", "LGBMClassifier", "LGBMRegressor"})

Converter = Callable[[Any, int], Any]


@dataclass(frozen=True)
class Compiled:
    """Outcome of one compile attempt: the compiled model, or None and the reason; `rows` is
    how many rows the agreement check compared (0 when it never ran)."""

    model: Any | None
    reason: str
    rows: int = 0


@dataclass(frozen=True)
class CheckedGraph:
    """The ONNX form of a model written into an artifact, and how it was checked."""

    check: OnnxCheck
    onnx_bytes: bytes | None  # the graph that was checked; None unless it agrees


def check_onnx_form(estimator: Any, description: ModelDescription) -> CheckedGraph:
    """Convert `estimator` to ONNX and check it answers like the estimator (`compile_estimator`:
    the sample rows plus generated ones), at training time, so a server can serve the graph
    without converting (or importing scikit-learn) at every start."""
    schema = description.feature_schema
    typed = None if schema.plain_numeric else schema
    graphs: list[bytes] = []

    def convert(model: Any, n_features: int) -> OnnxModel:
        graphs.append(sklearn_to_onnx_bytes(model, n_features, typed))
        return OnnxModel(graphs[-1])

    outcome = compile_estimator(estimator, description, convert, typed)
    agrees = outcome.model is not None
    check = OnnxCheck(
        agrees=agrees, rows=outcome.rows, tolerance=PROBA_TOLERANCE, detail=outcome.reason[:2000]
    )
    return CheckedGraph(check, graphs[-1] if agrees else None)


def supported(estimator: Any) -> bool:
    """Tree ensembles, linear models, XGBoost/LightGBM, and pipelines of scalers or a
    ColumnTransformer (of imputers, encoders and scalers) ending in one of those."""
    return not unsupported(estimator)


def unsupported(estimator: Any) -> str:
    """Why `estimator` is not compiled (naming the part), or "" when it may be."""
    steps = getattr(estimator, "steps", None)
    if steps is not None:
        *pre, (_, last) = steps
        for _, step in pre:
            odd = _not_preprocessing(step)
            if odd:
                return f"the pipeline's {odd} is not an imputer, encoder or scaler"
        return unsupported(last)
    name = type(estimator).__name__
    if name == "VotingClassifier":
        members = getattr(estimator, "estimators_", None)
        if (
            isinstance(members, list)
            and len(members) == 1
            and type(members[0]).__name__ in BOOSTING
        ):
            return ""
        return "a VotingClassifier other than one XGBoost/LightGBM member"
    if name in TREE_ENSEMBLES | LINEAR_MODELS | BOOSTING:
        return ""
    return f"{name} is not a tree ensemble or linear model"


def _not_preprocessing(step: Any) -> str:
    """The name of the first part of `step` that is not an imputer, encoder or scaler, or ""."""
    name = type(step).__name__
    if name == "ColumnTransformer":
        parts = [part for _, part, _ in getattr(step, "transformers_", [])]
        odd = [_not_preprocessing(p) for p in parts if p not in ("drop", "passthrough")]
        return next((o for o in odd if o), "")
    if name == "Pipeline":
        return next((o for o in (_not_preprocessing(p) for _, p in step.steps) if o), "")
    return "" if name in COLUMN_STEPS else name


def compile_estimator(
    estimator: Any,
    card: ModelDescription,
    convert: Converter = OnnxModel.from_sklearn,
    schema: InputSchema | None = None,
) -> Compiled:
    """Convert `estimator` and keep the result only if it agrees with scikit-learn.

    With a mixed-type `schema` the rows are typed: scikit-learn gets them as it was fitted (a
    DataFrame or an object array), the graph as the typed path gives them (an object array).
    """
    name = type(estimator).__name__
    reason = unsupported(estimator)
    if reason:
        return Compiled(None, reason)
    try:
        compiled = convert(estimator, card.n_features)
    except Exception as exc:  # skl2onnx raises many types for unsupported options
        return Compiled(None, f"converting {name} to ONNX failed: {type(exc).__name__}: {exc}")
    if schema is None or schema.plain_numeric:
        rows = reference_rows = agreement_rows(card)
    else:
        columns = typed_agreement_rows(card, schema)
        rows = model_input(columns, frame=False)
        reference_rows = model_input(columns, frame=takes_frame(estimator))
    try:
        problem = disagreement(estimator, compiled, rows, card.task, reference_rows)
    except Exception as exc:  # a graph that converts but cannot run is as good as unsupported
        return Compiled(None, f"running the ONNX graph failed: {type(exc).__name__}: {exc}")
    if problem:
        return Compiled(None, f"ONNX Runtime disagrees with scikit-learn: {problem}", len(rows))
    return Compiled(
        compiled, f"ONNX Runtime agrees with scikit-learn on {len(rows)} rows", len(rows)
    )


def agreement_rows(card: ModelDescription, n: int = GENERATED_ROWS, seed: int = 0) -> Array:
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


def typed_agreement_rows(
    card: ModelDescription, schema: InputSchema, n: int = GENERATED_ROWS, seed: int = 0
) -> Columns:
    """The card's sample rows plus `n` generated ones, typed by `schema`: numbers drawn around
    the sample's range (10% margin), every category seen in training and one never seen,
    booleans, and nulls where the feature is nullable."""
    rng = np.random.default_rng(seed)
    sample = list(card.sample.inputs)
    columns = [
        _generated(f, [row[j] for row in sample], n, rng) for j, f in enumerate(schema.features)
    ]
    generated = [list(row) for row in zip(*columns, strict=True)]
    return encode_rows(schema, [*sample, *generated], "agreement rows")


def _generated(feature: Feature, seen: list[Any], n: int, rng: np.random.Generator) -> list[Any]:
    values: list[Any]
    if feature.kind is FeatureKind.CATEGORICAL:
        pool = [*(feature.categories or [v for v in seen if isinstance(v, str)]), UNSEEN_CATEGORY]
        values = [pool[i] for i in rng.integers(0, len(pool), n)]
    elif feature.kind is FeatureKind.BOOLEAN:
        values = [bool(b) for b in rng.integers(0, 2, n)]
    else:
        numbers = [float(v) for v in seen if isinstance(v, int | float)] or [-1.0, 1.0]
        low, high = min(numbers), max(numbers)
        span = high - low if high > low else 1.0
        values = rng.uniform(low - 0.1 * span, high + 0.1 * span, n).tolist()
    if feature.nullable:
        values = [None if rng.random() < NULL_SHARE else v for v in values]
    return values


def disagreement(
    reference: Any,
    candidate: Any,
    rows: Array,
    task: Task,
    reference_rows: Any = None,
) -> str:
    """Empty if `candidate` answers like `reference` on `rows`, else the first difference.

    `reference_rows` are the same rows as `reference` takes them (a DataFrame for a model
    fitted on one; default: `rows`).
    """
    theirs = rows if reference_rows is None else reference_rows
    want, got = np.asarray(reference.predict(theirs)), np.asarray(candidate.predict(rows))
    if task is Task.REGRESSION:
        close = np.isclose(got.astype(np.float64), want.astype(np.float64), rtol=1e-5, atol=1e-5)
        return "" if close.all() else _first_row("value", rows, want, got, close)
    same = np.asarray([a == b for a, b in zip(want.tolist(), got.tolist(), strict=True)])
    if not same.all():
        return _first_row("label", rows, want, got, same)
    if not hasattr(reference, "predict_proba"):
        return ""  # labels are all such a classifier answers
    want_p = np.asarray(reference.predict_proba(theirs), dtype=np.float64)
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
        f"{_plain(got[i])!r} instead of {_plain(want[i])!r}"
    )


def _plain(value: Any) -> Any:
    """A numpy scalar as its Python value (string labels in object arrays already are)."""
    return value.item() if hasattr(value, "item") else value
