"""Where the private Docker engine, the base image cache and the image tags live."""

from __future__ import annotations

import os
from pathlib import Path

#: Bump when the base image recipe changes; it keys the cached root filesystem tarball and the
#: image tag (an engine holding the old base then builds on the new one).
BASE_VERSION = "bookworm-py311-v2"
BASE_IMAGE = f"mlmodel-base/python:3.11-{BASE_VERSION}"
#: libgomp1: LightGBM's library links the system OpenMP runtime (scikit-learn and XGBoost
#: bundle their own).
BASE_PACKAGES = ("python3", "python3-venv", "python-is-python3", "ca-certificates", "libgomp1")

SERVER_IMAGE = "mlmodel-server:dev"
SERVER_SLIM_IMAGE = "mlmodel-server:slim"
OPERATOR_IMAGE = "mlmodel-operator:dev"

#: Debian's docker CLI and daemon (20.10); another `docker` earlier on PATH may lack BuildKit.
DOCKER = "/usr/bin/docker"
DOCKERD = "/usr/sbin/dockerd"
CONTAINERD = "/usr/bin/containerd"
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


def cache_root() -> Path:
    """The project's cache directory outside the checkout (`MLMODEL_CACHE` overrides it)."""
    override = os.environ.get("MLMODEL_CACHE")
    if override:
        return Path(override)
    return Path.home() / ".cache" / "mlmodel-operator"


def docker_dir() -> Path:
    """Root of the private Docker engine: data, exec state, pid files, socket and logs."""
    return cache_root() / "docker"


def docker_socket() -> Path:
    """The unix socket the private dockerd listens on (never TCP)."""
    return docker_dir() / "docker.sock"


def docker_host() -> str:
    """The DOCKER_HOST value that points a client at the private engine."""
    return f"unix://{docker_socket()}"


#: The engine's extra OCI runtime for kind's privileged nodes (devcluster/kind/README.md).
KIND_RUNTIME = "kind-runc"


def kind_runtime() -> Path:
    """Where `make kind-build` installs devcluster/kind/runc-without-sys-resource; the engine
    registers it as KIND_RUNTIME (a runtime whose file is missing fails only when used)."""
    return docker_dir() / "runtimes" / KIND_RUNTIME


def base_cache_dir() -> Path:
    """Where the base image's root filesystem tarball is kept, keyed by BASE_VERSION."""
    return cache_root() / f"base-image-{BASE_VERSION}"
