"""Open Inference Protocol binary tensor data (issue 15), against the real server process on
loopback: tritonclient.http with its defaults (binary inputs and outputs), the mixed-type
penguins model with BYTES tensors, and malformed framing answered 400 saying which, never 5xx."""

from __future__ import annotations

import json
import struct
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from server_process import Server
from serverkit import penguins_inputs
from sklearn.ensemble import RandomForestClassifier
from tritonclient.utils import InferenceServerException

from mlmodel_artifact.compiled import PROBA_TOLERANCE
from mlmodel_trainer.train import TrainResult
from model_server import binary

ROWS = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]])


def client(server: Server) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(server.url.removeprefix("http://"))


def matrix_input(x: np.ndarray, datatype: str = "FP32", binary_data: bool = True) -> Any:
    tensor = triton.InferInput("input-0", list(x.shape), datatype)
    dtype = {"FP32": np.float32, "FP64": np.float64, "INT64": np.int64}[datatype]
    tensor.set_data_from_numpy(x.astype(dtype), binary_data=binary_data)
    return tensor


def test_tritonclient_with_its_defaults_gets_the_models_answers(
    iris_server: Server, iris_forest: RandomForestClassifier
) -> None:
    c = client(iris_server)
    assert c.is_server_live() and c.is_server_ready() and c.is_model_ready("iris")
    assert "binary_tensor_data" in c.get_server_metadata()["extensions"]
    assert c.get_model_metadata("iris")["inputs"][0]["name"] == "input-0"
    for datatype in ("FP32", "FP64"):
        result = c.infer("iris", [matrix_input(ROWS, datatype)])
        # no outputs named: tritonclient asks binary_data_output, the answer is binary
        [output] = result.get_response()["outputs"]
        assert output["parameters"]["binary_data_size"] == 8 * len(ROWS)
        assert result.as_numpy("predict").tolist() == iris_forest.predict(ROWS).tolist()
    proba = c.infer(
        "iris", [matrix_input(ROWS)], outputs=[triton.InferRequestedOutput("predict_proba")]
    ).as_numpy("predict_proba")
    np.testing.assert_allclose(proba, iris_forest.predict_proba(ROWS), atol=PROBA_TOLERANCE)


def test_json_and_binary_mix_per_tensor(
    iris_server: Server, iris_forest: RandomForestClassifier
) -> None:
    c = client(iris_server)
    want = iris_forest.predict(ROWS).tolist()
    # JSON input, one binary and one JSON output
    outputs = [
        triton.InferRequestedOutput("predict", binary_data=False),
        triton.InferRequestedOutput("predict_proba", binary_data=True),
    ]
    result = c.infer("iris", [matrix_input(ROWS, binary_data=False)], outputs=outputs)
    predict, proba = result.get_response()["outputs"]
    assert predict["data"] == want and "parameters" not in predict
    assert proba["parameters"]["binary_data_size"] == 3 * 3 * 4  # 3 rows, 3 classes, FP32
    assert result.as_numpy("predict_proba").shape == (3, 3)
    # binary input, JSON answer
    body = c.infer(
        "iris",
        [matrix_input(ROWS)],
        outputs=[triton.InferRequestedOutput("predict", binary_data=False)],
    ).get_response()
    assert body["outputs"][0]["data"] == want


def test_bytes_tensors_reach_a_mixed_type_pipeline(
    penguins_server: Server, penguins: TrainResult
) -> None:
    inputs, expected = penguins_inputs(penguins, triton.InferInput)
    got = client(penguins_server).infer("penguins", inputs).as_numpy("predict")
    assert [v.decode() for v in got.tolist()] == expected


def post(server: Server, head: dict[str, Any], blob: bytes, length: int | None = None) -> Any:
    text = json.dumps(head).encode()
    header = str(len(text) if length is None else length)
    with server.client() as c:
        return c.post(
            "/v2/models/iris/infer",
            content=text + blob,
            headers={"Inference-Header-Content-Length": header},
        )


def fp32(rows: np.ndarray) -> tuple[dict[str, Any], bytes]:
    blob = rows.astype("<f4").tobytes()
    tensor = {"name": "input-0", "shape": list(rows.shape), "datatype": "FP32"}
    return {"inputs": [{**tensor, "parameters": {"binary_data_size": len(blob)}}]}, blob


def strings(*values: bytes) -> bytes:
    return b"".join(struct.pack("<I", len(v)) + v for v in values)


