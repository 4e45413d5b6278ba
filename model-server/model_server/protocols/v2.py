"""Open Inference Protocol V2 (KServe V2 / Triton / MLServer REST paths)."""

from __future__ import annotations

from importlib.metadata import version as package_version
from typing import Any, Final

from fastapi import APIRouter, Request
from fastapi.responses import Response

from model_server import binary
from model_server.dataplane import DataPlane, Prediction
from model_server.errors import InvalidInput
from model_server.protocols import schemas
from model_server.protocols.common import json_response, parse_object, read_body, values
from model_server.runtimes.base import Array, ModelInfo, Runtime
from model_server.tensors import tensors_matrix
from model_server.typed import KIND_DATATYPE, typed_tensors

PREFIX: Final = "/v2"
INFER: Final = "/models/{name}/infer"
INFER_VERSION: Final = "/models/{name}/versions/{version}/infer"
INFER_PATHS: Final = (PREFIX + INFER, PREFIX + INFER_VERSION)
SERVER_NAME: Final = "mlmodel-server"
OUTPUTS: Final = ("predict", "predict_proba")
_DATATYPES: Final = {"b": "BOOL", "i": "INT", "u": "UINT", "f": "FP"}


def router(plane: DataPlane) -> APIRouter:
    """Routes of the Open Inference Protocol V2 REST API."""
    api = APIRouter(prefix=PREFIX, tags=["open-inference-v2"])
    server = server_metadata()
    ok = {200: {"model": schemas.V2ModelReady}, **schemas.errors(404, 503)}

    @api.get("", summary="Server metadata", responses={200: {"model": schemas.V2ServerMetadata}})
    async def metadata() -> Response:
        return json_response(server)

    @api.get("/health/live", summary="Liveness", responses={200: {"model": schemas.V2Live}})
    async def live() -> Response:
        return json_response({"live": True})

    @api.get(
        "/health/ready",
        summary="Readiness: 503 until the model is loaded and warmed up",
        responses={200: {"model": schemas.V2Ready}, **schemas.errors(503)},
    )
    async def ready() -> Response:
        plane.runtime()
        return json_response({"ready": True})

    meta = {200: {"model": schemas.V2ModelMetadata}, **schemas.errors(404, 503)}

    @api.get("/models/{name}", summary="Model metadata", responses=meta)
    async def model(name: str) -> Response:
        info = plane.runtime_named(name).metadata
        return json_response(model_metadata(info, plane.version_names()))

    @api.get("/models/{name}/versions/{version}", summary="Model metadata", responses=meta)
    async def model_version(name: str, version: str) -> Response:
        info = plane.runtime_named(name, version).metadata
        return json_response(model_metadata(info, plane.version_names()))

    @api.get("/models/{name}/ready", summary="Model readiness", responses=ok)
    async def model_ready(name: str) -> Response:
        plane.runtime_named(name)
        return json_response({"name": name, "ready": True})

    @api.get(
        "/models/{name}/versions/{version}/ready",
        summary="Model version readiness: a candidate that failed to load is 503 saying why",
        responses=ok,
    )
    async def model_version_ready(name: str, version: str) -> Response:
        plane.runtime_named(name, version)
        return json_response({"name": name, "ready": True})

    infer_doc: dict[str, Any] = {
        "openapi_extra": schemas.request_body(schemas.V2InferenceRequest),
        "responses": {
            200: {"model": schemas.V2InferenceResponse},
            **schemas.errors(400, 404, 408, 413, 422, 503),
        },
    }

    @api.post(INFER, summary="Inference", **infer_doc)
    async def infer(name: str, request: Request) -> Response:
        return await _infer(plane, name, None, request)

    @api.post(INFER_VERSION, summary="Inference by that version only", **infer_doc)
    async def infer_version(name: str, version: str, request: Request) -> Response:
        return await _infer(plane, name, version, request)

    return api


