"""KServe V1: GET / (liveness), /v1/models, /v1/models/{name}, POST /v1/models/{name}:predict."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from model_server.dataplane import DataPlane, Prediction, rows_matrix
from model_server.protocols import schemas
from model_server.protocols.common import flag, json_response, parse_object, read_body, values
from model_server.runtimes.base import Array, ModelInfo, Runtime
from model_server.typed import typed_rows

PREFIX = "/v1"
PREDICT = "/models/{name}:predict"
PREDICT_PATH = PREFIX + PREDICT
EXPECTED = "'instances' (a list of rows)"


def router(plane: DataPlane) -> APIRouter:
    """Routes of KServe's V1 protocol."""
    api = APIRouter(tags=["kserve-v1"])

    @api.get("/", summary="Liveness (KServe V1)", responses={200: {"model": schemas.V1Live}})
    async def live() -> Response:
        return json_response({"status": "alive"})

    @api.get(
        PREFIX + "/models",
        summary="List served models",
        responses={200: {"model": schemas.V1Models}, **schemas.errors(503)},
    )
    async def models() -> Response:
        return json_response({"models": [plane.runtime().metadata.name]})

    @api.get(
        PREFIX + "/models/{name}",
        summary="Model readiness",
        responses={200: {"model": schemas.V1ModelStatus}, **schemas.errors(404, 503)},
    )
    async def model(name: str) -> Response:
        plane.runtime_named(name)
        return json_response({"name": name, "ready": True})

    @api.post(
        PREDICT_PATH,
        summary="Predict a batch of instances",
        openapi_extra=schemas.request_body(schemas.V1Request),
        responses={
            200: {"model": schemas.V1Response},
            **schemas.errors(400, 404, 408, 413, 422, 503),
        },
    )
    async def predict(name: str, request: Request) -> Response:
        raw = await read_body(request)

        async def attempt(runtime: Runtime, protocol: str | None) -> tuple[None, Prediction]:
            x, proba = await plane.decode_rows(raw, runtime.metadata, decode, decode_typed)
            return None, await plane.predict(runtime, x, probabilities=proba, protocol=protocol)

        _, result, answered = await plane.answer(
            plane.runtime_named(name), attempt, "v1", request.scope["headers"], size=len(raw)
        )
        answer: dict[str, Any] = {"predictions": values(result.labels)}
        if result.probabilities is not None:
            answer["probabilities"] = values(result.probabilities)
        response = json_response(answer)
        response.raw_headers.append(answered.version_header)
        return response

    return api


def decode(raw: bytes, features: Sequence[str], max_rows: int) -> tuple[Array, bool]:
    """The matrix of the body's `instances`, and whether probabilities were asked for."""
    body, booleans = parse_object(raw, EXPECTED)
    x = rows_matrix(body.get("instances"), features, "instances", booleans, max_rows)
    return x, flag(body.get("parameters"), "probabilities", "parameters")


def decode_typed(raw: bytes, info: ModelInfo, max_rows: int) -> tuple[Any, bool]:
    """`decode` for a model on the typed path: rows with strings, booleans and nulls."""
    body, _ = parse_object(raw, EXPECTED)
    x = typed_rows(body.get("instances"), info, "instances", max_rows)
    return x, flag(body.get("parameters"), "probabilities", "parameters")
