"""devcluster can restart etcd and the API server in place: objects survive, clients reconnect."""

from __future__ import annotations

import uuid

import pytest
from kubernetes import client

from devcluster.cluster import Cluster
from devcluster.kube import controlplane, state

pytestmark = pytest.mark.cluster


def test_restarting_etcd_and_the_api_server_keeps_every_object(cluster: Cluster) -> None:
    core = client.CoreV1Api(cluster.api)
    name = f"survivor-{uuid.uuid4().hex[:6]}"
    core.create_namespaced_config_map(
        "default", client.V1ConfigMap(metadata=client.V1ObjectMeta(name=name), data={"k": "v"})
    )
    layout = controlplane.layout_for(cluster.kubeconfig.parent)
    before = {p.name: p.pid for p in _procs(layout)}
    try:
        controlplane.restart(layout, ("etcd", "kube-apiserver"), log=lambda _: None)
        after = {p.name: p.pid for p in _procs(layout)}
        assert after["etcd"] != before["etcd"]
        assert after["kube-apiserver"] != before["kube-apiserver"]
        assert after["kube-scheduler"] == before["kube-scheduler"]
        assert core.read_namespaced_config_map(name, "default").data == {"k": "v"}
        assert controlplane.status(layout)["phase"] == "up"
    finally:
        core.delete_namespaced_config_map(name, "default")


def _procs(layout: state.Layout) -> list[state.Proc]:
    recorded = state.load(layout)
    assert recorded is not None, f"no devcluster state in {layout.root}"
    return recorded.procs


def test_restart_refuses_components_it_cannot_restart(cluster: Cluster) -> None:
    layout = controlplane.layout_for(cluster.kubeconfig.parent)
    with pytest.raises(controlplane.ClusterError, match="cannot restart kube-scheduler"):
        controlplane.restart(layout, ("kube-scheduler",), log=lambda _: None)
