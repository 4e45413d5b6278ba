"""Timelines from the API's own timestamps, their medians over rounds, and the printout of
`python -m bench.startup.node` (pure: no cluster here, so it is unit-tested).

Every timestamp an object carries (metadata.creationTimestamp, a condition's
lastTransitionTime, containerStatuses[].state.running.startedAt, managedFields[].time) is a
metav1.Time: RFC 3339 in whole seconds. A difference of two is exact to +-1 s, so each stage is
a whole number of seconds per round; medians over rounds and the client's own clock (below) are
what say more.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

Obj = Mapping[str, Any]
Stages = dict[str, float | None]

# stage -> what it is; every offset is from the first timestamp of its phase (t0)
APPLY_STAGES = {
    "deployment_created": "Deployment created (creationTimestamp)",
    "pod_created": "Pod created (creationTimestamp)",
    "pod_scheduled": "Pod scheduled (PodScheduled)",
    "sandbox_ready": "sandbox + network ready (PodReadyToStartContainers)",
    "container_started": "container started (state.running.startedAt)",
    "server_ready_logged": "server ready: its log line (container log time, sub-second)",
    "pod_ready": "Pod Ready (Ready condition)",
    "mlmodel_ready": "MLModel Ready (Ready condition)",
}
SCALE_STAGES = {
    "deployment_scaled": "Deployment spec.replicas written (operator's managedFields time)",
    "replicaset_scaled": "ReplicaSet scaled (controller-manager's managedFields time)",
    "pods_created": "last new Pod created",
    "pods_scheduled": "last new Pod scheduled",
    "sandboxes_ready": "last new Pod's sandbox ready",
    "containers_started": "last new container started",
    "servers_ready_logged": "last new server ready (its log line)",
    "all_ready": "last new Pod Ready: all 4 Ready",
    "mlmodel_status": "MLModel status written (operator's last status write)",
}
APPLY_TOTAL = {"ours": "mlmodel_ready", "floor": "pod_ready"}
SCALE_TOTAL = "all_ready"


def ts(value: str | None) -> float | None:
    """An API timestamp (RFC 3339, `Z` or an offset, with or without fractions) as epoch s."""
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def whole_second(wall: float) -> float:
    """A time of the bench's own clock (the same machine's clock as the API server's) cut to
    the whole second, as the API cuts its timestamps: a difference with one of them is then
    exact to +-1 s, and not biased by half a second."""
    return float(int(wall))


def condition_time(obj: Obj, kind: str) -> float | None:
    """lastTransitionTime of the condition `kind` when it is True (else None)."""
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind and cond.get("status") == "True":
            return ts(cond.get("lastTransitionTime"))
    return None


def created(obj: Obj) -> float | None:
    """metadata.creationTimestamp."""
    return ts((obj.get("metadata") or {}).get("creationTimestamp"))


def started(pod: Obj) -> float | None:
    """The latest running container's startedAt (one container here)."""
    times = [
        ts(((s.get("state") or {}).get("running") or {}).get("startedAt"))
        for s in (pod.get("status") or {}).get("containerStatuses") or []
    ]
    known = [t for t in times if t is not None]
    return max(known) if known else None


def managed_time(
    obj: Obj,
    subresource: str = "",
    manager: str | None = None,
    exclude: Sequence[str] = (),
) -> float | None:
    """The latest managedFields time of writes to `subresource` ("" = the object itself), by
    `manager` when given, by no manager in `exclude`."""
    times = [
        ts(entry.get("time"))
        for entry in (obj.get("metadata") or {}).get("managedFields") or []
        if entry.get("subresource", "") == subresource
        and (manager is None or entry.get("manager") == manager)
        and entry.get("manager") not in exclude
    ]
    known = [t for t in times if t is not None]
    return max(known) if known else None


def pod_times(pod: Obj, log: str | None = None) -> dict[str, float | None]:
    """A pod's own timestamps, absolute; with its container log (`kubectl logs --timestamps`)
    also when the server logged that its model was ready."""
    times = {
        "pod_created": created(pod),
        "pod_scheduled": condition_time(pod, "PodScheduled"),
        "sandbox_ready": condition_time(pod, "PodReadyToStartContainers"),
        "container_started": started(pod),
        "pod_ready": condition_time(pod, "Ready"),
    }
    if log is not None:
        times["server_ready_logged"] = log_times(log)["ready"]
    return times


