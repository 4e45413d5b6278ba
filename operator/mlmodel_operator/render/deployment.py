"""The Deployment running the model server."""

from __future__ import annotations

import copy
from typing import Any, Final

from mlmodel_operator import contract
from mlmodel_operator.candidate import CandidatePlan
from mlmodel_operator.render.meta import (
    CANDIDATE_DIGEST_ANNOTATION,
    DIGEST_ANNOTATION,
    child_labels,
    child_metadata,
    selector_labels,
)
from mlmodel_operator.render.resources import container_resources, scratch_size_limit
from mlmodel_operator.resource import MLModel, Quantity
from mlmodel_operator.settings import OperatorSettings

CONTAINER: Final = "server"
# The numeric non-root user of Dockerfile.server; explicit so runAsNonRoot holds for any image.
RUN_AS_USER: Final = 10001
PRESTOP_SECONDS: Final = 10
PROBE_TIMEOUT_SECONDS: Final = 5
STARTUP_SECONDS: Final = 600  # a pod's time to fetch and load its model (startup probe)
SCRATCH_VOLUME: Final = "scratch"
MODEL_VOLUME: Final = "model"
CANDIDATE_VOLUME: Final = "candidate-model"


def model_uri_in_pod(mlmodel: MLModel) -> str:
    """The URI the server reads: a pvc:// claim becomes a file:// path under the mount."""
    source = mlmodel.spec.model
    if source.scheme != "pvc":
        return source.uri
    _, path = source.pvc_claim_and_path()
    return f"file://{contract.PVC_MOUNT_PATH}/{path}"


def _candidate_claim(mlmodel: MLModel) -> str | None:
    """The claim a pvc:// candidate needs mounted beside the stable's (None: none needed: not
    pvc, or on the stable's own claim, which is mounted already)."""
    candidate = mlmodel.spec.candidate
    if candidate is None or candidate.model.scheme != "pvc":
        return None
    claim, _ = candidate.model.pvc_claim_and_path()
    stable = mlmodel.spec.model
    if stable.scheme == "pvc" and stable.pvc_claim_and_path()[0] == claim:
        return None
    return claim


def candidate_uri_in_pod(mlmodel: MLModel) -> str | None:
    """The URI the server reads the candidate from (None: no spec.candidate); a pvc:// claim
    becomes a file:// path under the stable's mount (same claim) or the candidate's."""
    candidate = mlmodel.spec.candidate
    if candidate is None:
        return None
    if candidate.model.scheme != "pvc":
        return candidate.model.uri
    _, path = candidate.model.pvc_claim_and_path()
    mount = contract.CANDIDATE_PVC_MOUNT_PATH if _candidate_claim(mlmodel) else None
    return f"file://{mount or contract.PVC_MOUNT_PATH}/{path}"


def render_candidate_env(mlmodel: MLModel, plan: CandidatePlan) -> list[dict[str, Any]]:
    """MODEL_SERVER_CANDIDATE_* and MODEL_SERVER_STICKY_HEADER (docs/rollouts.md).

    The pin follows the stable's rule (render_env): spec.candidate.model.sha256 alone, rendered
    empty when unpinned; the card's digest only marks the pod template. The share is the
    effective one (candidate.effective_percent), so a new step rolls the pods.
    """
    candidate = mlmodel.spec.candidate
    assert candidate is not None, "a plan is made only for a spec.candidate"
    pin = candidate.model.sha256
    env: list[dict[str, Any]] = [
        {"name": contract.ENV_CANDIDATE_URI, "value": candidate_uri_in_pod(mlmodel)},
        {"name": contract.ENV_CANDIDATE_SHA256, "value": pin}
        if pin
        else {"name": contract.ENV_CANDIDATE_SHA256},
    ]
    if candidate.model.format:
        env.append({"name": contract.ENV_CANDIDATE_FORMAT, "value": candidate.model.format})
    env += [
        {"name": contract.ENV_CANDIDATE_VERSION, "value": contract.CANDIDATE_VERSION},
        {"name": contract.ENV_CANDIDATE_MODE, "value": candidate.mode},
        {"name": contract.ENV_CANDIDATE_PERCENT, "value": str(plan.percent)},
    ]
    if candidate.sticky_header:
        env.append({"name": contract.ENV_STICKY_HEADER, "value": candidate.sticky_header})
    return env


def grpc_port_value(mlmodel: MLModel) -> str:
    """MODEL_SERVER_GRPC_PORT: spec.server.grpcPort, or "0" (no gRPC listener) when
    spec.service.grpcPort is 0."""
    port = mlmodel.spec.grpc_container_port
    return contract.GRPC_OFF if port is None else str(port)


def render_ports(mlmodel: MLModel) -> list[dict[str, Any]]:
    """The container's ports: `http` (probes, metrics, REST), then `grpc` while gRPC is on."""
    ports: list[dict[str, Any]] = [
        {"name": "http", "containerPort": mlmodel.spec.server.port, "protocol": "TCP"}
    ]
    grpc_port = mlmodel.spec.grpc_container_port
    if grpc_port is not None:
        ports.append({"name": "grpc", "containerPort": grpc_port, "protocol": "TCP"})
    return ports


