"""``python -m devcluster.prometheus build``: the upstream Prometheus server, built from its module.

Debian's ``prometheus`` package is built without Kubernetes service discovery ("Kubernetes support
has been completely removed", its NEWS file says), and the monitoring e2e test must discover the
model pods the way a user's Prometheus does. So the project builds the real server from the Go
module proxy, pinned by ``devcluster/prometheus/go.mod`` and ``go.sum``, into
``~/.cache/mlmodel-operator/prometheus-<version>/bin/prometheus`` (with its Go caches beside it),
once per version.
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

PACKAGE: Final = "github.com/prometheus/prometheus/cmd/prometheus"


def module_dir() -> Path:
    """The project's Go module that pins the Prometheus release."""
    return Path(__file__).resolve().parent.parent / "prometheus"


def cache_dir() -> Path:
    """The version-keyed cache: the binary and the Go build and module caches."""
    return config.cache_root() / f"prometheus-{VERSION}"


def binary() -> Path:
    """Where the built server lives (it may not exist yet)."""
    return cache_dir() / "bin" / "prometheus"


def build() -> Path:
    """Build the server unless the cached binary exists; returns its path."""
    target = binary()
    if target.exists():
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
    tmp = target.with_suffix(".tmp")
    tmp.parent.mkdir(parents=True, exist_ok=True)
    argv = ["go", "build", "-trimpath", "-o", str(tmp), PACKAGE]
    log = cache / "build.log"
    started = time.monotonic()
    with log.open("w") as out:
        proc = subprocess.run(argv, cwd=module_dir(), env=env, stdout=out, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
        raise RuntimeError(f"building Prometheus {VERSION} failed (log {log}):\n{tail}")
    os.replace(tmp, target)
    print(f"prometheus: built {PACKAGE}@{VERSION} in {time.monotonic() - started:.0f}s ({target})")
    return target


def main(argv: list[str] | None = None) -> int:
    """``build`` (idempotent) or ``path``."""
    parser = argparse.ArgumentParser(prog="python -m devcluster.prometheus", description=__doc__)
    parser.add_argument("command", choices=("build", "path"))
    args = parser.parse_args(argv)
    if args.command == "path":
        print(binary())
        return 0 if binary().exists() else 3
    try:
        print(build())
    except (RuntimeError, OSError) as exc:
        print(f"prometheus: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
