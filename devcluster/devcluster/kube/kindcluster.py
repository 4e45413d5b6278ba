"""A kind cluster on this machine, for `pytest --cluster=kind` (devcluster/kind/README.md).

kind itself comes through pytest-kind-ng's `KindCluster` (create, `kind load docker-image`,
delete), given the binary and node image `make kind-build` made. What this module adds is what
kind needs on this machine and what the project chose instead of kind's kindnetd:

- the host: the private engine with its `kind-runc` runtime, an internal bridge network, a
  routing guard so nothing entering from that bridge is forwarded off the machine, routes to the
  cluster's Service and pod CIDRs via the nodes (the host reaches Services as it does on
  devcluster), and the sysctls the nodes' kubelets change, restored afterwards;
- the pod network: per node a `bridge` + `host-local` CNI config for the node's podCIDR (Debian's
  plugins in the node image) and routes to the other nodes' pod CIDRs, written through
  `docker exec` once kind has made the nodes. No masquerading: pods keep their addresses.

Only one real-node cluster runs on the machine at a time (devcluster's node lock).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devcluster import config
from devcluster.kube import hostnet, kindnode

NETWORK = "mlmodel-kind"
SUBNET = "10.89.0.0/24"
GATEWAY = "10.89.0.1"  # the host's address on the bridge: pods reach the host here
BRIDGE = "mlkind0"
CONTROL_PLANE_IP = "10.89.0.10"
GUARD_TABLE = "189"
SERVICE_CIDR = "10.97.0.0/16"  # devcluster/kind/cluster.yaml (10.96/16 is devcluster's)
CNI_FILE = "/etc/cni/net.d/10-mlmodel.conflist"
READY_TIMEOUT_S = 180


class KindError(RuntimeError):
    """kind or the host set-up around it failed; the message says which step."""


@dataclass(frozen=True)
class Node:
    """A kind node: its container name, its address on the bridge and its pod CIDR."""

    name: str
    ip: str
    pod_cidr: str


def cni_config(pod_cidr: str) -> str:
    """The node's CNI config: devcluster's bridge network on the node's pod CIDR, plus portmap."""
    from devcluster.kube import node

    conf = node.bridge_network("mlmodel", pod_cidr)
    conf["plugins"].append({"type": "portmap", "capabilities": {"portMappings": True}})
    return json.dumps(conf, indent=2) + "\n"


def nodes_from(listing: dict[str, Any]) -> list[Node]:
    """The nodes of `kubectl get nodes -o json` that have an address and a pod CIDR."""
    found = []
    for item in listing.get("items", []):
        addresses = item.get("status", {}).get("addresses", [])
        ip = next((a["address"] for a in addresses if a.get("type") == "InternalIP"), None)
        cidr = item.get("spec", {}).get("podCIDR")
        if ip and cidr:
            found.append(Node(item["metadata"]["name"], ip, cidr))
    return found


def kind_environ() -> dict[str, str]:
    """What kind's processes need: docker-for-kind first on PATH, the private engine, and the
    network and control-plane address docker-for-kind and kind read."""
    from devcluster.images import engine, paths

    env = engine.docker_env()
    env["PATH"] = f"{kindnode.shim_dir()}{os.pathsep}{env.get('PATH', '')}"
    env["KIND_EXPERIMENTAL_DOCKER_NETWORK"] = NETWORK
    env["KIND_CONTROL_PLANE_IP"] = CONTROL_PLANE_IP
    env["KIND_REAL_DOCKER"] = paths.DOCKER
    return env


@contextlib.contextmanager
def kind_environment() -> Iterator[None]:
    """os.environ as kind_environ() while inside (KindCluster runs kind with os.environ).

    kind_environ() is worked out before os.environ is cleared: it builds on the environment
    (HOME, which decides the cache and so the engine's socket; PATH, which the shim dir is put
    in front of)."""
    saved = dict(os.environ)
    wanted = kind_environ()
    os.environ.clear()
    os.environ.update(wanted)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _ip(*args: str, check: bool = True) -> str:
    return hostnet.run("ip", *args, check=check)


