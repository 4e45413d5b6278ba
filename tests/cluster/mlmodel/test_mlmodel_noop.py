"""A converged MLModel costs the API server nothing: re-applying the unchanged file and the
periodic drift checks make zero write requests, and `kubectl diff` shows no drift."""

from __future__ import annotations

from pathlib import Path

import pytest
from kubernetes import client
from mlmodel_harness import Api, OperatorProcess, mlmodel_yaml, operator_writes, wait_until

# the operator's pods turn Ready on kwok's fake nodes, without images or a reachable artifact
pytestmark = [pytest.mark.cluster, pytest.mark.fake_pods]


def timer_runs(operator: OperatorProcess) -> float:
    return operator.metric("mlmodel_operator_reconcile_total", trigger="timer", result="ok")


def wait_for_timer_runs(operator: OperatorProcess, count: int) -> None:
    start = timer_runs(operator)
    wait_until(
        f"{count} drift checks by the operator",
        lambda: timer_runs(operator) >= start + count,
        timeout=30,
    )


def no_namespace_terminating(api: Api) -> bool:
    return all(
        n.status.phase != "Terminating"
        for n in client.CoreV1Api(api.cluster.api).list_namespace().items
    )


def test_reapply_and_drift_checks_of_a_converged_mlmodel_write_nothing(
    api: Api, operator: OperatorProcess, workdir: Path
) -> None:
    path = workdir / "iris.yaml"
    path.write_text(mlmodel_yaml("iris", replicas=2))
    api.cluster.kubectl("apply", "-n", api.ns, "-f", str(path))
    wait_until("MLModel iris Ready", lambda: api.is_ready("iris"))
    # other tests' namespaces being torn down would write to the same resources
    wait_until("no namespace terminating", lambda: no_namespace_terminating(api), timeout=120)
    wait_for_timer_runs(operator, 2)
    conditions = api.mlmodel("iris")["status"]["conditions"]
    # A window only counts when nothing the operator watches changed in it (a pod restarting
    # on its own is a real change the operator must report); at most three tries.
    for _ in range(3):
        world = children_versions(api)
        before = operator_writes(api.cluster)
        reapplied = api.cluster.kubectl("apply", "-n", api.ns, "-f", str(path))
        assert "unchanged" in reapplied.stdout
        wait_for_timer_runs(operator, 3)
        after = operator_writes(api.cluster)
        if children_versions(api) == world:
            break
    else:
        pytest.fail("the Deployment or its pods kept changing: no quiet window to measure")
    changed = {
        k: after.get(k, 0) - before.get(k, 0)
        for k in set(before) | set(after)
        if after.get(k, 0) != before.get(k, 0)
    }
    assert changed == {}, f"write requests during a no-op period: {changed}"
    assert api.mlmodel("iris")["status"]["conditions"] == conditions


def children_versions(api: Api) -> list[str]:
    """resourceVersions of the Deployment and its pods: equal means nothing changed."""
    deployment = api.apps.read_namespaced_deployment("iris", api.ns)
    pods = api.core.list_namespaced_pod(api.ns).items
    return [
        deployment.metadata.resource_version,
        *sorted(p.metadata.resource_version for p in pods),
    ]


def test_kubectl_diff_of_the_applied_file_shows_nothing(
    api: Api, operator: OperatorProcess, workdir: Path
) -> None:
    path = workdir / "iris.yaml"
    path.write_text(
        mlmodel_yaml("iris", replicas=2, autoscaling={"minReplicas": 2, "maxReplicas": 4})
    )
    api.cluster.kubectl("apply", "-n", api.ns, "-f", str(path))
    wait_until("MLModel iris Ready", lambda: api.is_ready("iris"))
    wait_for_timer_runs(operator, 1)
    diff = api.cluster.kubectl("diff", "-n", api.ns, "-f", str(path), check=False)
    assert (diff.returncode, diff.stdout) == (0, ""), diff.stdout + diff.stderr
    body = api.mlmodel("iris")
    assert body["spec"]["autoscaling"]["maxReplicas"] == 4
    assert set(body["metadata"].get("labels", {})) == set()
