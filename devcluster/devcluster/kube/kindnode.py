"""Build `kind` and a kind node image (``kindest/node:<KUBE_VERSION>``) here, without a registry.

``python -m devcluster.kube.kindnode build`` is what ``make kind-build`` runs. Everything comes
from the Go module proxy, Debian and the project's private Docker engine (``devcluster.images``):

- ``kind`` itself: ``go install sigs.k8s.io/kind@KIND_VERSION``; kind's module source (unpacked in
  the module cache) is the reference for the node image: its ``images/base`` files (entrypoint,
  systemd units, containerd config) go into the image as they are, the CNI and storage manifests
  and the image names they use are read from ``pkg/build/nodeimage``, and the preload follows
  ``pkg/build/nodeimage/buildcontext.go`` (``kubeadm config images list``, the sandbox image from
  kind's containerd config, ``ctr images import --no-unpack``).
- kubeadm, kubelet, kubectl and the control-plane binaries: the devcluster build of the pinned
  Kubernetes release (``devcluster/go``), missing ones in one ``go build``.
- etcd and CoreDNS at the versions kubeadm asks for, local-path-provisioner, crictl: Go modules
  (``devcluster/kind/go/*``). No kindnetd: kind's CNI daemon is not a module the Go proxy serves,
  and the project does not carry a copy of its source; clusters are made with
  ``disableDefaultCNI: true`` (``devcluster/kind/cluster.yaml``), and the pod network is the
  project's own bridge CNI instead: once kind has made the nodes, ``kindcluster`` writes each
  node a conflist from ``node.bridge_network`` (``bridge`` + ``host-local`` on the node's pod
  CIDR, plus ``portmap``; the plugins are Debian's ``containernetworking-plugins`` in the node
  image) and routes to the other nodes' pod CIDRs, and the kubelets then report Ready.
- The images: ``devcluster/kind/Dockerfile.images`` (one target each), ``Dockerfile.node``.

Cache (``~/.cache/mlmodel-operator``): ``kind-<KIND_VERSION>/{bin,gocache,gomodcache}`` for the
Go builds that are not Kubernetes, ``kind-<KIND_VERSION>/node-<KUBE_VERSION>/context`` for the
node image's build context (docker-archives of the preloaded images included); the Kubernetes
binaries stay in ``k8s-<KUBE_VERSION>/bin``. A warm build only re-checks and lets Docker's layer
cache answer.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from devcluster import config
from devcluster.kube import build

KIND_VERSION = "v0.33.0"
"""The kind release: its binary, and the module source the node image follows."""

CRICTL_VERSION = "v1.37.0"
"""cri-tools (crictl; `kind load` asks the node's CRI with it). The proxy does not serve v1.36."""

NODE_IMAGE = f"kindest/node:{config.KUBE_VERSION}"
"""The local tag of the node image (`kind create cluster --image ...`)."""

K8S_NODE_BINARIES = ("kubeadm", "kubelet", "kubectl")
K8S_IMAGE_BINARIES = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy")

#: Go builds of this module's own (directory under devcluster/kind, binary, package).
GO_BUILDS = (
    ("go/etcd", "etcd", "go.etcd.io/etcd/server/v3"),
    ("go/coredns", "coredns", "github.com/coredns/coredns"),
    (
        "go/local-path-provisioner",
        "local-path-provisioner",
        "github.com/rancher/local-path-provisioner",
    ),
)

#: Where a Go module of devcluster/kind/go pins a program (module path -> its require line).
PINNED_MODULES = {"etcd": "go.etcd.io/etcd/server/v3", "coredns": "github.com/coredns/coredns"}


class KindBuildError(RuntimeError):
    """A step of the kind build failed."""


# --- where things live


def kind_cache_dir() -> Path:
    """``<cache root>/kind-<KIND_VERSION>``: Go caches and binaries of the kind build."""
    return config.cache_root() / f"kind-{KIND_VERSION}"


def kind_bin_dir() -> Path:
    """Where kind, crictl, etcd, coredns and local-path-provisioner are built."""
    return kind_cache_dir() / "bin"


def kind_binary() -> Path:
    """The built `kind` binary (``--kind-bin`` for pytest-kind-ng)."""
    return kind_bin_dir() / "kind"


def node_dir() -> Path:
    """The node image's build directory, keyed by the Kubernetes version."""
    return kind_cache_dir() / f"node-{config.KUBE_VERSION}"


def shim_dir() -> Path:
    """Put first on kind's PATH: its ``docker`` is devcluster/kind/docker-for-kind."""
    return kind_cache_dir() / "shim"


def runc_wrapper() -> Path:
    """devcluster/kind/runc-without-sys-resource, installed where the engine's runtime points."""
    from devcluster.images import paths

    return paths.kind_runtime()


def kind_source_dir() -> Path:
    """kind's module source in the Go module cache (after ``go mod download``)."""
    return kind_cache_dir() / "gomodcache" / f"sigs.k8s.io/kind@{KIND_VERSION}"


def project_kind_dir() -> Path:
    """devcluster/kind in the checkout: Dockerfiles, Go modules, the cluster config."""
    return config.project_dir() / "kind"


# --- pure helpers (unit-tested)


def proxy_only(goproxy: str) -> str:
    """GOPROXY without ``direct``/``off``: modules come from the proxy, never from VCS hosts."""
    entries = [e for e in re.split(r"[,|]", goproxy) if e and e not in ("direct", "off")]
    return ",".join(entries) or "https://proxy.golang.org"


def go_const(source: str, name: str) -> str:
    """The value of a Go string constant in ``source``: a "quoted" string or a `raw` string whose
    ``` + ident + ``` parts name other constants of the same source (kind's manifests do this)."""
    match = re.search(rf"(?m)^\s*(?:const\s+)?{re.escape(name)}\s*=\s*", source)
    if match is None:
        raise KindBuildError(f"no Go constant {name}")
    rest = source[match.end() :]
    parts: list[str] = []
    while True:
        rest = rest.lstrip(" \t")
        if rest.startswith("`"):
            end = rest.index("`", 1)
            parts.append(rest[1:end])
            rest = rest[end + 1 :]
        elif rest.startswith('"'):
            literal = re.match(r'"((?:[^"\\\n]|\\.)*)"', rest)
            if literal is None:
                raise KindBuildError(f"unterminated string in Go constant {name}")
            parts.append(json.loads(f'"{literal.group(1)}"'))
            rest = rest[literal.end() :]
        else:
            ident = re.match(r"[A-Za-z_]\w*", rest)
            if ident is None:
                raise KindBuildError(f"cannot read Go constant {name} at {rest[:30]!r}")
            parts.append(go_const(source, ident.group(0)))
            rest = rest[ident.end() :]
        plus = re.match(r"[ \t]*\+[ \t]*\n?", rest)
        if plus is None:
            return "".join(parts)
        rest = rest[plus.end() :]


def sandbox_image(containerd_config: str) -> str:
    """The pause image kind's containerd config names (kind's findSandboxImage)."""
    match = re.search(r'sandbox_image\s+=\s+"([^\n]+)"', containerd_config)
    if match is None:
        raise KindBuildError("failed to parse sandbox_image from kind's containerd config")
    return match.group(1)


def split_image(ref: str) -> tuple[str, str]:
    """``repo[:tag]`` -> (repo, tag); a registry's port is not a tag."""
    slash = ref.rfind("/")
    colon = ref.rfind(":")
    if colon > slash:
        return ref[:colon], ref[colon + 1 :]
    return ref, "latest"


def image_target(ref: str) -> str:
    """The Dockerfile.images target that builds ``ref`` (its repository's last path element)."""
    return split_image(ref)[0].rsplit("/", 1)[-1]


def preload_images(
    kubeadm_images: Sequence[str], sandbox: str, kind_images: Sequence[str]
) -> list[str]:
    """What the node preloads, as kind's buildcontext.go decides: kubeadm's list without its pause
    image, the sandbox image of kind's containerd config, kind's CNI and storage images."""
    images = [ref for ref in kubeadm_images if "pause" not in ref]
    return [*images, sandbox, *kind_images]


def module_version(image_tag: str) -> str:
    """A Go module version for an image tag: ``3.6.8-0`` -> ``v3.6.8``, ``v1.14.2`` stays."""
    version = image_tag.split("-", 1)[0]
    return version if version.startswith("v") else f"v{version}"


def required_version(go_mod: str, module: str) -> str | None:
    """The version ``go_mod`` requires of ``module`` (None when it does not)."""
    match = re.search(rf"(?m)^\s*(?:require\s+)?{re.escape(module)}\s+(v\S+)", go_mod)
    return match.group(1) if match else None


def base_file_mode(rel: str) -> int:
    """The mode kind's images/base/Dockerfile gives a file of ``files/`` (its COPY --chmod)."""
    if rel.startswith(("usr/local/bin/", "kind/bin/")):
        return 0o755
    return 0o644


# --- running things


def go_env() -> dict[str, str]:
    """The environment for the kind build's go commands: its own caches, the proxy only."""
    cache = kind_cache_dir()
    env = build.go_env()
    env.update(
        GOCACHE=str(cache / "gocache"),
        GOMODCACHE=str(cache / "gomodcache"),
        GOPROXY=proxy_only(os.environ.get("GOPROXY", "https://proxy.golang.org")),
    )
    return env


def _niced(argv: list[str]) -> list[str]:
    """Builds run at the lowest priority: the machine has 2 cores and others use them."""
    return ["nice", "-n", "19", *argv] if shutil.which("nice") else argv


def _run(
    argv: list[str],
    what: str,
    *,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    log: Path | None = None,
) -> float:
    started = time.monotonic()
    print(f"kind build: {what} ...", flush=True)
    proc = subprocess.run(
        _niced(argv), cwd=cwd, env=env or go_env(), capture_output=True, text=True
    )
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-40:])
        raise KindBuildError(f"{what} failed (exit {proc.returncode}):\n{tail}")
    elapsed = time.monotonic() - started
    print(f"kind build: {what} done in {elapsed:.0f}s", flush=True)
    return elapsed


