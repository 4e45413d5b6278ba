"""`python -m devcluster.images COMMAND`: up | base | build [NAME...] | status | env | down."""

from __future__ import annotations

import argparse
import fcntl
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from devcluster.images import base, build, engine, paths


@contextmanager
def _locked() -> Iterator[None]:
    """Serialise engine start and builds between concurrent callers (e.g. two `make images`)."""
    paths.docker_dir().mkdir(parents=True, exist_ok=True)
    with (paths.docker_dir() / "images.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def cmd_up(_: argparse.Namespace) -> int:
    """Start the private engine and make sure the base image is in it."""
    with _locked():
        engine.start()
        base.ensure_base_image()
    print(f"images: engine up at {paths.docker_host()}", flush=True)
    return 0


def cmd_base(_: argparse.Namespace) -> int:
    """Ensure the base image (debootstrap only when neither image nor cached tarball exist)."""
    return cmd_up(_)


def cmd_build(args: argparse.Namespace) -> int:
    """Build the named images (default: server and operator) from the checkout."""
    names = args.names or list(build.DEFAULT_IMAGES)
    unknown = sorted(set(names) - set(build.IMAGES))
    if unknown:
        print(f"images: unknown image {', '.join(unknown)}; known: {', '.join(build.IMAGES)}")
        return 2
    root = build.repo_root()
    with _locked():
        engine.start()
        base_image = base.ensure_base_image()
        for name in names:
            build.build_image(build.IMAGES[name], root, base_image)
        build.prune()
    return 0


def cmd_status(_: argparse.Namespace) -> int:
    """Print whether the engine answers and which project images it holds; 1 when down."""
    if not engine.is_running():
        print(f"images: engine not running ({paths.docker_host()})")
        return 1
    print(f"images: engine running at {paths.docker_host()}")
    for tag in (paths.BASE_IMAGE, *(spec.tag for spec in build.IMAGES.values())):
        state = "present" if base.image_exists(tag) else "missing"
        print(f"  {tag}: {state}")
    return 0


def cmd_env(_: argparse.Namespace) -> int:
    """Print the shell line that points a docker client at the private engine."""
    print(f"export DOCKER_HOST={paths.docker_host()}")
    return 0


def cmd_down(_: argparse.Namespace) -> int:
    """Stop the private dockerd and containerd (images stay in the data root)."""
    with _locked():
        engine.stop()
    print("images: engine stopped", flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line and run one command."""
    parser = argparse.ArgumentParser(prog="python -m devcluster.images", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, func in (
        ("up", cmd_up),
        ("base", cmd_base),
        ("status", cmd_status),
        ("env", cmd_env),
        ("down", cmd_down),
    ):
        sub.add_parser(name, help=(func.__doc__ or "").splitlines()[0]).set_defaults(run=func)
    build_parser = sub.add_parser("build", help=(cmd_build.__doc__ or "").splitlines()[0])
    build_parser.add_argument("names", nargs="*", metavar="NAME", help=", ".join(build.IMAGES))
    build_parser.set_defaults(run=cmd_build)
    args = parser.parse_args(argv)
    try:
        code: int = args.run(args)
    except (RuntimeError, OSError) as exc:
        print(f"images: {exc}", file=sys.stderr)
        return 1
    return code
