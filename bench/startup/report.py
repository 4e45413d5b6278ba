"""The cold start table, our server against each peer, the targets of issue 16, the files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.server.servers import OURS, PENGUINS

Summary = dict[str, Any]
ONNX = f"{OURS} (onnx)"
CONVERT = f"{OURS} (convert)"
NO_GRPC = f"{OURS} (onnx, no gRPC)"
# (ours, theirs): start-up and memory of the first divided by the second's, same run.
PAIRS = (
    (ONNX, "mlserver"),
    (ONNX, "kserve"),
    (f"{OURS} (onnx, {PENGUINS})", f"kserve ({PENGUINS})"),
    (ONNX, CONVERT),
)
READY_TARGET_S = 1.5
RSS_TARGET_MB = 100.0


def write(result: dict[str, Any], text: str, path: Path) -> None:
    """The figures as JSON at `path`, the printout beside it as .txt."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    path.with_suffix(".txt").write_text(text)


def _find(servers: list[Summary], name: str) -> Summary | None:
    return next((s for s in servers if s["server"] == name), None)


def ratios(servers: list[Summary]) -> list[dict[str, Any]]:
    """Median start -> ready and RSS per worker of ours divided by theirs, for every pair
    measured (start-up: lower is better, so `faster` is theirs / ours)."""
    out = []
    for ours_name, theirs_name in PAIRS:
        ours, theirs = _find(servers, ours_name), _find(servers, theirs_name)
        if ours is None or theirs is None:
            continue
        ready_ours, ready_theirs = ours["ready_s"]["median"], theirs["ready_s"]["median"]
        rss_ours, rss_theirs = ours["rss_after_mb"]["median"], theirs["rss_after_mb"]["median"]
        out.append(
            {
                "pair": f"{ours_name} / {theirs_name}",
                "ready_s": [ready_ours, ready_theirs],
                "ready_ratio": round(ready_ours / ready_theirs, 3),
                "faster": round(ready_theirs / ready_ours, 2),
                "ready_min_faster": round(theirs["ready_s"]["min"] / ours["ready_s"]["min"], 2),
                "rss_after_mb": [rss_ours, rss_theirs],
                "rss_ratio": round(rss_ours / rss_theirs, 3),
            }
        )
    return out


def targets(servers: list[Summary]) -> list[dict[str, Any]]:
    """Issue 16's targets, for reference: met, missed or not measured, with the figure."""
    fast = _find(servers, ONNX)
    ready = None if fast is None else fast["ready_s"]["median"]
    rss = None if fast is None else fast["rss_after_mb"]["median"]
    http_only = _find(servers, NO_GRPC)
    without = "" if http_only is None else f"{http_only['rss_after_mb']['median']:.0f} MB"
    return [
        {
            "target": f"start -> ready under {READY_TARGET_S} s ({ONNX}, median)",
            "met": None if ready is None else ready < READY_TARGET_S,
            "figure": None if ready is None else f"{ready:.2f} s",
            "note": "",
        },
        {
            "target": f"RSS per worker under {RSS_TARGET_MB:.0f} MB on the slim path "
            f"({ONNX}, median after the requests)",
            "met": None if rss is None else rss < RSS_TARGET_MB,
            "figure": None if rss is None else f"{rss:.0f} MB",
            "note": "measured in the full workspace venv, not in mlmodel-server:slim (this "
            "path imports none of what the slim image leaves out: scikit-learn, scipy, onnx; "
            "tests/model_server/test_checked_onnx.py); in the pod, with the image's Python "
            "and the artifact downloaded from S3: bench-startup-node's memory table. "
            "The libraries alone (imported one by one: Python, numpy, pydantic, ONNX Runtime "
            "with the session, FastAPI/uvicorn, prometheus_client, a started gRPC server) "
            "take ~105 MB; the V2 gRPC service (on by default) ~12 MB of it"
            + (f": without it {without} ({NO_GRPC})" if without else ""),
        },
    ]


def render(result: dict[str, Any]) -> str:
    """The printout (also written as startup.txt)."""
    lines: list[str] = []
    add = lines.append
    m = result["machine"]
    add(
        f"bench-startup: {result['what']}; {result['runs']} runs per server, round-robin; "
        f"readiness polled every {result['poll_ms']:.0f} ms"
    )
    add(
        f"machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, Linux {m['kernel']}, "
        f"Python {m['python']}{', servers at nice -10' if m['niced'] else ''}"
    )
    add("workspace: " + ", ".join(f"{k} {v}" for k, v in m["workspace"].items()))
    add(
        f"load average (1, 5, 15 min) before {_triple(result['load_avg_before'])}, "
        f"after {_triple(result['load_avg_after'])} on {m['cores']} cores"
    )
    for name, model in result["models"].items():
        files = ", ".join(
            f"{f['file']} {f['bytes'] / 1024:,.0f} KiB" for f in model["files"].values()
        )
        add(
            f"model {name}: {model['estimator']} (100 trees): {files}; "
            f"onnx_check agrees: {model['onnx_check_agrees']}"
        )
    _table(result["servers"], result["requests"], add)
    _first_runs(result["servers"], add)
    _breakdown(result["servers"], add)
    _imports(result.get("importtime"), add)
    _ratios(result["ratios"], add)
    add("")
    add("targets of issue 16 (for reference)")
    for t in result["targets"]:
        mark = "n/a " if t["met"] is None else ("MET " if t["met"] else "MISS")
        figure = t["figure"] or "not measured"
        note = f"; {t['note']}" if t["note"] else ""
        add(f"  [{mark}] {t['target']}: {figure}{note}")
    for failure in result["failures"]:
        add(f"NOT MEASURED: {failure}")
    return "\n".join(lines) + "\n"


