"""pytest plugin: the ``cluster`` and ``node_cluster`` fixtures, on the backend
``--cluster`` names.

- ``--cluster=devcluster`` (the default): ``cluster`` is a fresh devcluster control plane with
  kwok nodes (``DEVCLUSTER_FAKE_NODES``, default 2), ``node_cluster`` one with a real node;
- ``--cluster=kind``: both are one kind cluster for the session (control plane + worker, made
  with the binary and node image of ``make kind-build``, through pytest-kind-ng's KindCluster;
  devcluster/kind/README.md);
- ``--cluster=kubeconfig``: the existing cluster of ``$DEVCLUSTER_KUBECONFIG`` (setting that
  variable alone chooses this too), for tests that need no node of their own.

A cluster is started only when a test asks for the fixture (so ``make test-unit`` never needs
the Go-built binaries).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from devcluster.cluster import Cluster, KindNodeCluster, NodeCluster
    from devcluster.kube.state import Layout

DEFAULT_FAKE_NODES = 2
BACKENDS = ("devcluster", "kind", "kubeconfig")
KIND_CLUSTER_NAME = "mlmodel-tests"


def pytest_addoption(parser: pytest.Parser) -> None:
    """``--cluster``: where the cluster tests run (see the module's docstring)."""
    parser.addoption(
        "--cluster",
        choices=BACKENDS,
        default=None,
        help="cluster backend for cluster/node tests: devcluster (default), kind, or kubeconfig "
        "($DEVCLUSTER_KUBECONFIG)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On kind, leave out the tests marked ``fake_pods`` (their pods turn Ready only on
    devcluster's kwok nodes): reported as deselected, never as passed; the devcluster run of
    ``make test`` runs them."""
    if backend(config) != "kind":
        return
    kept = [item for item in items if item.get_closest_marker("fake_pods") is None]
    if len(kept) < len(items):
        config.hook.pytest_deselected(items=[i for i in items if i not in kept])
        items[:] = kept


def backend(config: pytest.Config) -> str:
    """The backend chosen: --cluster, else kubeconfig when DEVCLUSTER_KUBECONFIG is set."""
    chosen = config.getoption("cluster")
    if chosen is None:
        return "kubeconfig" if os.environ.get("DEVCLUSTER_KUBECONFIG") else "devcluster"
    return str(chosen)


def _existing_cluster(kubeconfig: Path) -> Cluster:
    from devcluster.cluster import Cluster
    from devcluster.kube import fakenodes

    if not kubeconfig.is_file():
        raise pytest.UsageError(f"DEVCLUSTER_KUBECONFIG={kubeconfig}: no such file")
    fakenodes.wait_default_service_account(kubeconfig, timeout=60.0)
    return Cluster(kubeconfig=kubeconfig, api=fakenodes.api_client(kubeconfig))


@pytest.fixture(scope="session")
def kind_cluster_session(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[KindNodeCluster]:
    """The session's kind cluster (``--cluster=kind``), deleted at the end with every host
    change undone; it holds devcluster's node lock meanwhile (one real-node cluster at once)."""
    from devcluster.cluster import KindNodeCluster
    from devcluster.kube import fakenodes, kindcluster, node

    if backend(request.config) != "kind":
        raise pytest.UsageError("kind_cluster_session is for --cluster=kind")
    with node.exclusive_node(NODE_WAIT_S):
        kind = kindcluster.KindDriver(KIND_CLUSTER_NAME, tmp_path_factory.mktemp("kind"))
        try:
            kind.create()
            handle = KindNodeCluster(
                kubeconfig=kind.kubeconfig,
                api=fakenodes.api_client(kind.kubeconfig),
                state_dir=kind.state_dir,
                kind=kind,
            )
            yield handle
            handle.api.close()  # type: ignore[no-untyped-call]
        finally:
            kind.delete()


@pytest.fixture(scope="session")
def cluster(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    """A ready Kubernetes cluster on the chosen backend (see the module's docstring)."""
    from devcluster.cluster import Cluster
    from devcluster.kube import controlplane, fakenodes

    chosen = backend(request.config)
    if chosen == "kind":
        yield request.getfixturevalue("kind_cluster_session")
        return
    if chosen == "kubeconfig":
        existing = os.environ.get("DEVCLUSTER_KUBECONFIG")
        if not existing:
            raise pytest.UsageError("--cluster=kubeconfig needs DEVCLUSTER_KUBECONFIG=/path")
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
def node_cluster(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[NodeCluster | KindNodeCluster]:
    """A cluster with real nodes: a fresh devcluster with one real node (containerd, kubelet,
    kube-proxy, metrics-server), or with ``--cluster=kind`` the session's kind cluster.

    Module-scoped on devcluster: only one node cluster can run on a machine, so each test module
    that needs one gets its own (about 10 s to start) and it is stopped, with every host change
    undone, when the module is done. kind's takes a minute to start, so modules share it. A
    directory of modules can share one too, by overriding this fixture at package scope with
    `started_node_cluster` (tests/e2e does: its stack takes a minute and a half to install).
    """
    with started_node_cluster(request, tmp_path_factory) as handle:
        yield handle


@contextlib.contextmanager
def started_node_cluster(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[NodeCluster | KindNodeCluster]:
    """The body of `node_cluster`, for a fixture of another scope: a fresh devcluster with one
    real node, stopped when the block ends (or the session's kind cluster, left running)."""
    from devcluster.cluster import NodeCluster
    from devcluster.kube import controlplane, fakenodes, node

    chosen = backend(request.config)
    if chosen == "kind":
        yield request.getfixturevalue("kind_cluster_session")
        return
    if chosen == "kubeconfig":
        raise pytest.UsageError("node tests need --cluster=devcluster or --cluster=kind")

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
    from devcluster.kube import controlplane

    controlplane.up_when_node_free(layout, NODE_WAIT_S, log=lambda _: None)
