"""``python -m devcluster build|up|down|status|env|load-image``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from devcluster import config
from devcluster.kube import build, controlplane, state


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="devcluster", description=__doc__)
    parser.add_argument(
        "--dir",
        type=Path,
        default=None,
        help=f"state directory (default: $DEVCLUSTER_DIR or {config.default_state_dir()})",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="build the pinned Kubernetes binaries and kwok into the cache")
    b.add_argument("--node", action="store_true", help="also kubelet, kube-proxy, metrics-server")
    u = sub.add_parser("up", help="start the cluster (idempotent when it is already up)")
    u.add_argument("--fake-nodes", type=int, default=0, metavar="N", help="kwok-simulated nodes")
    u.add_argument("--node", action="store_true", help="also one real node (containerd, kubelet)")
    u.add_argument("--timeout", type=float, default=controlplane.READY_TIMEOUT)
    sub.add_parser("down", help="stop every process that up started")
    sub.add_parser("status", help="phase and processes (JSON)")
    sub.add_parser("env", help="print `export KUBECONFIG=...` for the shell")
    li = sub.add_parser("load-image", help="copy a local Docker image into the node's containerd")
    li.add_argument("image", help="e.g. mlmodel-server:dev")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns the exit status."""
    args = _parser().parse_args(argv)
    layout = controlplane.layout_for(args.dir)
    try:
        return _dispatch(args, layout)
    except (controlplane.ClusterError, state.ClusterBusyError) as exc:
        print(str(exc), file=sys.stderr)
        return 1


def _dispatch(args: argparse.Namespace, layout: state.Layout) -> int:
    if args.command == "build":
        return build.main(node=args.node)
    if args.command == "up":
        if args.fake_nodes < 0:
            print("--fake-nodes must be >= 0", file=sys.stderr)
            return 2
        options = controlplane.UpOptions(args.fake_nodes, args.node, args.timeout)
        controlplane.up_with_retry(layout, options)
        return 0
    if args.command == "down":
        controlplane.down(layout)
        return 0
    if args.command == "status":
        info = controlplane.status(layout)
        print(json.dumps(info, indent=2))
        return 0 if info["phase"] == "up" else 3
    if args.command == "env":
        if not controlplane.is_running(layout):
            print(f"# no devcluster is running in {layout.root}", file=sys.stderr)
            return 3
        print(f"export KUBECONFIG={layout.kubeconfig}")
        return 0
    if args.command == "load-image":
        return _load_image(layout, args.image)
    raise AssertionError(args.command)


def _load_image(layout: state.Layout, image: str) -> int:
    recorded = state.load(layout)
    if recorded is None or not recorded.node or not controlplane.is_running(layout):
        print(
            f"no devcluster with a node runs in {layout.root}: `up --node` first", file=sys.stderr
        )
        return 3
    from devcluster.kube import node

    try:
        stored = node.load_image(layout, image)
    except RuntimeError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    print(f"loaded {image} as {stored}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