def server_metadata() -> dict[str, Any]:
    """The V2 server metadata document (REST's extensions)."""
    return {
        "name": SERVER_NAME,
        "version": package_version("mlmodel-server"),
        "extensions": [binary.EXTENSION],
    }


Decoded = tuple[list[str], str | None, set[str] | bool]  # outputs, id, binary outputs


async def _infer(
    plane: DataPlane, model_name: str, version: str | None, request: Request
) -> Response:
    runtime = plane.runtime_named(
        model_name, version
    )  # a wrong name is 404 before the body is read
    raw = await read_body(request)
    headers = request.scope["headers"]
    split = binary.header_length(headers, len(raw))
    text = None if split is None else raw[:split]

    async def attempt(runtime: Runtime, protocol: str | None) -> tuple[Decoded, Prediction]:
        info = runtime.metadata
        x, wanted, request_id, as_binary = await plane.decode(
            raw,
            info.n_features,
            lambda body: decode(body, info, plane.max_rows, split),
            info.string_features,
            text,
        )
        proba = "predict_proba" in wanted
        result = await plane.predict(runtime, x, probabilities=proba, protocol=protocol)
        return (wanted, request_id, as_binary), result

    decoded, result, answered = await plane.answer(
        runtime, attempt, "v2", headers, explicit=version is not None, size=len(raw)
    )
    wanted, request_id, as_binary = decoded
    info = answered.metadata
    answer: dict[str, Any] = {"model_name": info.name, "model_version": info.version}
    if request_id is not None:
        answer["id"] = request_id
    if not as_binary:
        answer["outputs"] = [output_tensor(name, result) for name in wanted]
        response = json_response(answer)
        response.raw_headers.append(answered.version_header)
        return response
    outputs, blobs = [], []
    for name in wanted:
        if as_binary is True or name in as_binary:
            blob = binary.output_bytes(output_array(name, result))
            outputs.append(output_tensor(name, result, binary_size=len(blob)))
            blobs.append(blob)
        else:
            outputs.append(output_tensor(name, result))
    answer["outputs"] = outputs
    content, head = binary.binary_body(answer, blobs)
    response = Response(
        content,
        media_type="application/octet-stream",
        headers={"Inference-Header-Content-Length": str(head)},
    )
    response.raw_headers.append(answered.version_header)
    return response


def decode(
    raw: bytes, info: ModelInfo, max_rows: int, split: int | None = None
) -> tuple[Any, list[str], str | None, set[str] | bool]:
    """The model's input from the body's tensors, the outputs asked for, the request's id and
    which outputs to answer as binary (True: all).

    Plain numeric models get the float64 matrix (`tensors_matrix`); models on the typed path
    (`info.schema`) take a tensor per feature with its own datatype (`typed_tensors`). With
    `split` (Inference-Header-Content-Length) the JSON part ends there and binary tensor data
    follows (`binary.attach_inputs`).
    """
    text = raw if split is None else raw[:split]
    body, booleans = parse_object(text, "'inputs' (a list of tensors)")
    if split is not None:
        binary.attach_inputs(body, raw[split:], max_rows, binary.Takes.of(info, max_rows))
    x, wanted = model_input(body, info, max_rows, booleans)
    request_id = body.get("id")
    as_binary = binary.wants_binary(body)
    return x, wanted, request_id if isinstance(request_id, str) else None, as_binary


def model_input(
    body: dict[str, Any], info: ModelInfo, max_rows: int, booleans: bool = True
) -> tuple[Any, list[str]]:
    """The model's input from a request's tensors (`inputs`, each with its `data` as JSON
    values or, from binary or gRPC raw contents, a flat typed array) and the outputs asked for.

    Every transport of the protocol (JSON, binary tensor data, gRPC) ends here, so they check
    inputs alike and answer the same errors."""
    wanted = requested_outputs(body.get("outputs"), info)
    if info.schema is None:
        x = tensors_matrix(body.get("inputs"), info.feature_names, booleans, max_rows)
    else:
        x = typed_tensors(body.get("inputs"), info, max_rows)
    return x, wanted


