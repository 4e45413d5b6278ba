"""The MLModel custom resource, parsed once into frozen pydantic models.

Field names are snake_case in Python and camelCase in the API (aliases). The CRD schema in
crds/mlmodel.yaml is the validating authority; these models mirror it (extra fields forbidden,
so a field added to one and not the other fails the unit tests).
"""

from __future__ import annotations

import itertools
import re
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

GROUP: Final = "mlops.dev"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"
KIND: Final = "MLModel"
PLURAL: Final = "mlmodels"


class _Frozen(BaseModel):
    # hide_input_in_errors: a refused URI may hold a password, and errors end up in logs.
    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        alias_generator=to_camel,
        populate_by_name=True,
        hide_input_in_errors=True,
    )


Quantity = int | str

# The CRD's CEL rules for spec.model.uri that keep the operator from reading what it must not,
# with the CRD's messages: the operator checks them again rather than trust that every object
# passed the API server's validation. (The pvc claim and s3 bucket forms are left to the CRD.)
# CEL's matches() finds a match anywhere, like re.search.
URI_RULES: Final[tuple[tuple[re.Pattern[str], bool, str], ...]] = (
    (
        re.compile(r"^(pvc|http|https|s3)://.+$"),
        True,
        "must start with pvc://, http://, https:// or s3:// and name a location",
    ),
    (
        re.compile(r"^[^:/?#]+://[^/?#]*@"),
        False,
        "spec.model.uri must not carry user-info (user:password@host): put credentials in "
        "spec.model.credentialsSecret",
    ),
    (
        re.compile(r"[?#]"),
        False,
        "spec.model.uri must not contain a query ('?') or a fragment ('#'): name the artifact "
        "directory only",
    ),
    (
        # RE2's \s is ASCII [\t\n\f\r ]; \p{Cc} is U+0000-U+001F and U+007F-U+009F.
        re.compile(r"[\t\n\f\r \\\x00-\x1f\x7f-\x9f]"),
        False,
        "spec.model.uri must not contain whitespace, control characters or backslashes",
    ),
)
# The server reads MODEL_SERVER_* in any letter case as its settings (pydantic-settings).
SERVER_ENV_PREFIX: Final = "model_server_"
ENV_NAME_PATTERN: Final = r"^[-._a-zA-Z][-._a-zA-Z0-9]*$"
# The CRD's CEL messages for the gRPC ports (crds/mlmodel.yaml, spec.server and spec.service).
SERVER_GRPC_PORT_CLASH: Final = (
    "spec.server.grpcPort must differ from spec.server.port: the server listens for HTTP and "
    "gRPC on separate ports"
)
SERVICE_GRPC_PORT_CLASH: Final = (
    "spec.service.grpcPort must differ from spec.service.port (or be 0, which turns gRPC off)"
)

# The CRD's CEL messages for spec.candidate (crds/mlmodel.yaml).
CANDIDATE_EQUALS_MODEL: Final = (
    "spec.candidate.model must differ from spec.model: another uri, or another sha256 pin (the "
    "same uri with neither pinned, or with the same pin, is the same model)"
)
CANDIDATE_CREDENTIALS: Final = (
    "spec.candidate.model.credentialsSecret must be unset or equal to "
    "spec.model.credentialsSecret: the pods have one set of credentials, which both versions "
    "are read with"
)
STEPS_NOT_ASCENDING: Final = (
    "spec.candidate.analysis.steps must be strictly ascending (each step a larger share than the "
    "one before)"
)
INTERVAL_TOO_SHORT: Final = "spec.candidate.analysis.interval must be at least 10s"
INTERVAL_PATTERN: Final = r"^[0-9]+(s|m|h)$"
MIN_INTERVAL_SECONDS: Final = 10
# An HTTP header name (RFC 9110 token); the server lower-cases it for gRPC metadata.
STICKY_HEADER_PATTERN: Final = r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$"
_UNIT_SECONDS: Final = {"s": 1, "m": 60, "h": 3600}


def uri_problem(uri: str, field: str = "spec.model") -> str | None:
    """The CRD's message for the first rule `uri` breaks, or None when it passes them all
    (`field`: the object holding the uri, as the CRD's messages for it name it)."""
    for pattern, must_match, message in URI_RULES:
        if (pattern.search(uri) is not None) != must_match:
            return message.replace("spec.model.", f"{field}.")
    return None


def interval_seconds(interval: str) -> int:
    """`30s`, `2m`, `1h` in seconds (the CRD's pattern ^[0-9]+(s|m|h)$)."""
    return int(interval[:-1]) * _UNIT_SECONDS[interval[-1]]