def render_env(mlmodel: MLModel, candidate: CandidatePlan | None = None) -> list[dict[str, Any]]:
    """The server's environment: the contract variables first (the candidate's when a plan is
    given), then spec.server.env.

    MODEL_SERVER_MODEL_SHA256 is a pin: the server loads a pickle (joblib) only when a person
    named its digest. So it comes from spec.model.sha256 alone, never from a digest read from
    the model card: that card lives next to the file it describes, and whoever can write one
    can write the other. The card's digest only rolls the pods (the template annotation).
    """
    server = mlmodel.spec.server
    env: list[dict[str, Any]] = [
        {"name": contract.ENV_MODEL_URI, "value": model_uri_in_pod(mlmodel)},
        {"name": contract.ENV_MODEL_NAME, "value": mlmodel.name},
    ]
    # Rendered even when nothing is pinned (then empty, which the server reads as "no pin"): an
    # explicit env entry wins over envFrom, so a key of that name in the credentialsSecret can
    # never act as a pin.
    pin = mlmodel.spec.model.sha256
    env.append(
        {"name": contract.ENV_MODEL_SHA256, "value": pin}
        if pin
        else {"name": contract.ENV_MODEL_SHA256}
    )
    if mlmodel.spec.model.format:
        env.append({"name": contract.ENV_MODEL_FORMAT, "value": mlmodel.spec.model.format})
    env += [
        {"name": contract.ENV_HOST, "value": contract.POD_LISTEN_HOST},
        {"name": contract.ENV_PORT, "value": str(server.port)},
        # Rendered when gRPC is off too ("0"): the server's own default would listen.
        {"name": contract.ENV_GRPC_PORT, "value": grpc_port_value(mlmodel)},
        {"name": contract.ENV_WORKERS, "value": str(server.workers)},
        {"name": contract.ENV_LOG_LEVEL, "value": server.log_level},
    ]
    if server.drift_window is not None:  # only when set: the server's default otherwise
        env.append({"name": contract.ENV_DRIFT_WINDOW, "value": str(server.drift_window)})
    if candidate is not None and mlmodel.spec.candidate is not None:
        env += render_candidate_env(mlmodel, candidate)
    for var in server.env:
        env.append(var.model_dump(by_alias=True, exclude_none=True, mode="json"))
    return env


def _probe(path: str, period: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": "http"},
        "periodSeconds": period,
        # The default 1 s is too tight for a Python process on a busy node.
        "timeoutSeconds": PROBE_TIMEOUT_SECONDS,
        "failureThreshold": failures,
    }


def server_image(
    mlmodel: MLModel,
    settings: OperatorSettings,
    model_format: str | None = None,
    candidate: CandidatePlan | None = None,
) -> str:
    """The pods' image: spec.server.image; else the slim one (no scikit-learn) when the model
    is served from its ONNX file (`model_format`: spec.model.format, or the model card's
    checked ONNX form) and so is the candidate, if one is rendered; else the default."""
    if mlmodel.spec.server.image:
        return mlmodel.spec.server.image
    served = model_format or mlmodel.spec.model.format
    if candidate is not None and mlmodel.spec.candidate is not None:
        candidate_served = candidate.model_format or mlmodel.spec.candidate.model.format
        if candidate_served != "onnx":
            return settings.default_image
    if served == "onnx" and settings.slim_image:
        return settings.slim_image
    return settings.default_image


def render_container(
    mlmodel: MLModel,
    settings: OperatorSettings,
    resources: dict[str, Any],
    model_format: str | None = None,
    candidate: CandidatePlan | None = None,
) -> dict[str, Any]:
    """The model server container: ports, probes (HTTP only), resources, restricted security,
    scratch mounts."""
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": server_image(mlmodel, settings, model_format, candidate),
        "imagePullPolicy": "IfNotPresent",
        "ports": render_ports(mlmodel),
        "env": render_env(mlmodel, candidate),
        "resources": resources,
        # The startup probe gives a slow start 600 failures (10 min of refused connections)
        # before liveness may restart the container; the server answers live while it fetches
        # and loads its model, and ready once that is done. Startup and readiness probe every
        # second: a new pod is Ready within a second of its server, where a period of 5 s made
        # every pod start wait 3.4 s more (bench-startup-node). Three failures in a row, each a
        # 503 or a 5 s timeout, take a ready pod out of its Service.
        "startupProbe": _probe(contract.LIVENESS_PATH, period=1, failures=STARTUP_SECONDS),
        "livenessProbe": _probe(contract.LIVENESS_PATH, period=10, failures=3),
        "readinessProbe": _probe(contract.READINESS_PATH, period=1, failures=3),
        # Keep serving while kube-proxy takes the terminating pod out of the Service; without
        # it, a rollout refuses the requests that still arrive right after SIGTERM.
        "lifecycle": {"preStop": {"sleep": {"seconds": PRESTOP_SECONDS}}},
        # A crashed server's last log lines land in its status, where the operator reads them.
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [{"name": SCRATCH_VOLUME, "mountPath": contract.SCRATCH_DIR}],
    }
    if mlmodel.spec.model.credentials_secret:
        container["envFrom"] = [{"secretRef": {"name": mlmodel.spec.model.credentials_secret}}]
    if mlmodel.spec.model.scheme == "pvc":
        container["volumeMounts"].append(
            {"name": MODEL_VOLUME, "mountPath": contract.PVC_MOUNT_PATH, "readOnly": True}
        )
    if candidate is not None and _candidate_claim(mlmodel):
        container["volumeMounts"].append(
            {
                "name": CANDIDATE_VOLUME,
                "mountPath": contract.CANDIDATE_PVC_MOUNT_PATH,
                "readOnly": True,
            }
        )
    return container