def prepare_host() -> None:
    """The engine with its kind runtime, the internal network, and the routing guard."""
    from devcluster.images import engine, paths

    if not kindnode.kind_binary().exists() or not paths.kind_runtime().exists():
        raise KindError("kind is not built here: run `make kind-build`")
    engine.start()
    if paths.KIND_RUNTIME not in engine.runtimes():  # an engine started before it had one
        engine.stop()
        engine.start()
    if engine.docker("network", "inspect", NETWORK, check=False, capture=True).returncode:
        engine.docker(
            "network", "create", "--internal", "--subnet", SUBNET, "--gateway", GATEWAY,
            "-o", f"com.docker.network.bridge.name={BRIDGE}", NETWORK, capture=True,
        )  # fmt: skip
    # The engine runs without iptables, so "internal" does not stop the host from forwarding
    # what the nodes send elsewhere: anything entering from the bridge that is not for the host
    # (its own addresses win in the local table first) or the bridge itself is unroutable.
    _ip("route", "replace", "unreachable", "default", "table", GUARD_TABLE)
    _ip("route", "replace", SUBNET, "dev", BRIDGE, "table", GUARD_TABLE)
    if not _ip("rule", "show", "priority", GUARD_TABLE).strip():
        _ip("rule", "add", "iif", BRIDGE, "priority", GUARD_TABLE, "lookup", GUARD_TABLE)


def install_pod_network(nodes: list[Node]) -> None:
    """Per node: the CNI config for its pod CIDR and routes to the others' (kubelet picks the
    config up and reports the node Ready); on the host: routes to every pod CIDR and to the
    Service CIDR via the nodes."""
    from devcluster.images import engine

    for node in nodes:
        engine.docker(
            "exec", "-i", node.name, "sh", "-c",
            f"mkdir -p {Path(CNI_FILE).parent} && cat > {CNI_FILE}.tmp && mv {CNI_FILE}.tmp "
            f"{CNI_FILE}",
            capture=True, input=cni_config(node.pod_cidr),
        )  # fmt: skip
        for other in nodes:
            if other is not node:
                engine.docker(
                    "exec", node.name, "ip", "route", "replace", other.pod_cidr, "via", other.ip,
                    capture=True,
                )  # fmt: skip
        _ip("route", "replace", node.pod_cidr, "via", node.ip)
    control_plane = next((n for n in nodes if n.ip == CONTROL_PLANE_IP), nodes[0])
    _ip("route", "replace", SERVICE_CIDR, "via", control_plane.ip)


def remove_host_routes(nodes: list[Node]) -> None:
    """Undo install_pod_network's host routes (the nodes go with the cluster)."""
    for node in nodes:
        _ip("route", "del", node.pod_cidr, check=False)
    _ip("route", "del", SERVICE_CIDR, check=False)


class KindDriver:
    """A kind cluster (control plane + worker) with the project's pod network, driven by
    pytest-kind-ng's KindCluster; `handle()` gives tests what devcluster's node cluster does."""

    def __init__(self, name: str, state_dir: Path) -> None:
        from pytest_kind import KindCluster

        self.name = name
        self.state_dir = state_dir
        self.kubeconfig = state_dir / "kubeconfig"
        self._kind = KindCluster(
            name,
            self.kubeconfig,
            image=kindnode.NODE_IMAGE,
            kind_path=kindnode.kind_binary(),
            kubectl_path=config.binary("kubectl"),
        )
        self.nodes: list[Node] = []
        self._sysctls: dict[str, str] = {}

    def kubectl(self, *args: str, input: str | None = None) -> str:
        """kubectl against the cluster; raises KindError with its stderr."""
        proc = subprocess.run(
            [str(config.binary("kubectl")), f"--kubeconfig={self.kubeconfig}", *args],
            input=input, text=True, capture_output=True,
        )  # fmt: skip
        if proc.returncode:
            raise KindError(f"kubectl {' '.join(args)}: {proc.stderr.strip()}")
        return proc.stdout

    def create(self) -> None:
        """Host set-up, `kind create cluster` with devcluster/kind/cluster.yaml, the pod
        network, then every node Ready."""
        self._sysctls = hostnet.read_sysctls()
        prepare_host()
        with kind_environment():
            self._kind.create(config_file=kindnode.project_kind_dir() / "cluster.yaml")
        self.nodes = nodes_from(json.loads(self.kubectl("get", "nodes", "-o", "json")))
        if len(self.nodes) < 2:
            raise KindError(f"expected a control plane and a worker with pod CIDRs: {self.nodes}")
        install_pod_network(self.nodes)
        self.kubectl(
            "wait", "--for=condition=Ready", "nodes", "--all", f"--timeout={READY_TIMEOUT_S}s"
        )

    def load_image(self, image: str) -> str:
        """`kind load docker-image` from the private engine onto every node; the image's name."""
        with kind_environment():
            self._kind.load_docker_image(image)
        return image

    def delete(self) -> None:
        """`kind delete cluster`, the host routes, and the sysctls the kubelets changed."""
        try:
            with kind_environment():
                self._kind.delete()
        finally:
            remove_host_routes(self.nodes)
            hostnet.restore_sysctls(self._sysctls)