class ModelSource(_Frozen):
    """spec.model: where the artifact lives."""

    uri: str = Field(max_length=2048)
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    format: Literal["skops", "joblib", "onnx"] | None = None
    credentials_secret: str | None = None

    @field_validator("uri")
    @classmethod
    def _check_uri(cls, uri: str) -> str:
        problem = uri_problem(uri)
        if problem:
            raise ValueError(problem)
        return uri

    @property
    def scheme(self) -> str:
        """The URI scheme: pvc, http, https or s3."""
        return self.uri.split("://", 1)[0]

    def pvc_claim_and_path(self) -> tuple[str, str]:
        """Split `pvc://<claim>/<path>` into the claim name and the path inside it."""
        claim, _, path = self.uri.removeprefix("pvc://").partition("/")
        return claim, path


class CandidateModelSource(ModelSource):
    """spec.candidate.model: the same schema and rules as spec.model, named as its own."""

    @field_validator("uri")
    @classmethod
    def _check_uri(cls, uri: str) -> str:
        problem = uri_problem(uri, "spec.candidate.model")
        if problem:
            raise ValueError(problem)
        return uri


Step = Annotated[int, Field(ge=1, le=100)]


class Analysis(_Frozen):
    """spec.candidate.analysis: walk the canary share through `steps`, judged by the bounds."""

    steps: tuple[Step, ...] = Field(min_length=1, max_length=10)
    interval: str = Field(max_length=8, pattern=INTERVAL_PATTERN)
    max_error_rate: float | None = Field(default=None, ge=0, le=1)
    max_latency_ratio: float | None = Field(default=None, gt=0)
    min_agreement: float | None = Field(default=None, ge=0, le=1)

    @field_validator("steps")
    @classmethod
    def _ascending(cls, steps: tuple[int, ...]) -> tuple[int, ...]:
        if any(later <= earlier for earlier, later in itertools.pairwise(steps)):
            raise ValueError(STEPS_NOT_ASCENDING)
        return steps

    @field_validator("interval")
    @classmethod
    def _long_enough(cls, interval: str) -> str:
        if interval_seconds(interval) < MIN_INTERVAL_SECONDS:
            raise ValueError(INTERVAL_TOO_SHORT)
        return interval

    @property
    def interval_seconds(self) -> int:
        """How long each step holds, in seconds."""
        return interval_seconds(self.interval)


class Candidate(_Frozen):
    """spec.candidate: a second version served beside spec.model (docs/rollouts.md)."""

    model: CandidateModelSource
    mode: Literal["canary", "shadow"] = "canary"
    traffic_percent: int = Field(default=0, ge=0, le=100)
    sticky_header: str | None = Field(
        default=None, min_length=1, max_length=128, pattern=STICKY_HEADER_PATTERN
    )
    analysis: Analysis | None = None


class Autoscaling(_Frozen):
    """spec.autoscaling: an HPA owns the replica count while this is set."""

    min_replicas: int = 1
    max_replicas: int
    target_cpu_utilization_percentage: int = Field(
        default=80, alias="targetCPUUtilizationPercentage"
    )
    behavior: dict[str, Any] | None = None


class Resources(_Frozen):
    """spec.server.resources: container requests and limits."""

    limits: dict[str, Quantity] | None = None
    requests: dict[str, Quantity] | None = None


class EnvVar(_Frozen):
    """One extra environment variable for the server container."""

    name: str = Field(max_length=128, pattern=ENV_NAME_PATTERN)
    value: str | None = None
    value_from: dict[str, Any] | None = None

    @field_validator("name")
    @classmethod
    def _not_a_server_setting(cls, name: str) -> str:
        if name.lower().startswith(SERVER_ENV_PREFIX):
            raise ValueError(
                "spec.server.env[].name must not start with MODEL_SERVER_ in any letter case: "
                "those variables are the model server's settings, set by the operator from "
                "spec.model and spec.server; set those fields instead"
            )
        return name


class Server(_Frozen):
    """spec.server: the model server container."""

    image: str | None = None
    workers: int = 1
    drift_window: int | None = None
    port: int = 8080
    grpc_port: int = 8081
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    resources: Resources | None = None
    env: tuple[EnvVar, ...] = ()


class ServiceSpec(_Frozen):
    """spec.service: how the model is exposed inside the cluster."""

    type: Literal["ClusterIP", "NodePort", "LoadBalancer"] = "ClusterIP"
    port: int = 80
    grpc_port: int = 9000

    @model_validator(mode="after")
    def _grpc_port_is_not_the_http_port(self) -> ServiceSpec:
        if self.grpc_port != 0 and self.grpc_port == self.port:
            raise ValueError(SERVICE_GRPC_PORT_CLASH)
        return self

    @property
    def grpc(self) -> bool:
        """Whether the model serves gRPC at all (spec.service.grpcPort 0 turns it off)."""
        return self.grpc_port != 0


class Toleration(_Frozen):
    """One pod toleration."""

    key: str | None = None
    operator: Literal["Exists", "Equal"] | None = None
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    toleration_seconds: int | None = None


