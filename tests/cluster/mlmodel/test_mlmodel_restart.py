"""The operator can stop at any moment (a rollout, a crash, a node drain) and, once back,
converges every MLModel without duplicate children or needless rollouts."""

from __future__ import annotations

import pytest
from mlmodel_harness import Api, OperatorProcess, mlmodel_yaml, wait_until

# the operator's pods turn Ready on kwok's fake nodes, without images or a reachable artifact
pytestmark = [pytest.mark.cluster, pytest.mark.fake_pods]


def replica_sets(api: Api, name: str) -> list[str]:
    found = api.apps.list_namespaced_replica_set(
        api.ns, label_selector=f"app.kubernetes.io/instance={name}"
    ).items
    return [rs.metadata.name for rs in found]


def test_operator_restarted_midway_converges_without_duplicates(
    api: Api, operator: OperatorProcess
) -> None:
    operator.stop()
    try:
        api.apply(mlmodel_yaml("a", replicas=1))
        api.apply(mlmodel_yaml("b", replicas=2))
        operator.start()
        api.apply(mlmodel_yaml("c", replicas=2))
        api.apply(mlmodel_yaml("d", replicas=1, autoscaling={"minReplicas": 1, "maxReplicas": 3}))
        wait_until(
            "the operator to start on c",
            lambda: api.exists("Deployment", "c") or api.exists("Service", "c"),
        )
    finally:
        operator.stop()  # mid-way: some MLModels converged, some half, some not at all
    try:
        api.apply(mlmodel_yaml("b", replicas=3))
    finally:
        operator.start()
    expected = {"a": 1, "b": 3, "c": 2, "d": 1}
    for name, replicas in expected.items():
        wait_until(
            f"{name} Ready at {replicas}",
            lambda n=name, r=replicas: (
                (b := api.ready_body(n)) and b["status"]["readyReplicas"] == r
            ),
            timeout=90,
        )
    deployments = api.apps.list_namespaced_deployment(api.ns).items
    services = api.core.list_namespaced_service(api.ns).items
    assert sorted(d.metadata.name for d in deployments) == sorted(expected)
    assert sorted(s.metadata.name for s in services) == sorted(expected)
    assert (
        api.autoscaling.list_namespaced_horizontal_pod_autoscaler(api.ns).items[0].metadata.name
        == "d"
    )
    for name in expected:
        assert len(replica_sets(api, name)) == 1, f"{name} rolled out more than once"
        # events are best effort (a stopping operator may drop queued ones), never duplicated
        created = [e for e in api.events_for(name) if e.startswith("Created: Created Deployment")]
        assert len(created) <= 1, created