@dataclass
class Timings:
    """Seconds per step, printed at the end (cold/warm figures for the docs)."""

    steps: dict[str, float]

    def add(self, step: str, seconds: float) -> None:
        self.steps[step] = self.steps.get(step, 0.0) + seconds


# --- the Go builds


def build_kind(go: str) -> Path:
    """``go install sigs.k8s.io/kind@KIND_VERSION`` (and its source into the module cache)."""
    out = kind_binary()
    if not out.exists():
        env = go_env()
        env["GOBIN"] = str(kind_bin_dir())
        _run(
            [go, "install", "-trimpath", "-ldflags", "-s -w", f"sigs.k8s.io/kind@{KIND_VERSION}"],
            f"go install kind {KIND_VERSION}",
            env=env,
        )
    if not kind_source_dir().is_dir():
        _run([go, "mod", "download", f"sigs.k8s.io/kind@{KIND_VERSION}"], "kind module source")
    return out


def build_crictl(go: str) -> Path:
    """crictl from sigs.k8s.io/cri-tools (go install works: its go.mod has no replace)."""
    out = kind_bin_dir() / "crictl"
    if not out.exists():
        env = go_env()
        env["GOBIN"] = str(kind_bin_dir())
        pkg = f"sigs.k8s.io/cri-tools/cmd/crictl@{CRICTL_VERSION}"
        _run([go, "install", "-trimpath", "-ldflags", "-s -w", pkg], "go install crictl", env=env)
    return out


