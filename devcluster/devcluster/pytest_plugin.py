"""pytest plugin: the session-scoped ``cluster`` fixture.

The cluster is started only when a test asks for the fixture (so ``make test-unit`` never needs
the Go-built binaries). With ``DEVCLUSTER_KUBECONFIG=/path`` set, that existing cluster is used
instead of starting one. ``DEVCLUSTER_FAKE_NODES`` (default 2) sets the number of kwok nodes.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from devcluster.cluster import Cluster, NodeCluster
    from devcluster.state import Layout

DEFAULT_FAKE_NODES = 2


def _existing_cluster(kubeconfig: Path) -> Cluster:
    from devcluster import fakenodes
    from devcluster.cluster import Cluster

    if not kubeconfig.is_file():
        raise pytest.UsageError(f"DEVCLUSTER_KUBECONFIG={kubeconfig}: no such file")
    fakenodes.wait_default_service_account(kubeconfig, timeout=60.0)
    return Cluster(kubeconfig=kubeconfig, api=fakenodes.api_client(kubeconfig))


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A ready Kubernetes cluster: a fresh devcluster with kwok nodes, or DEVCLUSTER_KUBECONFIG."""
    from devcluster import controlplane, fakenodes
    from devcluster.cluster import Cluster

    existing = os.environ.get("DEVCLUSTER_KUBECONFIG")
    if existing:
        handle = _existing_cluster(Path(existing).expanduser())
        yield handle
        handle.api.close()  # type: ignore[no-untyped-call]
        return
    layout = controlplane.layout_for(tmp_path_factory.mktemp("devcluster"))
    fake_nodes = int(os.environ.get("DEVCLUSTER_FAKE_NODES", str(DEFAULT_FAKE_NODES)))
    controlplane.up_with_retry(
        layout, controlplane.UpOptions(fake_nodes=fake_nodes), log=lambda _: None
    )
    handle = Cluster(kubeconfig=layout.kubeconfig, api=fakenodes.api_client(layout.kubeconfig))
    try:
        yield handle
    finally:
        handle.api.close()  # type: ignore[no-untyped-call]
        controlplane.down(layout, log=lambda _: None)


@pytest.fixture(scope="module")
def node_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeCluster]:
    """A fresh devcluster with one real node (containerd, kubelet, kube-proxy, metrics-server).

    Module-scoped: only one node cluster can run on a machine, so each test module that needs
    one gets its own (about 10 s to start) and it is stopped, with every host change undone,
    when the module is done.
    """
    from devcluster import controlplane, fakenodes, node
    from devcluster.cluster import NodeCluster

    layout = controlplane.layout_for(tmp_path_factory.mktemp("devcluster-node"))
    with node.exclusive_node(NODE_WAIT_S):
        _up_when_the_node_is_free(layout)
        handle = NodeCluster(
            kubeconfig=layout.kubeconfig,
            api=fakenodes.api_client(layout.kubeconfig),
            state_dir=layout.root,
        )
        try:
            yield handle
        finally:
            handle.api.close()  # type: ignore[no-untyped-call]
            controlplane.down(layout, log=lambda _: None)


NODE_WAIT_S = 480.0


def _up_when_the_node_is_free(layout: Layout) -> None:
    """Start the node cluster, waiting (bounded) while another one holds this machine's node."""
    from devcluster import controlplane

    controlplane.up_when_node_free(layout, NODE_WAIT_S, log=lambda _: None)
