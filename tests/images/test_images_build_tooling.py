"""Unit tier: the base image recipe reads the apt mirror, build commands keep the CA secret."""

from __future__ import annotations

import subprocess
import tomllib
from pathlib import Path

import pytest

from devcluster.images import base, build, engine, paths

DEB822 = """\
Types: deb
# a comment
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main
"""


def test_debian_mirror_is_read_from_deb822_sources(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "debian.sources").write_text(DEB822)
    monkeypatch.setattr(base, "SOURCES_DIR", tmp_path)
    monkeypatch.setattr(base, "SOURCES_LIST", tmp_path / "missing.list")
    assert base.debian_mirror() == "http://mirror.example/debian"


def test_debian_mirror_falls_back_to_sources_list(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sources_list = tmp_path / "sources.list"
    sources_list.write_text("deb [arch=amd64] http://mirror.example/d bookworm main\n")
    monkeypatch.setattr(base, "SOURCES_DIR", tmp_path / "none")
    monkeypatch.setattr(base, "SOURCES_LIST", sources_list)
    assert base.debian_mirror() == "http://mirror.example/d"


def test_missing_bookworm_source_names_the_files_it_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(base, "SOURCES_DIR", tmp_path)
    monkeypatch.setattr(base, "SOURCES_LIST", tmp_path / "sources.list")
    with pytest.raises(RuntimeError, match=r"bookworm.*sources"):
        base.debian_mirror()


def test_build_command_uses_host_network_base_arg_and_ca_secret(tmp_path: Path) -> None:
    argv = build.build_command(build.IMAGES["server"], tmp_path, "local/base:1")
    assert argv[0] == paths.DOCKER
    assert "--network=host" in argv
    assert "--build-arg=BASE_IMAGE=local/base:1" in argv
    assert f"--tag={paths.SERVER_IMAGE}" in argv
    if paths.HOST_CA_BUNDLE.is_file():
        assert f"--secret=id=ca,src={paths.HOST_CA_BUNDLE}" in argv
    assert not any(arg.startswith("--build-arg=") and "cert" in arg.lower() for arg in argv)
    assert argv[-1] == str(tmp_path / ".")
    assert not any(arg.startswith("--build-arg=VARIANT") for arg in argv)  # full by default
    slim = build.build_command(build.IMAGES["server-slim"], tmp_path, "local/base:1")
    assert "--build-arg=VARIANT=slim" in slim and f"--tag={paths.SERVER_SLIM_IMAGE}" in slim


def test_private_engine_paths_live_under_the_cache_not_tcp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLMODEL_CACHE", str(tmp_path))
    assert paths.docker_host() == f"unix://{tmp_path}/docker/docker.sock"
    assert paths.base_cache_dir() == tmp_path / f"base-image-{paths.BASE_VERSION}"


def test_repo_root_is_found_from_a_subdirectory() -> None:
    here = Path(__file__).resolve().parent
    assert (build.repo_root(here) / "Dockerfile.server").is_file()


def test_private_dockerd_listens_on_a_unix_socket_only_and_leaves_host_networking_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLMODEL_CACHE", str(tmp_path))
    argv = engine.dockerd_argv()
    hosts = [arg.split("=", 1)[1] for arg in argv if arg.startswith(("--host=", "-H"))]
    assert hosts == [f"unix://{tmp_path}/docker/docker.sock"]
    assert not any("tcp://" in arg for arg in argv)
    for flag in ("--iptables=false", "--ip-masq=false", "--ip-forward=false", "--bridge=none"):
        assert flag in argv
    private = [
        arg for arg in argv if arg.startswith(("--data-root=", "--exec-root=", "--pidfile="))
    ]
    assert len(private) == 3
    assert all(arg.split("=", 1)[1].startswith(str(tmp_path)) for arg in private)
    assert f"--containerd={tmp_path}/docker/exec/containerd.sock" in argv


def test_private_containerd_has_no_cri_and_no_tcp_listeners(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLMODEL_CACHE", str(tmp_path))
    config = tomllib.loads(engine.containerd_config_text())
    assert config["root"].startswith(str(tmp_path))
    assert config["state"].startswith(str(tmp_path))
    assert config["grpc"]["address"] == f"{tmp_path}/docker/exec/containerd.sock"
    assert config["debug"]["address"] == ""
    assert config["metrics"]["address"] == ""
    assert "io.containerd.grpc.v1.cri" in config["disabled_plugins"]


def test_stop_never_signals_a_process_that_merely_reuses_a_recorded_pid(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLMODEL_CACHE", str(tmp_path))
    paths.docker_dir().mkdir(parents=True)
    bystander = subprocess.Popen(["sleep", "60"])
    try:
        for name in ("dockerd", "containerd"):
            (paths.docker_dir() / f"{name}.pid").write_text(f"{bystander.pid}\n")
        engine.stop()
        assert bystander.poll() is None, "engine.stop() signalled an unrelated process"
        assert not (paths.docker_dir() / "dockerd.pid").exists()
    finally:
        bystander.kill()
        bystander.wait()
