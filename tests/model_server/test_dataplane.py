"""The framework-free data plane: every way input can be wrong, named in the error."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from model_server.dataplane import row_matrix, rows_matrix
from model_server.errors import InvalidInput
from model_server.tensors import tensors_matrix

FEATURES = ("a", "b", "c")


def test_rows_of_numbers_become_a_float_matrix() -> None:
    x = rows_matrix([[1, 2.5, 3], [4, 5, 6]], FEATURES, "inputs")
    assert x.dtype == np.float64
    assert x.tolist() == [[1.0, 2.5, 3.0], [4.0, 5.0, 6.0]]


def test_rows_keyed_by_feature_name_are_put_in_model_order() -> None:
    x = rows_matrix([{"c": 3, "a": 1, "b": 2}], FEATURES, "instances")
    assert x.tolist() == [[1.0, 2.0, 3.0]]


def test_one_row_becomes_a_one_row_matrix() -> None:
    assert row_matrix([1, 2, 3], FEATURES, "input").shape == (1, 3)


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([[1, 2]], "inputs[0] has 2 feature values; the model expects 3"),
        ([[1, 2, 3], [1, 2, 3, 4]], "inputs[1] has 4 feature values; the model expects 3"),
        ([[1, "x", 3]], "inputs[0] feature 'b' must be a number, got string \"x\""),
        ([[1, "2", 3]], "inputs[0] feature 'b' must be a number, got string \"2\""),
        ([[1, None, 3]], "inputs[0] feature 'b' must be a number, got null"),
        ([[1, True, 3]], "inputs[0] feature 'b' must be a number, got boolean true"),
        ([[1, [2], 3]], "inputs[0] feature 'b' must be a number, got array"),
        ([[1, {"v": 2}, 3]], "inputs[0] feature 'b' must be a number, got object"),
        ([1, 2, 3], "inputs[0] must be a list of 3 numbers, got number 1"),
        ([[1, 2, 10**30]], "inputs[0] feature 'c' is too large"),
        ([], "inputs is an empty batch"),
        ({"a": 1}, "inputs must be a list of rows, got object"),
        ([[1, 2, math.nan]], "inputs[0] feature 'c' is nan; NaN and infinity are not valid"),
        ([[1, 2, 3], [math.inf, 2, 3]], "inputs[1] feature 'a' is inf; NaN and infinity"),
        ([{"a": 1, "b": 2, "c": 3, "d": 4}], "inputs[0] has unknown feature name 'd'"),
        ([{"a": 1, "b": 2}], "inputs[0] is missing feature 'c'"),
        ([{"a": 1, "b": 2, "c": 3}, [1, 2, 3]], "inputs[1] must be an object keyed by feature"),
    ],
)
def test_bad_rows_are_rejected_naming_what_was_wrong(rows: Any, message: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        rows_matrix(rows, FEATURES, "inputs")
    assert message in caught.value.message


def test_booleans_are_trusted_absent_only_when_the_caller_says_so() -> None:
    # With booleans=False the caller promised the JSON text had no true/false at all.
    assert rows_matrix([[1, 2, 3]], FEATURES, "inputs", booleans=False).tolist() == [[1, 2, 3]]
    with pytest.raises(InvalidInput):
        rows_matrix([[1, False, 3]], FEATURES, "inputs", booleans=True)


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ([], "input is empty; send 3 feature values"),
        ("1,2,3", "input must be a list of 3 numbers, got string"),
        (None, "input must be a list of 3 numbers, got null"),
    ],
)
def test_bad_single_rows_are_rejected(row: Any, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        row_matrix(row, FEATURES, "input")


def tensor(data: Any, shape: list[int], datatype: str = "FP64", name: str = "x") -> dict[str, Any]:
    return {"name": name, "shape": shape, "datatype": datatype, "data": data}


@pytest.mark.parametrize("datatype", ["FP32", "FP64", "INT32", "INT64"])
def test_numeric_v2_tensors_of_every_datatype_are_accepted(datatype: str) -> None:
    x = tensors_matrix([tensor([1, 2, 3, 4, 5, 6], [2, 3], datatype)], FEATURES)
    assert x.tolist() == [[1, 2, 3], [4, 5, 6]]


def test_bool_v2_tensors_become_zero_and_one() -> None:
    x = tensors_matrix([tensor([True, False, True], [1, 3], "BOOL")], FEATURES)
    assert x.tolist() == [[1.0, 0.0, 1.0]]


def test_nested_v2_data_is_read_like_flat_data() -> None:
    flat = tensors_matrix([tensor([1, 2, 3, 4, 5, 6], [2, 3])], FEATURES)
    nested = tensors_matrix([tensor([[1, 2, 3], [4, 5, 6]], [2, 3])], FEATURES)
    assert flat.tolist() == nested.tolist()


def test_one_v2_tensor_per_feature_is_assembled_by_name() -> None:
    inputs = [tensor([3, 30], [2], name="c"), tensor([1, 10], [2, 1], name="a"),
              tensor([2, 20], [2], name="b")]  # fmt: skip
    assert tensors_matrix(inputs, FEATURES).tolist() == [[1, 2, 3], [10, 20, 30]]


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ([], "inputs must be a non-empty list of tensors"),
        (None, "inputs must be a non-empty list of tensors"),
        ([tensor([1, 2, 3], [1, 3], "BYTES")], "datatype 'BYTES'; supported: FP32, FP64"),
        ([tensor([1, 2], [1, 3])], "shape [1, 3] (3 values) but 2 data values"),
        ([tensor([1, 2, 3, 4], [1, 4])], "send shape [N, 3]"),
        ([tensor([1.5, 2, 3], [1, 3], "INT64")], "is INT64; its data must be integers, got number"),
        ([tensor([2**31, 2, 3], [1, 3], "INT32")], "value 2147483648 does not fit INT32"),
        ([tensor([1, 0, 1], [1, 3], "BOOL")], "is BOOL; its data must be true/false"),
        ([tensor([1, "2", 3], [1, 3])], "is FP64; its data must be numbers, got string"),
        ([tensor([1, True, 3], [1, 3])], "is FP64; its data must be numbers, got boolean"),
        ([tensor([], [0, 3])], "empty batch"),
        ([tensor([1, 2, 3], [1, 3]) | {"shape": "1,3"}], "shape must be a list of non-negative"),
        ([{"name": "x", "shape": [1, 3], "datatype": "FP64"}], "input 'x' has no data"),
        ([tensor([1], [1], name="a"), tensor([2], [1], name="zz")], "unknown feature name 'zz'"),
        ([tensor([1], [1], name="a"), tensor([2], [1], name="b")], "missing input tensor for"),
        ([tensor([1, 2, math.nan], [1, 3])], "row 0 feature 'c' is nan"),
        ([tensor([1, 2], [2], name="a"), tensor([2], [1], name="b"), tensor([3], [1], name="c")],
         "different lengths"),
    ],
)  # fmt: skip
def test_bad_v2_tensors_are_rejected_naming_what_was_wrong(inputs: Any, message: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        tensors_matrix(inputs, FEATURES)
    assert message in caught.value.message
