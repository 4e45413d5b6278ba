"""devcluster: a real local Kubernetes built from upstream sources, for tests and the demo.

Three jobs, one subpackage each: ``devcluster.kube`` (Kubernetes built from source and run here,
kind included), ``devcluster.images`` (a private Docker engine and the image builds) and
``devcluster.stack`` (this project's demo and e2e stack). The modules at the top are shared by
them: ``config``, ``waiting``, ``cluster``, ``metrics``, ``pytest_plugin`` and ``__main__``.

``devcluster.Cluster`` is the handle the pytest fixture ``cluster`` yields (imported lazily, so
loading the pytest plugin does not import the kubernetes client).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from devcluster.cluster import Cluster

__all__ = ["Cluster"]


def __getattr__(name: str) -> Any:
    if name == "Cluster":
        from devcluster.cluster import Cluster

        return Cluster
    raise AttributeError(f"module 'devcluster' has no attribute {name!r}")
