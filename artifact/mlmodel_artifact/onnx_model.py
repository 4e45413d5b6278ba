"""A scikit-learn-shaped wrapper around an ONNX Runtime session."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from mlmodel_artifact import onnx_proto
from mlmodel_artifact.errors import ArtifactError
from mlmodel_artifact.schema import MISSING_CATEGORY, FeatureKind, InputSchema

#: Operator domains ONNX Runtime implements from the standard (what skl2onnx writes). Any other
#: domain is a custom operator: code ONNX Runtime would have to find somewhere else.
STANDARD_DOMAINS: Final = frozenset({"", "ai.onnx", "ai.onnx.ml"})


class OnnxModel:
    """Runs an ONNX graph with `predict` / `predict_proba`, like the estimator it came from.

    Graphs written by skl2onnx have one float input, or for a mixed-type pipeline one [N, 1]
    input per feature (`tensor(string)` for categorical features, `tensor(float)` else; see
    `sklearn_to_onnx_bytes`), and outputs `label` (or `variable` for regressors) and, for
    classifiers, `probabilities`. `x` is a float matrix, or for per-feature graphs a 2-D object
    array in input order as `mlmodel_artifact.schema.model_input` builds it, or a DataFrame with
    the feature names (NaN or None where missing).
    """

    def __init__(self, onnx_bytes: bytes, uri: str = "<onnx model>") -> None:
        import onnxruntime as ort

        check_onnx_model(onnx_bytes, uri)  # before ONNX Runtime parses a byte of it

        options = ort.SessionOptions()
        # One thread: a serving process already runs one worker per core, and small batches
        # pay more for thread hand-off than they gain.
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(
            onnx_bytes, sess_options=options, providers=["CPUExecutionProvider"]
        )
        inputs = self._session.get_inputs()
        self._input = inputs[0].name
        # (name, takes strings) per input when the graph takes one tensor per feature.
        self._columns = (
            [(i.name, i.type == "tensor(string)") for i in inputs] if len(inputs) > 1 else None
        )
        outputs = [o.name for o in self._session.get_outputs()]
        self._label_output = outputs[0]
        self._proba_output = "probabilities" if "probabilities" in outputs else None
        self.n_features_in_: int | None = (
            len(inputs) if self._columns else _static_width(inputs[0].shape)
        )

    @property
    def input_names(self) -> list[str]:
        """The graph's input names (feature names for a per-feature graph)."""
        return [i.name for i in self._session.get_inputs()]

    @property
    def has_proba(self) -> bool:
        """True for classifiers converted with probabilities."""
        return self._proba_output is not None

    def predict(self, x: npt.NDArray[Any]) -> npt.NDArray[Any]:
        """Labels (classifiers) or values (regressors), one per row."""
        (labels,) = self._session.run([self._label_output], self._feeds(x))
        return np.asarray(labels).reshape(len(x), -1).squeeze(axis=1)

    def predict_proba(self, x: npt.NDArray[Any]) -> npt.NDArray[Any]:
        """Class probabilities, one row per input row."""
        if self._proba_output is None:
            raise AttributeError("this ONNX model has no probabilities output")
        (proba,) = self._session.run([self._proba_output], self._feeds(x))
        return np.asarray(proba)

    def predict_both(self, x: npt.NDArray[Any]) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]:
        """Labels and probabilities from one run of the graph."""
        if self._proba_output is None:
            raise AttributeError("this ONNX model has no probabilities output")
        labels, proba = self._session.run([self._label_output, self._proba_output], self._feeds(x))
        return np.asarray(labels).reshape(-1), np.asarray(proba)

    def _feeds(self, x: npt.NDArray[Any]) -> dict[str, npt.NDArray[Any]]:
        if self._columns is None:
            return {self._input: _as_float32(x)}
        feeds = {}
        frame = hasattr(x, "columns")  # a pandas DataFrame with the feature names
        for j, (name, strings) in enumerate(self._columns):
            column = x[name].to_numpy() if frame else x[:, j]
            if strings:  # NaN (missing) becomes MISSING_CATEGORY, which the graph imputes
                values = [v if v.__class__ is str else MISSING_CATEGORY for v in column.tolist()]
                feeds[name] = np.asarray(values, dtype=object).reshape(-1, 1)
            else:
                feeds[name] = _as_float32(column.astype(np.float64).reshape(-1, 1))
        return feeds

    @classmethod
    def from_sklearn(
        cls, estimator: Any, n_features: int, schema: InputSchema | None = None
    ) -> OnnxModel:
        """Convert a fitted estimator with skl2onnx (raises if the estimator is unsupported)."""
        return cls(sklearn_to_onnx_bytes(estimator, n_features, schema))


