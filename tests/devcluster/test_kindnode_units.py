"""The pure parts of the kind node image build (devcluster.kube.kindnode): no Go, no Docker."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from devcluster.kube import kindnode

CONST_GO = """package nodeimage

const kindnetdImage = "docker.io/kindest/kindnetd:v20260820-69b56db7"

var defaultCNIImages = []string{kindnetdImage}

const defaultCNIManifest = `
kind: DaemonSet
spec:
  containers:
  - name: kindnet-cni
    image: ` + kindnetdImage + `
    env: {{ .PodSubnet }}
`

const (
	kubernetesVersionLocation = "/kind/version"
	quoted = "a\\tb"
)
"""


def test_go_const_reads_quoted_raw_and_concatenated_strings() -> None:
    assert kindnode.go_const(CONST_GO, "kindnetdImage") == (
        "docker.io/kindest/kindnetd:v20260820-69b56db7"
    )
    manifest = kindnode.go_const(CONST_GO, "defaultCNIManifest")
    assert "image: docker.io/kindest/kindnetd:v20260820-69b56db7\n" in manifest
    assert "{{ .PodSubnet }}" in manifest  # kind templates it at create time, not the build
    assert manifest.startswith("\nkind: DaemonSet")
    assert kindnode.go_const(CONST_GO, "kubernetesVersionLocation") == "/kind/version"
    assert kindnode.go_const(CONST_GO, "quoted") == "a\tb"
    with pytest.raises(kindnode.KindBuildError):
        kindnode.go_const(CONST_GO, "missing")


def test_sandbox_image_is_read_like_kind_does() -> None:
    toml = '[plugins."io.containerd.grpc.v1.cri"]\n  sandbox_image = "registry.k8s.io/pause:3.10"\n'
    assert kindnode.sandbox_image(toml) == "registry.k8s.io/pause:3.10"
    with pytest.raises(kindnode.KindBuildError):
        kindnode.sandbox_image("version = 2\n")


def test_preload_list_swaps_kubeadms_pause_for_the_sandbox_image() -> None:
    kubeadm = [
        "registry.k8s.io/kube-apiserver:v1.36.2",
        "registry.k8s.io/coredns/coredns:v1.14.2",
        "registry.k8s.io/pause:3.10.2",
        "registry.k8s.io/etcd:3.6.8-0",
    ]
    refs = kindnode.preload_images(
        kubeadm, "registry.k8s.io/pause:3.10", ["docker.io/kindest/kindnetd:v1"]
    )
    assert refs == [
        "registry.k8s.io/kube-apiserver:v1.36.2",
        "registry.k8s.io/coredns/coredns:v1.14.2",
        "registry.k8s.io/etcd:3.6.8-0",
        "registry.k8s.io/pause:3.10",
        "docker.io/kindest/kindnetd:v1",
    ]
    assert [kindnode.image_target(ref) for ref in refs] == [
        "kube-apiserver",
        "coredns",
        "etcd",
        "pause",
        "kindnetd",
    ]


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("registry.k8s.io/etcd:3.6.8-0", ("registry.k8s.io/etcd", "3.6.8-0")),
        ("localhost:5000/x", ("localhost:5000/x", "latest")),
        ("localhost:5000/x:v1", ("localhost:5000/x", "v1")),
    ],
)
def test_split_image(ref: str, expected: tuple[str, str]) -> None:
    assert kindnode.split_image(ref) == expected


def test_module_versions_from_image_tags_and_go_mod() -> None:
    assert kindnode.module_version("3.6.8-0") == "v3.6.8"
    assert kindnode.module_version("v1.14.2") == "v1.14.2"
    go_mod = "module x\n\nrequire (\n\tgo.etcd.io/etcd/server/v3 v3.6.8 // indirect\n)\n"
    assert kindnode.required_version(go_mod, "go.etcd.io/etcd/server/v3") == "v3.6.8"
    assert kindnode.required_version(go_mod, "github.com/coredns/coredns") is None


def test_the_project_pins_what_kubeadm_asks_for() -> None:
    """devcluster/kind/go/*/go.mod agree with kubeadm v1.36's DefaultEtcdVersion/CoreDNSVersion."""
    kindnode.check_pins(["registry.k8s.io/etcd:3.6.8-0", "registry.k8s.io/coredns/coredns:v1.14.2"])
    with pytest.raises(kindnode.KindBuildError, match="go get -tool"):
        kindnode.check_pins(["registry.k8s.io/etcd:3.6.9-0"])


def test_base_file_modes_follow_kinds_dockerfile() -> None:
    assert kindnode.base_file_mode("usr/local/bin/entrypoint") == 0o755
    assert kindnode.base_file_mode("kind/bin/mount-product-files.sh") == 0o755
    assert kindnode.base_file_mode("kind/README.txt") == 0o644
    assert kindnode.base_file_mode("etc/containerd/config.toml") == 0o644


def test_goproxy_never_falls_back_to_vcs_hosts() -> None:
    assert kindnode.proxy_only("https://proxy.golang.org,direct") == "https://proxy.golang.org"
    assert kindnode.proxy_only("https://a|https://b,off") == "https://a,https://b"
    assert kindnode.proxy_only("direct") == "https://proxy.golang.org"


def test_archive_names_are_distinct_file_names() -> None:
    names = {
        kindnode.archive_name(ref)
        for ref in (
            "registry.k8s.io/kube-apiserver:v1.36.2",
            "registry.k8s.io/coredns/coredns:v1.14.2",
            "docker.io/kindest/local-path-helper:v20260131-7181c60a",
        )
    }
    assert names == {
        "kube-apiserver-v1.36.2.tar",
        "coredns-v1.14.2.tar",
        "local-path-helper-v20260131-7181c60a.tar",
    }


def test_cache_layout_is_keyed_by_versions(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MLMODEL_CACHE_DIR", str(tmp_path))
    assert kindnode.kind_binary() == tmp_path / f"kind-{kindnode.KIND_VERSION}" / "bin" / "kind"
    assert kindnode.node_dir().name == "node-v1.36.2"
    assert kindnode.NODE_IMAGE == "kindest/node:v1.36.2"


# --- devcluster/kind's two shell helpers, run against fakes (no Docker, no runc)

KIND_DIR = Path(__file__).resolve().parents[2] / "devcluster" / "kind"


def _fake(tmp_path: Path, name: str) -> Path:
    """An executable that prints its arguments one per line."""
    path = tmp_path / name
    path.write_text('#!/bin/sh\nfor a in "$@"; do echo "$a"; done\n')
    path.chmod(0o755)
    return path


def _run_shim(tmp_path: Path, args: list[str], **env: str) -> list[str]:
    fake = _fake(tmp_path, "docker")
    environ = {"PATH": "/usr/bin:/bin", "KIND_REAL_DOCKER": str(fake), **env}
    out = subprocess.run(
        [str(KIND_DIR / "docker-for-kind"), *args],
        env=environ,
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.splitlines()


def test_docker_for_kind_runs_nodes_on_the_kind_runtime_without_host_dns(tmp_path: Path) -> None:
    worker = ["run", "--name", "c-worker", "--label", "io.x-k8s.kind.role=worker", "kindest/node"]
    assert _run_shim(tmp_path, worker) == [
        "run",
        "--runtime=kind-runc",
        "--dns",
        "127.0.0.1",
        *worker[1:],
    ]
    # everything but `run` passes through untouched
    assert _run_shim(tmp_path, ["inspect", "x"]) == ["inspect", "x"]


def test_docker_for_kind_pins_the_control_plane_address_when_asked(tmp_path: Path) -> None:
    cp = ["run", "--label", "io.x-k8s.kind.role=control-plane", "kindest/node"]
    out = _run_shim(tmp_path, cp, KIND_CONTROL_PLANE_IP="10.89.0.10")
    assert out[:7] == [
        "run",
        "--runtime=kind-runc",
        "--dns",
        "127.0.0.1",
        "--ip",
        "10.89.0.10",
        "--label",
    ]
    assert out[7] == "desktop.docker.io/ports/6443/tcp=10.89.0.10:6443"
    assert out[8:] == cp[1:]
    # a worker never gets the address
    worker = ["run", "--label", "io.x-k8s.kind.role=worker", "kindest/node"]
    assert "--ip" not in _run_shim(tmp_path, worker, KIND_CONTROL_PLANE_IP="10.89.0.10")


def _host_has_sys_resource() -> bool:
    status = Path("/proc/self/status").read_text()
    bounding = int(status.split("CapBnd:")[1].split()[0], 16)
    return bool(bounding >> 24 & 1)


@pytest.mark.skipif(shutil.which("jq") is None, reason="needs jq (Debian's, as on the hosts)")
def test_runc_wrapper_drops_only_cap_sys_resource(tmp_path: Path) -> None:
    caps = ["CAP_CHOWN", "CAP_SYS_RESOURCE", "CAP_NET_ADMIN"]
    spec = {"process": {"capabilities": {k: caps for k in ("bounding", "effective")}}}
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "config.json").write_text(json.dumps(spec))
    exec_spec = tmp_path / "process.json"
    exec_spec.write_text(json.dumps({"capabilities": {"permitted": caps}, "args": ["sh"]}))
    fake = _fake(tmp_path, "runc")
    wrapper = str(KIND_DIR / "runc-without-sys-resource")
    env = {"PATH": "/usr/bin:/bin", "REAL_RUNC": str(fake)}
    args = ["--root", "/run/x", "create", "--bundle", str(bundle), "id1"]
    out = subprocess.run([wrapper, *args], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.splitlines() == args  # the real runc gets the same arguments
    exec_args = ["exec", "--process", str(exec_spec), "--detach", "id1"]
    subprocess.run([wrapper, *exec_args], env=env, check=True, capture_output=True)
    created = json.loads((bundle / "config.json").read_text())["process"]["capabilities"]
    executed = json.loads(exec_spec.read_text())
    if _host_has_sys_resource():  # the wrapper only acts where the host lacks the capability
        assert created["bounding"] == caps and executed["capabilities"]["permitted"] == caps
    else:
        assert created == {k: ["CAP_CHOWN", "CAP_NET_ADMIN"] for k in ("bounding", "effective")}
        assert executed == {
            "capabilities": {"permitted": ["CAP_CHOWN", "CAP_NET_ADMIN"]},
            "args": ["sh"],
        }