def log_times(log: str) -> dict[str, float | None]:
    """From a container log with the runtime's timestamps (RFC 3339, nanoseconds): its first
    line and the model server's `model '...' ready in X s` line, as epoch seconds."""
    first = ready = None
    for line in log.splitlines():
        stamp, _, text = line.partition(" ")
        try:
            when = ts(_microseconds(stamp))
        except ValueError:
            continue
        first = when if first is None else first
        if ready is None and READY_LINE in text and "' ready in " in text:
            ready = when
    return {"first": first, "ready": ready}


READY_LINE = "model_server: model '"


def _microseconds(stamp: str) -> str:
    """An RFC 3339 time with at most 6 fractional digits (datetime takes no more)."""
    head, dot, rest = stamp.partition(".")
    if not dot:
        return stamp
    digits = rest.rstrip("Z")
    return f"{head}.{digits[:6]}{'Z' if rest.endswith('Z') else ''}"


def offsets(t0: float | None, times: Mapping[str, float | None], order: Iterable[str]) -> Stages:
    """Each time minus t0, in the order of `order` (None where either is unknown)."""
    return {
        k: None if t0 is None or times.get(k) is None else times[k] - t0  # type: ignore[operator]
        for k in order
        if k in times
    }


def apply_stages(
    root: Obj, pod: Obj, deployment: Obj | None = None, log: str | None = None
) -> Stages:
    """apply -> Ready. `root` is what was applied (the MLModel, or the plain Deployment) and
    gives t0 (its creationTimestamp); `deployment` is the MLModel's child, when there is one."""
    times: dict[str, float | None] = dict(pod_times(pod, log))
    if deployment is not None:
        times["deployment_created"] = created(deployment)
        times["mlmodel_ready"] = condition_time(root, "Ready")
    return offsets(created(root), times, APPLY_STAGES)


def scale_stages(
    t0: float | None,
    new_pods: Sequence[Obj],
    replicaset: Obj,
    deployment_scaled: float | None = None,
    mlmodel_status: float | None = None,
    logs: Sequence[str] | None = None,
) -> Stages:
    """Scale request (t0) -> every new pod Ready: the last new pod's time of each stage
    (`logs`: the new pods' container logs, in the same order)."""
    per_pod = [pod_times(p, None if logs is None else logs[i]) for i, p in enumerate(new_pods)]

    def last(key: str) -> float | None:
        values = [t[key] for t in per_pod]
        return None if not values or None in values else max(v for v in values if v is not None)

    times: dict[str, float | None] = {
        "replicaset_scaled": managed_time(replicaset, "", manager="kube-controller-manager"),
        "pods_created": last("pod_created"),
        "pods_scheduled": last("pod_scheduled"),
        "sandboxes_ready": last("sandbox_ready"),
        "containers_started": last("container_started"),
        **({"servers_ready_logged": last("server_ready_logged")} if logs is not None else {}),
        "all_ready": last("pod_ready"),
    }
    if deployment_scaled is not None or mlmodel_status is not None:
        times["deployment_scaled"] = deployment_scaled
        times["mlmodel_status"] = mlmodel_status
    return offsets(t0, times, SCALE_STAGES)


# (label, stage, who spends it) in the order things happen; a side skips stages it lacks
APPLY_CHAIN = (
    ("-> Deployment", "deployment_created", "operator"),
    ("-> Pod", "pod_created", "controller-manager"),
    ("-> scheduled", "pod_scheduled", "scheduler"),
    ("-> sandbox", "sandbox_ready", "kubelet, containerd, CNI"),
    ("-> container started", "container_started", "kubelet, containerd"),
    ("-> server ready", "server_ready_logged", "interpreter, imports, model fetch and load"),
    ("-> Pod Ready", "pod_ready", "the kubelet's startup and readiness probes"),
    ("-> MLModel Ready", "mlmodel_ready", "operator"),
)
SCALE_CHAIN = (
    ("-> Deployment", "deployment_scaled", "operator"),
    ("-> ReplicaSet", "replicaset_scaled", "controller-manager"),
    ("-> last Pod created", "pods_created", "controller-manager"),
    ("-> last started", "containers_started", "scheduler, kubelet, containerd"),
    ("-> last server ready", "servers_ready_logged", "server start"),
    ("-> last Ready", "all_ready", "the kubelet's probes"),
    ("-> MLModel status", "mlmodel_status", "operator"),
)


def chain(part: Mapping[str, dict[str, Any] | None], steps: Sequence[tuple[str, str, str]]) -> str:
    """Each stage's median minus the previous one's, from t0: where the seconds are."""
    previous, out = 0.0, []
    for label, key, who in steps:
        s = part.get(key)
        if s is None:
            continue
        out.append(f"{label} {s['median'] - previous:+.1f} s ({who})")
        previous = s["median"]
    return "t0 " + "; ".join(out)


