"""Measure image builds on a throw-away private engine, so the developer's engine is untouched.

Cold: a fresh Docker data root and build cache (the base image re-imported from the cached
tarball; with --from-scratch, debootstrapped again). Warm: the same build again with nothing
changed, and after a one-line change in the model server's code (made in a copy of the tree).
Writes bench/results/images.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from devcluster.images import base, build, engine, paths

RESULTS = Path("bench/results/images.json")
# What the images' build context needs (mirrors .dockerignore's allow-list) plus the naive one.
CONTEXT_PATHS = (
    "pyproject.toml",
    "uv.lock",
    ".dockerignore",
    "Dockerfile.server",
    "Dockerfile.operator",
    "artifact",
    "trainer/pyproject.toml",
    "model-server",
    "operator",
    "devcluster/pyproject.toml",
    "docker/slim_image.py",
    "bench/seed",
)
TOUCHED = "model-server/model_server/__init__.py"


def _timed(step: Callable[[], object]) -> float:
    started = time.monotonic()
    step()
    return round(time.monotonic() - started, 1)


def copy_context(repo: Path, dest: Path) -> Path:
    """Copy the files the image builds read into `dest` (so the bench may edit them)."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".mypy_cache", ".ruff_cache")
    for rel in CONTEXT_PATHS:
        src, dst = repo / rel, dest / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst, ignore=ignore)
        else:
            shutil.copy2(src, dst)
    return dest


def measure(tree: Path, from_scratch: bool) -> dict[str, object]:
    """Run every measured step against the engine that `paths` currently points at."""
    times: dict[str, float] = {}
    if not from_scratch:
        paths.base_cache_dir().parent.mkdir(parents=True, exist_ok=True)
        paths.base_cache_dir().symlink_to(_shared_base_dir())
    times["engine_start_s"] = _timed(engine.start)
    times["base_image_s"] = _timed(base.ensure_base_image)
    images = build.IMAGES
    for name in ("server", "server-slim", "operator", "naive"):
        times[f"{name}_cold_s"] = build.build_image(images[name], tree, paths.BASE_IMAGE)
    times["server_warm_unchanged_s"] = build.build_image(images["server"], tree, paths.BASE_IMAGE)
    with (tree / TOUCHED).open("a") as source:
        source.write("# bench: a one-line code change\n")
    times["server_warm_code_change_s"] = build.build_image(images["server"], tree, paths.BASE_IMAGE)
    sizes = {spec.tag: build.image_size_bytes(spec.tag) for spec in images.values()}
    sizes[paths.BASE_IMAGE] = build.image_size_bytes(paths.BASE_IMAGE)
    return {
        "from_scratch": from_scratch,
        "times_s": {k: round(v, 1) for k, v in times.items()},
        "sizes_mb": {tag: round(size / 1e6) for tag, size in sizes.items()},
    }


def _shared_base_dir() -> Path:
    name: str = paths.base_cache_dir().name
    return Path.home() / ".cache" / "mlmodel-operator" / name


def render(result: dict[str, object]) -> str:
    """A plain-text table of the measurements."""
    lines = ["image sizes (uncompressed, as `docker images` reports):"]
    sizes = result["sizes_mb"]
    assert isinstance(sizes, dict)
    lines += [f"  {tag:<40} {mb:>6} MB" for tag, mb in sizes.items()]
    lines.append("build times (2 cores):")
    times = result["times_s"]
    assert isinstance(times, dict)
    lines += [f"  {step:<40} {sec:>6.1f} s" for step, sec in times.items()]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Measure on a temporary engine, print the table, write bench/results/images.json."""
    parser = argparse.ArgumentParser(prog="python -m bench.images", description=__doc__)
    parser.add_argument("--from-scratch", action="store_true", help="debootstrap the base too")
    args = parser.parse_args(argv)
    repo = build.repo_root()
    with tempfile.TemporaryDirectory(prefix="bench-images-") as tmp:
        previous = os.environ.get("MLMODEL_CACHE")
        os.environ["MLMODEL_CACHE"] = str(Path(tmp) / "cache")
        try:
            tree = copy_context(repo, Path(tmp) / "tree")
            result = measure(tree, args.from_scratch)
        finally:
            engine.stop()
            if previous is None:
                os.environ.pop("MLMODEL_CACHE")
            else:
                os.environ["MLMODEL_CACHE"] = previous
    print(render(result))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS}")
    return 0
