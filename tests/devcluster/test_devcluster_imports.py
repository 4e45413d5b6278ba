"""devcluster's modules import each other without a cycle (imports inside functions included:
a cycle hidden in a function is still one a reader has to untangle), and its three jobs stay
layered: ``stack`` builds on ``kube`` and ``images``, ``kube`` may use ``images``, ``images``
stands alone, and the shared top-level modules never reach into ``stack``."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "devcluster" / "devcluster"


def import_graph(package: Path) -> dict[str, set[str]]:
    """Module -> the package's modules it imports, anywhere in its source."""
    modules = {}
    for path in package.rglob("*.py"):
        parts = path.relative_to(package).with_suffix("").parts
        name = ".".join(("devcluster", *parts)).removesuffix(".__init__")
        modules[name] = path
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("devcluster"):
                for alias in node.names:
                    full = f"{node.module}.{alias.name}"
                    graph[name].add(full if full in modules else str(node.module))
            elif isinstance(node, ast.Import):
                graph[name] |= {a.name for a in node.names if a.name.startswith("devcluster")}
        graph[name].discard(name)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every cycle a depth-first walk meets, as the path that closes it."""
    found: list[list[str]] = []
    done: set[str] = set()

    def walk(name: str, path: list[str]) -> None:
        if name in path:
            found.append([*path[path.index(name) :], name])
            return
        if name in done:
            return
        for target in sorted(graph.get(name, ())):
            walk(target, [*path, name])
        done.add(name)

    for name in sorted(graph):
        walk(name, [])
    return found


def test_the_cycle_finder_finds_a_cycle_through_a_function_level_import() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c", "a"]]


def test_devcluster_modules_import_each_other_without_a_cycle() -> None:
    graph = import_graph(PACKAGE)
    assert "devcluster.kube.controlplane" in graph["devcluster.pytest_plugin"]  # the graph is read
    assert cycles(graph) == []


def layer(module: str) -> str:
    """``kube``, ``images`` or ``stack`` for a subpackage's module, ``top`` for the rest."""
    parts = module.split(".")
    return parts[1] if len(parts) > 2 and parts[1] in ("kube", "images", "stack") else "top"


FORBIDDEN = {"kube": {"stack"}, "images": {"kube", "stack"}, "top": {"stack"}}
"""Which layers each layer must not import."""


def layering_violations(graph: dict[str, set[str]]) -> list[str]:
    return sorted(
        f"{name} -> {target}"
        for name, targets in graph.items()
        for target in targets
        if layer(target) in FORBIDDEN.get(layer(name), set())
    )


def test_the_layer_check_finds_an_import_against_the_layers() -> None:
    graph = {
        "devcluster.kube.node": {"devcluster.images.engine", "devcluster.stack.mlstack"},
        "devcluster.images.engine": {"devcluster.kube.procs"},
        "devcluster.cluster": {"devcluster.kube.node"},
        "devcluster.stack.demo": {"devcluster.kube.node", "devcluster.cluster"},
    }
    assert layering_violations(graph) == [
        "devcluster.images.engine -> devcluster.kube.procs",
        "devcluster.kube.node -> devcluster.stack.mlstack",
    ]


def test_devcluster_subpackages_keep_their_layers() -> None:
    graph = import_graph(PACKAGE)
    assert {"devcluster.kube.node", "devcluster.stack.mlstack", "devcluster.images.engine"} <= set(
        graph
    )  # the subpackages are walked
    assert layering_violations(graph) == []