@pytest.mark.parametrize(
    ("change", "status", "words"),
    [
        (lambda h, b, n: (h, b, n + 10_000), 400, "Inference-Header-Content-Length"),
        (lambda h, b, n: (h, b, -1), 400, "Inference-Header-Content-Length"),
        (lambda h, b, n: (h, b, n - 3), 400, "not valid JSON"),
        (lambda h, b, n: (h, b[:-4], n), 400, "bytes of binary data are left"),
        (lambda h, b, n: (h, b + b"\x00" * 8, n), 400, "beyond the inputs' binary_data_size"),
        (lambda h, b, n: (_set(h, "shape", [2, 4]), b, n), 400, "takes 32 bytes"),
        (lambda h, b, n: (_set(h, "datatype", "INT8"), b, n), 422, "supported"),
        (lambda h, b, n: (_set(h, "data", [1.0] * 12), b, n), 400, "both data and"),
        (lambda h, b, n: (_size(h, -5), b, n), 400, "non-negative integer"),
        (lambda h, b, n: (_size(h, "48"), b, n), 400, "non-negative integer"),
        (
            lambda h, b, n: (h, np.full((3, 4), np.nan, "<f4").tobytes(), n),
            422,
            "NaN and infinity",
        ),
        (
            lambda h, b, n: (
                _size(_set(h, "datatype", "BYTES"), len(strings(b"x"))),
                strings(b"x"),
                n,
            ),
            422,  # refused before its elements are read: this model takes no strings
            "has datatype 'BYTES'; this model takes numbers only",
        ),
        (
            lambda h, b, n: (_set(_size(h, 12), "datatype", "BOOL"), b"\x02" * 12, n),
            422,
            "0 or 1",
        ),
        (lambda h, b, n: (_set(h, "shape", [20_000, 4]), b, n), 413, "MODEL_SERVER_MAX_ROWS"),
    ],
)
def test_bad_framing_is_4xx_saying_which(
    iris_server: Server, change: Any, status: int, words: str
) -> None:
    head, blob = fp32(ROWS)
    text = json.dumps(head).encode()
    head, blob, length = change(head, blob, len(text))
    if length == len(text):
        length = len(json.dumps(head).encode())
    answer = post(iris_server, head, blob, length)
    assert answer.status_code == status, answer.text
    assert words in answer.json()["error"], answer.json()
    # the server is still there and answers
    good_head, good_blob = fp32(ROWS)
    assert post(iris_server, good_head, good_blob).status_code == 200


@pytest.mark.parametrize(
    ("datatype", "shape", "words"),
    [
        # empty elements: reading 2 million took seconds of CPU before the model's checks
        ("BYTES", [10_000, 4], "has datatype 'BYTES'; this model takes numbers only"),
        # more values than 10,000 rows (MODEL_SERVER_MAX_ROWS) of the model's 4 features
        ("FP32", [10, 100_000], "1000000 values, more than this model takes in one request"),
    ],
)
def test_a_tensor_the_model_cannot_take_is_refused_before_its_values_are_read(
    iris_server: Server, datatype: str, shape: list[int], words: str
) -> None:
    size = 4 * shape[0] * shape[1]  # a 4-byte length per BYTES element, or 4 bytes per FP32
    head = {"inputs": [{"name": "input-0", "shape": shape, "datatype": datatype,
                        "parameters": {"binary_data_size": size}}]}  # fmt: skip
    answer = post(iris_server, head, bytes(size))
    assert answer.status_code == 422, answer.text
    assert words in answer.json()["error"]


def test_bytes_framing_errors_are_400_naming_the_element() -> None:
    head = {"inputs": [{"name": "city", "shape": [2], "datatype": "BYTES"}]}
    for blob, words in (
        (strings(b"Oslo"), "holds 1 BYTES elements; its shape says 2"),
        (strings(b"Oslo", b"Bergen", b"Molde"), "more than the 2 BYTES elements"),
        (strings(b"Oslo") + b"\x01\x00", "4-byte length is cut off"),
        (strings(b"Oslo") + struct.pack("<I", 99) + b"abc", "says 99 bytes"),
    ):
        tensor = {**head["inputs"][0], "parameters": {"binary_data_size": len(blob)}}
        with pytest.raises(Exception, match=words) as info:
            binary.attach_inputs({"inputs": [tensor]}, blob, 100)
        assert type(info.value).__name__ == "MalformedRequest"
    tensor = {**head["inputs"][0], "parameters": {"binary_data_size": 11}}
    with pytest.raises(Exception, match="not UTF-8") as info:
        binary.attach_inputs({"inputs": [tensor]}, strings(b"\xff\xfe", b"ok"), 100)
    assert type(info.value).__name__ == "InvalidInput"


def test_outputs_are_little_endian_and_strings_length_prefixed() -> None:
    assert binary.output_bytes(np.array([1, 2], dtype=">i8")) == struct.pack("<qq", 1, 2)
    assert binary.output_bytes(np.array([True, False])) == b"\x01\x00"
    assert binary.output_bytes(np.array(["Adelie", "Gentoo"], dtype=object)) == strings(
        b"Adelie", b"Gentoo"
    )
    proba = np.array([[0.25, 0.75]], dtype=np.float32)
    assert binary.output_bytes(proba) == struct.pack("<ff", 0.25, 0.75)


def test_tritonclient_sees_a_bad_request_as_an_error_not_a_crash(iris_server: Server) -> None:
    c = client(iris_server)
    with pytest.raises(InferenceServerException, match="NaN"):
        c.infer("iris", [matrix_input(np.full((2, 4), np.nan))])
    wide = np.zeros((2, 5))
    with pytest.raises(InferenceServerException, match="input-0"):
        c.infer("iris", [matrix_input(wide)])
    assert c.is_server_live()


def _set(head: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    head["inputs"][0][key] = value
    return head


def _size(head: dict[str, Any], size: Any) -> dict[str, Any]:
    head["inputs"][0]["parameters"]["binary_data_size"] = size
    return head


def test_a_plain_json_body_is_unchanged(iris_server: Server) -> None:
    body = {
        "inputs": [{"name": "input-0", "shape": [3, 4], "datatype": "FP64", "data": ROWS.tolist()}]
    }
    with iris_server.client() as c:
        answer = c.post("/v2/models/iris/infer", json=body)
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/json"
    assert "Inference-Header-Content-Length" not in answer.headers
    with httpx.Client(base_url=iris_server.url, trust_env=False) as c:
        assert c.get("/v2").json()["extensions"] == ["binary_tensor_data"]
