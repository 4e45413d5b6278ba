"""Request bodies and answer parsers for the APIs the benchmarked servers speak."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
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
    answers: Callable[[Any], list[Any]]  # parsed JSON answer -> predicted labels


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


SEED = Protocol("seed /predict", lambda _: "/predict", _seed_body, _seed_answers)
KSERVE_V1 = Protocol(
    "KServe V1", lambda name: f"/v1/models/{name}:predict", _v1_body, lambda a: a["predictions"]
)
OPEN_INFERENCE_V2 = Protocol(
    "Open Inference V2", lambda name: f"/v2/models/{name}/infer", _v2_body, _v2_answers
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
