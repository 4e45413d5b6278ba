"""The operator's ClusterRole (operator/deploy/cluster-rbac), installed on the real API server,
grants exactly what the operator's code calls and nothing a user could borrow through it: no
pods/log (the termination message carries a crashed server's output), no Secrets, no pod
creation, no writes to an MLModel's spec, no deletes beyond the HPA and PDB it retires.

What the code calls (operator/mlmodel_operator): kopf's watch streams list and watch MLModels,
the four child kinds, pods and CRDs; kube.py gets a child before creating it, server-side
applies children (create + patch) and the Deployment's scale subresource (patch), merge-patches
MLModel status, deletes HPAs and PDBs, and creates Events.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from devcluster.cluster import Cluster

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
RBAC_DIR = REPO / "operator" / "deploy" / "cluster-rbac"
CRD_FILE = REPO / "crds" / "mlmodel.yaml"
OPERATOR = "system:serviceaccount:mlmodel-system:mlmodel-operator"

CHILD_VERBS = ["get", "list", "watch", "create", "patch"]
GRANTED: list[tuple[str, ...]] = [
    ("list", "mlmodels.mlops.dev"),
    ("watch", "mlmodels.mlops.dev"),
    ("patch", "mlmodels.mlops.dev", "--subresource=status"),
    *[(verb, "deployments.apps") for verb in CHILD_VERBS],
    ("patch", "deployments.apps", "--subresource=scale"),
    *[(verb, "services") for verb in CHILD_VERBS],
    *[(verb, "horizontalpodautoscalers.autoscaling") for verb in [*CHILD_VERBS, "delete"]],
    *[(verb, "poddisruptionbudgets.policy") for verb in [*CHILD_VERBS, "delete"]],
    ("list", "pods"),
    ("watch", "pods"),
    ("create", "events"),
]
REFUSED: list[tuple[str, ...]] = [
    ("get", "pods", "--subresource=log"),
    ("get", "pods"),
    ("create", "pods"),
    ("create", "pods", "--subresource=exec"),
    ("get", "secrets"),
    ("list", "secrets"),
    ("get", "configmaps"),
    ("get", "mlmodels.mlops.dev"),
    ("patch", "mlmodels.mlops.dev"),
    ("update", "mlmodels.mlops.dev"),
    ("delete", "mlmodels.mlops.dev"),
    ("update", "deployments.apps"),
    ("delete", "deployments.apps"),
    ("delete", "services"),
    ("create", "serviceaccounts", "--subresource=token"),
    ("patch", "customresourcedefinitions.apiextensions.k8s.io"),
    # kopf's CRD and Namespace scanning is off: the operator watches only through its informers
    ("list", "customresourcedefinitions.apiextensions.k8s.io"),
    ("watch", "customresourcedefinitions.apiextensions.k8s.io"),
    ("list", "namespaces"),
    # the Lease is granted by a Role in mlmodel-system only (operator/deploy/base), not here
    ("update", "leases.coordination.k8s.io"),
    ("*", "*"),
]


@pytest.fixture(scope="module")
def rbac(cluster: Cluster) -> Cluster:
    """The CRD, the ClusterRole and its binding from the repo (the ServiceAccount need not
    exist); can-i answers "no" for a resource type the API server does not know."""
    cluster.kubectl("apply", "-f", str(CRD_FILE))
    cluster.wait_established("mlmodels.mlops.dev")
    cluster.kubectl("apply", "-k", str(RBAC_DIR))
    return cluster


def can(cluster: Cluster, verb: str, resource: str, *extra: str) -> bool:
    proc = cluster.kubectl(
        "auth", "can-i", verb, resource, *extra, "--all-namespaces", f"--as={OPERATOR}", check=False
    )
    return proc.stdout.strip() == "yes"


@pytest.mark.parametrize("check", GRANTED, ids=[" ".join(c) for c in GRANTED])
def test_the_operator_may_make_every_call_its_code_makes(
    rbac: Cluster, check: tuple[str, ...]
) -> None:
    assert can(rbac, *check)


@pytest.mark.parametrize("check", REFUSED, ids=[" ".join(c) for c in REFUSED])
def test_the_operator_may_not_do_what_its_code_does_not(
    rbac: Cluster, check: tuple[str, ...]
) -> None:
    assert not can(rbac, *check)
