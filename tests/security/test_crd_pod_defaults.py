"""What an MLModel's pods get by default, checked on the real API server and scheduler: bounded
resources (memory and ephemeral-storage limits, a /tmp emptyDir with a sizeLimit) even when the
spec names none, and no pin the model card could have supplied. The Deployment is the one the
operator renders, applied as is (minus its owner, which does not exist here), so the API server
validates it and the scheduler places its pod on a (kwok) node.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from kubernetes import client

from devcluster.cluster import Cluster
from devcluster.waiting import WaitTimeout, wait_until
from mlmodel_operator import contract
from mlmodel_operator.render import render
from mlmodel_operator.render.meta import DIGEST_ANNOTATION
from mlmodel_operator.resource import MLModel
from mlmodel_operator.settings import OperatorSettings

pytestmark = pytest.mark.cluster

CARD_DIGEST = "c" * 64


def deployment(ns: str, name: str, spec: dict[str, Any], settings: OperatorSettings) -> str:
    """The operator's Deployment for an MLModel, rendered with a digest read from its card."""
    body = {
        "apiVersion": "mlops.dev/v1alpha1",
        "kind": "MLModel",
        "metadata": {"name": name, "namespace": ns, "uid": "none", "generation": 1},
        "spec": spec,
    }
    [manifest] = [
        m
        for m in render(MLModel.from_body(body), settings, digest=CARD_DIGEST)
        if m["kind"] == "Deployment"
    ]
    manifest["metadata"].pop("ownerReferences")  # no MLModel here: the GC would delete it
    return yaml.safe_dump(manifest)


def pods(cluster: Cluster, ns: str, name: str) -> list[client.V1Pod]:
    selector = f"app.kubernetes.io/instance={name}"
    found: list[client.V1Pod] = (
        client.CoreV1Api(cluster.api).list_namespaced_pod(ns, label_selector=selector).items
    )
    return found


def wait_for_pod(cluster: Cluster, ns: str, name: str, done: Any, what: str) -> client.V1Pod:
    """Poll the Deployment's pods until `done(pod)` holds for one (60 s)."""
    seen: list[client.V1Pod] = []

    def one_done() -> client.V1Pod | None:
        seen[:] = pods(cluster, ns, name)
        return next((pod for pod in seen if done(pod)), None)

    try:
        return wait_until(f"a pod of {name} {what}", one_done, 60, 0.5)
    except WaitTimeout:
        pytest.fail(f"no pod of {name} {what}: {[p.status for p in seen]}")


def is_running(pod: client.V1Pod) -> bool:
    return bool(pod.spec.node_name) and pod.status.phase == "Running"


def test_an_unpinned_model_gets_bounded_resources_and_no_pin_from_its_card(
    cluster: Cluster, ns: str
) -> None:
    spec = {"model": {"uri": "https://models.example/iris", "format": "joblib"}}
    cluster.kubectl(
        "apply", "-n", ns, "-f", "-", input=deployment(ns, "plain", spec, OperatorSettings())
    )
    pod = wait_for_pod(cluster, ns, "plain", is_running, "running on a node")
    [server] = pod.spec.containers
    assert server.resources.limits == {"ephemeral-storage": "2Gi", "memory": "1Gi"}
    # The explicit 0 survives: the API server did not turn the limit into the request.
    assert server.resources.requests == {"cpu": "250m", "ephemeral-storage": "0", "memory": "256Mi"}
    [scratch] = [v for v in pod.spec.volumes if v.name == "scratch"]
    assert scratch.empty_dir.size_limit == "2Gi"
    # the pin variable is there but empty ("not pinned"): the card digest is only the annotation
    assert {e.name: e.value for e in server.env}[contract.ENV_MODEL_SHA256] is None
    assert pod.metadata.annotations[DIGEST_ANNOTATION] == CARD_DIGEST


def test_a_pinned_model_with_its_own_resources_keeps_them_and_the_pin(
    cluster: Cluster, ns: str
) -> None:
    pin = "a" * 64
    spec = {
        "model": {"uri": "s3://models/iris/v1", "sha256": pin},
        "server": {
            "resources": {
                "requests": {"cpu": "100m", "ephemeral-storage": "1Gi"},
                "limits": {"memory": "128Mi", "ephemeral-storage": "4Gi"},
            }
        },
    }
    manifest = deployment(ns, "pinned", spec, OperatorSettings())
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=manifest)
    pod = wait_for_pod(cluster, ns, "pinned", lambda p: bool(p.spec.containers), "created")
    [server] = pod.spec.containers
    assert server.resources.limits == {"ephemeral-storage": "4Gi", "memory": "128Mi"}
    # the default 256Mi memory request is lowered to the user's 128Mi limit
    assert server.resources.requests == {
        "cpu": "100m",
        "ephemeral-storage": "1Gi",
        "memory": "128Mi",
    }
    [scratch] = [v for v in pod.spec.volumes if v.name == "scratch"]
    assert scratch.empty_dir.size_limit == "4Gi"
    assert {e.name: e.value for e in server.env}[contract.ENV_MODEL_SHA256] == pin
