"""The typed feature schema of a model card, and how rows of mixed-type values become model input.

One definition for every part: the trainer (and `save`) derives a schema from the training frame
(`infer_schema`), the model server checks each request's values against it (`encode_rows`) and
builds what the model takes (`model_input`), and the operator reads it from the card.

Per feature the card records its kind (`numeric`, `categorical`, `boolean`), whether it may be
missing (`nullable`), the categories seen in training and training statistics (quantiles for
numeric features, frequencies for categorical and boolean ones), a reference for later checks
such as drift. A card without a schema (written before it existed) means every feature is a
required number: `schema_for(card)` gives that schema.

numpy and pandas are imported inside the functions that need them: reading a card (the
operator) imports neither.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Final

from pydantic import BaseModel, ConfigDict, Field, model_validator

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

# A categorical feature with more distinct values than this is almost always an identifier
# (one-hot encoding it would make a column per row); the trainer refuses it, naming it.
MAX_CATEGORIES: Final = 1000
# Frequencies kept per categorical feature (the rest are counted under OTHER).
MAX_FREQUENCIES: Final = 100
OTHER: Final = "__other__"
QUANTILES: Final = (0.0, 0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 1.0)
# A string or category name longer than this is not a category a model was trained on.
MAX_CATEGORY_CHARS: Final = 256
# How a missing category reaches an ONNX graph (string tensors have no NaN); a category holding
# this character is refused by encode_column, so no value a client sends can mean "missing".
MISSING_CATEGORY: Final = "\x00"
# From this many rows a numeric column is checked with numpy (below it, numpy's per-call cost is
# more than the per-value loop's).
VECTOR_MIN_ROWS: Final = 16
# Numbers beyond float32's range: the compiled (float32) path would read them as infinity.
FLOAT32_MAX: Final = 3.4028234663852886e38

Value = float | str | bool | None

_FROZEN = ConfigDict(frozen=True, extra="forbid")


class FeatureKind(StrEnum):
    """What values a feature takes."""

    NUMERIC = "numeric"  # numbers (integers or floats)
    CATEGORICAL = "categorical"  # strings from a set seen in training; unseen ones are allowed
    BOOLEAN = "boolean"  # true/false


class FeatureStats(BaseModel):
    """Training statistics of one feature: the reference later checks (drift) compare against."""

    model_config = _FROZEN

    count: int = Field(ge=0, description="rows with a value")
    missing: int = Field(ge=0, description="rows without one")
    # numeric
    mean: float | None = None
    std: float | None = None
    quantiles: dict[str, float] | None = Field(
        default=None, description='"p0" (minimum), "p1", …, "p50" (median), …, "p100" (maximum)'
    )
    # categorical and boolean: value -> rows; beyond MAX_FREQUENCIES values the rest are OTHER
    frequencies: dict[str, int] | None = None


class Feature(BaseModel):
    """One input column of the model."""

    model_config = _FROZEN

    name: str = Field(min_length=1, max_length=256)
    kind: FeatureKind = FeatureKind.NUMERIC
    nullable: bool = Field(default=False, description="whether a request may leave it out (null)")
    categories: list[str] | None = Field(
        default=None, max_length=MAX_CATEGORIES, description="categorical: the values seen"
    )
    stats: FeatureStats | None = None

    @model_validator(mode="after")
    def _categories_only_for_categorical(self) -> Feature:
        if self.categories is not None and self.kind is not FeatureKind.CATEGORICAL:
            raise ValueError(
                f"feature {self.name!r} is {self.kind.value}; only categorical "
                "features have categories"
            )
        return self


class InputSchema(BaseModel):
    """The model's input columns in order: what a request must send."""

    model_config = _FROZEN

    features: list[Feature] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_names(self) -> InputSchema:
        seen: set[str] = set()
        for feature in self.features:
            if feature.name in seen:
                raise ValueError(f"feature {feature.name!r} is listed twice")
            seen.add(feature.name)
        return self

    @property
    def names(self) -> list[str]:
        """Feature names in input order."""
        return [f.name for f in self.features]

    @property
    def plain_numeric(self) -> bool:
        """Every feature a required number: the model takes a float64 matrix, as before schemas."""
        return all(f.kind is FeatureKind.NUMERIC and not f.nullable for f in self.features)

    @classmethod
    def numeric(cls, names: Sequence[str]) -> InputSchema:
        """Every feature a required number (what a card without a schema means)."""
        return cls(features=[Feature(name=n) for n in names])


