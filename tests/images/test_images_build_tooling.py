"""Unit tier: the base image recipe reads the apt mirror, build commands keep the CA secret."""

from __future__ import annotations

from pathlib import Path

import pytest

from devcluster.images import base, build, paths

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


def test_private_engine_paths_live_under_the_cache_not_tcp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLMODEL_CACHE", str(tmp_path))
    assert paths.docker_host() == f"unix://{tmp_path}/docker/docker.sock"
    assert paths.base_cache_dir() == tmp_path / f"base-image-{paths.BASE_VERSION}"


def test_repo_root_is_found_from_a_subdirectory() -> None:
    here = Path(__file__).resolve().parent
    assert (build.repo_root(here) / "Dockerfile.server").is_file()
