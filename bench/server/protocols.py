"""Request bodies and answer parsers for the APIs the benchmarked servers speak."""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.message import DecodeError

from model_server.grpc_v2 import grpc_predict_v2_pb2 as pb

# A row: feature values in order (iris), or an object keyed by feature name holding strings and
# nulls too (the penguins pipeline).
Row = list[float] | dict[str, Any]


@dataclass(frozen=True)
class Protocol:
    """How to ask one API for predictions and read them back."""

    name: str
    path: Callable[[str], str]  # model name -> URL path (gRPC: the full method name)
    body: Callable[[str, list[Row]], bytes]  # model name, rows -> request body (or message)
    answers: Callable[[Any], list[Any]]  # parsed answer -> predicted labels
    # Request headers for a body (beyond Content-Type: application/json), and how to parse
    # an answer's bytes (the binary tensor protocol has its own).
    headers: Callable[[bytes], dict[str, str]] = field(default=lambda _: {})
    parse: Callable[[bytes], Any] = field(default=json.loads)
    grpc: bool = False  # served on the gRPC port; the body is the serialized request message


def _seed_body(_model: str, rows: list[Row]) -> bytes:
    # The seed guide's single-row form for one row, its batch form otherwise.
    payload = {"input": rows[0]} if len(rows) == 1 else {"inputs": rows}
    return json.dumps(payload).encode()


def _seed_answers(answer: Any) -> list[Any]:
    return [answer["prediction"]] if "prediction" in answer else list(answer["predictions"])


def _v1_body(_model: str, rows: list[Row]) -> bytes:
    return json.dumps({"instances": rows}).encode()


def _v2_body(_model: str, rows: list[Row]) -> bytes:
    tensor = {
        "name": "input-0",
        "shape": [len(rows), len(rows[0])],
        "datatype": "FP64",
        "data": [value for row in rows for value in row],
    }
    return json.dumps({"inputs": [tensor]}).encode()


def _v2_typed_body(_model: str, rows: list[Row]) -> bytes:
    # One tensor per feature (rows keyed by name): BYTES for strings, FP64 for numbers.
    keyed = [row for row in rows if isinstance(row, dict)]
    assert len(keyed) == len(rows), "a tensor per feature needs rows keyed by feature name"
    tensors = []
    for name in keyed[0]:
        data = [row[name] for row in keyed]
        text = any(isinstance(v, str) for v in data)
        tensors.append(
            {
                "name": name,
                "shape": [len(rows)],
                "datatype": "BYTES" if text else "FP64",
                "data": data,
            }
        )
    return json.dumps({"inputs": tensors}).encode()


def _v2_answers(answer: Any) -> list[Any]:
    return list(answer["outputs"][0]["data"])


def _fp32_bytes(rows: list[Row]) -> bytes:
    """Rows of numbers as one FP32 tensor's raw little-endian bytes, row after row."""
    flat = [float(value) for row in rows if isinstance(row, list) for value in row]
    assert len(flat) == len(rows) * len(rows[0]), "raw FP32 tensors need rows of numbers"
    return struct.pack(f"<{len(flat)}f", *flat)


def _unpack(datatype: str, chunk: bytes) -> list[Any]:
    """A numeric tensor's values from its raw little-endian bytes."""
    code = {"INT64": "q", "INT32": "i", "FP32": "f", "FP64": "d"}[datatype]
    return list(struct.unpack(f"<{len(chunk) // struct.calcsize(code)}{code}", chunk))


def _v2_binary_body(_model: str, rows: list[Row]) -> bytes:
    # What tritonclient.http sends by default: the JSON part, then the FP32 tensor's bytes, and
    # binary outputs asked for (no outputs named).
    blob = _fp32_bytes(rows)
    tensor = {
        "name": "input-0",
        "shape": [len(rows), len(rows[0])],
        "datatype": "FP32",
        "parameters": {"binary_data_size": len(blob)},
    }
    head = {"inputs": [tensor], "parameters": {"binary_data_output": True}}
    return json.dumps(head).encode() + blob


