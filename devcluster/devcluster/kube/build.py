"""Build the pinned Kubernetes binaries (and kwok) into the version-keyed cache; install etcd.

``python -m devcluster build [--node]`` is what ``make devcluster-build`` runs. A binary already
in the cache is not rebuilt; Go's build and module caches live beside the binaries, so a rebuild
after deleting a binary takes seconds.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from devcluster import config

K8S_CMDS = (
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubectl",
    "kubelet",
    "kube-proxy",
)
VERSION_PACKAGES = ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version")
KWOK_STAGES = (
    "node/fast/node-initialize.yaml",
    "node/heartbeat-with-lease/node-heartbeat-with-lease.yaml",
    "pod/fast/pod-ready.yaml",
    "pod/fast/pod-complete.yaml",
    "pod/fast/pod-delete.yaml",
)


class BuildError(RuntimeError):
    """A build step failed."""


def go_env() -> dict[str, str]:
    """The environment for every go command: caches in the version-keyed directory."""
    cache = config.k8s_cache_dir()
    env = dict(os.environ)
    env.update(
        GOCACHE=str(cache / "gocache"),
        GOMODCACHE=str(cache / "gomodcache"),
        GOTOOLCHAIN="local",
        GOFLAGS="-modcacherw -buildvcs=false",
        CGO_ENABLED="0",
    )
    return env


def check_go() -> str:
    """The go binary; refuses a missing Go or Go >= 1.27 (its jsonv2 default breaks openapi)."""
    go = shutil.which("go") or (
        "/usr/local/go/bin/go" if Path("/usr/local/go/bin/go").exists() else None
    )
    if go is None:
        raise BuildError("go is not installed: devcluster needs Go 1.26 to build Kubernetes")
    out = subprocess.run([go, "version"], capture_output=True, text=True, env=go_env()).stdout
    match = re.search(r"go1\.(\d+)", out)
    if match is None or int(match.group(1)) < 26:
        raise BuildError(f"devcluster needs Go 1.26 to build Kubernetes, found: {out.strip()}")
    if int(match.group(1)) >= 27:
        raise BuildError(
            f"{out.strip()}: Go 1.27 enables GOEXPERIMENT=jsonv2, whose kube-apiserver serves a "
            "malformed /openapi/v2; use Go 1.26"
        )
    return go


def ldflags() -> str:
    """Strip symbols and stamp the release version into the binaries."""
    major, minor = config.KUBE_VERSION.lstrip("v").split(".")[:2]
    flags = ["-s", "-w"]
    for pkg in VERSION_PACKAGES:
        for key, value in (
            ("gitVersion", config.KUBE_VERSION),
            ("gitMajor", major),
            ("gitMinor", minor),
            ("gitCommit", config.KUBE_GIT_COMMIT),
            ("gitTreeState", "clean"),
            ("buildDate", "2026-01-01T00:00:00Z"),
        ):
            flags.append(f"-X {pkg}.{key}={value}")
    return " ".join(flags)


def _run(
    argv: list[str], what: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> None:
    started = time.monotonic()
    print(f"devcluster build: {what} ...", flush=True)
    proc = subprocess.run(argv, cwd=cwd, env=env or go_env(), capture_output=True, text=True)
    if proc.returncode != 0:
        raise BuildError(f"{what} failed:\n{proc.stdout}{proc.stderr}")
    print(f"devcluster build: {what} done in {time.monotonic() - started:.0f}s", flush=True)


def build_k8s(name: str, go: str) -> None:
    """Build one command of k8s.io/kubernetes from the project's Go module."""
    out = config.binary(name)
    if out.exists():
        return
    argv = [go, "build", "-trimpath", "-ldflags", ldflags(), "-o", str(out)]
    _run([*argv, f"k8s.io/kubernetes/cmd/{name}"], f"go build {name}", cwd=config.go_module_dir())


def install_module_cmd(name: str, package: str, version: str, go: str) -> None:
    """`go install package@version` with the module's own go.mod (metrics-server)."""
    if config.binary(name).exists():
        return
    env = go_env()
    env["GOBIN"] = str(config.bin_dir())
    argv = [go, "install", "-trimpath", "-ldflags", "-s -w", f"{package}@{version}"]
    _run(argv, f"go install {name}", env=env)


