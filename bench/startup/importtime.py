"""Parse `python -X importtime` output: which imports a start-up spends its time in."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

# "import time:       658 |      12391 |   json.decoder": self us, cumulative us, two spaces of
# indent per nesting level, the module name.
_LINE = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \| ( *)(\S+)\s*$")


@dataclass(frozen=True)
class Import:
    """One module's first import."""

    module: str
    self_ms: float  # executing the module itself
    cumulative_ms: float  # itself and every module it imported first
    depth: int  # 0: imported by the entry point itself (or from a thread's own code)


def parse(lines: Iterable[str]) -> list[Import]:
    """Every `import time:` line, in order (other lines, such as the server log, are skipped)."""
    found = []
    for line in lines:
        match = _LINE.match(line)
        if match:
            self_us, cumulative_us, indent, module = match.groups()
            found.append(
                Import(module, int(self_us) / 1000, int(cumulative_us) / 1000, len(indent) // 2)
            )
    return found


def top_cumulative(imports: list[Import], n: int = 10) -> list[dict[str, Any]]:
    """The `n` imports with the largest cumulative time (nested ones included: a package's
    figure contains its children's, so a chain of parents can fill the list)."""
    ranked = sorted(imports, key=lambda i: i.cumulative_ms, reverse=True)[:n]
    return [
        {**asdict(i), "self_ms": round(i.self_ms, 1), "cumulative_ms": round(i.cumulative_ms, 1)}
        for i in ranked
    ]


def top_packages(imports: list[Import], n: int = 10) -> list[dict[str, Any]]:
    """Own (self) import time summed per top-level package, the `n` largest: where the time
    goes without double counting."""
    totals: dict[str, float] = {}
    modules: dict[str, int] = {}
    for i in imports:
        root = i.module.split(".")[0]
        totals[root] = totals.get(root, 0.0) + i.self_ms
        modules[root] = modules.get(root, 0) + 1
    ranked = sorted(totals.items(), key=lambda kv: kv[1], reverse=True)[:n]
    return [{"package": p, "self_ms": round(ms, 1), "modules": modules[p]} for p, ms in ranked]


def total_ms(imports: list[Import]) -> float:
    """All import time of the process (the sum of self times: nothing counted twice)."""
    return round(sum(i.self_ms for i in imports), 1)


def imported(imports: list[Import], packages: Iterable[str]) -> dict[str, bool]:
    """Whether each top-level package was imported at all."""
    roots = {i.module.split(".")[0] for i in imports}
    return {name: name in roots for name in packages}
