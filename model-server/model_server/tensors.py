"""Open Inference Protocol V2 input tensors -> the model's float64 matrix (framework-free)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Final

import numpy as np

from model_server.dataplane import finite_float64, json_kind
from model_server.errors import InvalidInput
from model_server.runtimes.base import Array

V2_DATATYPES: Final = ("FP32", "FP64", "INT32", "INT64", "BOOL")
_INT32_MAX: Final = 2**31 - 1


def tensors_matrix(inputs: Any, features: Sequence[str]) -> Array:
    """A float64 matrix from Open Inference Protocol V2 input tensors.

    Either one tensor of shape [N, n_features], or one tensor per feature (named by feature
    name) of shape [N] or [N, 1].
    """
    if not isinstance(inputs, list) or not inputs:
        raise InvalidInput("inputs must be a non-empty list of tensors")
    tensors = [_tensor(t, f"inputs[{i}]") for i, t in enumerate(inputs)]
    if len(tensors) == 1 and len(tensors[0][1]) == 2 and tensors[0][1][1] == len(features):
        return _checked(tensors[0][2].reshape(tensors[0][1]), features, tensors[0][0])
    return _columns(tensors, features)


def _columns(tensors: list[tuple[str, list[int], Array]], features: Sequence[str]) -> Array:
    by_name: dict[str, Array] = {}
    for name, shape, data in tensors:
        if name not in features:
            if len(tensors) == 1:
                raise InvalidInput(
                    f"input {name!r} has shape {shape}; send shape [N, {len(features)}], or one "
                    f"tensor per feature named {', '.join(features)}"
                )
            raise InvalidInput(
                f"unknown feature name {name!r}; the model's features are: {', '.join(features)}"
            )
        if len(shape) > 2 or (len(shape) == 2 and shape[1] != 1):
            raise InvalidInput(f"input {name!r} must have shape [N] or [N, 1], got {shape}")
        by_name[name] = data
    missing = [f for f in features if f not in by_name]
    if missing:
        raise InvalidInput(f"missing input tensor for feature {missing[0]!r}")
    lengths = {len(v) for v in by_name.values()}
    if len(lengths) != 1:
        raise InvalidInput(f"feature tensors have different lengths: {sorted(lengths)}")
    x = np.column_stack([by_name[f] for f in features])
    return _checked(x, features, "inputs")


def _checked(x: Array, features: Sequence[str], where: str) -> Array:
    if x.shape[0] == 0:
        raise InvalidInput(f"input {where!r} is an empty batch; send at least one row")
    return finite_float64(x, features, lambda i: f"input {where!r} row {i}")


def _tensor(tensor: Any, where: str) -> tuple[str, list[int], Array]:
    if not isinstance(tensor, dict):
        raise InvalidInput(f"{where} must be a tensor object, got {json_kind(tensor)}")
    name, shape, datatype = tensor.get("name"), tensor.get("shape"), tensor.get("datatype")
    if not isinstance(name, str):
        raise InvalidInput(f"{where}.name must be a string")
    if not isinstance(shape, list) or not all(_is_count(d) for d in shape) or not shape:
        raise InvalidInput(f"input {name!r} shape must be a list of non-negative integers")
    if datatype not in V2_DATATYPES:
        raise InvalidInput(
            f"input {name!r} has datatype {datatype!r}; supported: {', '.join(V2_DATATYPES)}"
        )
    if "data" not in tensor:
        raise InvalidInput(f"input {name!r} has no data")
    flat = _flatten(tensor["data"], name)
    if len(flat) != math.prod(shape):
        raise InvalidInput(
            f"input {name!r} has shape {shape} ({math.prod(shape)} values) but {len(flat)} "
            "data values"
        )
    return name, shape, _typed(flat, datatype, name)


def _is_count(value: Any) -> bool:
    return value.__class__ is int and 0 <= value <= 2**31


def _flatten(data: Any, name: str) -> list[Any]:
    if not isinstance(data, list):
        raise InvalidInput(f"input {name!r} data must be a list, got {json_kind(data)}")
    if not data or not isinstance(data[0], list):
        return data
    flat: list[Any] = []
    for item in data:
        flat.extend(_flatten(item, name) if isinstance(item, list) else [item])
    return flat


def _typed(values: list[Any], datatype: str, name: str) -> Array:
    if not values:
        return np.zeros(0)
    try:
        arr = np.array(values)
    except (ValueError, TypeError, OverflowError):
        arr = None
    if arr is not None and arr.ndim == 1 and _fits(arr, values, datatype):
        return arr.astype(np.float64)
    integer = datatype.startswith("INT")
    for value in values:
        if datatype == "BOOL":
            if value.__class__ is not bool:
                raise InvalidInput(
                    f"input {name!r} is BOOL; its data must be true/false, got {json_kind(value)}"
                )
        elif value.__class__ is bool or not isinstance(value, int if integer else int | float):
            kind = "integers" if integer else "numbers"
            raise InvalidInput(
                f"input {name!r} is {datatype}; its data must be {kind}, got {json_kind(value)}"
            )
        elif integer and abs(value) > (_INT32_MAX if datatype == "INT32" else 2**63 - 1):
            raise InvalidInput(f"input {name!r} value {value} does not fit {datatype}")
    raise InvalidInput(f"input {name!r} data is not a flat list of {datatype} values")


def _fits(arr: Array, values: list[Any], datatype: str) -> bool:
    """Fast check of a whole tensor's values against its datatype (numpy inferred the type)."""
    if datatype == "BOOL":
        return arr.dtype.kind == "b"
    if any(v.__class__ is bool for v in values):
        return False
    if datatype == "INT32":
        return arr.dtype.kind == "i" and bool(
            -_INT32_MAX - 1 <= arr.min() <= arr.max() <= _INT32_MAX
        )
    if datatype == "INT64":
        return arr.dtype.kind == "i"
    return arr.dtype.kind in "fi"