def _json_end(body: bytes) -> int:
    """Where a binary body's (or answer's) JSON part ends."""
    return json.JSONDecoder().raw_decode(body.decode("latin-1"))[1]


def _v2_binary_headers(body: bytes) -> dict[str, str]:
    return {
        "Content-Type": "application/octet-stream",
        "Inference-Header-Content-Length": str(_json_end(body)),
    }


def _v2_binary_parse(raw: bytes) -> Any:
    """The answer's JSON part with each binary output's values put in its `data`."""
    end = _json_end(raw)
    answer = json.loads(raw[:end])
    offset = end
    for output in answer["outputs"]:
        size = output.get("parameters", {}).get("binary_data_size")
        if size is None:
            continue
        output["data"] = _unpack(output["datatype"], raw[offset : offset + size])
        offset += size
    return answer


GRPC_MODEL_INFER = "/inference.GRPCInferenceService/ModelInfer"


def _grpc_body(model: str, rows: list[Row]) -> bytes:
    """A serialized ModelInferRequest as tritonclient.grpc sends it: the rows as one FP32
    tensor in raw_input_contents, the `predict` output asked for."""
    request = pb.ModelInferRequest(model_name=model)
    request.inputs.add(name="input-0", datatype="FP32", shape=[len(rows), len(rows[0])])
    request.outputs.add(name="predict")
    request.raw_input_contents.append(_fp32_bytes(rows))
    return bytes(request.SerializeToString())


def _grpc_parse(raw: bytes) -> Any:
    """A serialized ModelInferResponse as a V2 JSON answer: each output's raw contents decoded
    into its `data`."""
    try:
        reply = pb.ModelInferResponse.FromString(raw)
    except DecodeError as exc:
        raise ValueError(f"not a ModelInferResponse: {exc}") from None
    contents = reply.raw_output_contents
    if len(contents) != len(reply.outputs):
        raise ValueError(f"{len(reply.outputs)} outputs, {len(contents)} raw_output_contents")
    outputs = [
        {"name": t.name, "datatype": t.datatype, "shape": list(t.shape),
         "data": _unpack(t.datatype, chunk)}
        for t, chunk in zip(reply.outputs, contents, strict=True)
    ]  # fmt: skip
    return {"model_name": reply.model_name, "outputs": outputs}


SEED = Protocol("seed /predict", lambda _: "/predict", _seed_body, _seed_answers)
KSERVE_V1 = Protocol(
    "KServe V1", lambda name: f"/v1/models/{name}:predict", _v1_body, lambda a: a["predictions"]
)
OPEN_INFERENCE_V2 = Protocol(
    "Open Inference V2", lambda name: f"/v2/models/{name}/infer", _v2_body, _v2_answers
)


OPEN_INFERENCE_V2_BINARY = Protocol(
    "Open Inference V2 (binary tensors)",
    lambda name: f"/v2/models/{name}/infer",
    _v2_binary_body,
    _v2_answers,
    headers=_v2_binary_headers,
    parse=_v2_binary_parse,
)
OPEN_INFERENCE_V2_TYPED = Protocol(
    "Open Inference V2 (tensor per feature)",
    lambda name: f"/v2/models/{name}/infer",
    _v2_typed_body,
    _v2_answers,
)
OPEN_INFERENCE_V2_GRPC = Protocol(
    "Open Inference V2 over gRPC (raw contents)",
    lambda _: GRPC_MODEL_INFER,
    _grpc_body,
    _v2_answers,
    parse=_grpc_parse,
    grpc=True,
)


def same_labels(got: list[Any], want: list[Any]) -> bool:
    """Labels equal up to JSON number types (MLServer may answer 0.0 for 0)."""
    if len(got) != len(want):
        return False
    return all(_norm(g) == _norm(w) for g, w in zip(got, want, strict=True))


def _norm(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value
