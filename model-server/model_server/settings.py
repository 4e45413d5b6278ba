"""Typed settings: the operator-server contract.

Every field is read from an environment variable `MODEL_SERVER_<FIELD>` (the operator renders
these into the pod) and can be overridden by a command-line flag `--<field>`. The probe paths and
the port the operator wires into the pod are defined here too, so the contract lives in one place.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final, Literal

from pydantic import Field, field_validator, model_validator
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
ModelFormatName = Literal["skops", "joblib", "onnx"]
CandidateMode = Literal["canary", "shadow"]
# A version is a path segment, an HTTP header value and a gRPC metadata value: keep it plain.
VERSION_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9._+-]*$"
# An HTTP header name (RFC 9110 token); gRPC metadata keys are its lower-case form.
HEADER_NAME_PATTERN: Final = r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$"
SHA256_PATTERN: Final = r"^[0-9a-f]{64}$"


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
        max_length=128,
        pattern=VERSION_PATTERN,
        description="Version served under /v2/models/{name}/versions/{version} (letters, "
        "digits, '.', '_', '+', '-').",
    )
    model_sha256: str | None = Field(
        default=None,
        pattern=SHA256_PATTERN,
        description="Expected sha256 of the primary model file; loading fails unless it "
        "matches. Required for joblib artifacts (a pickle runs code on load). "
        "Env MODEL_SERVER_MODEL_SHA256.",
    )
    model_format: ModelFormatName | None = Field(
        default=None,
        description="Which of the artifact's model files to load; defaults to the card's "
        "primary format.",
    )
    candidate_uri: str | None = Field(
        default=None,
        description="A second version of the model served beside the stable one "
        "(docs/rollouts.md): its artifact URI, same forms as model_uri. Unset: no candidate, "
        "and none of the candidate_*, sticky_header and shadow_queue settings apply. "
        "Env MODEL_SERVER_CANDIDATE_URI.",
    )
    candidate_sha256: str | None = Field(
        default=None,
        pattern=SHA256_PATTERN,
        description="Pin of the candidate's model file (the rules of model_sha256). "
        "Env MODEL_SERVER_CANDIDATE_SHA256.",
    )
    candidate_format: ModelFormatName | None = Field(
        default=None,
        description="Which of the candidate's model files to load (the rules of model_format). "
        "Env MODEL_SERVER_CANDIDATE_FORMAT.",
    )
    candidate_version: str = Field(
        default="candidate",
        min_length=1,
        max_length=128,
        pattern=VERSION_PATTERN,
        description="The candidate's version string; must differ from model_version. "
        "Env MODEL_SERVER_CANDIDATE_VERSION.",
    )
    candidate_mode: CandidateMode = Field(
        default="canary",
        description="canary: the candidate answers candidate_percent of the requests; shadow: "
        "the stable answers every request and the candidate predicts a copy. "
        "Env MODEL_SERVER_CANDIDATE_MODE.",
    )
    candidate_percent: int = Field(
        default=0,
        ge=0,
        le=100,
        description="The canary share in percent, 0-100 (exact per process; ignored in shadow "
        "mode). Env MODEL_SERVER_CANDIDATE_PERCENT.",
    )
    sticky_header: str | None = Field(
        default=None,
        max_length=256,
        pattern=HEADER_NAME_PATTERN,
        description="A header name (HTTP; gRPC metadata key in lower case): requests carrying "
        "it are split by a hash of its value, so one value always gets the same version. "
        "Env MODEL_SERVER_STICKY_HEADER.",
    )
    shadow_queue: int = Field(
        default=64,
        ge=0,
        le=100_000,
        description="Copies (shadow, and canary agreement) waiting for the other version's "
        "prediction; when full a copy is dropped and counted (0: every copy is dropped). "
        "Env MODEL_SERVER_SHADOW_QUEUE.",
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
    download_timeout_seconds: float = Field(
        default=3600.0,
        gt=0,
        le=86_400,
        description="A remote artifact (its card and the served model file) must be downloaded "
        "within this many seconds, or the download is stopped and the server exits with a "
        "StorageError (a stalled or trickling store would otherwise keep the pod unready).",
    )
    workdir: Path = Field(
        default=Path("/tmp/model-server"),
        description="Writable directory for downloaded artifacts and multiprocess metrics.",
    )

    @field_validator(
        "model_sha256",
        "candidate_uri",
        "candidate_sha256",
        "candidate_format",
        "sticky_header",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # The operator renders the pin empty for an unpinned model (so that nothing in the
        # pod's envFrom can set it); empty means "not pinned", and for the candidate's
        # settings "not set".
        return None if value == "" else value

    @field_validator("candidate_mode", mode="before")
    @classmethod
    def _lower_mode(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _candidate_differs(self) -> ServerSettings:
        if self.candidate_uri is not None and self.candidate_version == self.model_version:
            raise ValueError(
                f"MODEL_SERVER_CANDIDATE_VERSION ({self.candidate_version!r}) must differ from "
                f"MODEL_SERVER_MODEL_VERSION ({self.model_version!r}): the versions name who "
                "answered"
            )
        return self

    def candidate_settings(self, name: str | None = None) -> ServerSettings:
        """The settings that load the candidate like a stable model: its URI, pin, format and
        version in the model_* fields, served under `name` (the stable model's)."""
        assert self.candidate_uri is not None  # only called when a candidate is set
        return self.model_copy(
            update={
                "model_uri": self.candidate_uri,
                "model_sha256": self.candidate_sha256,
                "model_format": self.candidate_format,
                "model_version": self.candidate_version,
                "model_name": name if name is not None else self.model_name,
                "candidate_uri": None,
            }
        )

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
