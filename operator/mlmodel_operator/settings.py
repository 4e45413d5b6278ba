"""Operator settings, read once from the environment (prefix MLOP_)."""

from __future__ import annotations

from typing import Annotated, Final, Literal

from kubernetes.utils.quantity import parse_quantity
from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# A Kubernetes quantity, as the CRD checks spec.server.resources (crds/mlmodel.yaml).
QUANTITY: Final = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
    r"(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
OPTIONAL_QUANTITY: Final = f"^$|{QUANTITY}"


def exceeds(request: int | str, limit: int | str) -> bool:
    """Whether a resource request is above its limit (False when either is no quantity: the
    API server refuses such a value itself, naming it)."""
    try:
        return bool(parse_quantity(request) > parse_quantity(limit))  # type: ignore[no-untyped-call]
    except (ValueError, ArithmeticError):
        return False


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
    slim_image: str = Field(
        default="mlmodel-server:slim",
        description="Model server image for models served from their ONNX file "
        "(spec.model.format: onnx) when spec.server.image is not set: ONNX Runtime without "
        "scikit-learn, about half the size. Empty: MLOP_DEFAULT_IMAGE for those too.",
    )
    # The server container's resources when spec.server.resources does not set them (per key:
    # a request or limit the user sets wins, the others keep these; see render/resources.py).
    # An empty value renders nothing for that key.
    default_cpu_request: str = Field(
        default="250m",
        pattern=QUANTITY,
        description="CPU request; the HPA's target utilization is a share of it, so never empty.",
    )
    default_memory_request: str = Field(
        default="256Mi", pattern=OPTIONAL_QUANTITY, description="Memory request."
    )
    default_ephemeral_storage_request: str = Field(
        default="0",
        pattern=OPTIONAL_QUANTITY,
        description="Ephemeral-storage request. 0, not empty: with a limit and no request, "
        "Kubernetes requests the whole limit, and nodes that report no ephemeral storage "
        "(kwok, virtual kubelets) could then schedule no model pod; the limit alone bounds it.",
    )
    default_cpu_limit: str = Field(
        default="",
        pattern=OPTIONAL_QUANTITY,
        description="CPU limit; none by default (a CPU limit throttles a latency-bound server "
        "even on an idle node; memory and disk limits are what protect the node).",
    )
    default_memory_limit: str = Field(
        default="1Gi", pattern=OPTIONAL_QUANTITY, description="Memory limit."
    )
    default_ephemeral_storage_limit: str = Field(
        default="2Gi",
        pattern=OPTIONAL_QUANTITY,
        description="Ephemeral-storage limit (downloads in /tmp and logs); the /tmp emptyDir's "
        "sizeLimit follows the container's limit, this one or the user's.",
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
        default=10.0,
        gt=0,
        description="One deadline for a whole model-card read (name lookup, connect, TLS, "
        "redirects, body); a reconcile never waits for it.",
    )
    artifact_sources: Annotated[tuple[str, ...], NoDecode] = Field(
        default=("https://", "s3://"),
        description="Comma-separated URI prefixes the operator reads model cards from, e.g. "
        "'https://,s3://models/,http://minio.storage:9000/'; a loopback or private address is "
        "read only through a prefix that names its host. Other models are tracked only "
        "through spec.model.sha256.",
    )
    credential_sources: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(),
        description="Comma-separated URI prefixes the operator sends its own credentials to "
        "(MLMODEL_HTTP_TOKEN as a bearer, AWS signing from its credential chain); elsewhere it "
        "reads anonymously. Empty: credentials are never sent.",
    )
    card_max_bytes: int = Field(
        default=1 << 20, ge=1024, description="Largest model card read (bytes, while streaming)."
    )
    card_readers: int = Field(default=4, ge=1, le=64, description="Threads that read model cards.")
    card_queue_size: int = Field(
        default=256, ge=1, description="Card reads that may wait for a thread; more are 'busy'."
    )
    card_cache_size: int = Field(
        default=10_000, ge=1, description="Card outcomes remembered (least recently used go)."
    )

    prometheus_url: str = Field(
        default="",
        description="Base URL of the Prometheus HTTP API that candidate analysis queries "
        "(e.g. http://prometheus.monitoring:9090), scraping the model pods with the shipped "
        "prometheus.yml (labels namespace and mlmodel). Empty: the analysis reads the /metrics "
        "of the model pods itself.",
    )

    # --- talking to the API server (informer.py, kube.py)
    request_timeout_seconds: float = Field(
        default=30.0,
        gt=0,
        description="Connect and read timeout of every API request (a watch reads this much "
        "beyond its own timeout), so a half-open connection fails instead of hanging.",
    )
    watch_timeout_seconds: int = Field(
        default=300,
        ge=5,
        description="The API server ends each watch after this long (timeoutSeconds) and it "
        "is started again; /healthz fails when a watch stays silent longer.",
    )
    resync_interval_seconds: float = Field(
        default=600.0,
        ge=0,
        description="A full list of every watched kind at least this often, replacing the "
        "cache (objects missing from it are dropped); 0: only after a watch expired.",
    )
    queue_stall_seconds: float = Field(
        default=300.0,
        gt=0,
        description="/healthz fails when the leader's oldest queued MLModel has waited "
        "longer than this for a worker.",
    )
    # --- leader election (leader.py); client-go's semantics
    leader_election: bool = Field(
        default=True,
        description="Hold a coordination.k8s.io Lease to reconcile; replicas without it only "
        "keep their caches warm. Off: this process always reconciles (one replica only!).",
    )
    leader_election_namespace: str = Field(
        default="",
        description="Namespace of the Lease; empty: the pod's own namespace (in a cluster), "
        "else mlmodel-system.",
    )
    leader_election_name: str = Field(default="mlmodel-operator", min_length=1)
    lease_duration_seconds: float = Field(
        default=10.0,
        gt=0,
        description="A Lease not renewed for this long (as a candidate observed it) may be "
        "taken; the upper bound of a take-over after the leader dies, plus one retry period.",
    )
    renew_deadline_seconds: float = Field(
        default=7.0,
        gt=0,
        description="The leader stops writing when it has not renewed for this long (less "
        "than the lease duration, so it stops before anyone else may start).",
    )
    retry_period_seconds: float = Field(
        default=2.0, gt=0, description="How often candidates and the leader read the Lease."
    )

    @field_validator("namespaces", "artifact_sources", "credential_sources", mode="before")
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("artifact_sources", "credential_sources")
    @classmethod
    def _check_sources(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        # a prefix the reader could not parse would silently match nothing: refuse it at start
        from mlmodel_operator.cardfetch import CardReadError, parse_sources

        try:
            parse_sources(value)
        except CardReadError as exc:
            raise ValueError(
                f"not a source prefix ({exc.detail}): use e.g. https://host/path/"
            ) from exc
        return value

    @field_validator("prometheus_url")
    @classmethod
    def _check_prometheus_url(cls, value: str) -> str:
        # the analysis queries only this address: refuse at start what it could not use
        from mlmodel_operator.analysis_metrics import parse_prometheus_url

        value = value.strip()
        if value:
            parse_prometheus_url(value)  # ValueError names what is wrong
        return value

    @model_validator(mode="after")
    def _lease_times_in_order(self) -> OperatorSettings:
        if not self.retry_period_seconds < self.renew_deadline_seconds:
            raise ValueError("MLOP_RETRY_PERIOD_SECONDS must be below MLOP_RENEW_DEADLINE_SECONDS")
        if not self.renew_deadline_seconds < self.lease_duration_seconds:
            raise ValueError(
                "MLOP_RENEW_DEADLINE_SECONDS must be below MLOP_LEASE_DURATION_SECONDS "
                "(a leader must stop writing before another may take over)"
            )
        return self

    @model_validator(mode="after")
    def _default_requests_within_limits(self) -> OperatorSettings:
        # The API server refuses a container whose request exceeds its limit.
        for name in ("cpu", "memory", "ephemeral_storage"):
            request = getattr(self, f"default_{name}_request")
            limit = getattr(self, f"default_{name}_limit")
            if request and limit and exceeds(request, limit):
                env = f"MLOP_DEFAULT_{name.upper()}"
                raise ValueError(f"{env}_REQUEST {request} exceeds {env}_LIMIT {limit}")
        return self