def build_go_programs(go: str) -> None:
    """etcd, CoreDNS and local-path-provisioner from devcluster/kind's modules."""
    for rel, name, package in GO_BUILDS:
        out = kind_bin_dir() / name
        if out.exists():
            continue
        argv = [go, "build", "-trimpath", "-ldflags", "-s -w", "-o", str(out), package]
        _run(argv, f"go build {name}", cwd=project_kind_dir() / rel)


def build_k8s_binaries(go: str, names: Sequence[str]) -> None:
    """The missing Kubernetes commands in ONE go build (shared packages compile once, both cores
    busy), with the same flags, module and caches as ``devcluster build``."""
    missing = [name for name in names if not config.binary(name).exists()]
    if not missing:
        return
    config.bin_dir().mkdir(parents=True, exist_ok=True)
    argv = [
        go,
        "build",
        "-trimpath",
        "-ldflags",
        build.ldflags(),
        "-o",
        str(config.bin_dir()) + "/",
    ]
    argv += [f"k8s.io/kubernetes/cmd/{name}" for name in missing]
    _run(argv, f"go build {' '.join(missing)}", cwd=config.go_module_dir(), env=build.go_env())


def check_pins(images: Sequence[str]) -> None:
    """etcd and CoreDNS are built at the versions kubeadm asks for (devcluster/kind/go/*/go.mod)."""
    for ref in images:
        target = image_target(ref)
        module = PINNED_MODULES.get(target)
        if module is None:
            continue
        want = module_version(split_image(ref)[1])
        go_mod = (project_kind_dir() / "go" / target / "go.mod").read_text()
        have = required_version(go_mod, module)
        if have != want:
            raise KindBuildError(
                f"kubeadm {config.KUBE_VERSION} wants {ref} but devcluster/kind/go/{target}/go.mod "
                f"pins {module} {have}: `go get -tool {module}@{want}` there"
            )


# --- the build context and the images


