"""The on-disk state of one devcluster: its directory layout, its state file and its lock."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devcluster.kube.procs import Proc


@dataclass(frozen=True)
class Layout:
    """Where one cluster keeps its files."""

    root: Path

    @property
    def pki(self) -> Path:
        """Certificates and keys (a throw-away CA per cluster)."""
        return self.root / "pki"

    @property
    def logs(self) -> Path:
        """One log file per component."""
        return self.root / "logs"

    @property
    def kubeconfig(self) -> Path:
        """The admin kubeconfig (O=system:masters)."""
        return self.root / "kubeconfig"

    @property
    def state_file(self) -> Path:
        """PIDs, ports and phase of the running cluster."""
        return self.root / "state.json"

    @property
    def lock_file(self) -> Path:
        """Held while ``up`` or ``down`` runs."""
        return self.root / ".lock"

    def component_kubeconfig(self, name: str) -> Path:
        """The client kubeconfig of one component."""
        return self.root / "kubeconfigs" / f"{name}.kubeconfig"

    def data(self, name: str) -> Path:
        """A data directory of one component (etcd data, cert dirs, ...)."""
        return self.root / "data" / name


@dataclass
class State:
    """What ``up`` recorded: phase ('starting' until ready, then 'up'), ports, processes."""

    phase: str = "starting"
    ports: dict[str, int] = field(default_factory=dict)
    procs: list[Proc] = field(default_factory=list)
    fake_nodes: int = 0
    node: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """A JSON-able form."""
        return {
            "phase": self.phase,
            "ports": self.ports,
            "procs": [p.to_json() for p in self.procs],
            "fake_nodes": self.fake_nodes,
            "node": self.node,
            "extra": self.extra,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> State:
        """The inverse of :meth:`to_json`."""
        return cls(
            phase=str(data.get("phase", "starting")),
            ports={k: int(v) for k, v in data.get("ports", {}).items()},
            procs=[Proc.from_json(p) for p in data.get("procs", [])],
            fake_nodes=int(data.get("fake_nodes", 0)),
            node=bool(data.get("node", False)),
            extra=dict(data.get("extra", {})),
        )


def load(layout: Layout) -> State | None:
    """The recorded state, or None when no cluster was started in this directory."""
    try:
        return State.from_json(json.loads(layout.state_file.read_text()))
    except FileNotFoundError:
        return None


def save(layout: Layout, state: State) -> None:
    """Write the state file atomically (so a crash never leaves half a record)."""
    tmp = layout.state_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(state.to_json(), indent=2) + "\n")
    os.replace(tmp, layout.state_file)


@contextlib.contextmanager
def locked(layout: Layout) -> Iterator[None]:
    """Hold the directory's lock; a second ``up``/``down`` at the same time is refused."""
    layout.root.mkdir(parents=True, exist_ok=True)
    with layout.lock_file.open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise ClusterBusyError(
                f"another devcluster up/down is running on {layout.root}"
            ) from exc
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class ClusterBusyError(RuntimeError):
    """Another up/down holds the lock."""
