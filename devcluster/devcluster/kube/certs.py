"""The certificates and kubeconfigs of one cluster."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from devcluster.kube import pki
from devcluster.kube.state import Layout

SERVICE_CIDR = "10.96.0.0/16"
KUBERNETES_SERVICE_IP = "10.96.0.1"
SA_ISSUER = "https://kubernetes.default.svc.cluster.local"
APISERVER_DNS = (
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)

# client certificates: file name -> (common name, organizations)
CLIENTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "admin": ("devcluster-admin", ("system:masters",)),
    "kube-controller-manager": ("system:kube-controller-manager", ()),
    "kube-scheduler": ("system:kube-scheduler", ()),
    # kwok plays the kubelet of many fake nodes at once: no per-node identity fits it
    "kwok": ("devcluster:kwok", ("system:masters",)),
    "apiserver-kubelet-client": ("kube-apiserver-kubelet-client", ("system:masters",)),
}


@dataclass(frozen=True)
class ClusterPki:
    """Paths of the cluster's CA, serving certs, service-account keys and front-proxy certs."""

    ca: pki.KeyPair
    apiserver: pki.KeyPair
    front_proxy_ca: pki.KeyPair
    front_proxy_client: pki.KeyPair
    sa_key: Path
    sa_pub: Path
    clients: dict[str, pki.KeyPair]


def make_cluster_pki(layout: Layout, extra_ips: tuple[str, ...] = ()) -> ClusterPki:
    """A fresh CA and every certificate the control plane needs."""
    d = layout.pki
    d.mkdir(parents=True, exist_ok=True)
    ca = pki.make_ca(d, "ca", "devcluster-ca")
    apiserver = pki.issue(
        ca,
        d,
        "apiserver",
        "kube-apiserver",
        client=False,
        server=True,
        dns_names=APISERVER_DNS,
        ip_addresses=("127.0.0.1", KUBERNETES_SERVICE_IP, *extra_ips),
    )
    front_ca = pki.make_ca(d, "front-proxy-ca", "devcluster-front-proxy-ca")
    front_client = pki.issue(front_ca, d, "front-proxy-client", "front-proxy-client")
    sa_key = pki.make_key(d / "sa.key")
    sa_pub = pki.public_key(sa_key, d / "sa.pub")
    clients = {
        name: pki.issue(ca, d, name, cn, organizations=orgs) for name, (cn, orgs) in CLIENTS.items()
    }
    return ClusterPki(ca, apiserver, front_ca, front_client, sa_key, sa_pub, clients)


def load_cluster_pki(layout: Layout) -> ClusterPki:
    """The paths of an existing cluster PKI (as written by :func:`make_cluster_pki`)."""
    d = layout.pki

    def pair(name: str) -> pki.KeyPair:
        return pki.KeyPair(d / f"{name}.crt", d / f"{name}.key")

    return ClusterPki(
        ca=pair("ca"),
        apiserver=pair("apiserver"),
        front_proxy_ca=pair("front-proxy-ca"),
        front_proxy_client=pair("front-proxy-client"),
        sa_key=d / "sa.key",
        sa_pub=d / "sa.pub",
        clients={name: pair(name) for name in CLIENTS},
    )


def write_kubeconfig(path: Path, server: str, ca: Path, client: pki.KeyPair, user: str) -> Path:
    """A kubeconfig with one cluster, one user (client certificate) and one current context."""
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "devcluster", "cluster": {"server": server, "certificate-authority": str(ca)}}
        ],
        "users": [
            {
                "name": user,
                "user": {"client-certificate": str(client.cert), "client-key": str(client.key)},
            }
        ],
        "contexts": [{"name": "devcluster", "context": {"cluster": "devcluster", "user": user}}],
        "current-context": "devcluster",
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    path.chmod(0o600)
    return path
