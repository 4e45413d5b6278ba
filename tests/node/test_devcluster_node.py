"""A real node running the locally built model server: pods, Services, kubectl, metrics, PSA."""

from __future__ import annotations

import functools
import http.server
import json
import socket
import subprocess
import sys
import threading
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from devcluster import waiting
from devcluster.cluster import KubectlError, NodeCluster
from devcluster.kube.health import post_json

pytestmark = pytest.mark.node

SERVER_IMAGE = "mlmodel-server:dev"
IRIS_ROW = [5.1, 3.5, 1.4, 0.2]


def wait_until(what: str, check: Callable[[], Any], timeout: float = 120.0) -> Any:
    """Poll ``check`` every 0.5 s until truthy (an exception counts as not yet); fail naming
    ``what`` at the deadline."""
    try:
        return waiting.wait_until(what, check, timeout, 0.5, retry_on=(Exception,))
    except waiting.WaitTimeout as exc:
        pytest.fail(str(exc))


@pytest.fixture(scope="module")
def iris_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An iris artifact made by the project's trainer CLI."""
    out = tmp_path_factory.mktemp("artifacts") / "iris"
    trainer = Path(sys.executable).parent / "mlmodel-train"
    subprocess.run([str(trainer), "train", "--out", str(out)], check=True, capture_output=True)
    return out


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def artifact_url(node_cluster: NodeCluster, iris_dir: Path) -> Iterator[str]:
    """The artifact over HTTP on the node IP (a host address pods can reach, never 0.0.0.0)."""
    handler = functools.partial(_Quiet, directory=str(iris_dir.parent))
    server = http.server.ThreadingHTTPServer((node_cluster.node_ip, 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://{node_cluster.node_ip}:{server.server_address[1]}/{iris_dir.name}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def served(node_cluster: NodeCluster, artifact_url: str) -> Iterator[str]:
    """A namespace with a 2-replica model server Deployment and its ClusterIP Service."""
    node_cluster.load_image(SERVER_IMAGE)
    namespace = f"serve-{uuid.uuid4().hex[:6]}"
    node_cluster.kubectl("create", "namespace", namespace)
    node_cluster.kubectl("apply", "-n", namespace, "-f", "-", input=_manifests(artifact_url))
    node_cluster.kubectl(
        "wait", "-n", namespace, "--for=condition=Available", "--timeout=180s", "deploy/iris"
    )
    yield namespace
    node_cluster.kubectl("delete", "namespace", namespace, "--wait=false")


def _container(artifact_url: str) -> dict[str, Any]:
    return {
        "name": "server",
        "image": SERVER_IMAGE,
        "imagePullPolicy": "Never",
        "env": [
            {"name": "MODEL_SERVER_MODEL_URI", "value": artifact_url},
            {"name": "MODEL_SERVER_HOST", "value": "0.0.0.0"},
        ],
        "ports": [{"containerPort": 8080}],
        "readinessProbe": {
            "httpGet": {"path": "/v2/health/ready", "port": 8080},
            "periodSeconds": 2,
        },
        "resources": {
            "requests": {"cpu": "100m", "memory": "128Mi"},
            "limits": {"cpu": "500m", "memory": "512Mi"},
        },
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }


def _manifests(artifact_url: str) -> str:
    labels = {"app": "iris"}
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "iris"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [_container(artifact_url)],
                    "volumes": [{"name": "tmp", "emptyDir": {}}],
                },
            },
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "iris"},
        "spec": {"selector": labels, "ports": [{"port": 80, "targetPort": 8080}]},
    }
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": [deployment, service]})


def _pods(cluster: NodeCluster, namespace: str) -> list[client.V1Pod]:
    core = client.CoreV1Api(cluster.api)
    return list(core.list_namespaced_pod(namespace, label_selector="app=iris").items)


def test_model_server_pods_run_with_pod_ips_and_pass_readiness(
    node_cluster: NodeCluster, served: str
) -> None:
    pods = _pods(node_cluster, served)
    assert len(pods) == 2
    for pod in pods:
        assert pod.status.phase == "Running"
        assert pod.status.pod_ip.startswith("10.88.")
        ready = [c for c in pod.status.conditions if c.type == "Ready"]
        assert ready and ready[0].status == "True"