def where(ours: dict[str, Any], floor: dict[str, Any]) -> list[str]:
    """The chains of both sides, apply and scale (differences of medians, so approximate)."""
    return [
        f"{phase}, {who}: {chain(side[phase], steps)}"
        for phase, steps in (("apply", APPLY_CHAIN), ("scale", SCALE_CHAIN))
        for who, side in (("ours", ours), ("floor", floor))
    ]


def stats(values: Sequence[float | None]) -> dict[str, Any] | None:
    """Median, min and max of the known values, and every value (None when none is known)."""
    known = [v for v in values if v is not None]
    if not known:
        return None
    return {
        "median": round(statistics.median(known), 3),
        "min": round(min(known), 3),
        "max": round(max(known), 3),
        "runs": [None if v is None else round(v, 3) for v in values],
    }


def summarize(rounds: Sequence[Mapping[str, float | None]]) -> dict[str, Any]:
    """Per stage (in the rounds' order) the stats over rounds."""
    keys: list[str] = []
    for r in rounds:
        keys += [k for k in r if k not in keys]
    return {k: stats([r.get(k) for r in rounds]) for k in keys}


def ratio(ours: dict[str, Any] | None, floor: dict[str, Any] | None) -> float | None:
    """ours' median / the floor's median (None when either is missing or the floor is 0)."""
    if not ours or not floor or not floor["median"]:
        return None
    return round(ours["median"] / floor["median"], 2)


def overlap(a: dict[str, Any] | None, b: dict[str, Any] | None) -> bool | None:
    """Whether two min-max ranges over the rounds overlap (a ratio is then within the noise)."""
    if not a or not b:
        return None
    return bool(a["min"] <= b["max"] and b["min"] <= a["max"])


