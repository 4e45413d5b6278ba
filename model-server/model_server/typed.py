"""The typed path: rows and V2 tensors holding strings, booleans and nulls (framework-free).

Models whose card has a mixed-type input schema (categorical, boolean or nullable features, a
ColumnTransformer pipeline fitted on a DataFrame) take this path, chosen once at load
(`ModelInfo.schema`). Values are checked against the schema by `mlmodel_artifact.schema` (the
same rules the trainer typed its training frame with) and given to the model as it was fitted:
a pandas DataFrame for named columns (pandas is imported only here, on first use), else an
array. Plain numeric models never come here: their float64 fast path is `dataplane`/`tensors`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Final

import numpy as np

from mlmodel_artifact import Columns, Feature, FeatureKind, FeatureValueError, InputSchema
from mlmodel_artifact.schema import encode_column, encode_rows, model_input
from model_server.dataplane import check_rows, json_kind
from model_server.errors import InvalidInput
from model_server.runtimes.base import ModelInfo
from model_server.tensors import SHAPE_RULE, check_name, flatten, is_shape, shown_value

NUMERIC_DATATYPES: Final = ("FP32", "FP64", "INT32", "INT64")
TYPED_DATATYPES: Final = (*NUMERIC_DATATYPES, "BOOL", "BYTES")
KIND_DATATYPE: Final = {
    FeatureKind.NUMERIC: "FP64",
    FeatureKind.CATEGORICAL: "BYTES",
    FeatureKind.BOOLEAN: "BOOL",
}
_INT_MAX: Final = {"INT32": 2**31 - 1, "INT64": 2**63 - 1}

Tensor = tuple[str, list[int], str, list[Any]]  # name, shape, datatype, flat values


def schema_of(info: ModelInfo) -> InputSchema:
    """The schema of a model on the typed path."""
    assert info.schema is not None, "only models on the typed path have a schema here"
    return info.schema


def typed_rows(rows: Any, info: ModelInfo, where: str, max_rows: int | None = None) -> Any:
    """The model's input from rows (lists in feature order or objects keyed by feature name)."""
    if not isinstance(rows, list):
        raise InvalidInput(f"{where} must be a list of rows, got {json_kind(rows)}")
    if not rows:
        raise InvalidInput(f"{where} is an empty batch; send at least one row")
    check_rows(len(rows), max_rows, where)
    return _input(lambda: encode_rows(schema_of(info), rows, where), info)


def typed_row(row: Any, info: ModelInfo, where: str) -> Any:
    """The model's input from one row (a list in feature order or a feature-keyed object)."""
    if not isinstance(row, list | dict):
        raise InvalidInput(
            f"{where} must be a list of {info.n_features} values or an object keyed by "
            f"feature name, got {json_kind(row)}"
        )
    return typed_rows([row], info, where)


def typed_tensors(inputs: Any, info: ModelInfo, max_rows: int | None = None) -> Any:
    """The model's input from Open Inference V2 tensors.

    One tensor per feature, named by feature name, of shape [N] or [N, 1], with the feature's
    datatype (categorical: BYTES, data as JSON strings; boolean: BOOL; numeric: FP32, FP64,
    INT32 or INT64); null in the data where the feature is nullable, and a nullable feature's
    tensor may be left out (all null). When every feature is numeric, one [N, n_features]
    tensor works too.
    """
    schema = schema_of(info)
    if not isinstance(inputs, list) or not inputs:
        raise InvalidInput("inputs must be a non-empty list of tensors")
    tensors = [_tensor(t, f"inputs[{i}]", max_rows) for i, t in enumerate(inputs)]
    name, shape = tensors[0][0], tensors[0][1]
    n = len(schema.features)
    one_matrix = len(tensors) == 1 and len(shape) == 2 and shape[1] == n
    if one_matrix and (n > 1 or name != info.feature_names[0]):
        return _input(lambda: _matrix_columns(tensors[0], schema), info)
    return _input(lambda: _feature_columns(tensors, schema), info)


def _input(encode: Callable[[], Columns], info: ModelInfo) -> Any:
    try:
        columns = encode()
    except FeatureValueError as exc:
        raise InvalidInput(str(exc)) from exc
    return model_input(columns, info.frame)


