"""Typed settings: the operator-server contract.

Every field is read from an environment variable `MODEL_SERVER_<FIELD>` (the operator renders
these into the pod) and can be overridden by a command-line flag `--<field>`. The probe paths and
the port the operator wires into the pod are defined here too, so the contract lives in one place.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX: Final = "MODEL_SERVER_"
DEFAULT_PORT: Final = 8080
DEFAULT_GRPC_PORT: Final = 8081
LIVENESS_PATH: Final = "/v2/health/live"
READINESS_PATH: Final = "/v2/health/ready"
METRICS_PATH: Final = "/metrics"
# A keep-alive connection closes unless its next request's headers are complete this long after
# the previous response (see model_server.connection).
KEEP_ALIVE_SECONDS: Final = 5

LogLevel = Literal["critical", "error", "warning", "info", "debug"]


class ServerSettings(BaseSettings):
    """How one model server process finds, loads and serves its model."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        extra="ignore",
        protected_namespaces=(),
        frozen=True,
    )

    model_uri: str = Field(
        min_length=1,
        description="Where the artifact lives: a local directory, file://, pvc path "
        "(a mounted directory), http(s):// or s3://bucket/prefix. Env MODEL_SERVER_MODEL_URI.",
    )
    model_name: str | None = Field(
        default=None,
        description="Name the model is served under in /v1 and /v2 paths; defaults to the "
        "model card's name. Env MODEL_SERVER_MODEL_NAME.",
    )
    model_version: str = Field(
        default="1",
        min_length=1,
        description="Version served under /v2/models/{name}/versions/{version}.",
    )
    model_sha256: str | None = Field(
        default=None,
        pattern=r"^[0-9a-f]{64}$",
        description="Expected sha256 of the primary model file; loading fails unless it "
        "matches. Required for joblib artifacts (a pickle runs code on load). "
        "Env MODEL_SERVER_MODEL_SHA256.",
    )
    model_format: Literal["skops", "joblib", "onnx"] | None = Field(
        default=None,
        description="Which of the artifact's model files to load; defaults to the card's "
        "primary format.",
    )
    host: str = Field(
        default="127.0.0.1",
        description="Address to bind. The operator renders 0.0.0.0 inside pods; the CLI "
        "default stays on loopback. Env MODEL_SERVER_HOST.",
    )
    port: int = Field(
        default=DEFAULT_PORT, ge=0, le=65535, description="TCP port. Env MODEL_SERVER_PORT."
    )
    grpc_port: int = Field(
        default=DEFAULT_GRPC_PORT,
        ge=0,
        le=65535,
        description="TCP port of the Open Inference Protocol V2 gRPC service "
        "(inference.GRPCInferenceService), on the same address as HTTP; 0 turns gRPC off. "
        "Env MODEL_SERVER_GRPC_PORT.",
    )
    workers: int = Field(
        default=1, ge=1, le=64, description="Worker processes. Env MODEL_SERVER_WORKERS."
    )
    max_request_bytes: int = Field(
        default=8 * 1024 * 1024,
        ge=1024,
        description="Largest request body accepted; larger ones get 413.",
    )
    max_rows: int = Field(
        default=10_000,
        ge=1,
        description="Most rows one prediction request may carry; a bigger batch gets 413 "
        "(split it). Env MODEL_SERVER_MAX_ROWS.",
    )
    body_timeout_seconds: float = Field(
        default=5.0,
        gt=0,
        le=600,
        description="A request must have sent its whole body within this many seconds of its "
        "headers; a slower one gets 408 and its connection is closed.",
    )
    header_timeout_seconds: float = Field(
        default=5.0,
        gt=0,
        le=600,
        description="A new connection must have sent a request's complete headers within this "
        "many seconds, or it is closed without an answer (idle and slowly trickling clients). "
        "On a keep-alive connection the next request's headers must be complete within 5 s "
        "of the previous response.",
    )
    max_connections: int = Field(
        default=32,
        ge=1,
        le=10_000,
        description="Prediction requests in flight at once per worker process (each may hold a "
        "body of up to max_request_bytes); the next gets 503 with Retry-After. Health, "
        "readiness and metrics are not counted. Open connections are not capped: each must "
        "send its headers within header_timeout_seconds.",
    )
    log_level: LogLevel = Field(default="info", description="Env MODEL_SERVER_LOG_LEVEL.")
    access_log: bool = Field(
        default=False, description="Log every request (costs throughput; metrics count them)."
    )
    compiled: bool = Field(
        default=True,
        description="Serve tree ensembles and linear models through ONNX Runtime after checking "
        "it agrees with scikit-learn; off serves plain scikit-learn.",
    )
    drift_window: int = Field(
        default=1000,
        ge=0,
        le=1_000_000,
        description="Rows in the drift window: the most recent rows (inputs and outputs) each "
        "worker compares with the model card's training reference (PSI per feature and of the "
        "outputs, missing shares, in /metrics and GET /v2/models/{name}/drift); 0 turns drift "
        "monitoring off. Env MODEL_SERVER_DRIFT_WINDOW.",
    )
    workdir: Path = Field(
        default=Path("/tmp/model-server"),
        description="Writable directory for downloaded artifacts and multiprocess metrics.",
    )

    @field_validator("model_sha256", mode="before")
    @classmethod
    def _empty_pin_is_no_pin(cls, value: object) -> object:
        # The operator renders the variable empty for an unpinned model (so that nothing in the
        # pod's envFrom can set it); empty means "not pinned".
        return None if value == "" else value

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower_log_level(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    def to_env(self) -> dict[str, str]:
        """These settings as MODEL_SERVER_* variables (how worker processes receive them)."""
        env: dict[str, str] = {}
        for name, value in self.model_dump(exclude_none=True).items():
            if isinstance(value, bool):
                value = "true" if value else "false"
            env[f"{ENV_PREFIX}{name.upper()}"] = str(value)
        return env
