"""Benchmark the MLModel operator against a naive kopf operator on a fresh devcluster each.

Per operator: (1) latency: 100 MLModels applied one by one, apply → Deployment exists and
→ Ready; (2) throughput: 1,000 MLModels created at once, time until all are Ready, the
operator's API requests per model (audit log) and every client's (apiserver_request_total),
operator peak RSS and CPU; (3) steady state: one minute with every model converged, the
operator's writes and CPU. Prints tables with ratios; writes bench/results/operator.json.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from kubernetes import client

from bench.operator import audit, procstat
from bench.operator.cluster import BenchCluster, OperatorUnderTest
from bench.operator.watch import GROUP, PLURAL, VERSION, Key, Timeline
from devcluster import metrics
from devcluster.cluster import Cluster
from devcluster.waiting import NotYet, WaitTimeout, wait_until
from mlmodel_operator.render import render_deployment
from mlmodel_operator.resource import MLModel
from mlmodel_operator.settings import OperatorSettings

RESULTS = Path("bench/results/operator.json")
SHA = "a" * 64


def mlmodel(name: str) -> dict[str, Any]:
    """A pinned MLModel (no card to read) with one replica."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "MLModel",
        "metadata": {"name": name},
        "spec": {"model": {"uri": "http://127.0.0.1:9/models/iris", "sha256": SHA}, "replicas": 1},
    }


def pct(values: list[float], q: float) -> float:
    """The q-th percentile (nearest rank) of values."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def create_at_once(names: list[str], create: Callable[[str], object]) -> None:
    """Create one object per name from 8 client threads, as a burst of `kubectl apply`s would."""
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(create, names))


def wait_for_all(seen: dict[Key, float], keys: list[Key], deadline: float) -> None:
    """Until every key has been seen (the Timeline fills `seen`) or the deadline passes (the
    report then counts the ones seen)."""

    def all_seen() -> bool | NotYet:
        missing = sum(k not in seen for k in keys)
        return NotYet(f"{missing} of {len(keys)} not seen") if missing else True

    with suppress(WaitTimeout):
        wait_until("every model", all_seen, max(0.0, deadline - time.monotonic()), 0.5)


def arrivals(seen: dict[Key, float], keys: list[Key], started: float) -> list[float]:
    """Seconds from `started` to each key's first sighting, for the keys seen."""
    return [seen[k] - started for k in keys if k in seen]


def last_of(times: list[float], count: int) -> float | None:
    """When the last of `count` arrived; None if some never did."""
    return round(max(times), 1) if len(times) == count else None


@contextmanager
def watched_cluster() -> Iterator[tuple[BenchCluster, Cluster, Timeline]]:
    """A fresh devcluster with the Timeline watching it; both gone on exit."""
    bench = BenchCluster()
    try:
        cluster = bench.up()
        timeline = Timeline(cluster.api)
        timeline.start()
        try:
            yield bench, cluster, timeline
        finally:
            timeline.stop()
    finally:
        bench.down()