def build_addon(name: str, package: str, go: str) -> None:
    """Build kwok from devcluster/go/addons, whose go.mod pins its tag and replaces every k8s.io
    staging module with the release's tag (so it shares the core binaries' compiled packages)."""
    out = config.binary(name)
    if out.exists():
        return
    argv = [go, "build", "-trimpath", "-ldflags", "-s -w", "-o", str(out), package]
    _run(argv, f"go build {name}", cwd=config.go_module_dir() / "addons")


def kwok_stages() -> Path:
    """The kwok stage definitions (node init + lease heartbeat, pod ready/complete/delete)."""
    out = config.k8s_cache_dir() / "share" / "kwok-stages.yaml"
    if out.exists():
        return out
    src = (
        config.k8s_cache_dir()
        / "gomodcache"
        / f"sigs.k8s.io/kwok@{config.KWOK_VERSION}"
        / "kustomize"
        / "stage"
    )
    if not src.is_dir():
        _run(
            [check_go(), "mod", "download", f"sigs.k8s.io/kwok@{config.KWOK_VERSION}"],
            "kwok source",
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    docs = [(src / rel).read_text().strip() + "\n" for rel in KWOK_STAGES]
    out.write_text("---\n".join(docs))
    return out


_APT_UPDATED: list[bool] = []


def _present(command: str) -> bool:
    return Path(command).exists() if command.startswith("/") else shutil.which(command) is not None


def ensure_apt_package(command: str, package: str) -> None:
    """Install a Debian package when its command (or file) is missing (machines run as root)."""
    if _present(command):
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise BuildError(f"{command} is missing: install the Debian package {package}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    if not _APT_UPDATED:
        _run(["apt-get", "update", "-qq"], "apt-get update", env=env)  # a fresh machine's lists
        _APT_UPDATED.append(True)
    install = ["apt-get", "install", "-y", "--no-install-recommends", package]
    _run(install, f"apt {package}", env=env)
    if not _present(command):
        raise BuildError(f"apt-get installed {package} but {command} is still missing")


def build_control_plane() -> None:
    """Everything ``devcluster up`` needs: etcd, the control plane, kubectl and kwok."""
    ensure_apt_package("etcd", "etcd-server")
    go = check_go()
    config.bin_dir().mkdir(parents=True, exist_ok=True)
    for name in ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl"):
        build_k8s(name, go)
    build_addon("kwok", "sigs.k8s.io/kwok/cmd/kwok", go)
    kwok_stages()


NODE_APT = (
    ("containerd", "containerd"),
    ("runc", "runc"),
    ("/usr/lib/cni/bridge", "containernetworking-plugins"),
    ("conntrack", "conntrack"),
    ("iptables", "iptables"),
    ("nft", "nftables"),
    ("gcc", "gcc"),
    ("/usr/lib/x86_64-linux-gnu/libc.a", "libc6-dev"),
)


def build_node() -> None:
    """What ``devcluster up --node`` needs on top: kubelet, kube-proxy, metrics-server, pause."""
    from devcluster.kube import pause

    for command, package in NODE_APT:
        ensure_apt_package(command, package)
    go = check_go()
    for name in ("kubelet", "kube-proxy"):
        build_k8s(name, go)
    install_module_cmd(
        "metrics-server",
        "sigs.k8s.io/metrics-server/cmd/metrics-server",
        config.METRICS_SERVER_VERSION,
        go,
    )
    pause.pause_archive()


def missing_binaries(names: tuple[str, ...]) -> list[str]:
    """The binaries among ``names`` that are not built yet."""
    return [name for name in names if not config.binary(name).exists()]


def main(node: bool = False) -> int:
    """Entry point of ``python -m devcluster build``."""
    started = time.monotonic()
    try:
        build_control_plane()
        if node:
            build_node()
    except BuildError as exc:
        print(f"devcluster build: {exc}", file=sys.stderr)
        return 1
    cache = config.k8s_cache_dir()
    print(f"devcluster build: all binaries in {cache / 'bin'} ({time.monotonic() - started:.0f}s)")
    return 0
