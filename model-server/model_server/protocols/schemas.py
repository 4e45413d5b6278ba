"""Request and response shapes for the OpenAPI document.

The hot path does not validate bodies with these models (orjson + the data plane are several
times cheaper); they exist so /docs and /openapi.json describe every route exactly.
"""

from __future__ import annotations

import copy
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, Field, WithJsonSchema

from mlmodel_artifact import Feature
from model_server.runtimes.base import ModelInfo

ROW_MARKER: Final = "x-model-row"
Label = int | float | str
# A feature value: a number, or for mixed-type models a string (categorical), a boolean, or
# null (a missing value where the feature allows it).
FeatureValue = float | str | bool | None
_VALUE: Final = {
    "anyOf": [{"type": "number"}, {"type": "string"}, {"type": "boolean"}, {"type": "null"}]
}
# One row of features: a list of values in feature order, or an object keyed by feature name.
# Once the model is loaded, `describe_model` replaces this generic schema with the model's
# exact row (numbers only for a plain numeric model).
Row = Annotated[
    list[FeatureValue] | dict[str, FeatureValue],
    WithJsonSchema(
        {
            ROW_MARKER: True,
            "anyOf": [
                {"type": "array", "items": _VALUE},
                {"type": "object", "additionalProperties": _VALUE},
            ],
        }
    ),
]
V2Datatype = Literal["FP32", "FP64", "INT32", "INT64", "BOOL", "BYTES"]
_MIXED_ROW: Final = {"island": "Biscoe", "bill_length_mm": 45.2, "sex": None, "year": 2008}


class ErrorBody(BaseModel):
    """Every error answer."""

    error: str = Field(description="What was wrong, naming the field or value.")


class SeedRequest(BaseModel):
    """Send `input` (one row) or `inputs` (a batch), not both."""

    input: Row | None = Field(default=None, examples=[[5.1, 3.5, 1.4, 0.2], _MIXED_ROW])
    inputs: list[Row] | None = Field(default=None, examples=[[[5.1, 3.5, 1.4, 0.2]], [_MIXED_ROW]])


class SeedResponse(BaseModel):
    """`prediction` for `input`, `predictions` for `inputs`."""

    prediction: Label | None = None
    predictions: list[Label] | None = None


class V1Parameters(BaseModel):
    """Options of a KServe V1 predict call."""

    probabilities: bool = Field(default=False, description="Also answer class probabilities.")


class V1Request(BaseModel):
    """Rows as lists of values or as objects keyed by feature name."""

    instances: list[Row] = Field(examples=[[[5.1, 3.5, 1.4, 0.2]], [_MIXED_ROW]])
    parameters: V1Parameters | None = None


class V1Response(BaseModel):
    """One prediction per instance; probabilities when asked for."""

    predictions: list[Label]
    probabilities: list[list[float]] | None = None


class V1Models(BaseModel):
    """The models this server serves."""

    models: list[str]


class V1ModelStatus(BaseModel):
    """Whether the named model is ready."""

    name: str
    ready: bool


class V1Live(BaseModel):
    """GET /: KServe V1's liveness (what its InferenceRESTClient.is_server_live asks)."""

    status: str = Field(examples=["alive"])


class V2ServerMetadata(BaseModel):
    """GET /v2."""

    name: str
    version: str
    extensions: list[str]


class V2Live(BaseModel):
    """GET /v2/health/live."""

    live: bool


class V2Ready(BaseModel):
    """GET /v2/health/ready."""

    ready: bool


class V2ModelReady(BaseModel):
    """GET /v2/models/{name}/ready."""

    name: str
    ready: bool


class V2TensorMetadata(BaseModel):
    """One input or output of the model."""

    name: str
    datatype: str
    shape: list[int]
    parameters: dict[str, Any] | None = Field(
        default=None, description="Inputs of mixed-type models: the feature's kind, nullable."
    )


