"""The MLModel custom resource, parsed once into frozen pydantic models.

Field names are snake_case in Python and camelCase in the API (aliases). The CRD schema in
crds/mlmodel.yaml is the validating authority; these models mirror it (extra fields forbidden,
so a field added to one and not the other fails the unit tests).
"""

from __future__ import annotations

import re
from typing import Any, Final, Literal

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


def uri_problem(uri: str) -> str | None:
    """The CRD's message for the first rule `uri` breaks, or None when it passes them all."""
    for pattern, must_match, message in URI_RULES:
        if (pattern.search(uri) is not None) != must_match:
            return message
    return None


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
