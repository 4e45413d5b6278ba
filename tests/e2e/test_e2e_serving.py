"""e2e on the real node: serving through the Service, Pod Security, scaling."""

from __future__ import annotations

from dataclasses import replace

import pytest

from devcluster.stack import mlstack

from .e2e_testlib import SECRET, ConditionLog, Stack, predict_grpc, predict_named

pytestmark = pytest.mark.node


@pytest.mark.timeout(420)
def test_every_protocol_through_the_service_matches_the_trainers_held_out_predictions(
    stack: Stack, model_ns: str
) -> None:
    url = stack.deploy(model_ns, "iris", stack.v1, replicas=2)
    # a virtual IP routed by kube-proxy: the Service CIDR's, like the API server's own Service
    api_ip = mlstack.service_ip(stack.kube, "default", "kubernetes")
    assert url.removeprefix("http://").split(".")[:2] == api_ip.split(".")[:2], (url, api_ip)
    for protocol in mlstack.PROTOCOLS:
        labels = mlstack.predict(url, protocol, "iris", stack.v1.rows)
        assert labels == stack.v1.expected, f"{protocol} disagrees with the trainer"
    # Open Inference Protocol V2 over gRPC, through the Service's `grpc` port.
    assert predict_grpc(stack.kube, model_ns, "iris", stack.v1.rows) == stack.v1.expected
    mlm = stack.kube.get("mlm", "iris", model_ns)
    assert mlm is not None
    assert mlm["status"]["modelDigest"] == stack.v1.sha256
    assert mlm["status"]["readyReplicas"] == 2


@pytest.mark.timeout(420)
def test_a_model_served_from_its_checked_onnx_file_runs_on_the_slim_image(
    stack: Stack, model_ns: str
) -> None:
    """spec.model.format: onnx, pinned to model.onnx (checked when the trainer wrote it): the
    operator picks MLOP_SLIM_IMAGE (no scikit-learn) and the pods answer like the trainer."""
    assert stack.v1.onnx_sha256, "the e2e artifact has no checked model.onnx"
    onnx = replace(stack.v1, sha256=stack.v1.onnx_sha256)
    model = {"uri": onnx.uri, "sha256": onnx.sha256, "format": "onnx", "credentialsSecret": SECRET}
    url = stack.deploy(model_ns, "iris-slim", onnx, extra_spec={"model": model})
    images = stack.kube.run(
        "-n", model_ns, "get", "pods", "-l", "app.kubernetes.io/instance=iris-slim",
        "-o", "jsonpath={.items[*].spec.containers[*].image}",
    ).stdout.split()  # fmt: skip
    assert images and set(images) == {mlstack.SERVER_SLIM_IMAGE}
    mlm = stack.kube.get("mlm", "iris-slim", model_ns)
    assert mlm is not None
    assert mlm["status"]["runtime"] == {"image": mlstack.SERVER_SLIM_IMAGE, "modelFormat": "onnx"}
    for protocol in mlstack.PROTOCOLS:
        labels = mlstack.predict(url, protocol, "iris-slim", onnx.rows)
        assert labels == onnx.expected, f"{protocol} disagrees with the trainer"
    assert predict_grpc(stack.kube, model_ns, "iris-slim", onnx.rows) == onnx.expected


@pytest.mark.timeout(420)
def test_the_penguins_pipeline_answers_named_mixed_type_features_in_every_protocol(
    stack: Stack, model_ns: str
) -> None:
    """Categorical strings, nulls for missing measurements, V2 BYTES tensors: the deployed model
    answers like the trainer's in-memory pipeline on its held-out rows."""
    url = stack.deploy(model_ns, "penguins", stack.penguins)
    assert any(v is None for row in stack.penguins.rows for v in row)
    for protocol in mlstack.PROTOCOLS:
        labels = predict_named(url, protocol, "penguins", stack.penguins)
        assert labels == stack.penguins.expected, f"{protocol} disagrees with the trainer"
    status, meta = mlstack.http("GET", f"{url}/v2/models/penguins")
    assert status == 200
    datatypes = {t["name"]: t["datatype"] for t in meta["inputs"]}
    assert datatypes["island"] == "BYTES" and datatypes["bill_length_mm"] == "FP64"