@dataclass(frozen=True)
class Columns:
    """Validated request values, one array per feature (in schema order).

    numeric and boolean features: float64 (booleans as 0/1), NaN where missing; categorical:
    an object array of str, NaN where missing (what scikit-learn's imputers look for).
    """

    schema: InputSchema
    arrays: tuple[np.ndarray, ...]

    def __len__(self) -> int:
        return len(self.arrays[0])


class FeatureValueError(ValueError):
    """A value the schema does not allow; `where` names the row and feature."""

    def __init__(self, where: str, message: str) -> None:
        super().__init__(f"{where}: {message}")
        self.where = where


def encode_rows(schema: InputSchema, rows: Sequence[Any], where: str = "inputs") -> Columns:
    """Check rows (lists in schema order, or objects keyed by feature name) against `schema`.

    Raises FeatureValueError naming the row and feature: an unknown or missing feature, a null
    where the feature is not nullable, a value of the wrong kind.
    """
    if not rows:
        raise FeatureValueError(where, "is an empty batch; send at least one row")
    names = schema.names
    known = frozenset(names)
    required = frozenset(f.name for f in schema.features if not f.nullable)
    n = len(names)
    ordered: list[Sequence[Any]] = []
    for i, row in enumerate(rows):
        if isinstance(row, Mapping):
            keys = row.keys()
            if not (keys <= known and required <= keys):  # set operations: the usual row is fine
                unknown = [k for k in row if k not in known]
                if unknown:
                    raise FeatureValueError(
                        f"{where}[{i}]",
                        f"unknown feature {str(unknown[0])[:100]!r}; the model's features are: "
                        f"{', '.join(names)}",
                    )
                missing = [name for name in names if name in required and name not in row]
                raise FeatureValueError(f"{where}[{i}]", f"is missing feature {missing[0]!r}")
            ordered.append([row.get(name) for name in names])
        elif isinstance(row, list | tuple):
            if len(row) != n:
                raise FeatureValueError(
                    f"{where}[{i}]",
                    f"has {len(row)} values; the model takes {n}: {', '.join(names)}",
                )
            ordered.append(row)
        else:
            raise FeatureValueError(
                f"{where}[{i}]",
                f"must be an object keyed by feature name or a list of {n} values, "
                f"got {_kind(row)}",
            )
    arrays = tuple(
        encode_column(feature, [row[j] for row in ordered], lambda i: f"{where}[{i}]")
        for j, feature in enumerate(schema.features)
    )
    return Columns(schema, arrays)