class MLModelSpec(_Frozen):
    """spec of an MLModel."""

    model: ModelSource
    candidate: Candidate | None = None
    replicas: int = 1
    autoscaling: Autoscaling | None = None
    server: Server = Server()
    service: ServiceSpec = ServiceSpec()
    node_selector: dict[str, str] | None = None
    tolerations: tuple[Toleration, ...] = ()
    affinity: dict[str, Any] | None = None
    service_account_name: str | None = None

    @model_validator(mode="after")
    def _grpc_port_is_not_the_http_port(self) -> MLModelSpec:
        # The CRD refuses the clash in spec.server whether or not gRPC is on. The parser refuses
        # it only where it would render a server that cannot start (both listeners on one
        # port): an object the API server accepted before grpcPort existed, with
        # spec.server.port 8081, keeps validating there while spec.server is unchanged
        # (validation ratcheting), and turning gRPC off in spec.service is enough to serve it.
        if self.service.grpc and self.server.grpc_port == self.server.port:
            raise ValueError(SERVER_GRPC_PORT_CLASH)
        return self

    @model_validator(mode="after")
    def _candidate_is_another_model(self) -> MLModelSpec:
        # The CRD's two rules on spec, checked again as the URI rules are.
        candidate = self.candidate
        if candidate is None:
            return self
        same_uri = candidate.model.uri == self.model.uri
        if same_uri and candidate.model.sha256 == self.model.sha256:  # both None: unpinned
            raise ValueError(CANDIDATE_EQUALS_MODEL)
        secret = candidate.model.credentials_secret
        if secret is not None and secret != self.model.credentials_secret:
            raise ValueError(CANDIDATE_CREDENTIALS)
        return self

    @property
    def grpc_container_port(self) -> int | None:
        """The container port of the gRPC service, or None when gRPC is off."""
        return self.server.grpc_port if self.service.grpc else None


class Condition(_Frozen):
    """A metav1.Condition."""

    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str
    message: str
    observed_generation: int | None = None
    last_transition_time: str


class RuntimeStatus(_Frozen):
    """status.runtime: what the pods run (the image) and load (the model file's format)."""

    model_config = ConfigDict(
        frozen=True, extra="ignore", alias_generator=to_camel, populate_by_name=True
    )

    image: str | None = None
    model_format: str | None = None


class _Observed(_Frozen):
    # Status is the operator's own writing: fields it no longer writes are ignored.
    model_config = ConfigDict(
        frozen=True, extra="ignore", alias_generator=to_camel, populate_by_name=True
    )


class VersionStatus(_Observed):
    """status.candidate.stable / .candidate: the version's digest and pods that serve it."""

    digest: str | None = None
    ready_replicas: int | None = None


class MeasuredStatus(_Observed):
    """status.candidate.measured: what the analysis measured over the current step."""

    requests: int | None = None
    error_rate: str | None = None
    latency_ratio: str | None = None
    agreement: str | None = None


class CandidateStatus(_Observed):
    """status.candidate: where the candidate rollout is (docs/rollouts.md)."""

    mode: str | None = None
    traffic_percent: int | None = None
    phase: str | None = None
    step: int | None = None
    step_started_at: str | None = None
    evaluated_at: str | None = None
    analysis_key: str | None = None
    message: str | None = None
    stable: VersionStatus | None = None
    candidate: VersionStatus | None = None
    measured: MeasuredStatus | None = None


class MLModelStatus(_Frozen):
    """status of an MLModel, as last written by the operator."""

    model_config = ConfigDict(
        frozen=True, extra="ignore", alias_generator=to_camel, populate_by_name=True
    )

    observed_generation: int | None = None
    replicas: int | None = None
    ready_replicas: int | None = None
    updated_replicas: int | None = None
    available_replicas: int | None = None
    replica_summary: str | None = None
    selector: str | None = None
    url: str | None = None
    model_digest: str | None = None
    runtime: RuntimeStatus | None = None
    candidate: CandidateStatus | None = None
    conditions: tuple[Condition, ...] = ()


class MLModel(_Frozen):
    """One MLModel object: identity, spec and the last written status."""

    name: str
    namespace: str
    uid: str
    generation: int
    spec: MLModelSpec
    status: MLModelStatus = MLModelStatus()

    @classmethod
    def from_body(cls, body: Any) -> MLModel:
        """Parse an MLModel from its API body (a dict or kopf Body)."""
        meta = body["metadata"]
        return cls.model_validate(
            {
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta["uid"],
                "generation": meta.get("generation", 1),
                "spec": dict(body.get("spec") or {}),
                "status": dict(body.get("status") or {}),
            }
        )

    @property
    def autoscaled(self) -> bool:
        """Whether an HPA owns the replica count."""
        return self.spec.autoscaling is not None
