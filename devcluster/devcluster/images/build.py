"""Build the project's images from its Dockerfiles on the private engine."""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from devcluster.images import engine, paths


@dataclass(frozen=True)
class ImageSpec:
    """One image the project builds: its tag, Dockerfile and build context (repo-relative)."""

    name: str
    tag: str
    dockerfile: str
    context: str = "."
    build_args: tuple[tuple[str, str], ...] = ()


IMAGES: dict[str, ImageSpec] = {
    "server": ImageSpec("server", paths.SERVER_IMAGE, "Dockerfile.server"),
    # ONNX graphs only (artifacts' checked model.onnx): no scikit-learn; MLOP_SLIM_IMAGE.
    "server-slim": ImageSpec(
        "server-slim", paths.SERVER_SLIM_IMAGE, "Dockerfile.server", ".", (("VARIANT", "slim"),)
    ),
    "operator": ImageSpec("operator", paths.OPERATOR_IMAGE, "Dockerfile.operator"),
    # The seed guide's naive Dockerfile, only for the size comparison in bench/.
    "naive": ImageSpec(
        "naive", "mlmodel-seed-naive:dev", "bench/seed/Dockerfile.naive", "bench/seed"
    ),
}
DEFAULT_IMAGES = ("server", "server-slim", "operator")
BUILD_CACHE_KEEP = "6GB"


def repo_root(start: Path | None = None) -> Path:
    """The checkout that holds Dockerfile.server, searched upwards from `start` (default cwd)."""
    here = (start or Path.cwd()).resolve()
    for candidate in (here, *here.parents):
        if (candidate / "Dockerfile.server").is_file():
            return candidate
    raise RuntimeError(f"no Dockerfile.server in {here} or any parent: run from the checkout")


def build_command(spec: ImageSpec, root: Path, base_image: str) -> list[str]:
    """The `docker build` argv for `spec`: BuildKit, host network, CA bundle as a secret only."""
    argv = [
        paths.DOCKER,
        "build",
        "--network=host",  # the private engine has no bridge; RUN steps reach PyPI via the host
        "--progress=plain",
        f"--build-arg=BASE_IMAGE={base_image}",
        *(f"--build-arg={key}={value}" for key, value in spec.build_args),
        f"--file={root / spec.dockerfile}",
        f"--tag={spec.tag}",
    ]
    if paths.HOST_CA_BUNDLE.is_file():
        # A build secret is mounted only for the RUN steps that ask for it, never into a layer.
        argv.append(f"--secret=id=ca,src={paths.HOST_CA_BUNDLE}")
    argv.append(str(root / spec.context))
    return argv


def build_image(spec: ImageSpec, root: Path, base_image: str) -> float:
    """Build one image; returns seconds taken. On failure, raise with the log's last lines."""
    log = paths.docker_dir() / f"build-{spec.name}.log"
    started = time.monotonic()
    with log.open("w") as out:
        result = subprocess.run(
            build_command(spec, root, base_image),
            env=engine.docker_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            check=False,
        )
    elapsed = time.monotonic() - started
    if result.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-40:])
        raise RuntimeError(
            f"docker build of {spec.tag} from {spec.dockerfile} failed "
            f"(exit {result.returncode}); full log {log}, last lines:\n{tail}"
        )
    print(f"images: built {spec.tag} in {elapsed:.1f}s (log {log})", flush=True)
    return elapsed


def image_size_bytes(tag: str) -> int:
    """The image's size as the engine reports it (all layers, uncompressed)."""
    out = engine.docker("image", "inspect", "--format", "{{.Size}}", tag, capture=True).stdout
    return int(out.strip())


def prune() -> None:
    """Drop dangling images left by rebuilds and cap the build cache (keeps the data root small)."""
    engine.docker("image", "prune", "--force", capture=True)
    engine.docker("builder", "prune", "--force", f"--keep-storage={BUILD_CACHE_KEEP}", capture=True)