def render_volumes(
    mlmodel: MLModel, scratch_limit: Quantity | None, candidate: CandidatePlan | None = None
) -> list[dict[str, Any]]:
    """An emptyDir for downloads (bounded), plus the model's claim read-only for pvc:// URIs
    (and the candidate's, when it is on another claim)."""
    scratch: dict[str, Any] = {"sizeLimit": scratch_limit} if scratch_limit is not None else {}
    volumes: list[dict[str, Any]] = [{"name": SCRATCH_VOLUME, "emptyDir": scratch}]
    if mlmodel.spec.model.scheme == "pvc":
        claim, _ = mlmodel.spec.model.pvc_claim_and_path()
        volumes.append(
            {"name": MODEL_VOLUME, "persistentVolumeClaim": {"claimName": claim, "readOnly": True}}
        )
    candidate_claim = _candidate_claim(mlmodel) if candidate is not None else None
    if candidate_claim:
        volumes.append(
            {
                "name": CANDIDATE_VOLUME,
                "persistentVolumeClaim": {"claimName": candidate_claim, "readOnly": True},
            }
        )
    return volumes


def render_pod_spec(
    mlmodel: MLModel,
    settings: OperatorSettings,
    model_format: str | None = None,
    candidate: CandidatePlan | None = None,
) -> dict[str, Any]:
    """The pod spec: one container, restricted pod security, the user's placement."""
    spec = mlmodel.spec
    resources = container_resources(mlmodel, settings)
    pod: dict[str, Any] = {
        "automountServiceAccountToken": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUN_AS_USER,
            "runAsGroup": RUN_AS_USER,
            "fsGroup": RUN_AS_USER,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [render_container(mlmodel, settings, resources, model_format, candidate)],
        "volumes": render_volumes(mlmodel, scratch_size_limit(resources), candidate),
    }
    if spec.service_account_name:
        pod["serviceAccountName"] = spec.service_account_name
    if spec.node_selector:
        pod["nodeSelector"] = dict(sorted(spec.node_selector.items()))
    if spec.tolerations:
        pod["tolerations"] = [
            t.model_dump(by_alias=True, exclude_none=True, mode="json") for t in spec.tolerations
        ]
    if spec.affinity:
        pod["affinity"] = copy.deepcopy(spec.affinity)
    return pod


def render_deployment(
    mlmodel: MLModel,
    settings: OperatorSettings,
    digest: str | None = None,
    model_format: str | None = None,
    candidate: CandidatePlan | None = None,
) -> dict[str, Any]:
    """The Deployment; without `replicas` while an HPA owns the count.

    `digest` is the one to roll out (the pinned sha256, else the model card's): it goes only
    into the pod template's annotation, so a new artifact rolls the pods. It is not a pin and
    never reaches the server's MODEL_SERVER_MODEL_SHA256 (see render_env). `candidate` is
    spec.candidate's plan (None: nothing of it is rendered); its digest marks the template the
    same way. The strategy (maxUnavailable 0, maxSurge 1) is what lets a new share or candidate
    roll without dropping a request: a new pod is ready before an old one is taken out.
    """
    template_meta: dict[str, Any] = {"labels": child_labels(mlmodel)}
    annotations: dict[str, str] = {}
    if digest:
        annotations[DIGEST_ANNOTATION] = digest
    if candidate is not None and candidate.digest:
        annotations[CANDIDATE_DIGEST_ANNOTATION] = candidate.digest
    if annotations:
        template_meta["annotations"] = annotations
    spec: dict[str, Any] = {
        "selector": {"matchLabels": selector_labels(mlmodel)},
        "revisionHistoryLimit": 3,
        "strategy": {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
        },
        "template": {
            "metadata": template_meta,
            "spec": render_pod_spec(mlmodel, settings, model_format, candidate),
        },
    }
    if not mlmodel.autoscaled:
        spec = {"replicas": mlmodel.spec.replicas, **spec}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": child_metadata(mlmodel),
        "spec": spec,
    }