def encode_column(feature: Feature, values: Sequence[Any], row: Any) -> np.ndarray:
    """One feature's values as an array (see Columns); `row(i)` names row i in errors."""
    import numpy as np

    kind = feature.kind
    if kind is FeatureKind.CATEGORICAL:
        out = np.empty(len(values), dtype=object)
        for i, value in enumerate(values):
            if value is None:
                _check_nullable(feature, row(i))
                out[i] = math.nan
            elif value.__class__ is str:
                if len(value) > MAX_CATEGORY_CHARS:
                    raise FeatureValueError(
                        f"{row(i)} feature {feature.name!r}",
                        f"is a string of {len(value)} characters; categories are at most "
                        f"{MAX_CATEGORY_CHARS}",
                    )
                if MISSING_CATEGORY in value:
                    raise FeatureValueError(
                        f"{row(i)} feature {feature.name!r}",
                        "holds a NUL character, which no category has (send null for a "
                        "missing value)",
                    )
                out[i] = value
            else:
                raise FeatureValueError(
                    f"{row(i)} feature {feature.name!r}",
                    f"is categorical and must be a string, got {_kind(value)}",
                )
        return out
    if kind is FeatureKind.NUMERIC and len(values) >= VECTOR_MIN_ROWS:
        fast = _plain_numbers(values)
        if fast is not None:
            return fast
    floats = np.empty(len(values), dtype=np.float64)
    for i, value in enumerate(values):
        if value is None:
            _check_nullable(feature, row(i))
            floats[i] = math.nan
        elif kind is FeatureKind.BOOLEAN:
            if value.__class__ is not bool:
                raise FeatureValueError(
                    f"{row(i)} feature {feature.name!r}",
                    f"is boolean and must be true or false, got {_kind(value)}",
                )
            floats[i] = 1.0 if value else 0.0
        elif value.__class__ is bool or not isinstance(value, int | float):
            raise FeatureValueError(
                f"{row(i)} feature {feature.name!r}", f"must be a number, got {_kind(value)}"
            )
        else:
            number = float(value) if abs(value) <= FLOAT32_MAX else math.inf
            if not abs(number) <= FLOAT32_MAX:
                raise FeatureValueError(
                    f"{row(i)} feature {feature.name!r}",
                    f"is {value}; NaN, infinity and values beyond float32's range are not "
                    "valid inputs (send null for a missing value where the feature allows it)",
                )
            floats[i] = number
    return floats


def _plain_numbers(values: Sequence[Any]) -> np.ndarray | None:
    """`values` as float64 when every one is an int or float within float32's range (the usual
    request, checked in C), else None: the per-value loop then finds and names the problem."""
    import numpy as np

    if not all(v.__class__ is float or v.__class__ is int for v in values):
        return None  # nulls, booleans, strings, ...
    try:
        floats = np.fromiter(values, dtype=np.float64, count=len(values))
    except OverflowError:  # an int beyond float64
        return None
    return floats if len(floats) and np.abs(floats).max() <= FLOAT32_MAX else None


def model_input(columns: Columns, frame: bool) -> Any:
    """What the model is given: a pandas DataFrame (`frame`: a model fitted on named columns)
    or a 2-D array (float64 when every column is, else object)."""
    import numpy as np

    if frame:
        import pandas as pd

        return pd.DataFrame(
            {name: array for name, array in zip(columns.schema.names, columns.arrays, strict=True)}
        )
    if all(a.dtype != object for a in columns.arrays):
        return np.column_stack(columns.arrays)
    out = np.empty((len(columns), len(columns.arrays)), dtype=object)
    for j, array in enumerate(columns.arrays):
        out[:, j] = array
    return out


def takes_frame(model: Any) -> bool:
    """Whether `model` was fitted on a DataFrame (scikit-learn records `feature_names_in_`)."""
    return getattr(model, "feature_names_in_", None) is not None


def sample_input(schema: InputSchema, rows: Sequence[Sequence[Any]], model: Any) -> Any:
    """The card's sample rows as the model takes them (a float64 matrix for plain numbers)."""
    if schema.plain_numeric and not takes_frame(model):
        import numpy as np

        return np.asarray(rows, dtype=np.float64).reshape(-1, len(schema.features))
    return model_input(encode_rows(schema, rows, "sample.inputs"), takes_frame(model))


def _check_nullable(feature: Feature, where: str) -> None:
    if not feature.nullable:
        raise FeatureValueError(
            f"{where} feature {feature.name!r}",
            "is null, but the model was trained without missing values in it; send a value",
        )


#: The JSON name of a parsed value's type, for error messages (the model server uses it too).
JSON_KINDS: Final = {
    bool: "boolean",
    int: "number",
    float: "number",
    str: "string",
    list: "array",
    dict: "object",
    type(None): "null",
}


def _kind(value: Any) -> str:
    kind = JSON_KINDS.get(type(value), type(value).__name__)
    if isinstance(value, bool | int | float) or (isinstance(value, str) and len(value) <= 40):
        return f"{kind} {value!r}" if not isinstance(value, str) else f'{kind} "{value}"'
    return kind


# --- deriving a schema from training data (trainer, save) -------------------------------------


