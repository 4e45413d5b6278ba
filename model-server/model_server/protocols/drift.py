"""GET /v2/models/{name}[/versions/{version}]/drift: the served model's drift window, as JSON.

What the drift gauges in /metrics summarise, bin by bin (see model_server.drift): per feature
and for the outputs, the bins, the training reference's shares, the window's and the PSI. 404
for another model, or when drift monitoring is off (MODEL_SERVER_DRIFT_WINDOW=0, a card without
a drift reference), saying why.
"""

from __future__ import annotations

from typing import Final

from fastapi import APIRouter
from fastapi.responses import Response
from pydantic import BaseModel, Field

from model_server.dataplane import DataPlane
from model_server.drift import DriftMonitor
from model_server.errors import ModelNotFound
from model_server.protocols import schemas
from model_server.protocols.common import json_response

PREFIX: Final = "/v2"
DRIFT: Final = "/models/{name}/drift"
DRIFT_VERSION: Final = "/models/{name}/versions/{version}/drift"


class DriftThresholds(BaseModel):
    """The usual reading of PSI."""

    moderate: float = Field(description="PSI from here to `major`: a moderate shift")
    major: float = Field(description="PSI above this: a major shift")


class FeatureDriftReport(BaseModel):
    """One feature's window against the training rows."""

    name: str
    kind: str = Field(description="numeric, boolean or categorical")
    bins: list[str] = Field(description="a label per bin, the missing bin (__missing__) last")
    reference_shares: list[float] = Field(description="training rows per bin, as shares")
    window_shares: list[float] = Field(description="the window's rows per bin, as shares")
    missing_share: float
    psi: float | None = Field(description="null until the window holds min_rows rows")


class OutputDriftReport(BaseModel):
    """The model's outputs in the window against its outputs on held-out rows."""

    kind: str = Field(description="classes (a bin per class, then other) or deciles")
    bins: list[str]
    reference_shares: list[float]
    window_shares: list[float]
    psi: float | None = Field(description="null until the window holds min_rows rows")


class DriftReport(BaseModel):
    """GET /v2/models/{name}/drift (this worker's window)."""

    model_name: str
    model_version: str
    window: int = Field(description="the window's size in rows (MODEL_SERVER_DRIFT_WINDOW)")
    rows: int = Field(description="rows in the window now")
    rows_seen: int = Field(description="rows this worker has binned since it started")
    min_rows: int = Field(description="rows the window needs before PSI is reported")
    thresholds: DriftThresholds
    features: list[FeatureDriftReport]
    outputs: OutputDriftReport | None = Field(
        description="null when the card has no reference for the outputs"
    )


def router(plane: DataPlane) -> APIRouter:
    """The drift routes of one data plane."""
    api = APIRouter(prefix=PREFIX, tags=["drift"])
    doc = {200: {"model": DriftReport}, **schemas.errors(404, 503)}
    summary = "Drift of the recent rows against the training reference"

    @api.get(DRIFT, summary=summary, responses=doc)
    async def drift(name: str) -> Response:
        plane.runtime_named(name)
        return json_response(_report(plane.drift))

    @api.get(DRIFT_VERSION, summary=summary, responses=doc)
    async def drift_version(name: str, version: str) -> Response:
        plane.runtime_named(name, version)
        return json_response(_report(plane.drift))

    return api


def _report(monitor: DriftMonitor | None) -> object:
    found = None if monitor is None else monitor.report()
    if found is None:
        reason = None if monitor is None else monitor.off_reason
        raise ModelNotFound(reason or "drift monitoring is off")
    return found
