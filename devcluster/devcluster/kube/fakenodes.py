"""kwok-simulated nodes and the cluster-readiness checks that go through the API."""

from __future__ import annotations

from pathlib import Path
from typing import cast

from kubernetes import client, config

from devcluster.kube import health, procs

FAKE_ANNOTATION = "kwok.x-k8s.io/node"


def api_client(kubeconfig: Path) -> client.ApiClient:
    """A kubernetes ApiClient for ``kubeconfig`` (not touching the global default config)."""
    made = config.new_client_from_config(config_file=str(kubeconfig))  # type: ignore[no-untyped-call]
    return cast(client.ApiClient, made)


def node_name(index: int) -> str:
    """Name of the ``index``-th fake node."""
    return f"kwok-node-{index}"


def create(kubeconfig: Path, count: int) -> None:
    """Create ``count`` Node objects that kwok manages (no taint: any pod may land on them)."""
    with api_client(kubeconfig) as api:
        core = client.CoreV1Api(api)
        for i in range(count):
            name = node_name(i)
            body = client.V1Node(
                metadata=client.V1ObjectMeta(
                    name=name,
                    annotations={FAKE_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"},
                    labels={
                        "kubernetes.io/hostname": name,
                        "kubernetes.io/os": "linux",
                        "kubernetes.io/arch": "amd64",
                        "type": "kwok",
                    },
                )
            )
            core.create_node(body)


def _ready_fake_nodes(api: client.ApiClient) -> int:
    nodes = client.CoreV1Api(api).list_node().items
    ready = 0
    for node in nodes:
        annotations = (node.metadata.annotations if node.metadata else None) or {}
        if annotations.get(FAKE_ANNOTATION) != "fake":
            continue
        conditions = (node.status.conditions or []) if node.status else []
        if any(c.type == "Ready" and c.status == "True" for c in conditions):
            ready += 1
    return ready


def wait_ready(kubeconfig: Path, count: int, timeout: float, proc: procs.Proc) -> None:
    """Wait until ``count`` fake nodes report Ready (fails early if kwok exits)."""
    with api_client(kubeconfig) as api:
        health.wait_for(
            "kwok",
            f"{count} fake nodes to be Ready",
            lambda: _ready_fake_nodes(api) >= count,
            timeout=timeout,
            proc=proc,
        )


def wait_default_service_account(
    kubeconfig: Path, timeout: float, proc: procs.Proc | None = None
) -> None:
    """Wait for the ServiceAccount controller to create ``default`` in namespace ``default``."""
    with api_client(kubeconfig) as api:
        core = client.CoreV1Api(api)

        def check() -> bool:
            items = core.list_namespaced_service_account("default").items
            names = [sa.metadata.name for sa in items if sa.metadata]
            return "default" in names

        health.wait_for(
            "kube-controller-manager",
            "ServiceAccount default/default to exist",
            check,
            timeout=timeout,
            proc=proc,
        )


def wait_node_ready(kubeconfig: Path, name: str, timeout: float, proc: procs.Proc) -> None:
    """Wait until Node ``name`` (a real kubelet) reports Ready."""
    with api_client(kubeconfig) as api:
        core = client.CoreV1Api(api)

        def check() -> bool:
            nodes = core.list_node(field_selector=f"metadata.name={name}").items
            if not nodes or not nodes[0].status:
                return False
            conditions = nodes[0].status.conditions or []
            return any(c.type == "Ready" and c.status == "True" for c in conditions)

        health.wait_for("kubelet", f"node {name} to be Ready", check, timeout=timeout, proc=proc)


def wait_apiservice(kubeconfig: Path, name: str, timeout: float, proc: procs.Proc) -> None:
    """Wait until the aggregated APIService ``name`` is Available."""
    with api_client(kubeconfig) as api:
        registration = client.ApiregistrationV1Api(api)

        def check() -> bool:
            status = registration.read_api_service(name).status
            conditions = (status.conditions or []) if status else []
            return any(c.type == "Available" and c.status == "True" for c in conditions)

        health.wait_for(
            proc.name, f"APIService {name} to be Available", check, timeout=timeout, proc=proc
        )