def _triple(values: list[float]) -> str:
    return " ".join(f"{v:.2f}" for v in values)


def _table(servers: list[Summary], requests: int, add: Any) -> None:
    head = f"{'server':<30}{'version':>10}{'serves':>24}{'ready median':>14}{'min':>8}"
    head += f"{'1st answer':>12}{'RSS ready':>11}{f'RSS +{requests} req':>14}"
    add("")
    add("start -> /v2/health/ready 200 (s); first answer: ready -> first checked prediction (ms);")
    add("RSS per worker (MB, the process tree's resident memory / 1 worker), medians")
    add(head)
    add("-" * len(head))
    for s in servers:
        add(
            f"{s['server']:<30}{s['version']:>10}{_serves(s):>24}"
            f"{s['ready_s']['median']:>14.2f}{s['ready_s']['min']:>8.2f}"
            f"{s['first_answer_ms']['median']:>12.1f}{s['rss_ready_mb']['median']:>11.0f}"
            f"{s['rss_after_mb']['median']:>14.0f}"
        )


def _serves(s: Summary) -> str:
    served = s.get("served")
    if served is None:
        return "model.joblib (sklearn)"
    if served["format"] == "onnx":
        return "model.onnx as is"
    return f"model.{served['format']} -> ONNX"


def _first_runs(servers: list[Summary], add: Any) -> None:
    odd = [s for s in servers if s["ready_s"]["first_differs"]]
    add("")
    if not odd:
        add("first runs: within 25% of the median for every server (no cold-cache outlier)")
        return
    add("first runs (round 1) more than 25% away from the median start -> ready:")
    for s in odd:
        r = s["ready_s"]
        add(f"  {s['server']}: first {r['first']:.2f} s, median {r['median']:.2f} s")


def _breakdown(servers: list[Summary], add: Any) -> None:
    ours = [s for s in servers if s.get("log_line_s")]
    if not ours:
        return
    add("")
    add('where our start-up goes (medians; the server logs "model ... ready in X s", X = load):')
    for s in ours:
        line, load, ready = s["log_line_s"]["median"], s["load_s"]["median"], s["ready_s"]["median"]
        add(
            f"  {s['server']}: start -> log line {line:.2f} s = {line - load:.2f} s before the "
            f"loader starts (interpreter, imports, settings, app, lifespan) + {load:.2f} s "
            f"load (fetch, digest, runtime {s['served']['runtime']!r}, warm-up; uvicorn "
            f"binds meanwhile); log line -> ready seen {ready - line:+.3f} s (ready {ready:.2f} s)"
        )


def _imports(found: dict[str, Any] | None, add: Any) -> None:
    if not found:
        return
    add("")
    add(
        f"imports of one {found['server']} start under python -X importtime "
        f"(ready after {found['ready_s_under_importtime']:.2f} s under importtime): "
        f"{found['modules']} modules, {found['total_ms']:,.0f} ms of import time in all"
    )
    flags = found.get("imported", {})
    if flags:
        yes = [name for name, seen in flags.items() if seen]
        no = [name for name, seen in flags.items() if not seen]
        add(
            f"  of {', '.join(flags)}: imported {', '.join(yes) or 'none'}; "
            f"not imported {', '.join(no) or 'none'}"
        )
    add("  top 10 by cumulative time (a package's time includes the modules it imports first):")
    for i in found["top_cumulative"]:
        indent = "  " * i["depth"]
        add(
            f"    {i['cumulative_ms']:>8,.0f} ms  {indent}{i['module']}  (self {i['self_ms']:,.0f})"
        )
    add("  top 10 packages by their own modules' time (self, summed; nothing counted twice):")
    for p in found["top_packages_self"]:
        add(f"    {p['self_ms']:>8,.0f} ms  {p['package']} ({p['modules']} modules)")


def _ratios(pairs: list[dict[str, Any]], add: Any) -> None:
    if not pairs:
        return
    add("")
    add("ours / theirs, same run (start -> ready: lower is better; RSS after the requests)")
    for p in pairs:
        ours_s, theirs_s = p["ready_s"]
        ours_mb, theirs_mb = p["rss_after_mb"]
        add(
            f"  {p['pair']}: start -> ready {p['ready_ratio']:.2f} "
            f"({ours_s:.2f} s vs {theirs_s:.2f} s) = {p['faster']:.1f}x faster "
            f"(fastest runs: {p['ready_min_faster']:.1f}x); "
            f"RSS {p['rss_ratio']:.2f} ({ours_mb:.0f} vs {theirs_mb:.0f} MB)"
        )
