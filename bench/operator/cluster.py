"""A fresh devcluster for one operator under test: CRD, operator RBAC, audit log, identities."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

import yaml

from bench.operator import audit
from devcluster.cluster import Cluster
from devcluster.kube import controlplane, fakenodes
from devcluster.waiting import wait_until

REPO = Path(__file__).resolve().parents[2]
FAKE_NODES = 2  # kwok nodes take up to a million pods each
# The controllers' default client rate limits (controller-manager 20 QPS, 5 Deployment and
# ReplicaSet workers) would make the cluster, not the operator, the bottleneck at 1,000
# Deployments: raised for both operators alike, as a cluster of this size would be tuned.
CONTROLLER_ARGS = (
    "--kube-api-qps=400 --kube-api-burst=600 "
    "--concurrent-deployment-syncs=20 --concurrent-replicaset-syncs=20"
)
SCHEDULER_ARGS = "--kube-api-qps=400 --kube-api-burst=600"
NAIVE_RBAC = """
apiVersion: v1
kind: ServiceAccount
metadata: {name: naive-operator, namespace: mlmodel-system}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: naive-operator}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}
subjects: [{kind: ServiceAccount, name: naive-operator, namespace: mlmodel-system}]
"""


class BenchCluster:
    """A devcluster started for one benchmark run, with the CRD and both operators' identities."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="bench-operator-"))
        self.layout = controlplane.layout_for(self.root / "cluster")
        self.audit = audit.AuditLog(self.root / "audit.log")
        self.cluster: Cluster | None = None

    def up(self) -> Cluster:
        """Start the cluster (audit log on) and install the CRD and RBAC."""
        os.environ["DEVCLUSTER_EXTRA_ARGS_KUBE_APISERVER"] = (
            "--feature-gates=WatchList=false " + audit.apiserver_args(self.root)
        )
        os.environ["DEVCLUSTER_EXTRA_ARGS_KUBE_CONTROLLER_MANAGER"] = CONTROLLER_ARGS
        os.environ["DEVCLUSTER_EXTRA_ARGS_KUBE_SCHEDULER"] = SCHEDULER_ARGS
        controlplane.up_with_retry(
            self.layout, controlplane.UpOptions(fake_nodes=FAKE_NODES), log=lambda _: None
        )
        api = fakenodes.api_client(self.layout.kubeconfig)
        api.configuration.connection_pool_maxsize = 16
        self.cluster = Cluster(kubeconfig=self.layout.kubeconfig, api=api)
        self.cluster.kubectl("apply", "-f", str(REPO / "crds" / "mlmodel.yaml"))
        self.cluster.wait_established("mlmodels.mlops.dev")
        wait_until(
            "MLModels to be listable",
            lambda: (
                self.cluster is not None
                and self.cluster.kubectl("get", "mlmodels", "-A", check=False).returncode == 0
            ),
            60,
        )
        self.cluster.kubectl("apply", "-k", str(REPO / "operator" / "deploy"))
        self.cluster.kubectl("apply", "-f", "-", input=NAIVE_RBAC)
        return self.cluster

    def down(self) -> None:
        """Stop every process of the cluster."""
        if self.cluster is not None:
            self.cluster.api.close()  # type: ignore[no-untyped-call]
        controlplane.down(self.layout, log=lambda _: None)
        shutil.rmtree(self.root, ignore_errors=True)

    def kubeconfig_for(self, account: str) -> Path:
        """A kubeconfig with a token of ServiceAccount mlmodel-system/`account`."""
        assert self.cluster is not None
        token = self.cluster.kubectl(
            "-n", "mlmodel-system", "create", "token", account, "--duration=2h"
        ).stdout.strip()
        admin = yaml.safe_load(self.layout.kubeconfig.read_text())
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "c", "cluster": admin["clusters"][0]["cluster"]}],
            "users": [{"name": account, "user": {"token": token}}],
            "contexts": [{"name": "c", "context": {"cluster": "c", "user": account}}],
            "current-context": "c",
        }
        path = self.root / f"{account}.kubeconfig"
        path.write_text(yaml.safe_dump(config))
        return path


class OperatorUnderTest:
    """One operator process (ours or the naive baseline) running as its ServiceAccount."""

    def __init__(self, bench: BenchCluster, naive: bool) -> None:
        self.bench = bench
        self.naive = naive
        self.account = "naive-operator" if naive else "mlmodel-operator"
        self.user = f"system:serviceaccount:mlmodel-system:{self.account}"
        self.log = bench.root / f"{self.account}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        """The process id."""
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> None:
        """Start the process and wait until it has listed MLModels (it is then watching)."""
        port = _free_port()
        env = dict(
            os.environ,
            KUBECONFIG=str(self.bench.kubeconfig_for(self.account)),
            MLOP_METRICS_PORT=str(port),
            MLOP_LOG_LEVEL="warning",
        )
        module = "bench.operator.naive_operator" if self.naive else "mlmodel_operator"
        argv = [sys.executable, "-m", module]
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
        start = 0

        def listed() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"{self.account} exited: see {self.log}")
            return self.bench.audit.requests(start, self.user)["list mlmodels"] > 0

        wait_until(f"{self.account} to list MLModels", listed, 60)
        if not self.naive:
            wait_until(f"{self.account} /healthz", lambda: _answers(port), 30)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after a deadline."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
            return bool(r.status == 200)
    except OSError:
        return False