def check_onnx_model(onnx_bytes: bytes, uri: str) -> None:
    """Refuse a graph that would make ONNX Runtime read files or run non-standard operators.

    A tensor stored as external data names a file that ONNX Runtime opens relative to the
    model's directory, which for a model given as bytes is the process's working directory
    (`etc/passwd`, `../../etc/passwd`): ArtifactError(ExternalData). An operator domain other than
    the standard ones, or a model-local function, is ArtifactError(UntrustedType).
    """
    try:
        # ONNX's wire format through protobuf alone: importing `onnx` would cost a serving
        # process ~5 MB and ~80 ms for nothing a request needs (see mlmodel_artifact.onnx_proto).
        model_proto = onnx_proto.messages().ModelProto
    except ImportError as exc:  # fail closed: no check, no session
        raise ArtifactError(
            uri, "ArtifactLoadFailed", "the protobuf package is needed to check an ONNX model"
        ) from exc
    model = model_proto()
    try:
        model.ParseFromString(onnx_bytes)
    except Exception as exc:  # protobuf's DecodeError
        raise ArtifactError(
            uri, "ArtifactLoadFailed", f"the ONNX model does not parse: {exc}"
        ) from exc
    if len(model.functions) or len(model.training_info):
        raise ArtifactError(
            uri,
            "UntrustedType",
            "the ONNX model defines its own functions or training graphs; only plain "
            "inference graphs of standard operators are loaded",
        )
    domains = {_text(o.domain) for o in model.opset_import}
    domains.update(_text(node.domain) for graph in _graphs(model.graph) for node in graph.node)
    if domains - STANDARD_DOMAINS:
        names = ", ".join(repr(d[:100]) for d in sorted(domains - STANDARD_DOMAINS))
        raise ArtifactError(
            uri,
            "UntrustedType",
            f"the ONNX model uses operator domain(s) {names}; only the standard domains "
            "('' / 'ai.onnx', 'ai.onnx.ml') are loaded",
        )
    external = sorted({_text(t.name)[:100] for t in _tensors(model.graph) if _is_external(t)})
    if external:
        raise ArtifactError(
            uri,
            "ExternalData",
            f"the ONNX model keeps tensor(s) {', '.join(map(repr, external[:5]))} in external "
            "files; a model must hold all its data itself (it was not opened)",
        )


def _graphs(graph: Any) -> Iterator[Any]:
    """The graph and every subgraph in its nodes' attributes (If, Loop, Scan bodies)."""
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("g"):
                yield from _graphs(attr.g)
            for sub in attr.graphs:
                yield from _graphs(sub)


def _tensors(graph: Any) -> Iterator[Any]:
    """Every tensor in the graph and its subgraphs: initializers and tensor attributes."""
    for g in _graphs(graph):
        yield from g.initializer
        for sparse in g.sparse_initializer:
            yield from (sparse.values, sparse.indices)
        for node in g.node:
            for attr in node.attribute:
                if attr.HasField("t"):
                    yield attr.t
                yield from attr.tensors
                sparse_attrs = [attr.sparse_tensor] if attr.HasField("sparse_tensor") else []
                for sparse in [*sparse_attrs, *attr.sparse_tensors]:
                    yield from (sparse.values, sparse.indices)


def _is_external(tensor: Any) -> bool:
    return bool(tensor.data_location == onnx_proto.EXTERNAL or len(tensor.external_data))


def _text(raw: bytes) -> str:
    """A name or domain as text (onnx.proto's strings; read as bytes, see onnx_proto)."""
    return raw.decode("utf-8", errors="backslashreplace")