def kubeadm_image_list() -> list[str]:
    """``kubeadm config images list`` for the pinned release (what kind's build asks the node)."""
    argv = [
        str(config.binary("kubeadm")),
        "config",
        "images",
        "list",
        "--kubernetes-version",
        config.KUBE_VERSION,
    ]
    proc = subprocess.run(argv, capture_output=True, text=True)
    if proc.returncode != 0:
        raise KindBuildError(f"kubeadm config images list failed: {proc.stderr.strip()}")
    return [line.strip() for line in proc.stdout.splitlines() if line.strip()]


def kind_manifests() -> tuple[str, str, list[str]]:
    """kind's default CNI and storage manifests and the images to preload (from its source).

    The CNI manifest is written where kind expects it, but its kindnetd image is not built or
    preloaded: clusters turn it off (``disableDefaultCNI``), so nothing asks for it."""
    src = kind_source_dir() / "pkg" / "build" / "nodeimage"
    cni = (src / "const_cni.go").read_text()
    storage = (src / "const_storage.go").read_text()
    images = [
        go_const(storage, "storageProvisionerImage"),
        go_const(storage, "storageHelperImage"),
    ]
    return go_const(cni, "defaultCNIManifest"), go_const(storage, "defaultStorageManifest"), images


def install_helpers() -> None:
    """The two shell helpers kind needs on this machine, at stable paths in the cache (the
    engine's ``kind-runc`` runtime and kind's PATH point there, not into a checkout)."""
    for src, dst in (
        (project_kind_dir() / "runc-without-sys-resource", runc_wrapper()),
        (project_kind_dir() / "docker-for-kind", shim_dir() / "docker"),
    ):
        _write_if_changed(dst, src.read_text(), 0o755)