def column_kind(column: pd.Series) -> FeatureKind:
    """numeric for numbers, boolean for true/false (missing allowed), categorical otherwise."""
    import pandas as pd

    if pd.api.types.is_bool_dtype(column):
        return FeatureKind.BOOLEAN
    if pd.api.types.is_numeric_dtype(column):
        return FeatureKind.NUMERIC
    present = column.dropna()
    if len(present) and all(v.__class__ is bool or type(v).__name__ == "bool_" for v in present):
        return FeatureKind.BOOLEAN
    return FeatureKind.CATEGORICAL


def infer_schema(frame: pd.DataFrame, kinds: Sequence[FeatureKind] | None = None) -> InputSchema:
    """The schema of a training frame's feature columns, with their statistics.

    `kinds` overrides what the values suggest (a frame already typed by `normalize_frame`
    holds booleans as 0/1 floats).
    """
    return InputSchema(
        features=[
            infer_feature(str(name), frame[name], kinds[i] if kinds is not None else None)
            for i, name in enumerate(frame.columns)
        ]
    )


def infer_feature(name: str, column: pd.Series, kind: FeatureKind | None = None) -> Feature:
    """One column's kind, nullability, categories and statistics."""
    kind = kind or column_kind(column)
    present = column.dropna()
    missing = int(len(column) - len(present))
    if kind is FeatureKind.NUMERIC:
        values = present.astype("float64")
        stats = FeatureStats(
            count=len(values),
            missing=missing,
            mean=_finite(values.mean()),
            std=_finite(values.std(ddof=0)),
            quantiles={_quantile_key(q): float(values.quantile(q)) for q in QUANTILES}
            if len(values)
            else None,
        )
        return Feature(name=name, kind=kind, nullable=missing > 0, stats=stats)
    texts = present.map(
        lambda v: ("true" if bool(v) else "false") if kind is FeatureKind.BOOLEAN else str(v)
    )
    counts = texts.value_counts()
    frequencies = {str(k): int(v) for k, v in counts.iloc[:MAX_FREQUENCIES].items()}
    if len(counts) > MAX_FREQUENCIES:
        frequencies[OTHER] = int(counts.iloc[MAX_FREQUENCIES:].sum())
    stats = FeatureStats(count=len(present), missing=missing, frequencies=frequencies)
    categories = sorted(str(k) for k in counts.index) if kind is FeatureKind.CATEGORICAL else None
    return Feature(name=name, kind=kind, nullable=missing > 0, categories=categories, stats=stats)


def normalize_frame(frame: pd.DataFrame, schema: InputSchema) -> pd.DataFrame:
    """`frame`'s feature columns typed exactly as `model_input` gives them to a model at serving
    time (numeric and boolean float64 with NaN, categorical object str with NaN), so that what
    a pipeline is fitted on and what it is later given never differ in dtype."""
    import pandas as pd

    columns = {}
    for feature in schema.features:
        values = frame[feature.name].tolist()
        rows = frame_rows(pd.DataFrame({feature.name: values}), InputSchema(features=[feature]))
        columns[feature.name] = encode_column(feature, [r[0] for r in rows], lambda i: f"row {i}")
    return pd.DataFrame(columns, index=frame.index)


def frame_rows(frame: pd.DataFrame, schema: InputSchema) -> list[list[Value]]:
    """Rows of `frame` as JSON values in schema order (None where missing): the card's sample."""
    rows: list[list[Value]] = []
    kinds = [f.kind for f in schema.features]
    for record in frame.itertuples(index=False, name=None):
        row: list[Value] = []
        for kind, value in zip(kinds, record, strict=True):
            if _is_missing(value):
                row.append(None)
            elif kind is FeatureKind.NUMERIC:
                row.append(float(value))
            elif kind is FeatureKind.BOOLEAN:
                row.append(bool(value))
            else:
                row.append(str(value))
        rows.append(row)
    return rows


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    try:
        return bool(value != value)  # NaN, pandas.NA raises in bool() below
    except TypeError:
        return True


def _quantile_key(q: float) -> str:
    return f"p{round(q * 100):d}"


def _finite(value: Any) -> float | None:
    number = float(value)
    return number if math.isfinite(number) else None
