"""e2e on the real node: CPU autoscaling through metrics-server and the HPA (timeline printed),
and a real Prometheus (upstream, built by `make e2e-deps`: Debian's has no Kubernetes SD) scraping
the model pods through Kubernetes service discovery with the shipped scrape config."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from devcluster.stack import mlstack

from .e2e_prometheus import prometheus, query, scrape_config
from .e2e_testlib import ROW, Stack

pytestmark = pytest.mark.node

AUTOSCALING = {
    "minReplicas": 1,
    "maxReplicas": 3,
    "targetCPUUtilizationPercentage": 30,
    "behavior": {
        "scaleUp": {
            "stabilizationWindowSeconds": 0,
            "policies": [{"type": "Pods", "value": 2, "periodSeconds": 15}],
        },
        "scaleDown": {
            "stabilizationWindowSeconds": 15,
            "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}],
        },
    },
}
SERVER = {
    "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}}
}
BATCH = [list(ROW)] * 64


@contextmanager
def cpu_load(url: str, threads: int = 3, max_seconds: float = 300.0) -> Iterator[list[int]]:
    """Back-to-back batch predictions from the host until the block ends (bounded)."""
    stop = threading.Event()
    sent = [0]

    def loop() -> None:
        deadline = time.monotonic() + max_seconds
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                mlstack.http("POST", f"{url}/predict", {"inputs": BATCH}, timeout=10)
                sent[0] += 1
            except OSError:
                time.sleep(0.1)

    workers = [threading.Thread(target=loop, daemon=True) for _ in range(threads)]
    for worker in workers:
        worker.start()
    try:
        yield sent
    finally:
        stop.set()
        for worker in workers:
            worker.join(timeout=30)


class Timeline:
    """Changes of (CPU utilization, desired replicas, ready pods), with seconds since start."""

    def __init__(self, stack: Stack, namespace: str) -> None:
        self.stack, self.namespace = stack, namespace
        self.started = time.monotonic()
        self.lines: list[str] = []
        self.last: tuple[Any, ...] = ()
        self.max_desired = 0
        self.cpu_seen = False

    def note(self, event: str) -> None:
        """Record an event of the test itself."""
        self.lines.append(f"{time.monotonic() - self.started:6.1f}s  {event}")

    def sample(self) -> tuple[int | None, int, int]:
        """(CPU %, HPA desired replicas, Deployment ready replicas); records changes."""
        hpa = self.stack.kube.get("hpa", "iris", self.namespace) or {}
        status = hpa.get("status") or {}
        cpu = None
        for metric in status.get("currentMetrics") or []:
            current = (metric.get("resource") or {}).get("current") or {}
            cpu = current.get("averageUtilization", cpu)
        desired = int(status.get("desiredReplicas") or 0)
        deployment = self.stack.kube.get("deployment", "iris", self.namespace) or {}
        ready = int((deployment.get("status") or {}).get("readyReplicas") or 0)
        self.max_desired = max(self.max_desired, desired)
        self.cpu_seen = self.cpu_seen or cpu is not None
        if (cpu, desired, ready) != self.last:
            self.last = (cpu, desired, ready)
            shown = "<unknown>" if cpu is None else f"{cpu}%"
            self.note(f"cpu {shown:>6}  hpa desired {desired}  ready pods {ready}")
        return cpu, desired, ready

    def wait(self, what: str, check: Any, timeout: float) -> None:
        """Sample every 2 s until ``check(cpu, desired, ready)``."""
        try:
            mlstack.wait_for(what, lambda: bool(check(*self.sample())), timeout, interval=2.0)
        except mlstack.StackError as exc:
            raise AssertionError(f"{exc}\ntimeline:\n" + "\n".join(self.lines)) from exc


@pytest.mark.timeout(600)
def test_sustained_load_scales_the_model_up_through_the_hpa_and_back_down_after(
    stack: Stack, model_ns: str, capsys: pytest.CaptureFixture[str]
) -> None:
    extra = {"autoscaling": AUTOSCALING, "server": SERVER}
    url = stack.deploy(model_ns, "iris", stack.v1, extra_spec=extra)
    timeline = Timeline(stack, model_ns)
    timeline.note("MLModel Ready (1 pod); waiting for metrics-server to report its CPU")
    timeline.wait("the HPA to report CPU utilization", lambda cpu, d, r: cpu is not None, 120)
    with cpu_load(url) as sent:
        timeline.note("load started: 3 host threads sending 64-row batches")
        timeline.wait("the HPA to scale up to 2+ ready pods", lambda c, d, ready: ready >= 2, 240)
        timeline.note(f"load stopped after {sent[0]} requests")
    timeline.wait(
        "the HPA to scale back down to 1 pod",
        lambda c, desired, ready: desired == 1 and ready == 1,
        240,
    )
    mlm = stack.kube.get("mlm", "iris", model_ns) or {}
    mlstack.wait_for(
        "MLModel status to report 1 replica",
        lambda: (stack.kube.get("mlm", "iris", model_ns) or mlm)["status"].get("replicas") == 1,
        60,
    )
    timeline.note("scaled back to 1 pod; MLModel status.replicas == 1")
    with capsys.disabled():
        print("\nautoscaling timeline:\n" + "\n".join(timeline.lines))
    assert timeline.cpu_seen
    assert timeline.max_desired >= 2


# --- monitoring --------------------------------------------------------------------------------


@pytest.mark.timeout(420)
def test_prometheus_with_the_shipped_config_counts_exactly_the_requests_sent(
    stack: Stack, model_ns: str, tmp_path: Path
) -> None:
    url = stack.deploy(model_ns, "iris", stack.v1, replicas=2)
    config = scrape_config(stack.kube.kubeconfig, model_ns)
    with prometheus(config, tmp_path) as prom:

        def both_pods_up() -> bool:
            up = query(prom, 'up{job="mlmodel-servers"} == 1')
            return len({s["metric"].get("pod") for s in up}) == 2

        mlstack.wait_for("Prometheus to discover and scrape both model pods", both_pods_up, 90)
        sent = 50
        for _ in range(sent):
            assert mlstack.predict(url, "seed", "iris", [list(ROW)]) is not None
        promql = (
            f'sum(model_server_requests_total{{job="mlmodel-servers", namespace="{model_ns}", '
            f'mlmodel="iris", route="/predict", status="200"}})'
        )
        counted: list[float] = []

        def all_counted() -> bool:
            result = query(prom, promql)
            counted.append(float(result[0]["value"][1]) if result else -1.0)
            return counted[-1] >= sent

        mlstack.wait_for(f"Prometheus to count {sent} requests ({promql})", all_counted, 60)
        per_pod = query(prom, promql.replace("sum(", "sum by (pod) ("))
    assert counted[-1] == sent
    assert len(per_pod) == 2, f"requests should reach both pods through the Service: {per_pod}"
