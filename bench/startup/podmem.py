"""What a model pod's memory costs the node: its cgroup's charge beside its server's RSS.

RSS counts every page a process maps, the shared libraries' code included, once per process.
The kernel charges a page of a file (ONNX Runtime's .so, read from the image's layer) to the
first cgroup that reads it; pods of the same image on one node map the same pages and are not
charged for them again. The cgroup's charge (memory.usage_in_bytes, of which `rss` is anonymous
memory and `cache` file pages) is what memory limits, evictions and `kubectl top` see.

devcluster's node is this machine: its kubelet (cgroupfs driver, cgroup v1) puts each pod in
`.../pod<uid>/` under the memory controller, so the bench reads the files directly.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

MEMORY_ROOT = Path("/sys/fs/cgroup/memory")
MIB = 1024 * 1024


class PodMemoryError(RuntimeError):
    """A pod's cgroup or server process was not found where the kubelet puts them."""


@dataclass(frozen=True)
class PodMemory:
    """One pod, in MiB: the cgroup's charge and its parts, the server process's RSS and PSS."""

    pod: str
    charged: float  # memory.usage_in_bytes
    anon: float  # memory.stat total_rss
    file: float  # memory.stat total_cache
    working_set: float  # charged - total_inactive_file (the kubelet's working set)
    server_rss: float  # VmRSS of the pod's biggest process (the server)
    server_pss: float  # its Pss (shared pages divided among the processes mapping them)

    def as_dict(self) -> dict[str, Any]:
        return {k: round(v, 1) if isinstance(v, float) else v for k, v in asdict(self).items()}


def pod_cgroup(uid: str, root: Path = MEMORY_ROOT) -> Path:
    """The pod's memory cgroup directory (`pod<uid>`, a few levels under the root)."""
    wanted = f"pod{uid}"
    for depth in ("*", "*/*", "*/*/*", "*/*/*/*"):
        for found in root.glob(f"{depth}/{wanted}"):
            if found.is_dir():
                return found
    raise PodMemoryError(f"no memory cgroup {wanted} under {root}")


def memory_stat(cgroup: Path) -> dict[str, int]:
    """memory.stat as numbers (cgroup v1: `total_*` include the child cgroups)."""
    stat: dict[str, int] = {}
    for line in (cgroup / "memory.stat").read_text().splitlines():
        key, _, value = line.partition(" ")
        if value.strip().isdigit():
            stat[key] = int(value)
    return stat


def pids(cgroup: Path) -> Iterator[int]:
    """Every process in the cgroup and its children (the pause and server containers)."""
    for procs in cgroup.rglob("cgroup.procs"):
        for line in procs.read_text().split():
            yield int(line)


def _kib(path: Path, field: str) -> int:
    for line in path.read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise PodMemoryError(f"no {field} in {path}")


def pod_memory(
    name: str, uid: str, root: Path = MEMORY_ROOT, proc: Path = Path("/proc")
) -> PodMemory:
    """The pod's charge and its server's RSS and PSS, now."""
    cgroup = pod_cgroup(uid, root)
    stat = memory_stat(cgroup)
    charged = int((cgroup / "memory.usage_in_bytes").read_text())
    rss_by_pid = {pid: _kib(proc / str(pid) / "status", "VmRSS") for pid in pids(cgroup)}
    if not rss_by_pid:
        raise PodMemoryError(f"no process in {cgroup}")
    server = max(rss_by_pid, key=lambda pid: rss_by_pid[pid])
    return PodMemory(
        pod=name,
        charged=charged / MIB,
        anon=stat["total_rss"] / MIB,
        file=stat["total_cache"] / MIB,
        working_set=max(0, charged - stat.get("total_inactive_file", 0)) / MIB,
        server_rss=rss_by_pid[server] / 1024,
        server_pss=_kib(proc / str(server) / "smaps_rollup", "Pss") / 1024,
    )
