"""Fixtures for the image tests: the private Docker engine and the images `make images` built."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from images_testlib import docker, free_port

from devcluster.images import engine, paths


@pytest.fixture(scope="session")
def docker_engine() -> None:
    """The private engine must be up; a missing engine fails loudly (never skips)."""
    if not engine.is_running():
        pytest.fail(
            f"the private Docker engine does not answer at {paths.docker_host()}: "
            "run `make images` (it starts the engine and builds the images)"
        )


def _require_image(tag: str) -> str:
    if docker("image", "inspect", tag, check=False).returncode != 0:
        pytest.fail(f"image {tag} is not in the private engine: run `make images`")
    return tag


@pytest.fixture(scope="session")
def server_image(docker_engine: None) -> str:
    """The tag of the built model server image."""
    return _require_image(paths.SERVER_IMAGE)


@pytest.fixture(scope="session")
def slim_image(docker_engine: None) -> str:
    """The tag of the built slim model server image (ONNX graphs only)."""
    return _require_image(paths.SERVER_SLIM_IMAGE)


@pytest.fixture(scope="session")
def operator_image(docker_engine: None) -> str:
    """The tag of the built operator image."""
    return _require_image(paths.OPERATOR_IMAGE)


@pytest.fixture(scope="session")
def iris_artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An iris artifact trained by the project's trainer, readable by the container's user."""
    out = tmp_path_factory.mktemp("image-artifact") / "iris"
    trainer = str(Path(sys.executable).parent / "mlmodel-train")
    subprocess.run([trainer, "train", "--dataset", "iris", "--out", str(out)], check=True)
    out.chmod(0o755)
    for item in out.iterdir():
        item.chmod(0o644)
    return out


@pytest.fixture
def container_name(request: pytest.FixtureRequest) -> Iterator[str]:
    """A unique container name, force-removed after the test."""
    name = f"mlmodel-test-{request.node.name[:40].replace('[', '-').replace(']', '')}-{free_port()}"
    yield name
    docker("rm", "--force", name, check=False)
