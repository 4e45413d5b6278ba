"""The MLModel custom resource, parsed once into frozen pydantic models.

Field names are snake_case in Python and camelCase in the API (aliases). The CRD schema in
crds/mlmodel.yaml is the validating authority; these models mirror it (extra fields forbidden,
so a field added to one and not the other fails the unit tests).
"""

from __future__ import annotations

from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

GROUP: Final = "mlops.dev"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"
KIND: Final = "MLModel"
PLURAL: Final = "mlmodels"


class _Frozen(BaseModel):
    model_config = ConfigDict(
        frozen=True, extra="forbid", alias_generator=to_camel, populate_by_name=True
    )


Quantity = int | str


class ModelSource(_Frozen):
    """spec.model: where the artifact lives."""

    uri: str
    sha256: str | None = None
    format: Literal["skops", "joblib", "onnx"] | None = None
    credentials_secret: str | None = None

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

    name: str
    value: str | None = None
    value_from: dict[str, Any] | None = None


class Server(_Frozen):
    """spec.server: the model server container."""

    image: str | None = None
    workers: int = 1
    port: int = 8080
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    resources: Resources | None = None
    env: tuple[EnvVar, ...] = ()


class ServiceSpec(_Frozen):
    """spec.service: how the model is exposed inside the cluster."""

    type: Literal["ClusterIP", "NodePort", "LoadBalancer"] = "ClusterIP"
    port: int = 80


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


class Condition(_Frozen):
    """A metav1.Condition."""

    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str
    message: str
    observed_generation: int | None = None
    last_transition_time: str


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
