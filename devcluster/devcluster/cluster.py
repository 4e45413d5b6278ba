"""The handle tests get for a running cluster: kubeconfig, API client, kubectl, metrics."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import client

from devcluster import config
from devcluster.waiting import NotYet, wait_until


def kubectl_binary() -> str:
    """kubectl built from the pinned release (falls back to one on PATH for foreign clusters)."""
    built = config.binary("kubectl")
    if built.exists():
        return str(built)
    found = shutil.which("kubectl")
    if found is None:
        raise FileNotFoundError(f"kubectl is not built ({built}): run `make devcluster-build`")
    return found


@dataclass(frozen=True)
class Cluster:
    """A running Kubernetes cluster that tests talk to."""

    kubeconfig: Path
    api: client.ApiClient

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl (text mode, output captured, KUBECONFIG set); raises on failure if check.

        The raised error carries kubectl's stderr in its message, so a failing test says why.
        """
        env = dict(os.environ, KUBECONFIG=str(self.kubeconfig))
        argv = [kubectl_binary(), *args]
        proc = subprocess.run(argv, input=input, env=env, text=True, capture_output=True)
        if check and proc.returncode != 0:
            raise KubectlError(proc)
        return proc

    def raw_get(self, path: str) -> str:
        """GET a raw API path (e.g. ``/metrics``, ``/readyz?verbose``) as the client's user."""
        method, url, headers, body, post = self.api.param_serialize(
            "GET", path, header_params={"Accept": "*/*"}, auth_settings=["BearerToken"]
        )
        response = self.api.call_api(method, url, headers, body, post)
        data: bytes = response.read()  # type: ignore[no-untyped-call]
        if response.status >= 400:
            raise RuntimeError(f"GET {path}: HTTP {response.status}: {data.decode()[:500]}")
        return data.decode()

    def wait_established(self, crd: str, timeout: float = 60.0) -> None:
        """Until the CustomResourceDefinition `crd` has condition Established True.

        Not `kubectl wait --for=condition=Established`: kubectl 1.36 fails at once ("accessor
        error: <nil> is of the type <nil>") when it reads the CRD before the API server has
        written a condition, which the kind tier met right after the apply.
        """

        def established() -> bool | NotYet:
            found = json.loads(
                self.raw_get(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{crd}")
            )
            conditions = (found.get("status") or {}).get("conditions") or []
            status = {c.get("type"): c.get("status") for c in conditions}
            return status.get("Established") == "True" or NotYet(f"conditions: {conditions}")

        wait_until(f"CRD {crd} Established", established, timeout, retry_on=(RuntimeError,))

    def apiserver_metrics(self) -> str:
        """The API server's ``/metrics`` text (Prometheus format), e.g. apiserver_request_total."""
        return self.raw_get("/metrics")


class KubectlError(subprocess.CalledProcessError):
    """kubectl exited non-zero; str() shows the command and its stderr."""

    def __init__(self, proc: subprocess.CompletedProcess[str]) -> None:
        super().__init__(proc.returncode, proc.args, proc.stdout, proc.stderr)

    def __str__(self) -> str:
        args = " ".join(str(a) for a in self.cmd[1:])
        return f"kubectl {args} exited {self.returncode}: {self.stderr.strip()}"


@dataclass(frozen=True)
class NodeCluster(Cluster):
    """A devcluster with one real node (``up --node``): images can be loaded into it."""

    state_dir: Path

    @property
    def node_ip(self) -> str:
        """The node's address (a /32 on lo): the host reaches pods' services, pods reach it."""
        from devcluster.kube import hostnet

        return hostnet.NODE_IP

    def load_image(self, image: str) -> str:
        """Copy a locally built Docker image into the node's containerd; the stored name."""
        from devcluster.kube import node
        from devcluster.kube.state import Layout

        return node.load_image(Layout(self.state_dir), image)


@dataclass(frozen=True)
class KindNodeCluster(Cluster):
    """A kind cluster (``pytest --cluster=kind``): what NodeCluster gives tests, on kind."""

    state_dir: Path
    kind: Any  # devcluster.kube.kindcluster.KindDriver

    @property
    def node_ip(self) -> str:
        """The host's address on the kind network: pods reach the host there."""
        from devcluster.kube import kindcluster

        return kindcluster.GATEWAY

    def load_image(self, image: str) -> str:
        """`kind load docker-image` onto every node; the image's name."""
        return str(self.kind.load_image(image))
