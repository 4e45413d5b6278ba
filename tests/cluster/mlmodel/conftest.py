"""Fixtures for the operator's cluster tests: CRD and RBAC installed from the repo, the operator
running as a process with its ServiceAccount's rights, and a fresh restricted namespace per test."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from kubernetes import client
from mlmodel_harness import (
    CRD_FILE,
    DEPLOY_DIR,
    GROUP,
    PLURAL,
    VERSION,
    Api,
    OperatorProcess,
    service_account_kubeconfig,
    wait_until,
)

from devcluster.cluster import Cluster

# The devcluster API server runs on etcd 3.4 (no RequestWatchProgress), yet serves client-go's
# watch-list requests with an error; kwok's informers then go stale, its node-lease renewals
# conflict and the fake nodes flap NotReady (pods with them) every few minutes. With the server's
# WatchList gate off, clients fall back to list+watch and nodes stay Ready. Set here (devcluster's
# DEVCLUSTER_EXTRA_ARGS_<COMPONENT> hook, read when the session's cluster starts) until
# devcluster sets it itself.
os.environ.setdefault("DEVCLUSTER_EXTRA_ARGS_KUBE_APISERVER", "--feature-gates=WatchList=false")


@pytest.fixture(scope="session")
def installed(cluster: Cluster) -> Cluster:
    """`kubectl apply -f crds/` and `kubectl apply -k operator/deploy` on the devcluster."""
    cluster.kubectl("apply", "-f", str(CRD_FILE))
    cluster.wait_established("mlmodels.mlops.dev")
    # right after Established, lists can get 429 "storage is (re)initializing" for a moment
    wait_until(
        "MLModels can be listed",
        lambda: cluster.kubectl("get", "mlmodels", "-A", check=False).returncode == 0,
    )
    cluster.kubectl("apply", "-k", str(DEPLOY_DIR))
    return cluster


@pytest.fixture(scope="session")
def operator(
    installed: Cluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    """The operator, watching every namespace, as the mlmodel-operator ServiceAccount.

    At the end of the session, every test namespace must be gone (`fresh_namespace`), with the
    operator still running."""
    workdir = tmp_path_factory.mktemp("operator")
    kubeconfig = service_account_kubeconfig(installed, workdir / "kubeconfig")
    proc = OperatorProcess(kubeconfig, workdir / "operator.log")
    proc.start()
    yield proc
    try:
        core = client.CoreV1Api(installed.api)
        for name in _DELETED:
            _wait_namespace_gone(core, name, proc)
    finally:
        proc.stop()


# A namespace that held more MLModels than this is waited for at the end of its test: deleting
# its children would load the next test (test_operator_faults' churn leaves about 200).
WAIT_FOR_NAMESPACES_OF = 20
_DELETED: list[str] = []  # test namespaces deleted without waiting: checked gone at the end


def _wait_namespace_gone(core: client.CoreV1Api, name: str, operator: OperatorProcess) -> None:
    wait_until(
        f"namespace {name} to be deleted (operator log: {operator.log})",
        lambda: _namespace_gone(core, name),
        timeout=120,
    )


def _namespace_gone(core: client.CoreV1Api, name: str) -> bool:
    """Whether the namespace is gone; meanwhile force-deletes its pods.

    Pods on kwok nodes otherwise wait out their 30 s termination grace period: there is no
    kubelet to confirm that a container stopped.
    """
    if all(ns.metadata.name != name for ns in core.list_namespace().items):
        return True
    core.delete_collection_namespaced_pod(name, grace_period_seconds=0)
    return False


def _delete_namespace(cluster: Cluster, name: str, operator: OperatorProcess) -> None:
    """Delete a test's namespace, waiting for its MLModels to be gone, not for the namespace.

    The namespace turns Terminating first, so nothing new is created in it afterwards (neither
    the operator's children nor the ReplicaSets' pods). Its MLModels are then deleted (they
    carry no finalizer), so the next test starts with nothing left there for the operator to
    reconcile, and its pods are force-deleted. The namespace controller removes the rest in the
    background: it waits 5 s before it starts on a deleted namespace, which was most of a
    small test's teardown when every test waited for its namespace to be gone.
    """
    core = client.CoreV1Api(cluster.api)
    custom = client.CustomObjectsApi(cluster.api)
    models = len(custom.list_namespaced_custom_object(GROUP, VERSION, name, PLURAL)["items"])
    core.delete_namespace(name)
    custom.delete_collection_namespaced_custom_object(GROUP, VERSION, name, PLURAL)
    wait_until(
        f"namespace {name}'s MLModels to be deleted",
        lambda: not custom.list_namespaced_custom_object(GROUP, VERSION, name, PLURAL)["items"],
    )
    if models <= WAIT_FOR_NAMESPACES_OF:
        core.delete_collection_namespaced_pod(name, grace_period_seconds=0)
        _DELETED.append(name)
        return
    _wait_namespace_gone(core, name, operator)


@contextmanager
def fresh_namespace(cluster: Cluster, operator: OperatorProcess) -> Iterator[str]:
    """A new namespace enforcing the restricted Pod Security Standard, deleted afterwards
    (`_delete_namespace`)."""
    name = f"mlm-{uuid.uuid4().hex[:8]}"
    core = client.CoreV1Api(cluster.api)
    labels = {"pod-security.kubernetes.io/enforce": "restricted"}
    core.create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels=labels))
    )
    try:
        yield name
    finally:
        _delete_namespace(cluster, name, operator)


@pytest.fixture
def ns(installed: Cluster, operator: OperatorProcess) -> Iterator[str]:
    """A fresh restricted namespace for one test."""
    with fresh_namespace(installed, operator) as name:
        yield name


@pytest.fixture(scope="module")
def module_ns(installed: Cluster, operator: OperatorProcess) -> Iterator[str]:
    """A restricted namespace shared by one module's tests (for ones that create nothing)."""
    with fresh_namespace(installed, operator) as name:
        yield name


@pytest.fixture
def api(installed: Cluster, ns: str) -> Api:
    """Reads and applies in the test's namespace."""
    return Api(installed, ns)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A scratch directory."""
    return tmp_path