@pytest.mark.timeout(420)
def test_model_pods_are_admitted_by_restricted_pod_security_and_run_non_root_read_only(
    stack: Stack, model_ns: str
) -> None:
    labels = stack.kube.get("namespace", model_ns, None)
    assert labels is not None
    assert labels["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    stack.deploy(model_ns, "iris", stack.v1)
    pods = stack.kube.run(
        "-n",
        model_ns,
        "get",
        "pods",
        "-l",
        "app.kubernetes.io/instance=iris",
        "-o",
        "jsonpath={.items[*].metadata.name}",
    ).stdout.split()
    assert pods, "no model pod"
    uid = stack.kube.run("-n", model_ns, "exec", pods[0], "--", "id", "-u").stdout.strip()
    assert uid != "0"
    touch = stack.kube.run("-n", model_ns, "exec", pods[0], "--", "touch", "/probe", check=False)
    assert touch.returncode != 0
    assert "Read-only file system" in touch.stderr
    # The namespace really enforces `restricted`: a privileged pod is refused.
    privileged = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "privileged", "namespace": model_ns},
        "spec": {
            "containers": [
                {
                    "name": "c",
                    "image": mlstack.SERVER_IMAGE,
                    "securityContext": {"privileged": True},
                }
            ]
        },
    }
    with pytest.raises(mlstack.StackError, match="violates PodSecurity"):
        stack.kube.apply([privileged])


@pytest.mark.timeout(120)
def test_the_operator_runs_with_least_privilege_rbac(stack: Stack) -> None:
    sa = "system:serviceaccount:mlmodel-system:mlmodel-operator"

    def can(*args: str) -> bool:
        proc = stack.kube.run("auth", "can-i", f"--as={sa}", *args, check=False)
        return proc.stdout.strip() == "yes"

    assert can("patch", "deployments.apps", "-A")
    assert can("watch", "mlmodels.mlops.dev", "-A")
    assert can("patch", "mlmodels.mlops.dev", "--subresource=status", "-A")
    assert not can("patch", "mlmodels.mlops.dev", "-A"), "the spec is the user's"
    assert not can("get", "secrets", "-A")
    assert not can("get", "pods", "--subresource=log", "-A"), "crash output: termination message"
    assert not can("delete", "deployments.apps", "-A")
    assert not can("create", "pods", "-A")
    assert not can("*", "*")


def _ready_pods(stack: Stack, namespace: str) -> int:
    out = stack.kube.run(
        "-n",
        namespace,
        "get",
        "pods",
        "-l",
        "app.kubernetes.io/instance=iris",
        "-o",
        "jsonpath={range .items[*]}{.metadata.deletionTimestamp}|"
        "{.status.conditions[?(@.type=='Ready')].status}{'\\n'}{end}",
    ).stdout
    return sum(1 for line in out.splitlines() if line == "|True")


@pytest.mark.timeout(480)
def test_scaling_by_spec_and_by_kubectl_scale_is_followed_by_pods_and_status(
    stack: Stack, model_ns: str
) -> None:
    stack.deploy(model_ns, "iris", stack.v1, replicas=1)
    log = ConditionLog(stack.kube, model_ns, "iris")
    stack.kube.run(
        "-n", model_ns, "patch", "mlm", "iris", "--type=merge", "-p", '{"spec": {"replicas": 2}}'
    )
    log.wait(
        "2 ready replicas after editing spec.replicas",
        lambda m: mlstack.is_ready(m) and m["status"].get("readyReplicas") == 2,
        240,
    )
    assert _ready_pods(stack, model_ns) == 2
    stack.kube.run("-n", model_ns, "scale", "mlm/iris", "--replicas=3")
    log.wait(
        "3 ready replicas after kubectl scale",
        lambda m: mlstack.is_ready(m) and m["status"].get("readyReplicas") == 3,
        240,
    )
    assert _ready_pods(stack, model_ns) == 3
    deployment = stack.kube.get("deployment", "iris", model_ns)
    assert deployment is not None and deployment["spec"]["replicas"] == 3
    stack.kube.run("-n", model_ns, "scale", "mlm/iris", "--replicas=1")
    log.wait(
        "1 replica after scaling down",
        lambda m: mlstack.is_ready(m) and m["status"].get("replicas") == 1,
        240,
    )


@pytest.mark.timeout(300)
def test_autoscaling_on_puts_an_hpa_in_front_of_the_deployment(stack: Stack, model_ns: str) -> None:
    scaling = {"minReplicas": 1, "maxReplicas": 3, "targetCPUUtilizationPercentage": 60}
    stack.deploy(model_ns, "iris", stack.v1, extra_spec={"autoscaling": scaling})
    mlstack.wait_for(
        "the MLModel's HPA", lambda: stack.kube.get("hpa", "iris", model_ns) is not None, 60
    )
    hpa = stack.kube.get("hpa", "iris", model_ns)
    assert hpa is not None
    spec = hpa["spec"]
    assert (spec["minReplicas"], spec["maxReplicas"]) == (1, 3)
    assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "iris"}
