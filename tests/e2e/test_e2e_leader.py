"""e2e on the real node: the operator as installed (two replicas) has exactly one leader, only
it writes, and when its process is SIGKILLed mid-churn the other replica takes over within
15 s and every model converges."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config

from devcluster.stack import mlstack

from .e2e_testlib import Stack

pytestmark = pytest.mark.node

OPERATOR_NS = "mlmodel-system"
TAKEOVER_LIMIT_SECONDS = 15.0
MODELS = 200
URI = "s3://models/never-fetched"  # replicas 0: no pod ever fetches it
SHA = "c" * 64


def lease_holder(coordination: client.CoordinationV1Api) -> str:
    lease = coordination.read_namespaced_lease("mlmodel-operator", OPERATOR_NS)
    return (lease.spec.holder_identity or "") if lease.spec else ""


def pod_of(identity: str) -> str:
    """The pod name in a holder identity (`<hostname>_<suffix>`; the hostname is the pod's)."""
    return identity.rsplit("_", 1)[0]


def operator_pods(core: client.CoreV1Api) -> list[str]:
    pods = core.list_namespaced_pod(
        OPERATOR_NS, label_selector="app.kubernetes.io/name=mlmodel-operator"
    ).items
    return sorted(p.metadata.name for p in pods if p.status.phase == "Running")


def host_pid(pod: str) -> int:
    """The host PID of the operator process running in `pod` (its HOSTNAME is the pod name)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"mlmodel_operator" in cmdline and f"HOSTNAME={pod}".encode() in environ:
            return int(entry.name)
    raise AssertionError(f"no operator process of pod {pod} on this host")


def reporting_instances(core: client.CoreV1Api, namespace: str) -> set[str]:
    """Which operator pods posted Events in the namespace (every child write posts one)."""
    events = core.list_namespaced_event(namespace).items
    ours = "mlops.dev/mlmodel-operator"
    return {e.reporting_instance for e in events if e.reporting_component == ours}


def model(namespace: str, name: str) -> dict[str, Any]:
    return mlstack.mlmodel_manifest(namespace, name, URI, SHA, None, replicas=0)


def converged(custom: client.CustomObjectsApi, apps: client.AppsV1Api, ns: str) -> str:
    """'' when every MLModel was observed at its generation and the Deployments match the
    models; otherwise what is still off."""
    items = custom.list_namespaced_custom_object("mlops.dev", "v1alpha1", ns, "mlmodels")["items"]
    behind = [
        m["metadata"]["name"]
        for m in items
        if (m.get("status") or {}).get("observedGeneration") != m["metadata"]["generation"]
    ]
    if behind:
        return f"{len(behind)} models not observed yet, e.g. {behind[:3]}"
    deployments = {d.metadata.name for d in apps.list_namespaced_deployment(ns).items}
    names = {m["metadata"]["name"] for m in items}
    if deployments != names:
        return f"deployments differ from models: {sorted(deployments ^ names)[:5]}"
    return ""


@pytest.mark.timeout(900)
def test_two_replicas_one_leader_and_a_sigkilled_leader_is_replaced_mid_churn(
    stack: Stack, model_ns: str
) -> None:
    api = config.new_client_from_config(str(stack.kube.kubeconfig))
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    custom, coordination = client.CustomObjectsApi(api), client.CoordinationV1Api(api)
    mlstack.wait_for("two operator pods", lambda: len(operator_pods(core)) == 2, 180)
    mlstack.wait_for("a Lease holder", lambda: bool(lease_holder(coordination)), 60)
    leader = pod_of(lease_holder(coordination))
    pods = operator_pods(core)
    assert leader in pods, (leader, pods)
    (follower,) = set(pods) - {leader}

    half = MODELS // 2
    stack.kube.apply([model(model_ns, f"m{i}") for i in range(half)])
    mlstack.wait_for(
        "the leader to create some Deployments",
        lambda: len(apps.list_namespaced_deployment(model_ns).items) >= 20,
        120,
    )
    assert reporting_instances(core, model_ns) == {leader}, "a follower wrote"

    os.kill(host_pid(leader), signal.SIGKILL)
    killed = time.monotonic()
    mlstack.wait_for(
        "the follower to take the Lease",
        lambda: pod_of(lease_holder(coordination)) == follower,
        60,
        interval=0.2,
    )
    takeover = time.monotonic() - killed
    print(f"take-over after SIGKILL: {takeover:.1f}s")

    stack.kube.apply([model(model_ns, f"m{i}") for i in range(half, MODELS)])
    for i in range(0, 20, 2):
        stack.kube.run("delete", "mlmodel", f"m{i}", "-n", model_ns, "--wait=false")
    last = [""]

    def done() -> bool:
        last[0] = converged(custom, apps, model_ns)
        return not last[0]

    try:
        mlstack.wait_for(f"{MODELS - 10} models to converge", done, 300)
    except mlstack.StackError as exc:
        raise AssertionError(f"{exc}: {last[0]}") from exc
    assert takeover <= TAKEOVER_LIMIT_SECONDS, takeover
    assert follower in reporting_instances(core, model_ns)
    # the killed replica is restarted by the kubelet and stays a follower
    mlstack.wait_for("both operator pods running", lambda: len(operator_pods(core)) == 2, 120)
    assert pod_of(lease_holder(coordination)) == follower