class CpuSampler(threading.Thread):
    """Samples a process's CPU once a second; keeps the busiest second."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peak_cores = 0.0
        self.done = threading.Event()

    def run(self) -> None:
        last, then = procstat.cpu_seconds(self.pid), time.monotonic()
        while not self.done.wait(1.0):
            now, used = time.monotonic(), procstat.cpu_seconds(self.pid)
            self.peak_cores = max(self.peak_cores, (used - last) / (now - then))
            last, then = used, now


def all_requests(cluster: Cluster) -> float:
    """Every request the API server has counted (all clients, all verbs)."""
    return sum(
        v for _, v in metrics.samples(cluster.apiserver_metrics(), "apiserver_request_total")
    )


def create_namespace(cluster: Cluster, name: str) -> None:
    """Create a namespace."""
    client.CoreV1Api(cluster.api).create_namespace({"metadata": {"name": name}})


def latency_phase(cluster: Cluster, timeline: Timeline, count: int) -> dict[str, Any]:
    """Apply `count` MLModels one by one (5 per second); apply → Deployment and → Ready."""
    custom, ns = client.CustomObjectsApi(cluster.api), "latency"
    create_namespace(cluster, ns)
    applied: dict[tuple[str, str], float] = {}
    for i in range(count):
        started = time.monotonic()
        custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, mlmodel(f"m{i}"))
        applied[(ns, f"m{i}")] = started
        time.sleep(max(0.0, started + 0.2 - time.monotonic()))  # pacing, not waiting
    wait_until(
        f"{count} latency MLModels Ready", lambda: all(k in timeline.ready for k in applied), 180
    )
    to_deploy = [1000 * (timeline.deployed[k] - t) for k, t in applied.items()]
    to_ready = [1000 * (timeline.ready[k] - t) for k, t in applied.items()]
    return {
        "apply_to_deployment_p50_ms": round(pct(to_deploy, 50), 1),
        "apply_to_deployment_p99_ms": round(pct(to_deploy, 99), 1),
        "apply_to_ready_p50_ms": round(pct(to_ready, 50), 1),
        "apply_to_ready_p99_ms": round(pct(to_ready, 99), 1),
    }


def burst_phase(
    bench: BenchCluster, op: OperatorUnderTest, timeline: Timeline, count: int, timeout: float
) -> dict[str, Any]:
    """Create `count` MLModels at once; time until all are Ready and what it cost."""
    assert bench.cluster is not None
    cluster, ns = bench.cluster, "burst"
    create_namespace(cluster, ns)
    custom = client.CustomObjectsApi(cluster.api)
    mark, requests0, cpu0 = bench.audit.mark(), all_requests(cluster), procstat.cpu_seconds(op.pid)
    sampler = CpuSampler(op.pid)
    sampler.start()
    names = [f"m{i}" for i in range(count)]
    started = time.monotonic()
    create_at_once(
        names,
        lambda n: custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, mlmodel(n)),
    )
    created_s = time.monotonic() - started
    keys = [(ns, n) for n in names]
    wait_for_all(timeline.ready, keys, started + timeout)
    ready = arrivals(timeline.ready, keys, started)
    elapsed = time.monotonic() - started
    sampler.done.set()
    ops = bench.audit.requests(mark, op.user)
    total = sum(ops.values())
    return {
        "models": count,
        "created_s": round(created_s, 1),
        "ready_count": len(ready),
        "all_ready_s": last_of(ready, count),
        "half_ready_s": round(pct(ready, 50), 1) if ready else None,
        # where the time goes: every Deployment created, every Deployment available, all Ready
        "all_deployed_s": last_of(arrivals(timeline.deployed, keys, started), count),
        "all_available_s": last_of(arrivals(timeline.available, keys, started), count),
        "requests_per_model": round(total / count, 2),
        "writes_per_model": round(audit.writes(ops) / count, 2),
        "apiserver_requests_per_model": round((all_requests(cluster) - requests0) / count, 2),
        "operator_cpu_cores_avg": round((procstat.cpu_seconds(op.pid) - cpu0) / elapsed, 2),
        "operator_cpu_cores_peak": round(sampler.peak_cores, 2),
        "operator_rss_mb": round(procstat.peak_rss_mb(op.pid), 1),
        "top_requests": dict(ops.most_common(6)),
    }


def steady_phase(bench: BenchCluster, op: OperatorUnderTest, window: float) -> dict[str, Any]:
    """After the burst settles (no operator write for 10 s, at most 90 s), one window of idling."""
    quiet_since, mark = time.monotonic(), bench.audit.mark()

    def quiet_for_10s() -> bool:
        nonlocal quiet_since, mark
        if audit.writes(audit.split_leases(bench.audit.requests(mark, op.user))[0]):
            quiet_since, mark = time.monotonic(), bench.audit.mark()
        return time.monotonic() - quiet_since >= 10

    with suppress(WaitTimeout):  # still busy after 90 s: measure it as it is
        wait_until("no operator write for 10 s", quiet_for_10s, 90, 1.0)
    mark, cpu0, started = bench.audit.mark(), procstat.cpu_seconds(op.pid), time.monotonic()
    time.sleep(window)  # the measurement window itself
    elapsed = time.monotonic() - started
    ops, leases = audit.split_leases(bench.audit.requests(mark, op.user))
    return {
        "noop_writes_per_min": round(audit.writes(ops) * 60 / elapsed, 1),
        "noop_requests_per_min": round(sum(ops.values()) * 60 / elapsed, 1),
        "lease_requests_per_min": round(sum(leases.values()) * 60 / elapsed, 1),
        "steady_cpu_cores": round((procstat.cpu_seconds(op.pid) - cpu0) / elapsed, 3),
        "steady_rss_mb": round(procstat.rss_mb(op.pid), 1),
        "steady_writes": dict(ops.most_common(6)) if audit.writes(ops) else {},
    }


def floor_deployment(name: str) -> dict[str, Any]:
    """The Deployment our operator renders for the benchmark's MLModel, owned by nothing."""
    body = mlmodel(name)
    body["metadata"] |= {"namespace": "floor", "uid": f"floor-{name}", "generation": 1}
    model = MLModel.from_body(body)
    manifest: dict[str, Any] = render_deployment(model, OperatorSettings(), SHA)
    manifest["metadata"].pop("ownerReferences")  # no MLModel: the garbage collector keeps it
    return manifest


def run_floor(args: argparse.Namespace) -> dict[str, Any]:
    """The cluster alone: the same Deployments created at once, with no operator; until all
    are available. What no operator can beat on this machine."""
    with watched_cluster() as (_, cluster, timeline):
        print(f"[floor] {args.models} Deployments at once, no operator", flush=True)
        create_namespace(cluster, "floor")
        apps = client.AppsV1Api(cluster.api)
        names = [f"m{i}" for i in range(args.models)]
        started = time.monotonic()
        create_at_once(
            names,
            lambda n: apps.create_namespaced_deployment(
                "floor",
                floor_deployment(n),  # type: ignore[arg-type]
            ),
        )
        keys = [("floor", n) for n in names]
        wait_for_all(timeline.available, keys, started + args.timeout)
        ready = arrivals(timeline.available, keys, started)
        return {
            "models": args.models,
            "ready_count": len(ready),
            "all_ready_s": last_of(ready, args.models),
            "half_ready_s": round(pct(ready, 50), 1) if ready else None,
            "apiserver_requests_per_model": round(all_requests(cluster) / args.models, 2),
        }


