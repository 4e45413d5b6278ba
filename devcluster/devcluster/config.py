"""Versions, cache locations and state locations of devcluster, with their environment overrides.

- ``MLMODEL_CACHE_DIR``: root of the project's caches (default ``~/.cache/mlmodel-operator``).
- ``DEVCLUSTER_CACHE_DIR``: the Kubernetes build cache (default ``<root>/k8s-<version>``): it holds
  ``bin/`` (the built binaries), ``gocache/`` and ``gomodcache/``.
- ``DEVCLUSTER_DIR``: the state directory of the cluster that ``python -m devcluster up`` manages
  (default ``<root>/devcluster``): certificates, kubeconfigs, logs, PIDs, etcd data.
"""

from __future__ import annotations

import os
from pathlib import Path

KUBE_VERSION = "v1.36.2"
"""The Kubernetes release that devcluster/go/go.mod pins; binaries are built from it."""

KUBE_GIT_COMMIT = "24e2b02af5543d7910c2bb074c7264df5a8f0467"
"""The commit of the KUBE_VERSION tag (stamped into the binaries' version information)."""

KWOK_VERSION = "v0.8.0"  # keep in step with devcluster/go/addons/go.mod
METRICS_SERVER_VERSION = "v0.8.0"  # go install with its own go.mod

CONTROL_PLANE_BINARIES = (
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubectl",
    "kwok",
)
NODE_BINARIES = ("kubelet", "kube-proxy", "metrics-server")


def cache_root() -> Path:
    """The root of the project's caches outside the checkout."""
    default = Path.home() / ".cache" / "mlmodel-operator"
    return Path(os.environ.get("MLMODEL_CACHE_DIR", str(default))).expanduser()


def k8s_cache_dir() -> Path:
    """The version-keyed build cache: binaries, Go build cache and Go module cache."""
    override = os.environ.get("DEVCLUSTER_CACHE_DIR")
    if override:
        return Path(override).expanduser()
    return cache_root() / f"k8s-{KUBE_VERSION}"


def bin_dir() -> Path:
    """Where the built Kubernetes binaries live."""
    return k8s_cache_dir() / "bin"


def binary(name: str) -> Path:
    """The path of one built binary (it may not exist yet)."""
    return bin_dir() / name


def default_state_dir() -> Path:
    """The state directory of the cluster managed by ``python -m devcluster``."""
    override = os.environ.get("DEVCLUSTER_DIR")
    if override:
        return Path(override).expanduser()
    return cache_root() / "devcluster"


def project_dir() -> Path:
    """devcluster/ in the checkout: the Go modules (go/, kind/go/, prometheus/), kind/, demo/."""
    return Path(__file__).resolve().parent.parent


def go_module_dir() -> Path:
    """The project's Go module that pins the Kubernetes release."""
    return project_dir() / "go"
