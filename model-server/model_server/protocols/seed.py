"""The seed guide's API, unchanged: POST /predict with `input` (one row) or `inputs` (a batch)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from model_server.dataplane import DataPlane, Prediction, row_matrix, rows_matrix
from model_server.errors import InvalidInput
from model_server.protocols import schemas
from model_server.protocols.common import json_response, parse_object, read_body, value, values
from model_server.runtimes.base import Array, ModelInfo, Runtime
from model_server.typed import typed_row, typed_rows

PREDICT_PATH = "/predict"
EXPECTED = "'input' (one row) or 'inputs' (a list of rows)"


def router(plane: DataPlane) -> APIRouter:
    """Routes of the seed API."""
    api = APIRouter(tags=["seed"])

    @api.post(
        PREDICT_PATH,
        summary="Predict one row or a batch",
        openapi_extra=schemas.request_body(schemas.SeedRequest),
        responses={200: {"model": schemas.SeedResponse}, **schemas.errors(400, 408, 413, 422, 503)},
    )
    async def predict(request: Request) -> Response:
        raw = await read_body(request)

        async def attempt(runtime: Runtime, protocol: str | None) -> tuple[bool, Prediction]:
            single, x = await plane.decode_rows(raw, runtime.metadata, decode, decode_typed)
            return single, await plane.predict(runtime, x, probabilities=False, protocol=protocol)

        single, result, answered = await plane.answer(
            plane.runtime(), attempt, "seed", request.scope["headers"], size=len(raw)
        )
        if single:
            response = json_response({"prediction": value(result.labels, 0)})
        else:
            response = json_response({"predictions": values(result.labels)})
        response.raw_headers.append(answered.version_header)
        return response

    return api


def decode(raw: bytes, features: Sequence[str], max_rows: int) -> tuple[bool, Array]:
    """Whether the body is one row (`input`), and the matrix of its rows."""
    body, booleans = parse_object(raw, EXPECTED)
    if _single(body):
        return True, row_matrix(body["input"], features, "input", booleans)
    return False, rows_matrix(body["inputs"], features, "inputs", booleans, max_rows)


def decode_typed(raw: bytes, info: ModelInfo, max_rows: int) -> tuple[bool, Any]:
    """`decode` for a model on the typed path: rows with strings, booleans and nulls."""
    body, _ = parse_object(raw, EXPECTED)
    if _single(body):
        return True, typed_row(body["input"], info, "input")
    return False, typed_rows(body["inputs"], info, "inputs", max_rows)


def _single(body: dict[str, Any]) -> bool:
    single = "input" in body
    if single == ("inputs" in body):
        raise InvalidInput(f"send either {EXPECTED}, not both or neither")
    return single
