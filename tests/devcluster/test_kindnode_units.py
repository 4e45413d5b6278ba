"""The pure parts of the kind node image build (devcluster.kindnode): no Go, no Docker."""

from __future__ import annotations

from pathlib import Path

import pytest

from devcluster import kindnode

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
