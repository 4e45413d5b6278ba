"""Open Inference Protocol V2 input tensors -> the model's float64 matrix (framework-free)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Final, TypeGuard

import numpy as np

from model_server.dataplane import check_rows, finite_float64, json_kind
from model_server.errors import InvalidInput
from model_server.runtimes.base import Array

V2_DATATYPES: Final = ("FP32", "FP64", "INT32", "INT64", "BOOL")
_INT32_MAX: Final = 2**31 - 1
# A tensor's dimensions: a tabular model takes 1 or 2, images 4; ONNX models rarely go past 6.
MAX_DIMS: Final = 8
SHAPE_RULE: Final = f"shape must be a list of 1 to {MAX_DIMS} non-negative integers"
# A tensor's name is echoed in errors: a feature name or "input-0", never megabytes.
MAX_NAME_CHARS: Final = 256


def shown_name(name: Any, where: str) -> str:
    """`where` as errors name it: `input 'x'` for a string name of at most MAX_NAME_CHARS,
    else `where` itself (a name that long matches no input anyway)."""
    if isinstance(name, str) and len(name) <= MAX_NAME_CHARS:
        return f"input {name!r}"
    return where


def shown_value(value: Any) -> str:
    """A client's value (a datatype, say) as errors echo it: a string cut to 32 characters, or
    only the kind of anything else (`repr` of a list nested a thousand deep raised
    RecursionError, a 500)."""
    if isinstance(value, str):
        return repr(value[:32]) + ("…" if len(value) > 32 else "")
    return json_kind(value)


def tensors_matrix(
    inputs: Any, features: Sequence[str], booleans: bool = True, max_rows: int | None = None
) -> Array:
    """A float64 matrix from Open Inference Protocol V2 input tensors.

    Either one tensor of shape [N, n_features], or one tensor per feature (named by feature
    name) of shape [N] or [N, 1]. `booleans=False` promises the JSON held no true/false (see
    `rows_matrix`). A tensor's data is flat or nested like its shape, never deeper; a batch
    (N) over `max_rows` is PayloadTooLarge, found from the shape before the data is read.
    """
    if not isinstance(inputs, list) or not inputs:
        raise InvalidInput("inputs must be a non-empty list of tensors")
    tensors = [_tensor(t, f"inputs[{i}]", booleans, max_rows) for i, t in enumerate(inputs)]
    if len(tensors) == 1 and len(tensors[0][1]) == 2 and tensors[0][1][1] == len(features):
        return _checked(tensors[0][2].reshape(tensors[0][1]), features, tensors[0][0])
    return _columns(tensors, features)


def _columns(tensors: list[tuple[str, list[int], Array]], features: Sequence[str]) -> Array:
    by_name: dict[str, Array] = {}
    known = frozenset(features)  # a wide model: no scan of every feature name per tensor
    for name, shape, data in tensors:
        if name not in known:
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


def _tensor(
    tensor: Any, where: str, booleans: bool, max_rows: int | None
) -> tuple[str, list[int], Array]:
    if not isinstance(tensor, dict):
        raise InvalidInput(f"{where} must be a tensor object, got {json_kind(tensor)}")
    name = check_name(tensor.get("name"), where)
    shape, datatype = tensor.get("shape"), tensor.get("datatype")
    if not is_shape(shape):
        raise InvalidInput(f"input {name!r} {SHAPE_RULE}")
    if datatype not in V2_DATATYPES:
        raise InvalidInput(
            f"input {name!r} has datatype {shown_value(datatype)}; "
            f"supported: {', '.join(V2_DATATYPES)}"
        )
    if "data" not in tensor:
        raise InvalidInput(f"input {name!r} has no data")
    check_rows(shape[0], max_rows, f"input {name!r}")
    if isinstance(tensor["data"], np.ndarray):  # binary tensor data: typed, sized to the shape
        return name, shape, tensor["data"].astype(np.float64)
    fast = None if booleans and datatype != "BOOL" else _as_shaped(tensor["data"], shape)
    if fast is not None and _fits(fast, datatype):
        return name, shape, fast.astype(np.float64)
    flat = flatten(tensor["data"], shape, name)
    if len(flat) != math.prod(shape):
        raise InvalidInput(
            f"input {name!r} has shape {shape} ({math.prod(shape)} values) but {len(flat)} "
            "data values"
        )
    return name, shape, _typed(flat, datatype, name)


def check_name(name: Any, where: str) -> str:
    """`name` if it is a string of at most MAX_NAME_CHARS, else InvalidInput."""
    if not isinstance(name, str):
        raise InvalidInput(f"{where}.name must be a string")
    if len(name) > MAX_NAME_CHARS:
        raise InvalidInput(f"{where}.name is longer than {MAX_NAME_CHARS} characters")
    return name


def is_count(value: Any) -> bool:
    """Whether `value` is a valid tensor dimension (a JSON integer, 0 to 2**31)."""
    return value.__class__ is int and 0 <= value <= 2**31


def is_shape(value: Any) -> TypeGuard[list[int]]:
    """Whether `value` is a valid tensor shape: 1 to MAX_DIMS dimensions (is_count).

    The number of dimensions is bounded before anything counts the values: the product of a
    few hundred thousand dimensions of 2**31 takes Python minutes (holding the GIL, so the
    probes too), and its digits exceed what int-to-text allows in an error message.
    """
    return (
        isinstance(value, list) and 0 < len(value) <= MAX_DIMS and all(is_count(d) for d in value)
    )


def _as_shaped(data: Any, shape: list[int]) -> Array | None:
    """`data` read by numpy (in C) when it is flat or exactly as nested as `shape`, else None.

    numpy stops at 64 dimensions, so deep nesting fails here without recursion; the slow path
    (`flatten`) then says what is wrong.
    """
    if not isinstance(data, list) or not data:
        return None
    try:
        arr = np.array(data)
    except (ValueError, TypeError, OverflowError):
        return None
    if arr.ndim == 1 and arr.size == math.prod(shape):
        return arr
    return arr if list(arr.shape) == shape else None


def flatten(data: Any, shape: list[int], name: str) -> list[Any]:
    """The values of `data` in order, nested at most as deep as `shape` (iteratively).

    A list of lists is read level by level with a stack of iterators, never by recursion;
    a list found deeper than the shape's dimensions is refused there, naming the shape.
    """
    if not isinstance(data, list):
        raise InvalidInput(f"input {name!r} data must be a list, got {json_kind(data)}")
    flat: list[Any] = []
    stack = [iter(data)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                if len(stack) >= len(shape):
                    raise InvalidInput(
                        f"input {name!r} data is nested deeper than its shape {shape} allows "
                        f"(at most {len(shape)} levels of lists)"
                    )
                stack.append(iter(item))
                break
            flat.append(item)
        else:
            stack.pop()
    return flat


def _typed(values: list[Any], datatype: str, name: str) -> Array:
    if not values:
        return np.zeros(0)
    try:
        arr = np.array(values)
    except (ValueError, TypeError, OverflowError):
        arr = None
    numbers_only = datatype == "BOOL" or not any(v.__class__ is bool for v in values)
    if arr is not None and arr.ndim == 1 and numbers_only and _fits(arr, datatype):
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


def _fits(arr: Array, datatype: str) -> bool:
    """Whether numpy's reading of a tensor's values matches its datatype.

    Booleans among numbers have been ruled out by the caller (numpy would read them as 1/0).
    """
    if datatype == "BOOL":
        return arr.dtype.kind == "b"
    if datatype == "INT32":
        return arr.dtype.kind == "i" and bool(
            -_INT32_MAX - 1 <= arr.min() <= arr.max() <= _INT32_MAX
        )
    if datatype == "INT64":
        return arr.dtype.kind == "i"
    return arr.dtype.kind in "fi"