def requested_outputs(outputs: Any, info: ModelInfo) -> list[str]:
    """Names of the outputs to answer, in request order (default: `predict`)."""
    if outputs is None:
        return ["predict"]
    if not isinstance(outputs, list) or not outputs:
        raise InvalidInput('outputs must be a non-empty list of {"name": ...} objects')
    names: list[str] = []
    for i, output in enumerate(outputs):
        name = output.get("name") if isinstance(output, dict) else None
        if name not in OUTPUTS:
            raise InvalidInput(f"outputs[{i}] must name one of: {', '.join(OUTPUTS)}")
        if name == "predict_proba" and not info.has_proba:
            raise InvalidInput(
                f"model {info.name!r} is a {info.task} model; it has no predict_proba output"
            )
        if name not in names:
            names.append(name)
    return names


def output_tensor(name: str, result: Prediction, binary_size: int | None = None) -> dict[str, Any]:
    """One V2 output tensor (data flattened row-major), or with `binary_size` its description
    whose data follows the JSON as that many bytes."""
    array = output_array(name, result)
    tensor: dict[str, Any] = {"name": name, "shape": list(array.shape), "datatype": datatype(array)}
    if binary_size is None:
        tensor["data"] = values(array.reshape(-1))
    else:
        tensor["parameters"] = {"binary_data_size": binary_size}
    return tensor


def output_array(name: str, result: Prediction) -> Array:
    """The array behind output `name` (labels, or probabilities)."""
    array = result.probabilities if name == "predict_proba" else result.labels
    assert array is not None  # requested_outputs only asks for probabilities a model has
    return array


def datatype(array: Array) -> str:
    """The V2 datatype name of a numpy array (strings are BYTES)."""
    kind = _DATATYPES.get(array.dtype.kind)
    if kind is None:
        return "BYTES"
    return kind if kind == "BOOL" else f"{kind}{array.dtype.itemsize * 8}"


def model_metadata(info: ModelInfo, versions: list[str] | None = None) -> dict[str, Any]:
    """The V2 model metadata document (`versions`: those served, default the model's own)."""
    outputs = [{"name": "predict", "datatype": _label_type(info), "shape": [-1]}]
    if info.has_proba:
        n_classes = len(info.class_labels) if info.class_labels else -1
        proba_type = "FP32" if info.runtime == "onnxruntime" else "FP64"
        outputs.append({"name": "predict_proba", "datatype": proba_type, "shape": [-1, n_classes]})
    return {
        "name": info.name,
        "versions": versions or [info.version],
        "platform": info.runtime,
        "inputs": model_inputs(info),
        "outputs": outputs,
        "parameters": {
            "feature_names": list(info.feature_names),
            "class_labels": list(info.class_labels) if info.class_labels else None,
            "task": info.task,
            "estimator": info.estimator,
            "format": info.format,
            "sha256": info.digest,
            "compiled": info.compiled,
        },
    }


def model_inputs(info: ModelInfo) -> list[dict[str, Any]]:
    """The inputs the model takes: one [-1, n_features] FP64 tensor for plain numeric models,
    else one [-1, 1] tensor per feature with its datatype (categorical BYTES, boolean BOOL,
    numeric FP64) and, as parameters, its kind and whether it may be null."""
    if not info.mixed:
        return [{"name": "input-0", "datatype": "FP64", "shape": [-1, info.n_features]}]
    assert info.schema is not None  # mixed implies a schema
    return [
        {
            "name": f.name,
            "datatype": KIND_DATATYPE[f.kind],
            "shape": [-1, 1],
            "parameters": {"kind": f.kind.value, "nullable": f.nullable},
        }
        for f in info.schema.features
    ]


def _label_type(info: ModelInfo) -> str:
    if info.task == "regression":
        return "FP32" if info.runtime == "onnxruntime" else "FP64"
    labels = info.class_labels or ()
    if all(isinstance(v, int) for v in labels):
        return "INT64"
    return "BYTES" if any(isinstance(v, str) for v in labels) else "FP64"
