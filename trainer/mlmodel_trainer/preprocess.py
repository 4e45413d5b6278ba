"""The preprocessing Pipeline for tabular data: imputation and one-hot encoding per feature kind.

Data with categorical or boolean columns, or missing values, is trained as

    Pipeline([("preprocess", ColumnTransformer([...])), ("model", estimator)])

with, per kind of column (named, so the fitted pipeline takes a DataFrame with those names):

- numeric: SimpleImputer(strategy="median")
- boolean (0/1): SimpleImputer(strategy="most_frequent")
- categorical: SimpleImputer(strategy="most_frequent") then OneHotEncoder(handle_unknown="ignore"),
  so a category never seen in training is all zeros, not an error.
"""

from __future__ import annotations

from typing import Any

from sklearn.base import BaseEstimator
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder

from mlmodel_artifact import FeatureKind, InputSchema

PREPROCESS_STEP = "preprocess"
MODEL_STEP = "model"


def build_pipeline(schema: InputSchema, estimator: BaseEstimator) -> Pipeline:
    """`estimator` behind a ColumnTransformer that imputes and encodes each kind of column."""
    by_kind: dict[FeatureKind, list[str]] = {kind: [] for kind in FeatureKind}
    for feature in schema.features:
        by_kind[feature.kind].append(feature.name)
    transformers: list[tuple[str, Any, list[str]]] = []
    if by_kind[FeatureKind.NUMERIC]:
        transformers.append(
            ("numeric", SimpleImputer(strategy="median"), by_kind[FeatureKind.NUMERIC])
        )
    if by_kind[FeatureKind.BOOLEAN]:
        transformers.append(
            ("boolean", SimpleImputer(strategy="most_frequent"), by_kind[FeatureKind.BOOLEAN])
        )
    if by_kind[FeatureKind.CATEGORICAL]:
        categorical = Pipeline(
            [
                ("impute", SimpleImputer(strategy="most_frequent")),
                ("onehot", OneHotEncoder(handle_unknown="ignore", sparse_output=False)),
            ]
        )
        transformers.append(("categorical", categorical, by_kind[FeatureKind.CATEGORICAL]))
    return Pipeline(
        [
            (PREPROCESS_STEP, ColumnTransformer(transformers, remainder="drop")),
            (MODEL_STEP, estimator),
        ]
    )


def final_estimator(model: Any) -> Any:
    """The estimator at the end of a Pipeline (or `model` itself)."""
    steps = getattr(model, "steps", None)
    return steps[-1][1] if steps else model


def describe_pipeline(model: Any) -> str:
    """One line saying what was built, e.g.
    `impute median (4 numeric) + impute most frequent, one-hot (2 categorical) -> RandomForest…`."""
    steps = getattr(model, "steps", None)
    if not steps or steps[0][0] != PREPROCESS_STEP:
        return type(model).__name__
    parts = []
    for name, _, columns in steps[0][1].transformers:
        what = {
            "numeric": "impute median",
            "boolean": "impute most frequent",
            "categorical": "impute most frequent + one-hot",
        }.get(name, name)
        shown = ", ".join(columns[:4]) + (", …" if len(columns) > 4 else "")
        parts.append(f"{what} ({len(columns)} {name}: {shown})")
    return f"Pipeline: {'; '.join(parts)} -> {type(final_estimator(model)).__name__}"