def run_one(naive: bool, args: argparse.Namespace) -> dict[str, Any]:
    """All three phases for one operator on its own fresh cluster."""
    label = "naive" if naive else "mlmodel-operator"
    with watched_cluster() as (bench, cluster, timeline):
        op = OperatorUnderTest(bench, naive)
        op.start()
        try:
            print(f"[{label}] latency: {args.latency} models one by one", flush=True)
            result = latency_phase(cluster, timeline, args.latency)
            print(f"[{label}] burst: {args.models} models at once", flush=True)
            result |= burst_phase(bench, op, timeline, args.models, args.timeout)
            print(f"[{label}] steady state: {args.steady:.0f} s", flush=True)
            result |= steady_phase(bench, op, args.steady)
        finally:
            op.stop()
        return result


ROWS = (
    ("all_ready_s", "1,000 Ready (s)"),
    ("half_ready_s", "half Ready (s)"),
    ("all_deployed_s", "1,000 Deployments exist (s)"),
    ("all_available_s", "1,000 Deployments available (s)"),
    ("apply_to_deployment_p50_ms", "apply→Deployment p50 (ms)"),
    ("apply_to_deployment_p99_ms", "apply→Deployment p99 (ms)"),
    ("apply_to_ready_p50_ms", "apply→Ready p50 (ms)"),
    ("apply_to_ready_p99_ms", "apply→Ready p99 (ms)"),
    ("requests_per_model", "operator requests/model"),
    ("writes_per_model", "operator writes/model"),
    ("apiserver_requests_per_model", "all API requests/model"),
    ("operator_rss_mb", "operator peak RSS (MB)"),
    ("steady_rss_mb", "operator RSS, steady (MB)"),
    ("operator_cpu_cores_avg", "operator CPU, burst (cores)"),
    ("operator_cpu_cores_peak", "operator CPU, busiest s"),
    ("noop_writes_per_min", "no-op writes/min"),
    ("noop_requests_per_min", "no-op requests/min"),
    ("lease_requests_per_min", "Lease renewals/min (leader)"),
    ("steady_cpu_cores", "operator CPU, steady (cores)"),
)


def table(ours: dict[str, Any], naive: dict[str, Any]) -> str:
    """A text table: ours, naive, naive/ours."""
    lines = [f"{'':32} {'ours':>10} {'naive':>10} {'naive/ours':>11}"]
    for key, label in ROWS:
        a, b = ours.get(key), naive.get(key)
        ratio = (
            f"{b / a:.1f}x"
            if isinstance(a, int | float) and isinstance(b, int | float) and a
            else "-"
        )
        lines.append(f"{label:32} {_cell(a):>10} {_cell(b):>10} {ratio:>11}")
    return "\n".join(lines)


def floor_line(floor: dict[str, Any], ours: dict[str, Any]) -> str:
    """Where the time goes: the cluster alone vs the cluster with our operator."""
    if not floor:
        return "floor: not measured (--no-floor)"
    a, b = floor.get("all_ready_s"), ours.get("all_ready_s")
    share = f"; the operator adds {b - a:.1f} s" if a is not None and b is not None else ""
    return (
        f"floor (the same {floor['models']} Deployments created directly, no operator): all "
        f"available in {_cell(a)} s, half in {_cell(floor.get('half_ready_s'))} s{share}"
    )


def _cell(value: object) -> str:
    return "n/a" if value is None else str(value)


def main() -> int:
    """Run both operators, print the table, write the results file."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", type=int, default=1000)
    parser.add_argument("--latency", type=int, default=100)
    parser.add_argument("--steady", type=float, default=60.0)
    parser.add_argument("--timeout", type=float, default=240.0, help="burst deadline (s)")
    parser.add_argument("--no-baseline", action="store_true", help="skip the naive operator")
    parser.add_argument("--no-floor", action="store_true", help="skip the cluster-only floor")
    args = parser.parse_args()
    floor = {} if args.no_floor else run_floor(args)
    ours = run_one(False, args)
    if args.no_baseline:
        print(table(ours, {}))
        print(floor_line(floor, ours))
        return 0
    naive = run_one(True, args)
    print(table(ours, naive))
    print(floor_line(floor, ours))
    for name, res in (("ours", ours), ("naive", naive)):
        print(f"{name}: burst requests {res['top_requests']}; steady writes {res['steady_writes']}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(ours | {"baseline": naive, "floor": floor}, indent=2) + "\n")
    print(f"wrote {RESULTS}")
    return 0 if ours.get("all_ready_s") is not None else 1
