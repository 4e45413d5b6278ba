"""Kubernetes built from upstream sources and run on this machine: the first of devcluster's jobs.

The build (``build``: the pinned release's binaries and kwok; ``pause``: the pause image), the
control plane (``pki``, ``certs``, ``components``, ``controlplane``, ``state``, ``procs``,
``health``), kwok's fake nodes (``fakenodes``), the real node and its host network (``node``,
``hostnet``), and kind built from the same sources (``kindnode``: kind and its node image;
``kindcluster``: a kind cluster for ``pytest --cluster=kind``). It may use ``devcluster.images``
(the private engine) and the shared top-level modules, never ``devcluster.stack``.
"""
