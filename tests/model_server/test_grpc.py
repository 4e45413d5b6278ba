"""Open Inference Protocol V2 over gRPC (issue 15), against the real server process on loopback.

tritonclient.grpc (raw tensor contents, what it always sends) for health, metadata and
predictions equal to the trained model's; typed `contents` through tritonclient's generated
stubs of the protocol (the server's own stubs cannot load beside them: both define the
protocol's `inference.*` messages in protobuf's one default pool);
the mixed-type penguins model with BYTES tensors; bad tensors and framing answered
INVALID_ARGUMENT (too big: RESOURCE_EXHAUSTED), never INTERNAL or a dead process; the calls
counted under protocol="grpc"; MODEL_SERVER_GRPC_PORT=0 turns the port off.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton
from prometheus_client.parser import text_string_to_metric_families
from server_process import Server, free_port, serving, start, stop
from serverkit import Artifact, penguins_inputs, server_env
from sklearn.ensemble import RandomForestClassifier
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pb_grpc
from tritonclient.utils import InferenceServerException

from devcluster.waiting import wait_until
from mlmodel_artifact.compiled import PROBA_TOLERANCE
from mlmodel_trainer.train import TrainResult

ROWS = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]])
INFER = "/inference.GRPCInferenceService/ModelInfer"


@pytest.fixture
def stub(iris_server: Server) -> Iterator[Any]:
    with grpc.insecure_channel(iris_server.grpc_target) as channel:
        yield pb_grpc.GRPCInferenceServiceStub(channel)


def client(server: Server) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(server.grpc_target)


def matrix_input(x: np.ndarray, datatype: str = "FP32") -> Any:
    tensor = triton.InferInput("input-0", list(x.shape), datatype)
    dtype = {"FP32": np.float32, "FP64": np.float64, "INT64": np.int64}[datatype]
    tensor.set_data_from_numpy(x.astype(dtype))
    return tensor


def test_tritonclient_health_and_metadata(iris_server: Server) -> None:
    c = client(iris_server)
    assert c.is_server_live() and c.is_server_ready()
    assert c.is_model_ready("iris") and c.is_model_ready("iris", "1")
    with pytest.raises(InferenceServerException) as unknown:  # as REST's 404
        c.is_model_ready("iris", "7")
    assert unknown.value.status() == "StatusCode.NOT_FOUND"
    server = c.get_server_metadata(as_json=True)
    assert server["name"] == "mlmodel-server" and server["version"]
    model = c.get_model_metadata("iris", as_json=True)
    assert model["name"] == "iris" and model["versions"] == ["1"]
    assert model["inputs"] == [{"name": "input-0", "datatype": "FP64", "shape": ["-1", "4"]}]
    assert [o["name"] for o in model["outputs"]] == ["predict", "predict_proba"]
    with pytest.raises(InferenceServerException) as missing:
        c.get_model_metadata("rose")
    assert missing.value.status() == "StatusCode.NOT_FOUND"
    assert "no model named 'rose'" in missing.value.message()


@pytest.mark.parametrize("datatype", ["FP32", "FP64"])
def test_tritonclient_infer_equals_the_trained_model(
    iris_server: Server, iris_forest: RandomForestClassifier, datatype: str
) -> None:
    outputs = [triton.InferRequestedOutput("predict"), triton.InferRequestedOutput("predict_proba")]
    result = client(iris_server).infer(
        "iris", [matrix_input(ROWS, datatype)], outputs=outputs, request_id="r-1"
    )
    assert result.get_response().id == "r-1"
    assert result.as_numpy("predict").tolist() == iris_forest.predict(ROWS).tolist()
    np.testing.assert_allclose(
        result.as_numpy("predict_proba"), iris_forest.predict_proba(ROWS), atol=PROBA_TOLERANCE
    )


def test_tritonclient_default_output_and_a_version(
    iris_server: Server, iris_forest: RandomForestClassifier
) -> None:
    result = client(iris_server).infer("iris", [matrix_input(ROWS)], model_version="1")
    assert result.as_numpy("predict").tolist() == iris_forest.predict(ROWS).tolist()
    assert result.as_numpy("predict_proba") is None  # only what was asked for (the default)


def test_typed_contents_answer_typed_contents(
    stub: Any, iris_forest: RandomForestClassifier
) -> None:
    """The other half of the protocol: values in InferTensorContents, one tensor per feature."""
    names = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    request = pb.ModelInferRequest(model_name="iris", id="typed")
    for j, name in enumerate(names):
        tensor = request.inputs.add(name=name, datatype="FP64", shape=[len(ROWS), 1])
        tensor.contents.fp64_contents.extend(ROWS[:, j].tolist())
    request.outputs.add(name="predict")
    reply = stub.ModelInfer(request)
    assert (reply.model_name, reply.model_version, reply.id) == ("iris", "1", "typed")
    assert not reply.raw_output_contents
    (output,) = reply.outputs
    assert (output.name, output.datatype, list(output.shape)) == ("predict", "INT64", [3])
    assert list(output.contents.int64_contents) == iris_forest.predict(ROWS).tolist()


def test_penguins_bytes_tensors_through_tritonclient(
    penguins_server: Server, penguins: TrainResult
) -> None:
    """The mixed-type model: one tensor per feature, categories as BYTES, numbers FP64."""
    inputs, expected = penguins_inputs(penguins, triton.InferInput)
    got = client(penguins_server).infer("penguins", inputs).as_numpy("predict")
    assert [v.decode() for v in got.tolist()] == expected


def raw_request(
    x: bytes, shape: list[int], datatype: str = "FP64", name: str = "input-0", **fields: Any
) -> Any:
    request = pb.ModelInferRequest(**{"model_name": "iris", **fields})
    request.inputs.add(name=name, datatype=datatype, shape=shape)
    request.raw_input_contents.append(x)
    return request


def typed_request(**contents: list[float]) -> Any:
    request = pb.ModelInferRequest(model_name="iris")
    tensor = request.inputs.add(name="input-0", datatype="FP64", shape=[1, 4])
    tensor.contents.CopyFrom(pb.InferTensorContents(**contents))
    return request


ONE = ROWS[:1].astype("<f8").tobytes()


@pytest.mark.parametrize(
    ("request_", "code", "says"),
    [
        (raw_request(ONE, [2, 4]), "INVALID_ARGUMENT", "takes 64 bytes"),
        (raw_request(ONE[:-1], [1, 4]), "INVALID_ARGUMENT", "raw_input_contents of 31"),
        (
            raw_request(ONE, [-1, 4]),
            "INVALID_ARGUMENT",
            "shape must be a list of 1 to 8 non-negative",
        ),
        (  # echoed whole, it overflowed gRPC's metadata limit: RESOURCE_EXHAUSTED before
            raw_request(ONE, [2, 4], name="x" * 100_000),
            "INVALID_ARGUMENT",
            "inputs[0] has raw_input_contents of 32",
        ),
        (  # any long string a message quotes: every error is cut at 1,000 characters
            raw_request(ONE, [1, 4], "X" * 100_000),
            "INVALID_ARGUMENT",
            "has datatype 'XXXX",
        ),
        (raw_request(ONE, [1, 4], model_name="m" * 100_000), "NOT_FOUND", "no model named 'mmm"),
        (
            raw_request(ONE, [1, 4], name="x" * 100_000),
            "INVALID_ARGUMENT",
            "inputs[0].name is longer than 256 characters",
        ),
        (
            raw_request(ONE, [1, *[2**31] * 100_000]),  # minutes of counting before
            "INVALID_ARGUMENT",
            "shape must be a list of 1 to 8 non-negative",
        ),
        (raw_request(ONE, [1, 4], "FP16"), "INVALID_ARGUMENT", "datatype 'FP16'"),
        (
            raw_request(np.array([[np.nan, 1, 1, 1]]).astype("<f8").tobytes(), [1, 4]),
            "INVALID_ARGUMENT",
            "NaN and infinity are not valid inputs",
        ),
        (raw_request(ONE, [1, 4], model_name="rose"), "NOT_FOUND", "no model named 'rose'"),
        (raw_request(ONE, [1, 4], model_version="9"), "NOT_FOUND", "no version '9'"),
        (raw_request(b"\0" * 8 * 4 * 10_001, [10_001, 4]), "RESOURCE_EXHAUSTED", "10001 rows"),
        (
            typed_request(fp64_contents=[1.0, 2.0, 3.0]),
            "INVALID_ARGUMENT",
            "has 3 values in contents.fp64_contents; its shape [1, 4] takes 4",
        ),
        (
            typed_request(fp32_contents=[1.0, 2.0, 3.0, 4.0]),
            "INVALID_ARGUMENT",
            "has 0 values in contents.fp64_contents",
        ),
        (
            raw_request(ONE, [1, 4], outputs=[{"name": "logits"}]),
            "INVALID_ARGUMENT",
            "outputs[0] must name one of: predict, predict_proba",
        ),
    ],
)
def test_bad_requests_get_a_client_status_saying_why(
    stub: Any, request_: Any, code: str, says: str
) -> None:
    with pytest.raises(grpc.RpcError) as refused:
        stub.ModelInfer(request_)
    assert refused.value.code().name == code, refused.value.details()
    assert says in refused.value.details()
    assert stub.ServerLive(pb.ServerLiveRequest()).live  # still serving


def test_bytes_contents_for_a_numeric_model_are_refused_before_they_are_read(stub: Any) -> None:
    request = pb.ModelInferRequest(model_name="iris")
    tensor = request.inputs.add(name="input-0", datatype="BYTES", shape=[10_000, 4])
    tensor.contents.bytes_contents.extend([b""] * 40_000)
    with pytest.raises(grpc.RpcError) as refused:
        stub.ModelInfer(request)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (
        refused.value.details()
        == "input 'input-0' has datatype 'BYTES'; this model takes numbers only"
    )
    wide = raw_request(bytes(8 * 40 * 10_000), [10_000, 40])  # 10,000 rows of 40 values
    with pytest.raises(grpc.RpcError) as refused:
        stub.ModelInfer(wide)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "400000 values, more than this model takes in one request (40000)" in (
        refused.value.details()
    )


def test_raw_contents_must_match_the_inputs(stub: Any) -> None:
    request = raw_request(ONE, [1, 4])
    request.raw_input_contents.append(ONE)
    with pytest.raises(grpc.RpcError) as refused:
        stub.ModelInfer(request)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "raw_input_contents has 2 entries for 1 inputs" in refused.value.details()


def test_a_message_over_the_size_limit_is_refused_before_it_is_read(stub: Any) -> None:
    rows = 9 * 1024 * 1024 // 32 + 1  # just over the default 8 MiB (MODEL_SERVER_MAX_REQUEST_BYTES)
    with pytest.raises(grpc.RpcError) as refused:
        stub.ModelInfer(raw_request(b"\0" * 32 * rows, [rows, 4]))
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert stub.ServerReady(pb.ServerReadyRequest()).ready


def rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(status.split("VmRSS:")[1].split()[0]) / 1024


def test_refused_calls_do_not_keep_their_message_in_memory(stub: Any, iris_server: Server) -> None:
    """A refused call's parsed message was kept by the error grpc stores on the call (aborted
    inside the except block, whose frames hold the request): ~170 MB for each 4 MB message of
    two million empty inputs, so a few calls took the pod past its memory limit."""
    request = pb.ModelInferRequest(model_name="nope")
    for _ in range(2_000_000):
        request.inputs.add()
    after: list[float] = []
    for _ in range(4):
        with pytest.raises(grpc.RpcError) as refused:
            stub.ModelInfer(request)
        assert refused.value.code() == grpc.StatusCode.NOT_FOUND
        after.append(rss_mb(iris_server.process.pid))
    # from the first call on (the allocator keeps some of the first parse's peak): it was
    # ~170 MB more with every call
    grown = after[-1] - after[0]
    assert grown < 100, f"{grown:.0f} MB more after 3 more refused calls: {after}"
    assert stub.ServerLive(pb.ServerLiveRequest()).live


@pytest.mark.parametrize("message", [b"\xff\xff\xff", b"\x0a\x05ir"], ids=["garbage", "cut"])
def test_a_message_that_does_not_parse_is_invalid_argument(
    iris_server: Server, message: bytes
) -> None:
    """Not UNKNOWN with protobuf's own words, as grpc's deserializer answered; and counted."""
    with grpc.insecure_channel(iris_server.grpc_target) as channel:
        infer = channel.unary_unary(INFER)  # bytes in, bytes out: no serializer
        with pytest.raises(grpc.RpcError) as refused:
            infer(message)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert refused.value.details() == "the message is not a valid ModelInferRequest"


def test_bytes_elements_with_broken_lengths_are_invalid(penguins_server: Server) -> None:
    with grpc.insecure_channel(penguins_server.grpc_target) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        request = pb.ModelInferRequest(model_name="penguins")
        request.inputs.add(name="island", datatype="BYTES", shape=[1, 1])
        request.raw_input_contents.append(struct.pack("<I", 99) + b"Biscoe")
        with pytest.raises(grpc.RpcError) as refused:
            stub.ModelInfer(request)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "BYTES element 0 says 99 bytes" in refused.value.details()


def grpc_samples(server: Server) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    with server.client() as http:
        text = http.get("/metrics").text
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_grpc_calls_are_counted_under_their_protocol(stub: Any, iris_server: Server) -> None:
    ok = {"protocol": "grpc", "route": INFER, "method": "POST", "status": "OK"}
    bad = {**ok, "status": "INVALID_ARGUMENT"}
    key = "model_server_requests_total"
    before = grpc_samples(iris_server)
    stub.ModelInfer(raw_request(ONE, [1, 4]))
    stub.ModelInfer(raw_request(ONE * 2, [2, 4]))
    with pytest.raises(grpc.RpcError):
        stub.ModelInfer(raw_request(ONE, [3, 4]))
    after = grpc_samples(iris_server)

    def moved(name: str, labels: dict[str, str]) -> float:
        index = (name, frozenset(labels.items()))
        return after.get(index, 0.0) - before.get(index, 0.0)

    assert moved(key, ok) == 2 and moved(key, bad) == 1
    assert moved("model_server_request_duration_seconds_count", ok) == 2
    assert moved("model_server_predictions_total", {"protocol": "grpc"}) == 3


def test_grpc_port_zero_turns_grpc_off(iris_artifact: Artifact, tmp_path: Path) -> None:
    env = server_env(iris_artifact.uri, iris_artifact.card.sha256, "iris", tmp_path)
    for server in serving({**env, "MODEL_SERVER_GRPC_PORT": "0"}, tmp_path / "off.log"):
        assert server.grpc_target == ""
        with server.client() as http:
            assert http.get("/v2/health/ready").status_code == 200
        assert "over gRPC" not in server.output()


def test_two_workers_share_the_grpc_port(
    iris_artifact: Artifact, iris_forest: RandomForestClassifier, tmp_path: Path
) -> None:
    env = server_env(
        iris_artifact.uri, iris_artifact.card.sha256, "iris", tmp_path, MODEL_SERVER_WORKERS="2"
    )
    for server in serving(env, tmp_path / "workers.log"):
        # ready is the first worker's; the other may follow
        wait_until(
            "both workers to listen over gRPC",
            lambda s=server: s.output().count("over gRPC") >= 2,  # type: ignore[misc]
            60,
            0.1,
        )
        assert server.output().count("over gRPC") == 2  # each worker listens
        for _ in range(4):  # fresh connections: the kernel picks a worker for each
            result = client(server).infer("iris", [matrix_input(ROWS)])
            assert result.as_numpy("predict").tolist() == iris_forest.predict(ROWS).tolist()


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_grpc_port_in_use_stops_the_server(
    iris_artifact: Artifact, tmp_path: Path, workers: str
) -> None:
    """Never a silent share of the port with another process (SO_REUSEPORT would allow it)."""
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        taken.bind(("127.0.0.1", free_port()))
        taken.listen()
        port = str(taken.getsockname()[1])
        env = server_env(
            iris_artifact.uri, iris_artifact.card.sha256, "iris", tmp_path,
            MODEL_SERVER_GRPC_PORT=port, MODEL_SERVER_WORKERS=workers,
        )  # fmt: skip
        server = start(env, tmp_path / "taken.log")
        try:
            code = server.process.wait(timeout=180)
        finally:
            stop(server)
    assert code != 0
    assert f"127.0.0.1:{port}" in server.output()


def test_infer_rows_match_the_http_answer(iris_server: Server) -> None:
    """100 rows over gRPC answer exactly what V2 REST answers for them."""
    x = np.resize(ROWS, (100, 4))
    result = client(iris_server).infer("iris", [matrix_input(x, "FP64")])
    body = {"inputs": [{"name": "input-0", "shape": [100, 4], "datatype": "FP64",
                        "data": x.reshape(-1).tolist()}]}  # fmt: skip
    with iris_server.client() as http:
        answer = http.post("/v2/models/iris/infer", json=body).json()
    assert result.as_numpy("predict").tolist() == answer["outputs"][0]["data"]
