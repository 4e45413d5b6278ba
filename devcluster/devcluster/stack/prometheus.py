"""``python -m devcluster.stack.prometheus build``: upstream Prometheus and promtool, built here.

Debian's ``prometheus`` package is built without Kubernetes service discovery ("Kubernetes support
has been completely removed", its NEWS file says), and the monitoring e2e test must discover the
model pods the way a user's Prometheus does. So the project builds the real server from the Go
module proxy, pinned by ``devcluster/prometheus/go.mod`` and ``go.sum``, and ``promtool`` (which
checks the shipped alert rules and the dashboard's queries) in the same ``go build``, into
``~/.cache/mlmodel-operator/prometheus-<version>/bin-<recipe>/`` (with the Go caches beside it),
once per version and recipe.

Only Kubernetes service discovery is compiled in (``remove_all_sd`` drops every discovery plugin
but the file and HTTP ones, ``enable_kubernetes_sd`` keeps Kubernetes': build constraints of
upstream's ``plugins/plugin_*.go``), which is all the shipped ``prometheus.yml`` uses and saves
compiling the cloud providers' SDKs.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Final

from devcluster import config

VERSION: Final = "v0.315.1"
"""The Go module version of github.com/prometheus/prometheus (Prometheus 3.15.1)."""

PACKAGES: Final = (
    "github.com/prometheus/prometheus/cmd/prometheus",
    "github.com/prometheus/prometheus/cmd/promtool",
)
TAGS: Final = ("remove_all_sd", "enable_kubernetes_sd")
RECIPE: Final = "2-k8s-sd"
"""Names the binaries' directory: change it whenever PACKAGES or TAGS change, so a cache built
by an older recipe (before 2: the server alone, every discovery plugin) is rebuilt."""


def module_dir() -> Path:
    """The project's Go module that pins the Prometheus release."""
    return config.project_dir() / "prometheus"


def cache_dir() -> Path:
    """The version-keyed cache: the binaries and the Go build and module caches."""
    return config.cache_root() / f"prometheus-{VERSION}"


def bin_dir() -> Path:
    """Where this recipe's binaries live."""
    return cache_dir() / f"bin-{RECIPE}"


def binary() -> Path:
    """The Prometheus server (it may not exist yet)."""
    return bin_dir() / "prometheus"


def promtool() -> Path:
    """promtool (it may not exist yet)."""
    return bin_dir() / "promtool"


def built() -> bool:
    """Whether every binary of this recipe is in the cache."""
    return all((bin_dir() / Path(package).name).exists() for package in PACKAGES)


def build() -> Path:
    """Build the server and promtool unless this recipe's binaries exist; returns their directory.

    One ``go build`` for both binaries: the packages they share compile once.
    """
    target = bin_dir()
    if built():
        return target
    cache = cache_dir()
    env = {
        **os.environ,
        "GOTOOLCHAIN": "local",
        "GOCACHE": str(cache / "gocache"),
        "GOMODCACHE": str(cache / "gomodcache"),
        "GOFLAGS": "-mod=readonly",
        "CGO_ENABLED": "0",
    }
    tmp = target.with_name(target.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    argv = ["go", "build", "-trimpath", "-tags", ",".join(TAGS), "-o", f"{tmp}/", *PACKAGES]
    log = cache / "build.log"
    started = time.monotonic()
    with log.open("w") as out:
        proc = subprocess.run(argv, cwd=module_dir(), env=env, stdout=out, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
        raise RuntimeError(f"building Prometheus {VERSION} failed (log {log}):\n{tail}")
    target.mkdir(exist_ok=True)
    for package in PACKAGES:
        name = Path(package).name
        os.replace(tmp / name, target / name)
    tmp.rmdir()
    seconds = time.monotonic() - started
    print(f"prometheus: built prometheus and promtool {VERSION} in {seconds:.0f}s ({target})")
    return target


def main(argv: list[str] | None = None) -> int:
    """``build`` (idempotent) or ``path``."""
    parser = argparse.ArgumentParser(
        prog="python -m devcluster.stack.prometheus", description=__doc__
    )
    parser.add_argument("command", choices=("build", "path"))
    args = parser.parse_args(argv)
    if args.command == "path":
        print(bin_dir())
        return 0 if built() else 3
    try:
        print(build())
    except (RuntimeError, OSError) as exc:
        print(f"prometheus: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
