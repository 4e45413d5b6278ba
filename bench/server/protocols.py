"""Request bodies and answer parsers for the APIs the benchmarked servers speak."""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# A row: feature values in order (iris), or an object keyed by feature name holding strings and
# nulls too (the penguins pipeline).
Row = list[float] | dict[str, Any]


@dataclass(frozen=True)
class Protocol:
    """How to ask one API for predictions and read them back."""

    name: str
    path: Callable[[str], str]  # model name -> URL path
    body: Callable[[list[Row]], bytes]
    answers: Callable[[Any], list[Any]]  # parsed answer -> predicted labels
    # Request headers for a body (beyond Content-Type: application/json), and how to parse
    # an answer's bytes (the binary tensor protocol has its own).
    headers: Callable[[bytes], dict[str, str]] = field(default=lambda _: {})
    parse: Callable[[bytes], Any] = field(default=json.loads)


def _seed_body(rows: list[Row]) -> bytes:
    # The seed guide's single-row form for one row, its batch form otherwise.
    payload = {"input": rows[0]} if len(rows) == 1 else {"inputs": rows}
    return json.dumps(payload).encode()


def _seed_answers(answer: Any) -> list[Any]:
    return [answer["prediction"]] if "prediction" in answer else list(answer["predictions"])


def _v1_body(rows: list[Row]) -> bytes:
    return json.dumps({"instances": rows}).encode()


def _v2_body(rows: list[Row]) -> bytes:
    tensor = {
        "name": "input-0",
        "shape": [len(rows), len(rows[0])],
        "datatype": "FP64",
        "data": [value for row in rows for value in row],
    }
    return json.dumps({"inputs": [tensor]}).encode()


def _v2_typed_body(rows: list[Row]) -> bytes:
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


def _v2_binary_body(rows: list[Row]) -> bytes:
    # What tritonclient.http sends by default: the JSON part, then the FP32 tensor's bytes, and
    # binary outputs asked for (no outputs named).
    flat = [float(value) for row in rows for value in row]
    blob = struct.pack(f"<{len(flat)}f", *flat)
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
        chunk = raw[offset : offset + size]
        offset += size
        code = {"INT64": "q", "INT32": "i", "FP32": "f", "FP64": "d"}[output["datatype"]]
        output["data"] = list(struct.unpack(f"<{size // struct.calcsize(code)}{code}", chunk))
    return answer


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


def same_labels(got: list[Any], want: list[Any]) -> bool:
    """Labels equal up to JSON number types (MLServer may answer 0.0 for 0)."""
    if len(got) != len(want):
        return False
    return all(_norm(g) == _norm(w) for g, w in zip(got, want, strict=True))


def _norm(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value