def sklearn_to_onnx_bytes(
    estimator: Any, n_features: int, schema: InputSchema | None = None
) -> bytes:
    """Serialize a fitted estimator as an ONNX graph with plain (non-ZipMap) probabilities.

    XGBoost and LightGBM estimators (also inside a VotingClassifier) convert through
    onnxmltools' converters, registered with skl2onnx. A model behind a ColumnTransformer takes
    mixed columns: given the card's input `schema`, the graph takes one [N, 1] tensor per
    feature named after it (strings for categorical features, floats else, NaN where missing);
    string imputers are converted looking for MISSING_CATEGORY, what OnnxModel feeds for a
    missing category (skl2onnx cannot convert an imputer that looks for NaN among strings).
    """
    from skl2onnx import convert_sklearn, get_latest_tested_opset_version
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType
    from sklearn.base import is_classifier

    if _has_column_transformer(estimator) and schema is None:
        raise ValueError(
            "a model behind a ColumnTransformer takes mixed columns: converting it to ONNX needs "
            "the card's input schema"
        )
    initial_types: list[tuple[str, Any]] = [("input", FloatTensorType([None, n_features]))]
    if schema is not None and _has_column_transformer(estimator):
        estimator = _string_imputers_look_for_missing_category(estimator)
        initial_types = [
            (
                f.name,
                StringTensorType([None, 1])
                if f.kind is FeatureKind.CATEGORICAL
                else FloatTensorType([None, 1]),
            )
            for f in schema.features
        ]
    _register_boosting_converters()
    options: dict[str, Any] | None = {"zipmap": False} if is_classifier(estimator) else None
    # onnxmltools' tree converters write ai.onnx.ml 3 (TreeEnsemble*); skl2onnx asks for it.
    target_opset = (
        {"": get_latest_tested_opset_version(), "ai.onnx.ml": 3}
        if _has_boosting(estimator)
        else None
    )
    graph = convert_sklearn(
        estimator,
        name="mlmodel",  # a fixed name: skl2onnx otherwise picks a random one per conversion
        initial_types=initial_types,
        options=options,
        target_opset=target_opset,
    )
    return bytes(graph.SerializeToString())


def _string_imputers_look_for_missing_category(model: Any) -> Any:
    """A copy of `model` whose fitted SimpleImputers over strings (object statistics) treat
    MISSING_CATEGORY as missing instead of NaN; the fill values stay what fitting found."""
    import copy

    from sklearn.impute import SimpleImputer

    model = copy.deepcopy(model)
    stack = [model]
    while stack:
        part = stack.pop()
        statistics = getattr(part, "statistics_", None)
        strings = statistics is not None and statistics.dtype == object
        if isinstance(part, SimpleImputer) and strings and _is_nan(part.missing_values):
            part.missing_values = MISSING_CATEGORY
        for attr in ("steps", "transformers_"):
            stack.extend(step[1] for step in getattr(part, attr, None) or [])
    return model


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and value != value


def _has_column_transformer(model: Any) -> bool:
    from sklearn.compose import ColumnTransformer

    steps = getattr(model, "steps", None) or []
    return isinstance(model, ColumnTransformer) or any(
        _has_column_transformer(step) for _, step in steps
    )


def _has_boosting(model: Any) -> bool:
    """Whether `model` is, or holds (a Pipeline's step, a VotingClassifier's member), an
    XGBoost or LightGBM estimator."""
    if type(model).__module__.startswith(("xgboost.", "lightgbm.")):
        return True
    steps, members = getattr(model, "steps", None), getattr(model, "estimators_", None)
    parts = [s for _, s in steps] if isinstance(steps, list) else []
    parts += members if isinstance(members, list) else []  # a forest's; not a boosting's grid
    return any(_has_boosting(part) for part in parts if part is not model)


_REGISTERED: list[bool] = []


def _register_boosting_converters() -> None:
    """Teach skl2onnx XGBoost's and LightGBM's scikit-learn estimators (onnxmltools' converters),
    once; quietly nothing where a library is not installed."""
    if _REGISTERED:
        return
    from skl2onnx import update_registered_converter
    from skl2onnx.common.shape_calculator import (
        calculate_linear_classifier_output_shapes,
        calculate_linear_regressor_output_shapes,
    )

    classifier_options = {"nocl": [True, False], "zipmap": [True, False, "columns"]}
    try:
        import xgboost
        from onnxmltools.convert.xgboost.operator_converters.XGBoost import convert_xgboost

        update_registered_converter(
            xgboost.XGBClassifier,
            "XGBoostXGBClassifier",
            calculate_linear_classifier_output_shapes,
            convert_xgboost,
            options=classifier_options,
        )
        update_registered_converter(
            xgboost.XGBRegressor,
            "XGBoostXGBRegressor",
            calculate_linear_regressor_output_shapes,
            convert_xgboost,
        )
    except ImportError:
        pass
    try:
        import lightgbm
        from onnxmltools.convert.lightgbm.operator_converters.LightGbm import convert_lightgbm

        update_registered_converter(
            lightgbm.LGBMClassifier,
            "LightGbmLGBMClassifier",
            calculate_linear_classifier_output_shapes,
            convert_lightgbm,
            options=classifier_options,
        )
        update_registered_converter(
            lightgbm.LGBMRegressor,
            "LightGbmLGBMRegressor",
            calculate_linear_regressor_output_shapes,
            convert_lightgbm,
        )
    except ImportError:
        pass
    _REGISTERED.append(True)


def _as_float32(x: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
    return np.ascontiguousarray(x, dtype=np.float32)


def _static_width(shape: list[Any]) -> int | None:
    return shape[1] if len(shape) == 2 and isinstance(shape[1], int) else None