def write(result: dict[str, Any], text: str, path: Path) -> None:
    """The figures as JSON at `path`, the printout beside it as .txt."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    path.with_suffix(".txt").write_text(text)


def _cell(s: dict[str, Any] | None) -> str:
    if s is None:
        return "-"
    if s["min"] == s["max"]:
        return f"{s['median']:.1f}"
    return f"{s['median']:.1f} ({s['min']:.0f}-{s['max']:.0f})"


def _table(
    title: str, stages: Mapping[str, str], ours: dict[str, Any], floor: dict[str, Any], add: Any
) -> None:
    head = f"  {title:<66}{'ours':>20}{'floor':>20}"
    add(head)
    add("  " + "-" * (len(head) - 2))
    for key, label in stages.items():
        if key in ours or key in floor:
            add(f"  {label:<66}{_cell(ours.get(key)):>20}{_cell(floor.get(key)):>20}")


def render(result: dict[str, Any]) -> str:
    """The printout (also written as startup-node.txt)."""
    lines: list[str] = []
    add = lines.append
    m = result["machine"]
    add(
        f"bench-startup-node: {result['what']}; {result['rounds']} rounds "
        f"(ours and the floor alternate which goes first), after one warm-up MLModel"
    )
    add(
        f"machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, Linux {m['kernel']}; "
        f"cluster: {result['cluster']}"
    )
    before, after = result["load_avg_before"], result["load_avg_after"]
    add(
        f"load average (1, 5, 15 min) before {' '.join(f'{v:.2f}' for v in before)}, "
        f"after {' '.join(f'{v:.2f}' for v in after)} on {m['cores']} cores"
    )
    add(f"model: {result['model']}")
    add(f"ours:  {result['ours_what']}")
    add(f"floor: {result['floor_what']}")
    add(f"pod: {result['pod']}")
    add(f"images: {result['images']}")
    add("")
    add(
        "Times are from the API's own timestamps (creationTimestamp, condition "
        "lastTransitionTime, startedAt, managedFields time): RFC 3339 in whole seconds, so each "
        "round's figure is exact to +-1 s; medians (min-max) over the rounds, in seconds."
    )
    add(f"finer data: {result['finer_data']}")
    ours, floor = result["ours"], result["floor"]
    add("")
    add("apply (1 replica) -> Ready; t0 = the applied object's creationTimestamp")
    _table("stage (s after t0)", APPLY_STAGES, ours["apply"], floor["apply"], add)
    add("")
    add(
        f"scale 1 -> {result['scale_to']} -> all Ready; t0 = the bench's PATCH of /scale, its "
        "clock cut to the whole second like the API's (the API keeps no time for a /scale "
        "write: that managedFields entry has none)"
    )
    _table("stage (s after t0)", SCALE_STAGES, ours["scale"], floor["scale"], add)
    add("")
    add(
        "the bench's own clock (ms resolution, polled every "
        f"{result['poll_ms']:.0f} ms): request sent -> Ready seen"
    )
    add(f"  {'':<66}{'ours':>20}{'floor':>20}")
    for key, label in (("apply", "apply -> Ready seen"), ("scale", "scale -> all Ready seen")):
        o, f = ours["seen"][key], floor["seen"][key]
        add(f"  {label:<66}{_cell2(o):>20}{_cell2(f):>20}")
    add("")
    add(
        "in the pod (the container runtime's log timestamps, ns): the server's first log line "
        "(uvicorn's, after the interpreter and imports) -> its model-ready line"
    )
    for key, label in (("apply", "apply: the one pod"), ("scale", "scale: the slowest new pod")):
        o, f = ours["server"][key], floor["server"][key]
        add(f"  {label:<66}{_cell2(o):>20}{_cell2(f):>20}")
    add("")
    add("ratios ours / floor (medians, same run; 1.00 = no overhead over a plain Deployment)")
    for r in result["ratios"]:
        add(
            f"  {r['what']:<58} {r['ours']:>6.2f} s / {r['floor']:>5.2f} s = "
            f"{'-' if r['ratio'] is None else format(r['ratio'], '.2f')}"
            + ("  (min-max ranges overlap: within the noise)" if r.get("ranges_overlap") else "")
        )
    if result.get("where"):
        add("")
        add("where the time goes (medians)")
        for line in result["where"]:
            add(f"  {line}")
    if result.get("memory"):
        add("")
        lines.extend(memory_lines(result["memory"]))
    for failure in result.get("failures", []):
        add(f"NOT MEASURED: {failure}")
    return "\n".join(lines) + "\n"


def memory_lines(pods: list[dict[str, Any]]) -> list[str]:
    """Each replica's cgroup charge beside its server's RSS (bench/startup/podmem.py)."""
    out = [
        f"memory of {len(pods)} replicas of one MLModel on the node, Ready and idle, in order of "
        "start (MiB): the pod's memory cgroup (what limits, evictions and kubectl top count: "
        "anonymous + the file pages charged to it; a file page is charged to the first pod "
        "that reads it) beside its server's RSS (every page it maps) and PSS",
        f"  {'pod':<34}{'charged':>9}{'anon':>8}{'file':>8}{'working set':>13}"
        f"{'server RSS':>12}{'PSS':>8}",
    ]
    for p in pods:
        out.append(
            f"  {p['pod']:<34}{p['charged']:>9.1f}{p['anon']:>8.1f}{p['file']:>8.1f}"
            f"{p['working_set']:>13.1f}{p['server_rss']:>12.1f}{p['server_pss']:>8.1f}"
        )
    charged = sum(p["charged"] for p in pods)
    rss = sum(p["server_rss"] for p in pods)
    out.append(
        f"  all {len(pods)}: charged {charged:.0f} MiB ({charged / len(pods):.0f} per replica; "
        f"each after the first {sum(p['charged'] for p in pods[1:]) / max(1, len(pods) - 1):.0f})"
        f", against {rss:.0f} MiB of RSS ({rss / len(pods):.0f} per replica)"
    )
    return out


def _cell2(s: dict[str, Any] | None) -> str:
    if s is None:
        return "-"
    return f"{s['median']:.2f} ({s['min']:.2f}-{s['max']:.2f})"


def ratios(result: dict[str, Any]) -> list[dict[str, Any]]:
    """ours / floor for apply -> Ready and scale -> all Ready (API) and as the bench saw them."""
    ours, floor = result["ours"], result["floor"]
    pairs = (
        (
            "apply -> Ready (API: MLModel Ready / Pod Ready)",
            ours["apply"].get(APPLY_TOTAL["ours"]),
            floor["apply"].get(APPLY_TOTAL["floor"]),
        ),
        (
            "apply -> Pod Ready (API, pod only)",
            ours["apply"].get("pod_ready"),
            floor["apply"].get("pod_ready"),
        ),
        (
            f"scale 1 -> {result['scale_to']} -> all Ready (API)",
            ours["scale"].get(SCALE_TOTAL),
            floor["scale"].get(SCALE_TOTAL),
        ),
        ("apply -> Ready seen (bench clock)", ours["seen"]["apply"], floor["seen"]["apply"]),
        ("scale -> all Ready seen (bench clock)", ours["seen"]["scale"], floor["seen"]["scale"]),
    )
    return [
        {
            "what": what,
            "ours": None if o is None else o["median"],
            "floor": None if f is None else f["median"],
            "ratio": ratio(o, f),
            "ranges_overlap": overlap(o, f),
        }
        for what, o, f in pairs
        if o is not None and f is not None
    ]