def test_clusterip_service_answers_a_prediction_from_the_host(
    node_cluster: NodeCluster, served: str
) -> None:
    service = client.CoreV1Api(node_cluster.api).read_namespaced_service("iris", served)
    cluster_ip = service.spec.cluster_ip
    assert cluster_ip.startswith("10.96.")
    answer = post_json(f"http://{cluster_ip}/predict", {"input": IRIS_ROW})
    assert set(answer) == {"prediction"}
    assert answer["prediction"] in (0, "0", "setosa")  # the row is a textbook setosa


def test_kubectl_logs_and_exec_work(node_cluster: NodeCluster, served: str) -> None:
    pod = _pods(node_cluster, served)[0].metadata.name
    logs = node_cluster.kubectl("logs", "-n", served, pod).stdout
    assert "ready" in logs
    hostname = node_cluster.kubectl(
        "exec",
        "-n",
        served,
        pod,
        "--",
        "python",
        "-c",
        "import socket; print(socket.gethostname())",
    ).stdout
    assert hostname.strip() == pod


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_kubectl_port_forward_reaches_the_model_server(
    node_cluster: NodeCluster, served: str
) -> None:
    port = _free_port()
    argv = ["port-forward", "--address", "127.0.0.1", "-n", served, "deploy/iris", f"{port}:8080"]
    from devcluster.cluster import kubectl_binary

    forward = subprocess.Popen(
        [kubectl_binary(), f"--kubeconfig={node_cluster.kubeconfig}", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}/v2/health/ready"
        status = wait_until(
            "the port-forward to answer", lambda: urllib.request.urlopen(url, timeout=5).status
        )
        assert status == 200
    finally:
        forward.terminate()
        forward.wait(timeout=10)


def test_top_pods_reports_usage_and_hpa_shows_current_cpu_utilization(
    node_cluster: NodeCluster, served: str
) -> None:
    def top() -> list[str]:
        # metrics-server scrapes each pod on its own schedule: wait for both replicas.
        result = node_cluster.kubectl("top", "pods", "-n", served, "--no-headers", check=False)
        rows = result.stdout.splitlines() if result.returncode == 0 else []
        return rows if len(rows) == 2 else []

    rows = wait_until("kubectl top pods to report both replicas", top)
    assert all(row.split()[1].endswith("m") and row.split()[2].endswith("Mi") for row in rows)

    node_cluster.kubectl(
        "autoscale", "-n", served, "deploy/iris", "--cpu=50%", "--min=1", "--max=3"
    )
    autoscaling = client.AutoscalingV2Api(node_cluster.api)

    def utilization() -> int | None:
        status = autoscaling.read_namespaced_horizontal_pod_autoscaler("iris", served).status
        for metric in (status.current_metrics or []) if status else []:
            if metric.resource and metric.resource.name == "cpu":
                value = metric.resource.current.average_utilization
                return None if value is None else int(value) + 1  # 0% is a real reading
        return None

    assert wait_until("the HPA's current CPU utilization", utilization) >= 1


def _pod(name: str, security: dict[str, Any], pod_security: dict[str, Any]) -> str:
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name},
            "spec": {
                "securityContext": pod_security,
                "containers": [
                    {
                        "name": "pause",
                        "image": "devcluster.local/pause:3.10",
                        "imagePullPolicy": "Never",
                        "securityContext": security,
                    }
                ],
            },
        }
    )


RESTRICTED_CONTAINER = {
    "allowPrivilegeEscalation": False,
    "runAsNonRoot": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


def test_restricted_namespace_admits_a_compliant_pod_and_rejects_a_privileged_one(
    node_cluster: NodeCluster,
) -> None:
    namespace = f"restricted-{uuid.uuid4().hex[:6]}"
    node_cluster.kubectl("create", "namespace", namespace)
    node_cluster.kubectl(
        "label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted"
    )
    try:
        with pytest.raises(KubectlError) as rejected:
            node_cluster.kubectl(
                "apply",
                "-n",
                namespace,
                "-f",
                "-",
                input=_pod("privileged", {"privileged": True}, {}),
            )
        assert 'violates PodSecurity "restricted' in rejected.value.stderr
        assert "privileged" in rejected.value.stderr

        compliant = _pod("compliant", RESTRICTED_CONTAINER, {"runAsUser": 65535})
        node_cluster.kubectl("apply", "-n", namespace, "-f", "-", input=compliant)
        node_cluster.kubectl(
            "wait", "-n", namespace, "--for=condition=Ready", "--timeout=120s", "pod/compliant"
        )
    finally:
        node_cluster.kubectl("delete", "namespace", namespace, "--wait=false")
