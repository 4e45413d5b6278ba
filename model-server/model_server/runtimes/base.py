"""The one runtime interface every format serves through."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Protocol

import numpy as np
import numpy.typing as npt

from mlmodel_artifact import FeatureKind, InputSchema
from mlmodel_artifact.drift import DriftReference
from model_server.errors import InvalidInput

Array = npt.NDArray[Any]
# Without a measurement, compiled models run up to this many rows on the event loop.
INLINE_MAX_ROWS: Final = 512


class Estimator(Protocol):
    """What a runtime needs from a model: scikit-learn's predict (and predict_proba)."""

    def predict(self, x: Array) -> Array: ...


@dataclass(frozen=True)
class ModelInfo:
    """What the server tells clients about the model it serves."""

    name: str
    version: str
    format: str
    digest: str
    task: str
    estimator: str
    feature_names: tuple[str, ...]
    class_labels: tuple[int | float | str, ...] | None
    runtime: str
    compiled: bool
    # Whether the model has predict_proba (RidgeClassifier, LinearSVC have none); unset means
    # every classifier does.
    proba: bool | None = None
    # The card's input schema when requests take the typed path (strings, booleans, nulls,
    # checked per feature); None for the float64 fast path (every feature a required number
    # and a model that takes a matrix). Chosen once, at load.
    schema: InputSchema | None = None
    # Whether the typed path hands the model a pandas DataFrame (it was fitted on named columns).
    frame: bool = False

    @property
    def has_proba(self) -> bool:
        """True when the model can answer class probabilities."""
        if self.proba is not None:
            return self.proba and self.task == "classification"
        return self.task == "classification"

    @property
    def n_features(self) -> int:
        """Number of input columns."""
        return len(self.feature_names)

    @property
    def string_features(self) -> int:
        """How many features take strings (categorical ones, which may hold commas); 0 on the
        float64 path."""
        if self.schema is None:
            return 0
        return sum(f.kind is FeatureKind.CATEGORICAL for f in self.schema.features)

    @property
    def mixed(self) -> bool:
        """True when the inputs are not all required numbers (V2 metadata lists each one)."""
        return self.schema is not None and not self.schema.plain_numeric


class Runtime:
    """A loaded model: predict, predict_proba and metadata, whatever the format behind it.

    `fast` marks compiled models, cheap enough (microseconds) to run on the event loop;
    `inline_rows` is how many rows may run there (warm-up measures it against a time budget).
    """

    def __init__(self, model: Any, info: ModelInfo, *, fast: bool) -> None:
        self._model = model
        self._info = info
        self.fast = fast
        self.inline_rows = INLINE_MAX_ROWS if fast else 0
        self._both = getattr(model, "predict_both", None)
        # The response header saying which version answered (docs/rollouts.md), made once.
        self.version_header = (b"model-version", info.version.encode("ascii"))
        # The card's drift reference (set at load): what the drift window is compared with.
        self.drift_reference: DriftReference | None = None

    @property
    def metadata(self) -> ModelInfo:
        """Name, format, digest, features and labels of the served model."""
        return self._info

    @property
    def model(self) -> Any:
        """The underlying estimator or ONNX wrapper."""
        return self._model

    def predict(self, x: Array) -> Array:
        """Labels (classification) or values (regression), one per row."""
        return np.asarray(self._model.predict(x))

    def predict_proba(self, x: Array) -> Array:
        """Class probabilities, one row per input row, columns in class_labels order."""
        self._require_proba()
        return np.asarray(self._model.predict_proba(x))

    def predict_both(self, x: Array) -> tuple[Array, Array]:
        """Labels and probabilities together (one graph run where the runtime allows)."""
        self._require_proba()
        if self._both is not None:
            labels, proba = self._both(x)
            return np.asarray(labels), np.asarray(proba)
        return self.predict(x), self.predict_proba(x)

    def _require_proba(self) -> None:
        if not self._info.has_proba:
            kind = "regression model" if self._info.task == "regression" else self._info.estimator
            raise InvalidInput(
                f"model {self._info.name!r} is a {kind}; it has no class probabilities"
            )
