"""The framework-free data plane: every way input can be wrong, named in the error."""

from __future__ import annotations

import asyncio
import math
import threading
import time
from typing import Any

import numpy as np
import pytest

from model_server.dataplane import (
    DataPlane,
    check_separators,
    json_kind,
    row_matrix,
    rows_matrix,
)
from model_server.errors import InvalidInput, PayloadTooLarge
from model_server.runtimes.base import ModelInfo, Runtime
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
        ([tensor([1, 2, 3], [1, 3]) | {"shape": "1,3"}], "a list of 1 to 8 non-negative"),
        # counting the values of 500 dimensions of 2**31 took seconds and a 500 before
        ([tensor([1, 2, 3], [1, *[2**31] * 500])], "a list of 1 to 8 non-negative"),
        ([tensor([1, 2, 3], [1] * 9)], "a list of 1 to 8 non-negative"),
        ([tensor([1, 2, 3], [1, 3], name="x" * 2_000_000)], "inputs[0].name is longer than 256"),
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


# --- bounds: nesting, float32 range, rows --------------------------------------------------------


def deep(depth: int, leaf: Any) -> Any:
    """`leaf` inside `depth` lists (built iteratively, like orjson would hand it over)."""
    for _ in range(depth):
        leaf = [leaf]
    return leaf


@pytest.mark.parametrize("depth", [3, 990, 5000])
def test_v2_data_nested_deeper_than_its_shape_is_refused_without_recursion(depth: int) -> None:
    with pytest.raises(InvalidInput) as caught:
        tensors_matrix([tensor(deep(depth, 1.0), [1, 3])], FEATURES)
    assert "nested deeper than its shape [1, 3] allows (at most 2 levels" in caught.value.message
    with pytest.raises(InvalidInput, match="nested deeper than its shape"):
        tensors_matrix([tensor([1.0, 2.0, deep(depth, 3.0)], [1, 3])], FEATURES)


@pytest.mark.parametrize("depth", [3, 990, 5000])
def test_rows_nested_deeper_than_a_row_are_refused_without_recursion(depth: int) -> None:
    with pytest.raises(InvalidInput, match=r"inputs\[0\] has 1 feature values"):
        rows_matrix(deep(depth, 1.0), FEATURES, "inputs")
    with pytest.raises(InvalidInput, match=r"inputs\[0\] feature 'c' must be a number, got array"):
        rows_matrix([[1, 2, deep(depth, 3)]], FEATURES, "inputs")
    with pytest.raises(InvalidInput, match=r"inputs\[0\] feature 'a' must be a number, got array$"):
        rows_matrix([{"a": deep(depth, 1), "b": 2, "c": 3}], FEATURES, "inputs")


def test_json_kind_never_recurses_and_shows_only_short_values() -> None:
    assert json_kind(deep(5000, 1)) == "array"
    assert json_kind([1, 2]) == "array [1,2]"
    assert json_kind({"v": [1]}) == "object"
    assert json_kind(10**30) == "number"


@pytest.mark.parametrize("value", [3.5e38, -1e39, 1e300])
def test_values_beyond_float32_are_refused_naming_row_and_feature(value: float) -> None:
    with pytest.raises(InvalidInput) as caught:
        rows_matrix([[1, 2, 3], [1, value, 3]], FEATURES, "inputs")
    assert caught.value.message == (
        f"inputs[1] feature 'b' is {value}; values beyond float32's range (±3.403e+38) are "
        "not valid inputs"
    )
    with pytest.raises(InvalidInput, match=r"input 'x' row 0 feature 'a' is .*float32"):
        tensors_matrix([tensor([value, 2, 3], [1, 3])], FEATURES)


def test_the_largest_float32_value_is_accepted() -> None:
    top = float(np.finfo(np.float32).max)
    assert rows_matrix([[top, -top, 0]], FEATURES, "inputs").tolist() == [[top, -top, 0]]


def test_batches_over_the_row_limit_are_payload_too_large() -> None:
    rows_matrix([[1, 2, 3]] * 5, FEATURES, "inputs", max_rows=5)
    with pytest.raises(PayloadTooLarge) as caught:
        rows_matrix([[1, 2, 3]] * 6, FEATURES, "inputs", max_rows=5)
    assert caught.value.message == (
        "inputs has 6 rows; the limit is 5 (MODEL_SERVER_MAX_ROWS), split the batch"
    )
    with pytest.raises(PayloadTooLarge, match="input 'x' has 6 rows; the limit is 5"):
        tensors_matrix([tensor([1, 2, 3] * 6, [6, 3])], FEATURES, max_rows=5)


