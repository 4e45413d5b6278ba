"""What `kubectl apply -k operator/deploy` installs: an operator Deployment that the restricted
Pod Security Standard admits, and RBAC that is enough to run (the cluster-wide variant drives
every other test here; the namespaced variant is exercised below). Plus the operator's health
and Prometheus metrics."""

from __future__ import annotations

import urllib.request
from pathlib import Path

import pytest
import yaml
from kubernetes import client
from mlmodel_harness import (
    DEPLOY_DIR,
    Api,
    OperatorProcess,
    mlmodel_yaml,
    service_account_kubeconfig,
    wait_until,
)

from devcluster.cluster import Cluster

pytestmark = pytest.mark.cluster


def test_operator_deployment_is_admitted_under_restricted_pod_security(
    installed: Cluster,
) -> None:
    apps = client.AppsV1Api(installed.api)
    ns = client.CoreV1Api(installed.api).read_namespace("mlmodel-system")
    assert ns.metadata.labels["pod-security.kubernetes.io/enforce"] == "restricted"
    # a pod the restricted standard refuses never exists (its ReplicaSet reports FailedCreate)
    wait_until(
        "operator pod admitted into mlmodel-system",
        lambda: (
            client.CoreV1Api(installed.api)
            .list_namespaced_pod(
                "mlmodel-system", label_selector="app.kubernetes.io/name=mlmodel-operator"
            )
            .items
        ),
    )
    deployment = apps.read_namespaced_deployment("mlmodel-operator", "mlmodel-system")
    # two replicas, one leading; a rolling update and a drain never take both away
    assert deployment.spec.replicas == 2
    assert deployment.spec.strategy.type == "RollingUpdate"
    pdb = client.PolicyV1Api(installed.api).read_namespaced_pod_disruption_budget(
        "mlmodel-operator", "mlmodel-system"
    )
    assert pdb.spec.max_unavailable == 1
    account = "system:serviceaccount:mlmodel-system:mlmodel-operator"
    for verb, target in (("update", "lease/mlmodel-operator"), ("create", "leases")):
        allowed = installed.kubectl(
            "auth", "can-i", verb, target, "-n", "mlmodel-system", f"--as={account}", check=False
        )
        assert allowed.stdout.strip() == "yes", (verb, target)
    other = installed.kubectl(
        "auth",
        "can-i",
        "update",
        "lease/kube-scheduler",
        "-n",
        "kube-system",
        f"--as={account}",
        check=False,
    )
    assert other.stdout.strip() == "no"
    container = deployment.spec.template.spec.containers[0]
    assert container.security_context.read_only_root_filesystem is True
    assert container.security_context.capabilities.drop == ["ALL"]


@pytest.mark.fake_pods  # waits for Ready pods (kwok's fake nodes)
def test_health_and_prometheus_metrics(api: Api, operator: OperatorProcess) -> None:
    api.apply(mlmodel_yaml("iris", replicas=1))
    wait_until("MLModel iris Ready", lambda: api.is_ready("iris"))
    with urllib.request.urlopen(f"http://127.0.0.1:{operator.port}/healthz", timeout=5) as r:
        assert r.read() == b"ok\n"
    assert operator.metric("mlmodel_operator_reconcile_total", trigger="change") >= 1
    assert operator.metric("mlmodel_operator_reconcile_duration_seconds_count") >= 1
    assert (
        operator.metric("mlmodel_operator_child_writes_total", verb="Created", kind="Deployment")
        >= 1
    )
    with urllib.request.urlopen(f"http://127.0.0.1:{operator.port}/metrics", timeout=5) as r:
        assert b"# TYPE mlmodel_operator_reconcile_errors_total counter" in r.read()


def namespaced_rbac(namespace: str, account: str) -> str:
    """operator/deploy/namespaced's Role and RoleBinding, retargeted at a test namespace and a
    ServiceAccount of its own (the default one also holds the cluster-wide binding)."""
    rendered = list(yaml.safe_load_all(Api.kustomize(DEPLOY_DIR / "namespaced")))
    # the namespaced variant holds no cluster-wide rights at all
    assert not [d for d in rendered if d["kind"] in ("ClusterRole", "ClusterRoleBinding")]
    docs = [d for d in rendered if d["kind"] in ("Role", "RoleBinding")]
    for doc in docs:
        doc["metadata"]["namespace"] = namespace
        for subject in doc.get("subjects", []):
            subject["name"] = account
    return yaml.safe_dump_all(docs)


@pytest.mark.fake_pods  # waits for Ready pods (kwok's fake nodes)
def test_namespaced_variant_manages_its_namespace_with_only_a_role(
    api: Api, operator: OperatorProcess, tmp_path: Path
) -> None:
    cluster = api.cluster
    account = f"ns-operator-{api.ns}"
    cluster.kubectl("create", "serviceaccount", account, "-n", "mlmodel-system")
    cluster.kubectl("apply", "-f", "-", input=namespaced_rbac(api.ns, account))
    assert (
        cluster.kubectl(
            "auth",
            "can-i",
            "list",
            "deployments",
            "--all-namespaces",
            f"--as=system:serviceaccount:mlmodel-system:{account}",
            check=False,
        ).stdout.strip()
        == "no"
    )
    kubeconfig = service_account_kubeconfig(cluster, tmp_path / "kubeconfig", account)
    # the overlay's leader-election Role, retargeted above, grants the Lease in api.ns
    scoped = OperatorProcess(
        kubeconfig,
        tmp_path / "operator.log",
        MLOP_NAMESPACES=api.ns,
        MLOP_LEADER_ELECTION_NAMESPACE=api.ns,
    )
    operator.stop()
    try:
        scoped.start()
        api.apply(mlmodel_yaml("iris", replicas=2))
        wait_until(
            f"Ready under the namespaced operator (log: {scoped.log})", lambda: api.is_ready("iris")
        )
        cluster.kubectl("scale", "-n", api.ns, "mlm/iris", "--replicas=1")
        wait_until(
            "PDB removed by the namespaced operator",
            lambda: not api.exists("PodDisruptionBudget", "iris"),
        )
        assert "Forbidden" not in scoped.log.read_text()
    finally:
        scoped.stop()
        operator.start()
        cluster.kubectl("delete", "serviceaccount", account, "-n", "mlmodel-system")