def _tensor(tensor: Any, where: str, max_rows: int | None) -> Tensor:
    if not isinstance(tensor, dict):
        raise InvalidInput(f"{where} must be a tensor object, got {json_kind(tensor)}")
    name = check_name(tensor.get("name"), where)
    shape, datatype = tensor.get("shape"), tensor.get("datatype")
    if not is_shape(shape):
        raise InvalidInput(f"input {name!r} {SHAPE_RULE}")
    if datatype not in TYPED_DATATYPES:
        raise InvalidInput(
            f"input {name!r} has datatype {shown_value(datatype)}; "
            f"supported: {', '.join(TYPED_DATATYPES)}"
        )
    if "data" not in tensor:
        raise InvalidInput(f"input {name!r} has no data")
    check_rows(shape[0], max_rows, f"input {name!r}")
    data = tensor["data"]
    # binary tensor data arrives as an array (numbers) or a list of strings (BYTES)
    flat = data.tolist() if isinstance(data, np.ndarray) else flatten(data, shape, name)
    if len(flat) != math.prod(shape):
        raise InvalidInput(
            f"input {name!r} has shape {shape} ({math.prod(shape)} values) but {len(flat)} "
            "data values"
        )
    if shape[0] == 0:
        raise InvalidInput(f"input {name!r} is an empty batch; send at least one row")
    return name, shape, datatype, flat


def _matrix_columns(tensor: Tensor, schema: InputSchema) -> Columns:
    """The [N, n_features] form: every feature numeric, values row-major."""
    name, shape, datatype, flat = tensor
    n = shape[1]
    words = [
        f"{f.name!r} is {f.kind.value}"
        for f in schema.features
        if f.kind is not FeatureKind.NUMERIC
    ]
    if words:
        raise InvalidInput(
            f"input {name!r} has shape {shape}, but not every feature is a number ("
            f"{', '.join(words)}); send one tensor per feature named "
            f"{', '.join(schema.names)}"
        )
    arrays = []
    for j, feature in enumerate(schema.features):
        values = flat[j::n]
        _check_datatype(feature, datatype, name, values)
        arrays.append(encode_column(feature, values, lambda i: f"input {name!r} row {i}"))
    return Columns(schema, tuple(arrays))


def _feature_columns(tensors: list[Tensor], schema: InputSchema) -> Columns:
    """One tensor per feature, named by feature name; nullable features may be left out."""
    by_name: dict[str, Tensor] = {}
    features = {f.name: f for f in schema.features}
    for tensor in tensors:
        name, shape, datatype, flat = tensor
        feature = features.get(name)
        if feature is None:
            raise InvalidInput(
                f"unknown feature {name[:100]!r}; send one tensor per feature named "
                f"{', '.join(schema.names)}"
            )
        if name in by_name:
            raise InvalidInput(f"input {name!r} is sent twice")
        if len(shape) > 2 or (len(shape) == 2 and shape[1] != 1):
            raise InvalidInput(f"input {name!r} must have shape [N] or [N, 1], got {shape}")
        _check_datatype(feature, datatype, name, flat)
        by_name[name] = tensor
    lengths = {len(t[3]) for t in by_name.values()}
    if len(lengths) != 1:
        raise InvalidInput(f"feature tensors have different lengths: {sorted(lengths)}")
    rows = lengths.pop()
    arrays = []
    for feature in schema.features:
        sent = by_name.get(feature.name)
        if sent is None and not feature.nullable:
            raise InvalidInput(f"missing input tensor for feature {feature.name!r}")
        values = sent[3] if sent is not None else [None] * rows
        arrays.append(encode_column(feature, values, lambda i: f"inputs row {i}"))
    return Columns(schema, tuple(arrays))


def _check_datatype(feature: Feature, datatype: str, name: str, values: list[Any]) -> None:
    """The tensor's datatype fits the feature's kind; INT tensors hold integers in range."""
    want = KIND_DATATYPE[feature.kind]
    if feature.kind is FeatureKind.NUMERIC:
        if datatype not in NUMERIC_DATATYPES:
            raise InvalidInput(
                f"input {name!r}: feature {feature.name!r} is numeric; send it as "
                f"{', '.join(NUMERIC_DATATYPES)}, not {datatype}"
            )
    elif datatype != want:
        raise InvalidInput(
            f"input {name!r}: feature {feature.name!r} is {feature.kind.value}; send it as a "
            f"{want} tensor, not {datatype}"
        )
    limit = _INT_MAX.get(datatype)
    if limit is None:
        return
    for value in values:
        if value is None:
            continue
        if value.__class__ is not int:
            raise InvalidInput(
                f"input {name!r} is {datatype}; its data must be integers, got {json_kind(value)}"
            )
        if not -limit - 1 <= value <= limit:
            raise InvalidInput(f"input {name!r} value {value} does not fit {datatype}")