def _link(src: Path, dst: Path) -> None:
    """Hard-link (same file system, no copy) or copy ``src`` to ``dst`` unless it is there."""
    if dst.exists() and dst.stat().st_ino == src.stat().st_ino:
        return
    dst.unlink(missing_ok=True)
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _write_if_changed(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    path.chmod(mode)


def assemble_context(cni_manifest: str, storage_manifest: str) -> Path:
    """The node image's build context: kind's base files, binaries, /kind files."""
    ctx = node_dir() / "context"
    files = kind_source_dir() / "images" / "base" / "files"
    for src in sorted(files.rglob("*")):
        if src.is_file():
            rel = src.relative_to(files).as_posix()
            _write_if_changed(ctx / "base-files" / rel, src.read_text(), base_file_mode(rel))
    for name in (*K8S_NODE_BINARIES, *K8S_IMAGE_BINARIES):
        _link(config.binary(name), ctx / "bin" / name)
    for _, name, _ in GO_BUILDS:
        _link(kind_bin_dir() / name, ctx / "bin" / name)
    _link(kind_bin_dir() / "crictl", ctx / "bin" / "crictl")
    _write_if_changed(ctx / "kind" / "version", config.KUBE_VERSION)
    _write_if_changed(ctx / "kind" / "manifests" / "default-cni.yaml", cni_manifest)
    _write_if_changed(ctx / "kind" / "manifests" / "default-storage.yaml", storage_manifest)
    (ctx / "images").mkdir(parents=True, exist_ok=True)
    return ctx


def _docker_build(
    dockerfile: Path, ctx: Path, tag: str, base_image: str, target: str | None, log: Path
) -> float:
    from devcluster.images import engine, paths

    argv = [
        paths.DOCKER,
        "build",
        "--network=host",
        "--progress=plain",
        f"--build-arg=BASE_IMAGE={base_image}",
        f"--file={dockerfile}",
        f"--tag={tag}",
    ]
    if target:
        argv.append(f"--target={target}")
    argv.append(str(ctx))
    return _run(argv, f"docker build {tag}", env=engine.docker_env(), log=log)


def _image_id(ref: str) -> str:
    from devcluster.images import engine

    return engine.docker(
        "image", "inspect", "--format", "{{.Id}}", ref, capture=True
    ).stdout.strip()


def archive_name(ref: str) -> str:
    """The docker-archive file of one preloaded image in the context's images/ directory."""
    repo, tag = split_image(ref)
    return re.sub(r"[^A-Za-z0-9_.-]", "_", f"{repo.rsplit('/', 1)[-1]}-{tag}") + ".tar"


def build_preload_images(ctx: Path, refs: Sequence[str], base_image: str, timings: Timings) -> None:
    """Build every preloaded image and save each to ``ctx/images`` when its image id changed."""
    from devcluster.images import engine, paths
    from devcluster.kube import pause

    logs = node_dir() / "logs"
    dockerfile = project_kind_dir() / "Dockerfile.images"
    for ref in refs:
        target = image_target(ref)
        if target == "pause":
            with pause.pause_archive().open("rb") as archive:
                subprocess.run(
                    [paths.DOCKER, "load"],
                    stdin=archive,
                    env=engine.docker_env(),
                    check=True,
                    capture_output=True,
                )
            engine.docker("tag", pause.PAUSE_IMAGE, ref, capture=True)
            continue
        timings.add(
            "component images",
            _docker_build(dockerfile, ctx, ref, base_image, target, logs / f"image-{target}.log"),
        )
    ids_file = ctx / "images.json"
    saved: dict[str, str] = json.loads(ids_file.read_text()) if ids_file.exists() else {}
    wanted = {archive_name(ref) for ref in refs}
    for stale in (ctx / "images").glob("*.tar"):
        if stale.name not in wanted:
            stale.unlink()
    started = time.monotonic()
    for ref in refs:
        image_id = _image_id(ref)
        out = ctx / "images" / archive_name(ref)
        if saved.get(ref) == image_id and out.exists():
            continue
        tmp = out.with_suffix(".tmp")
        engine.docker("save", "--output", str(tmp), ref, capture=True)
        tmp.replace(out)
        saved[ref] = image_id
        ids_file.write_text(json.dumps(saved, indent=1, sort_keys=True) + "\n")
    timings.add("docker save", time.monotonic() - started)


@contextmanager
def _engine_lock() -> Iterator[None]:
    """The same lock `python -m devcluster.images` holds around engine start and builds."""
    from devcluster.images import paths

    paths.docker_dir().mkdir(parents=True, exist_ok=True)
    with (paths.docker_dir() / "images.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def build_all() -> Path:
    """Build kind and the node image; returns the kind binary. Prints timings per step."""
    from devcluster.images import base, engine

    timings = Timings({})
    started = time.monotonic()
    go = build.check_go()
    for command, package in (
        ("gcc", "gcc"),  # the pause binary
        ("/usr/lib/x86_64-linux-gnu/libc.a", "libc6-dev"),
        ("jq", "jq"),  # runc-without-sys-resource
    ):
        build.ensure_apt_package(command, package)

    step = time.monotonic()
    build_kind(go)
    build_crictl(go)
    build_go_programs(go)
    timings.add("go: kind, crictl, etcd, coredns, local-path", time.monotonic() - step)
    step = time.monotonic()
    build_k8s_binaries(go, (*K8S_IMAGE_BINARIES, *K8S_NODE_BINARIES))
    timings.add("go: kubernetes", time.monotonic() - step)

    install_helpers()
    cni, storage, kind_images = kind_manifests()
    sandbox = sandbox_image(
        (kind_source_dir() / "images/base/files/etc/containerd/config.toml").read_text()
    )
    refs = preload_images(kubeadm_image_list(), sandbox, kind_images)
    check_pins(refs)
    print("kind build: preloading " + ", ".join(refs), flush=True)
    ctx = assemble_context(cni, storage)

    with _engine_lock():
        step = time.monotonic()
        engine.start()
        base_image = base.ensure_base_image()
        timings.add("engine + base image", time.monotonic() - step)
        build_preload_images(ctx, refs, base_image, timings)
        timings.add(
            "node image",
            _docker_build(
                project_kind_dir() / "Dockerfile.node",
                ctx,
                NODE_IMAGE,
                base_image,
                "node",
                node_dir() / "logs" / "node.log",
            ),
        )
    size = int(
        engine.docker(
            "image", "inspect", "--format", "{{.Size}}", NODE_IMAGE, capture=True
        ).stdout.strip()
    )
    for name, seconds in timings.steps.items():
        print(f"kind build:   {name:<55} {seconds:6.0f}s")
    print(
        f"kind build: {kind_binary()} ({KIND_VERSION}) and {NODE_IMAGE} "
        f"({size / 1e6:.0f} MB) in {time.monotonic() - started:.0f}s",
        flush=True,
    )
    return kind_binary()


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m devcluster.kube.kindnode build|env``."""
    parser = argparse.ArgumentParser(
        prog="python -m devcluster.kube.kindnode",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("command", choices=("build", "env"))
    args = parser.parse_args(argv)
    if args.command == "env":
        from devcluster.images import paths

        print(f"export DOCKER_HOST={paths.docker_host()}")
        print(f"export KIND={kind_binary()}")
        print(f"export KIND_IMAGE={NODE_IMAGE}")
        print(f"export PATH={shim_dir()}:$PATH  # kind's docker: devcluster/kind/docker-for-kind")
        return 0
    try:
        build_all()
    except (
        KindBuildError,
        build.BuildError,
        RuntimeError,
        OSError,
        subprocess.CalledProcessError,
    ) as exc:
        print(f"kind build: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
