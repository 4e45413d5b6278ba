"""Operator settings, read once from the environment (prefix MLOP_)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class OperatorSettings(BaseSettings):
    """Typed settings of the operator process; every field is an env var `MLOP_<NAME>`."""

    model_config = SettingsConfigDict(env_prefix="MLOP_", frozen=True, extra="ignore")

    namespaces: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(),
        description="Comma-separated namespaces to watch; empty means the whole cluster.",
    )
    default_image: str = Field(
        default="mlmodel-server:dev",
        min_length=1,
        description="Model server image used when spec.server.image is not set.",
    )
    drift_interval_seconds: float = Field(
        default=60.0,
        gt=0,
        description="How often every MLModel is re-checked against its children and artifact.",
    )
    workers: int = Field(
        default=4,
        ge=1,
        le=64,
        description="Reconcile worker threads (one MLModel is never reconciled by two at once).",
    )
    log_format: Literal["text", "json"] = Field(
        default="text", description="Operator log lines as plain text or JSON."
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        default="info", description="Lowest level of operator log lines."
    )
    metrics_host: str = Field(
        default="127.0.0.1",
        description="Address for /healthz and /metrics (the pod IP when run in a cluster).",
    )
    metrics_port: int = Field(
        default=8081, ge=0, le=65535, description="Port for /healthz and /metrics; 0 disables."
    )
    cluster_domain: str = Field(
        default="cluster.local", description="DNS domain of the cluster, for status.url."
    )
    card_timeout_seconds: float = Field(
        default=10.0, gt=0, description="Deadline for reading one artifact's model card."
    )

    @field_validator("namespaces", mode="before")
    @classmethod
    def _split_namespaces(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value
