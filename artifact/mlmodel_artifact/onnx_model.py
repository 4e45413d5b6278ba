"""A scikit-learn-shaped wrapper around an ONNX Runtime session."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt


class OnnxModel:
    """Runs an ONNX graph with `predict` / `predict_proba`, like the estimator it came from.

    Graphs written by skl2onnx have one float input and outputs `label` (or `variable` for
    regressors) and, for classifiers, `probabilities`.
    """

    def __init__(self, onnx_bytes: bytes) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        # One thread: a serving process already runs one worker per core, and small batches
        # pay more for thread hand-off than they gain.
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(
            onnx_bytes, sess_options=options, providers=["CPUExecutionProvider"]
        )
        self._input = self._session.get_inputs()[0].name
        outputs = [o.name for o in self._session.get_outputs()]
        self._label_output = outputs[0]
        self._proba_output = "probabilities" if "probabilities" in outputs else None
        self.n_features_in_: int | None = _static_width(self._session.get_inputs()[0].shape)

    @property
    def has_proba(self) -> bool:
        """True for classifiers converted with probabilities."""
        return self._proba_output is not None

    def predict(self, x: npt.NDArray[Any]) -> npt.NDArray[Any]:
        """Labels (classifiers) or values (regressors), one per row."""
        (labels,) = self._session.run([self._label_output], {self._input: _as_float32(x)})
        return np.asarray(labels).reshape(len(x), -1).squeeze(axis=1)

    def predict_proba(self, x: npt.NDArray[Any]) -> npt.NDArray[Any]:
        """Class probabilities, one row per input row."""
        if self._proba_output is None:
            raise AttributeError("this ONNX model has no probabilities output")
        (proba,) = self._session.run([self._proba_output], {self._input: _as_float32(x)})
        return np.asarray(proba)

    def predict_both(self, x: npt.NDArray[Any]) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]:
        """Labels and probabilities from one run of the graph."""
        if self._proba_output is None:
            raise AttributeError("this ONNX model has no probabilities output")
        labels, proba = self._session.run(
            [self._label_output, self._proba_output], {self._input: _as_float32(x)}
        )
        return np.asarray(labels).reshape(-1), np.asarray(proba)

    @classmethod
    def from_sklearn(cls, estimator: Any, n_features: int) -> OnnxModel:
        """Convert a fitted estimator with skl2onnx (raises if the estimator is unsupported)."""
        return cls(sklearn_to_onnx_bytes(estimator, n_features))


def sklearn_to_onnx_bytes(estimator: Any, n_features: int) -> bytes:
    """Serialize a fitted estimator as an ONNX graph with plain (non-ZipMap) probabilities."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.base import is_classifier

    options: dict[str, Any] | None = {"zipmap": False} if is_classifier(estimator) else None
    graph = convert_sklearn(
        estimator,
        name="mlmodel",  # a fixed name: skl2onnx otherwise picks a random one per conversion
        initial_types=[("input", FloatTensorType([None, n_features]))],
        options=options,
    )
    return bytes(graph.SerializeToString())


def _as_float32(x: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
    return np.ascontiguousarray(x, dtype=np.float32)


def _static_width(shape: list[Any]) -> int | None:
    return shape[1] if len(shape) == 2 and isinstance(shape[1], int) else None