class V2ModelMetadata(BaseModel):
    """GET /v2/models/{name}."""

    name: str
    versions: list[str]
    platform: str
    inputs: list[V2TensorMetadata]
    outputs: list[V2TensorMetadata]
    parameters: dict[str, Any]


class V2InputTensor(BaseModel):
    """One [N, n_features] tensor (numeric features), or one [N] tensor per feature named by
    feature name (BYTES strings for categorical features, BOOL for boolean ones)."""

    name: str
    shape: list[int]
    datatype: V2Datatype
    data: list[Any] = Field(
        description="Flat (row-major) or nested like the shape; null where a feature may be empty."
    )
    parameters: dict[str, Any] | None = None


class V2RequestedOutput(BaseModel):
    """`predict` (default) or `predict_proba`."""

    name: Literal["predict", "predict_proba"]
    parameters: dict[str, Any] | None = None


class V2InferenceRequest(BaseModel):
    """POST /v2/models/{name}/infer."""

    id: str | None = None
    parameters: dict[str, Any] | None = None
    inputs: list[V2InputTensor]
    outputs: list[V2RequestedOutput] | None = None


class V2OutputTensor(BaseModel):
    """One output: labels/values (`predict`) or class probabilities (`predict_proba`)."""

    name: str
    shape: list[int]
    datatype: str
    data: list[Any]


class V2InferenceResponse(BaseModel):
    """The answer of an infer call."""

    model_name: str
    model_version: str | None = None
    id: str | None = None
    outputs: list[V2OutputTensor]


def request_body(model: type[BaseModel]) -> dict[str, Any]:
    """`openapi_extra` documenting `model` as the JSON request body (definitions inlined)."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": _inline(schema, defs)}},
        }
    }


def _inline(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            return _inline(defs[ref.removeprefix("#/$defs/")], defs)
        return {key: _inline(value, defs) for key, value in node.items()}
    if isinstance(node, list):
        return [_inline(item, defs) for item in node]
    return node


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The `responses` entries for error statuses a route can answer."""
    return {status: {"model": ErrorBody} for status in statuses}


def describe_model(document: dict[str, Any], info: ModelInfo) -> dict[str, Any]:
    """A copy of the OpenAPI document whose row schemas are the served model's exact rows."""
    described: dict[str, Any] = _with_rows(copy.deepcopy(document), row_schema(info))
    return described


def row_schema(info: ModelInfo) -> dict[str, Any]:
    """The model's row: its features in order as a list, or an object keyed by their names.

    A plain numeric model's features are numbers; a mixed-type model's are typed by the input
    schema (numeric: number, categorical: string, boolean: boolean; or null where nullable, and
    a nullable feature may be left out of an object).
    """
    names = list(info.feature_names)
    if info.schema is None:
        types = {name: {"type": "number"} for name in names}
        required = names
    else:
        types = {f.name: _feature_type(f) for f in info.schema.features}
        required = [f.name for f in info.schema.features if not f.nullable]
    any_value = {"anyOf": _unique(list(types.values()))}
    return {
        "anyOf": [
            {"type": "array", "items": any_value, "minItems": len(names), "maxItems": len(names),
             "description": "Feature values in this order: " + ", ".join(names)},
            {"type": "object", "properties": types, "required": required,
             "additionalProperties": False},
        ]
    }  # fmt: skip


def _feature_type(feature: Feature) -> dict[str, Any]:
    kind = {"numeric": "number", "categorical": "string", "boolean": "boolean"}[feature.kind]
    if feature.nullable:
        return {"anyOf": [{"type": kind}, {"type": "null"}]}
    return {"type": kind}


def _unique(types: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for t in types:
        if t not in out:
            out.append(t)
    return out


def _with_rows(node: Any, row: dict[str, Any]) -> Any:
    if isinstance(node, dict):
        if node.get(ROW_MARKER):
            return row
        return {key: _with_rows(value, row) for key, value in node.items()}
    if isinstance(node, list):
        return [_with_rows(item, row) for item in node]
    return node
