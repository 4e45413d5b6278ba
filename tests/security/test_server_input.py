"""Hostile request bodies against the real model server process (`python -m model_server`).

Each attack a review found is sent over loopback to a server configured like a pod (compiled
ONNX path on), with the limits set low so the bounds are cheap to reach. Every one must be a
4xx JSON error naming the problem, and the server must keep answering afterwards.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from iris_server import MODEL, ROW, run_server, train_iris
from server_process import Server

MAX_ROWS = 1000
DEPTH = 990  # what gave `500 internal error: RecursionError`; under orjson's limit (1024)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server for the module, with MAX_ROWS low."""
    root = tmp_path_factory.mktemp("server-input")
    card = train_iris(root / "artifact")
    yield from run_server(root, root / "artifact", card, MODEL_SERVER_MAX_ROWS=str(MAX_ROWS))


def nested(depth: int, leaf: str) -> str:
    """JSON text of `leaf` inside `depth` arrays (built as text: encoders recurse too)."""
    return "[" * depth + leaf + "]" * depth


def post(server: Server, path: str, body: Any) -> httpx.Response:
    """POST `body` (JSON text or bytes as they are, anything else encoded as JSON)."""
    if isinstance(body, str | bytes):
        raw = body.encode() if isinstance(body, str) else body
    else:
        raw = json.dumps(body).encode()
    with server.client() as client:
        answer: httpx.Response = client.post(
            path, content=raw, headers={"content-type": "application/json"}
        )
    return answer


def assert_json_error(answer: httpx.Response, status: int, *words: str) -> str:
    """`answer` is `status` with a JSON {"error": ...} naming `words`; returns the message."""
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/json"
    message = answer.json()["error"]
    for word in words:
        assert word in message, message
    return str(message)


def tensor(data: Any, shape: list[int], datatype: str = "FP32") -> dict[str, Any]:
    """A V2 request with one input tensor."""
    return {"inputs": [{"name": "x", "shape": shape, "datatype": datatype, "data": data}]}


def test_the_server_serves_the_compiled_path(server: Server) -> None:
    with server.client() as client:
        assert client.get(f"/v2/models/{MODEL}").json()["platform"] == "onnxruntime"


def member(key: str, text: str) -> str:
    """JSON text of an object with one member whose value is the JSON text `text`."""
    return f'{{"{key}": {text}}}'


def v2_data(text: str) -> str:
    """JSON text of a V2 request whose one [1, 4] FP32 tensor has the data `text`."""
    tensor = f'{{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": {text}}}'
    return member("inputs", f"[{tensor}]")


DEEP = nested(DEPTH, "1.0")


@pytest.mark.parametrize(
    ("path", "body", "words"),
    [
        ("/predict", member("inputs", DEEP), ["inputs[0]"]),
        ("/predict", member("input", DEEP), ["input[0]"]),
        (f"/v1/models/{MODEL}:predict", member("instances", DEEP), ["instances[0]"]),
        (f"/v1/models/{MODEL}:predict", member("instances", f"[[1, 2, 3, {DEEP}]]"),
         ["instances[0]", "must be a number, got array"]),
        (f"/v2/models/{MODEL}/infer", v2_data(DEEP),
         ["nested deeper than its shape [1, 4] allows"]),
        (f"/v2/models/{MODEL}/infer", v2_data(f"[[1.0, 2.0, 3.0, {DEEP}]]"),
         ["nested deeper than its shape [1, 4] allows"]),
        (f"/v2/models/{MODEL}/infer", member("inputs", nested(DEPTH, '{"name": "x"}')),
         ["inputs[0] must be a tensor object, got array"]),
    ],
    ids=["seed-inputs", "seed-input", "v1-instances", "v1-one-value", "v2-data",
         "v2-one-value", "v2-inputs"],
)  # fmt: skip
def test_deep_nesting_is_a_422_naming_where(
    server: Server, path: str, body: str, words: list[str]
) -> None:
    assert_json_error(post(server, path, body), 422, *words)
    assert post(server, "/predict", {"input": ROW}).json() == {"prediction": 0}


@pytest.mark.parametrize("path", ["/predict", f"/v2/models/{MODEL}/infer"])
def test_nesting_beyond_the_json_parsers_limit_is_a_400(server: Server, path: str) -> None:
    body = member("inputs", nested(5000, "1"))
    assert_json_error(post(server, path, body), 400, "deeper than 1024 levels")


@pytest.mark.parametrize(
    ("path", "body", "where"),
    [
        ("/predict", {"input": [5.1, 1e39, 1.4, 0.2]}, "input[0] feature 'sepal width (cm)'"),
        (f"/v1/models/{MODEL}:predict", {"instances": [ROW, [5.1, 3.5, -1e39, 0.2]]},
         "instances[1] feature 'petal length (cm)'"),
        (f"/v2/models/{MODEL}/infer", tensor([*ROW, 1e39, 1, 1, 1], [2, 4]),
         "input 'x' row 1 feature 'sepal length (cm)'"),
    ],
    ids=["seed", "v1", "v2"],
)  # fmt: skip
def test_values_beyond_float32_are_a_422_on_the_compiled_path(
    server: Server, path: str, body: Any, where: str
) -> None:
    assert_json_error(post(server, path, body), 422, where)


def test_the_float32_message_says_why(server: Server) -> None:
    answer = post(server, "/predict", {"input": [5.1, 1e39, 1.4, 0.2]})
    assert_json_error(answer, 422, "is 1e+39", "beyond float32's range")


@pytest.mark.parametrize(
    ("path", "body", "where"),
    [
        ("/predict", {"inputs": [ROW] * (MAX_ROWS + 1)}, "inputs has 1001 rows"),
        (f"/v1/models/{MODEL}:predict", {"instances": [ROW] * (MAX_ROWS + 1)},
         "instances has 1001 rows"),
        (f"/v2/models/{MODEL}/infer", tensor(ROW * (MAX_ROWS + 1), [MAX_ROWS + 1, 4]),
         "input 'x' has 1001 rows"),
        (f"/v2/models/{MODEL}/infer", tensor(ROW, [10**9, 4]), "input 'x' has 1000000000 rows"),
    ],
    ids=["seed", "v1", "v2", "v2-declared-shape"],
)  # fmt: skip
def test_more_rows_than_the_limit_is_a_413(
    server: Server, path: str, body: Any, where: str
) -> None:
    assert_json_error(post(server, path, body), 413, where, "the limit is 1000", "MAX_ROWS")


def test_a_body_with_far_more_values_than_the_limit_is_refused_before_parsing(
    server: Server,
) -> None:
    # 100k rows: its commas alone show it cannot be an allowed batch (no 8 MiB parse needed).
    body = b'{"inputs": [' + b",".join([b"[5.1,3.5,1.4,0.2]"] * 100_000) + b"]}"
    assert_json_error(post(server, "/predict", body), 413, "1000 rows of 4 features")


def test_the_largest_allowed_batch_is_answered(server: Server) -> None:
    answer = post(server, "/predict", {"inputs": [ROW] * MAX_ROWS})
    assert answer.status_code == 200
    assert answer.json()["predictions"] == [0] * MAX_ROWS
    big_v2 = post(server, f"/v2/models/{MODEL}/infer", tensor([ROW] * MAX_ROWS, [MAX_ROWS, 4]))
    assert big_v2.json()["outputs"][0]["data"] == [0] * MAX_ROWS
