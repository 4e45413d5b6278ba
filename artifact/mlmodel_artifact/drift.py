"""The drift reference of a model card, and the population stability index (PSI) against it.

One definition of the bins for every part: the trainer (and `package`) write, per feature, how
the training rows fall into bins, and how the model's outputs on held-out rows do; the model
server puts the rows it is sent into the same bins (`feature_bins`, `output_bins`) and compares
its recent window with the reference (`psi`).

Bins, per feature, always with a last bin for missing values:
- numeric: cut at the training deciles (duplicates dropped, so a feature with few distinct
  values gets fewer bins); bin i holds edges[i-1] < v <= edges[i], the first everything up to
  edges[0], the last everything above the top edge;
- boolean: false, true;
- categorical: the most frequent training categories, one bin each, then one for every other
  value (categories unseen in training land there).
Outputs: classification, one bin per class label (then one for anything else); regression,
the deciles of the held-out predictions.

PSI = sum over bins of (actual - expected) * ln(actual / expected), shares floored at
PSI_FLOOR (a bin empty on one side would make it infinite). The usual reading: under 0.1 no
shift, 0.1 to 0.25 a moderate one, above 0.25 a major one.

numpy is imported inside the functions that need it: reading a card imports nothing heavy.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

from pydantic import BaseModel, ConfigDict, Field, model_validator

from mlmodel_artifact.schema import FeatureKind, InputSchema

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

Label = int | float | str

PSI_FLOOR: Final = 1e-4
DECILES: Final = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
# Categories with a bin of their own (the rest share the "other" bin).
MAX_CATEGORY_BINS: Final = 20
OTHER_BIN: Final = "__other__"
MISSING_BIN: Final = "__missing__"

_FROZEN = ConfigDict(frozen=True, extra="forbid")


class FeatureReference(BaseModel):
    """How the training rows of one feature fall into its bins."""

    model_config = _FROZEN

    name: str
    kind: FeatureKind
    edges: list[float] | None = Field(
        default=None, description="numeric and boolean: ascending cut points"
    )
    categories: list[str] | None = Field(
        default=None, description="categorical: one bin each, then the other bin"
    )
    shares: list[float] = Field(description="per bin, the missing bin last; they sum to 1")
    rows: int = Field(ge=0)

    @model_validator(mode="after")
    def _bins_match_shares(self) -> FeatureReference:
        if len(self.shares) != n_feature_bins(self):
            raise ValueError(
                f"drift reference of {self.name!r}: {len(self.shares)} shares for "
                f"{n_feature_bins(self)} bins"
            )
        return self

    @property
    def labels(self) -> list[str]:
        """A readable name per bin, the missing bin last."""
        if self.categories is not None:
            return [*self.categories, OTHER_BIN, MISSING_BIN]
        if self.kind is FeatureKind.BOOLEAN:
            return ["false", "true", MISSING_BIN]
        return [*_interval_labels(self.edges or []), MISSING_BIN]


class OutputReference(BaseModel):
    """How the model's outputs on held-out rows fall into bins."""

    model_config = _FROZEN

    classes: list[Label] | None = Field(
        default=None, description="classification: one bin per label, then the other bin"
    )
    edges: list[float] | None = Field(default=None, description="regression: the deciles")
    shares: list[float]
    rows: int = Field(ge=0)

    @model_validator(mode="after")
    def _bins_match_shares(self) -> OutputReference:
        if (self.classes is None) == (self.edges is None):
            raise ValueError("an output reference has either classes or edges")
        if len(self.shares) != n_output_bins(self):
            raise ValueError(
                f"output drift reference: {len(self.shares)} shares for {n_output_bins(self)} bins"
            )
        return self

    @property
    def labels(self) -> list[str]:
        """A readable name per bin."""
        if self.classes is not None:
            return [*(str(c) for c in self.classes), OTHER_BIN]
        return _interval_labels(self.edges or [])


class DriftReference(BaseModel):
    """The card's reference for drift: every feature's training bins, and the outputs'."""

    model_config = _FROZEN

    features: list[FeatureReference] = Field(min_length=1)
    outputs: OutputReference | None = None


# --- bins -------------------------------------------------------------------------------------


def n_feature_bins(ref: FeatureReference) -> int:
    """Bins of a feature, the missing bin included."""
    if ref.categories is not None:
        return len(ref.categories) + 2
    return len(ref.edges or []) + 2


def n_output_bins(ref: OutputReference) -> int:
    """Bins of the outputs."""
    if ref.classes is not None:
        return len(ref.classes) + 1
    return len(ref.edges or []) + 1


def feature_bins(ref: FeatureReference, values: np.ndarray) -> np.ndarray:
    """The bin index (int64) of each value: numeric and boolean arrays are float64 with NaN
    where missing, categorical ones object arrays of str with NaN (the server's `Columns`)."""
    import numpy as np

    missing_bin = n_feature_bins(ref) - 1
    if ref.categories is not None:
        index = {c: i for i, c in enumerate(ref.categories)}
        other = len(ref.categories)
        return np.fromiter(
            (index.get(v, other) if isinstance(v, str) else missing_bin for v in values.tolist()),
            dtype=np.int64,
            count=len(values),
        )
    numbers = np.asarray(values, dtype=np.float64)
    bins = np.searchsorted(np.asarray(ref.edges or [], dtype=np.float64), numbers, side="left")
    bins[np.isnan(numbers)] = missing_bin
    return bins.astype(np.int64, copy=False)