def test_a_tensor_declaring_too_many_rows_is_refused_before_its_data_is_read() -> None:
    with pytest.raises(PayloadTooLarge, match="has 1000000 rows"):
        tensors_matrix([tensor("not even a list", [10**6, 3])], FEATURES, max_rows=5)


def test_a_body_with_more_commas_than_the_row_limit_allows_is_refused_unparsed() -> None:
    rows = b"[1,2,3]," * 10
    check_separators(b'{"inputs": [%s]}' % rows, n_features=3, max_rows=10)
    with pytest.raises(PayloadTooLarge, match="more values than 10 rows of 3 features"):
        check_separators(b"," * (10 * 5 + 1025), n_features=3, max_rows=10)


def test_v2_booleans_among_numbers_are_found_when_the_body_had_true_or_false() -> None:
    with pytest.raises(InvalidInput, match="got boolean true"):
        tensors_matrix([tensor([1, True, 3], [1, 3])], FEATURES, booleans=True)
    # Without true/false in the body, the fast path (numpy reads it in C) is used.
    assert tensors_matrix([tensor([1, 2, 3], [1, 3])], FEATURES, booleans=False).shape == (1, 3)


def test_a_closed_plane_runs_work_on_a_fresh_pool() -> None:
    """A lifespan that ends (and closes the pool) and starts again must not break the app."""
    plane = DataPlane()

    async def twice() -> tuple[int, int]:
        first = await plane.run_in_thread(lambda: 1)
        plane.close()
        return first, await plane.run_in_thread(lambda: 2)

    assert asyncio.run(twice()) == (1, 2)
    plane.close()


def test_keyed_rows_with_commas_in_strings_fit_the_separator_budget() -> None:
    row = '{"city": "Oslo, 0150, Norway, Europe, Earth, Sol", "income": 1.0, "tenure": 3}'
    body = ('{"inputs": [' + ",".join([row] * 1000) + "]}").encode()
    check_separators(body, 3, max_rows=1000, strings=1)  # the most rows allowed: accepted
    with pytest.raises(PayloadTooLarge):
        check_separators(body, 3, max_rows=1000)  # without room for the strings' commas
    garbage = b'{"inputs": [' + b'"",' * 100_000 + b'""]}'
    with pytest.raises(PayloadTooLarge):
        check_separators(garbage, 3, max_rows=1000, strings=1)


class _Overlap:
    """A model whose predict waits (releasing the GIL) and records how many ran at once.

    Each predict waits up to 2 s for `expect` predicts to run at once (then 50 ms more): on a
    busy machine a thread may start late, and a fixed sleep alone let the last of four threads
    start after the first had finished (seen in CI). Predicts that are serialized never reach
    `expect` > 1 and each waits the full 2 s, so the test still fails, slowly."""

    def __init__(self, expect: int) -> None:
        self.expect = expect
        self.changed = threading.Condition()
        self.running = 0
        self.most = 0

    def predict(self, x: Any) -> Any:
        with self.changed:
            self.running += 1
            self.most = max(self.most, self.running)
            self.changed.notify_all()
            self.changed.wait_for(lambda: self.running >= self.expect, timeout=2.0)
        time.sleep(0.05)
        with self.changed:
            self.running -= 1
        return np.zeros(len(x))


@pytest.mark.parametrize(("fast", "most"), [(False, 1), (True, 4)])
def test_scikit_learn_predicts_take_turns_and_compiled_ones_run_side_by_side(
    fast: bool, most: int
) -> None:
    model = _Overlap(expect=most)
    info = ModelInfo(
        name="m", version="1", format="skops", digest="0" * 64, task="regression",
        estimator="E", feature_names=("a",), class_labels=None, runtime="r", compiled=fast,
    )  # fmt: skip
    runtime = Runtime(model, info, fast=fast)
    runtime.inline_rows = 0  # every batch goes to a thread
    plane = DataPlane()

    async def eight() -> None:
        x = np.zeros((1, 1))
        calls = [plane.predict(runtime, x, probabilities=False, protocol="seed") for _ in range(8)]
        await asyncio.gather(*calls)

    asyncio.run(eight())
    plane.close()
    assert model.most == most  # PREDICT_THREADS threads for a compiled model