def output_bins(ref: OutputReference, outputs: np.ndarray) -> np.ndarray:
    """The bin index (int64) of each output (labels for classification, numbers for
    regression)."""
    import numpy as np

    if ref.classes is not None:
        index = {_label_key(c): i for i, c in enumerate(ref.classes)}
        other = len(ref.classes)
        return np.fromiter(
            (index.get(_label_key(v), other) for v in outputs.tolist()),
            dtype=np.int64,
            count=len(outputs),
        )
    numbers = np.asarray(outputs, dtype=np.float64)
    return np.searchsorted(np.asarray(ref.edges or [], dtype=np.float64), numbers, side="left")


def counts(bins: np.ndarray, n_bins: int) -> np.ndarray:
    """Rows per bin."""
    import numpy as np

    return np.bincount(bins, minlength=n_bins)[:n_bins]


def shares(bin_counts: Sequence[float] | np.ndarray) -> list[float]:
    """Counts as shares summing to 1 (all zero when there are no rows)."""
    total = float(sum(bin_counts))
    return [float(c) / total if total else 0.0 for c in bin_counts]


def psi(expected: Sequence[float], actual: Sequence[float], floor: float = PSI_FLOOR) -> float:
    """Population stability index of `actual` shares against `expected` (same bins)."""
    if len(expected) != len(actual):
        raise ValueError(f"{len(expected)} expected shares but {len(actual)} actual ones")
    total = 0.0
    for e, a in zip(expected, actual, strict=True):
        e, a = max(e, floor), max(a, floor)
        total += (a - e) * math.log(a / e)
    return total


# --- the reference, from training data (trainer, package) --------------------------------------


def feature_reference(
    name: str, kind: FeatureKind, values: np.ndarray, max_categories: int = MAX_CATEGORY_BINS
) -> FeatureReference:
    """The bins of one feature from its training values (typed as `feature_bins` takes them)."""
    import numpy as np

    if kind is FeatureKind.CATEGORICAL:
        seen = Counter(v for v in values.tolist() if isinstance(v, str))
        ranked = sorted(seen, key=lambda c: (-seen[c], c))
        ref = FeatureReference(
            name=name,
            kind=kind,
            categories=ranked[:max_categories],
            shares=[0.0] * (min(len(ranked), max_categories) + 2),
            rows=len(values),
        )
    else:
        numbers = np.asarray(values, dtype=np.float64)
        present_numbers = numbers[~np.isnan(numbers)]
        if kind is FeatureKind.BOOLEAN:
            edges = [0.0]
        elif len(present_numbers):
            edges = sorted({float(q) for q in np.quantile(present_numbers, DECILES)})
        else:
            edges = []
        ref = FeatureReference(
            name=name, kind=kind, edges=edges, shares=[0.0] * (len(edges) + 2), rows=len(values)
        )
    found = shares(counts(feature_bins(ref, values), n_feature_bins(ref)))
    return ref.model_copy(update={"shares": found})


def output_reference(outputs: np.ndarray, class_labels: Sequence[Label] | None) -> OutputReference:
    """The bins of the model's outputs on held-out rows: its classes, or the deciles."""
    import numpy as np

    if class_labels is not None:
        ref = OutputReference(
            classes=list(class_labels), shares=[0.0] * (len(class_labels) + 1), rows=len(outputs)
        )
    else:
        numbers = np.asarray(outputs, dtype=np.float64)
        edges = sorted({float(q) for q in np.quantile(numbers, DECILES)}) if len(numbers) else []
        ref = OutputReference(edges=edges, shares=[0.0] * (len(edges) + 1), rows=len(outputs))
    found = shares(counts(output_bins(ref, outputs), n_output_bins(ref)))
    return ref.model_copy(update={"shares": found})


def drift_reference(
    schema: InputSchema,
    columns: Sequence[np.ndarray],
    outputs: np.ndarray | None,
    class_labels: Sequence[Label] | None,
) -> DriftReference:
    """The card's reference: each feature's bins from its training column (in schema order, as
    `schema.model_input`'s Columns type them), the outputs' from held-out predictions."""
    return DriftReference(
        features=[
            feature_reference(f.name, f.kind, column)
            for f, column in zip(schema.features, columns, strict=True)
        ],
        outputs=None if outputs is None else output_reference(outputs, class_labels),
    )


def reference_from_frame(
    schema: InputSchema,
    frame: pd.DataFrame,
    outputs: Any,
    class_labels: Sequence[Label] | None,
) -> DriftReference:
    """`drift_reference` from a frame of feature columns (typed as the server types requests,
    `normalize_frame`) and the model's outputs on held-out rows (None: no output reference)."""
    import numpy as np

    from mlmodel_artifact.schema import normalize_frame

    typed = normalize_frame(frame, schema)
    columns = [typed[f.name].to_numpy() for f in schema.features]
    return drift_reference(
        schema, columns, None if outputs is None else np.asarray(outputs), class_labels
    )


def _interval_labels(edges: Sequence[float]) -> list[str]:
    if not edges:
        return ["all"]
    labels = [f"<= {edges[0]:g}"]
    labels += [f"({lo:g}, {hi:g}]" for lo, hi in itertools.pairwise(edges)]
    return [*labels, f"> {edges[-1]:g}"]


def _label_key(value: Any) -> Any:
    """Class labels compare by value across int/float/numpy types (1 == 1.0 == np.int64(1))."""
    if isinstance(value, bool | str):
        return value
    try:
        number = float(value)
    except (TypeError, ValueError):
        return value
    return int(number) if number.is_integer() else number
