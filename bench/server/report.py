"""The table, the ratios of our server to each peer, the targets, and the JSON file."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path
from typing import Any

from bench.server.servers import DRIFT_OFF, OURS, PENGUINS, SERVERS, SHADOW, SKLEARN

Row = dict[str, Any]
CASE_KEYS = ((1, 1), (8, 1), (1, 100), (8, 100))  # (connections, rows)
FLOOR = "http-floor"
GRPC_FLOOR = "grpc-floor"
MLSERVER_GRPC = "mlserver (grpc)"
PEERS = tuple(s.name for s in SERVERS if s.is_peer)


def print_all(rows: list[Row], failures: list[str]) -> None:
    """Print the results table, the ratios and whether each target is met."""
    print_table(rows)
    print_ratios(rows)
    print_cpu_ratios(rows)
    print_parts(rows)
    print_penguins(rows)
    print_drift(rows)
    print_shadow(rows)
    print_v2_vs_json(rows)
    print_grpc(rows)
    print_targets(rows)
    for failure in failures:
        print(f"NOT MEASURED: {failure}")
    for r in rows:
        if r["socket_errors"] or r["bad_status"]:
            print(
                f"ERRORS: {r['server']} w={r['workers']} c={r['connections']} rows={r['rows']}: "
                f"{r['socket_errors']} socket errors, {r['bad_status']} non-2xx (gRPC: non-OK) "
                f"answers of {r['requests']} requests (over 1%: left out of ratios and targets)"
            )


def write_json(rows: list[Row], path: Path) -> None:
    """One object per server x case."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rows, indent=2) + "\n")


def print_table(rows: list[Row]) -> None:
    """Every measured case, one line each."""
    head = f"{'server':<20}{'workers':>8}{'conns':>6}{'rows':>5}{'req/s':>10}"
    head += f"{'p50 ms':>9}{'p99 ms':>9}{'CPU us/req':>11}{'runq us/req':>12}"
    head += f"{'RSS MB/worker':>15}{'errors':>8}"
    print(f"\n{head}\n{'-' * len(head)}")
    for r in rows:
        errors = r["socket_errors"] + r["bad_status"]
        print(
            f"{r['server']:<20}{r['workers']:>8}{r['connections']:>6}{r['rows']:>5}"
            f"{r['rps']:>10,.0f}{r['p50_ms']:>9.2f}{r['p99_ms']:>9.2f}"
            f"{r['cpu_us_per_req']:>11,.0f}{r['runq_us_per_req']:>12,.0f}{r['rss_mb']:>15.1f}"
            f"{errors:>8}"
        )


def print_ratios(rows: list[Row]) -> None:
    """Our throughput divided by each other server's, case by case, at equal worker counts."""
    _print_ratio_table(rows, f"{OURS} req/s divided by each server's (same workers)", _ratio)


def print_cpu_ratios(rows: list[Row]) -> None:
    """Each server's CPU per request divided by ours: efficiency a busy machine barely moves."""
    title = f"CPU per request of each server divided by {OURS}'s (same workers)"
    _print_ratio_table(rows, title, _cpu_ratio)


RatioOf = Callable[[list[Row], str, int, int, int], float | None]


def _print_ratio_table(rows: list[Row], title: str, ratio: RatioOf) -> None:
    """One line per other server and worker count, one column per (connections, rows) case."""
    cols = "".join(f"{f'c={c} rows={n}':>16}" for c, n in CASE_KEYS)
    print(f"\n{title}\n{'vs':<24}{cols}")
    for other in (*PEERS, FLOOR):
        for workers in _workers(rows, other):
            cells = [ratio(rows, other, workers, c, n) for c, n in CASE_KEYS]
            text = "".join(f"{'-' if x is None else f'{x:,.2f}x':>16}" for x in cells)
            print(f"{f'{other} (w={workers})':<24}{text}")


def _cpu_ratio(rows: list[Row], other: str, w: int, conns: int, n_rows: int) -> float | None:
    ours, theirs = _get(rows, OURS, w, conns, n_rows), _get(rows, other, w, conns, n_rows)
    if ours is None or theirs is None or not ours["cpu_us_per_req"]:
        return None
    return float(theirs["cpu_us_per_req"]) / float(ours["cpu_us_per_req"])


def print_parts(rows: list[Row]) -> None:
    """What the HTTP stack and the compiled path each contribute: our server with the compiled
    path off (scikit-learn's predict on the same model as the peers) against each server, and
    the compiled path (ONNX Runtime) against it."""
    if not _workers(rows, SKLEARN):
        return
    title = f"HTTP stack alone: {SKLEARN} req/s divided by each server's (same workers)"
    _print_ratio_table(rows, title, partial(_ratio, ours=SKLEARN))
    _print_versus(
        rows,
        f"compiled path: req/s divided by {SKLEARN}'s (ONNX Runtime vs scikit-learn's predict)",
        (OURS,),
        SKLEARN,
    )


def print_penguins(rows: list[Row]) -> None:
    """The mixed-type pipeline: our server's req/s (seed and V2) divided by KServe's."""
    theirs = f"kserve ({PENGUINS})"
    ours = (f"{OURS} ({PENGUINS})", f"{OURS} (v2, {PENGUINS})")
    _print_versus(rows, f"{PENGUINS} pipeline: req/s divided by {theirs}'s", ours, theirs)


def print_drift(rows: list[Row]) -> None:
    """What drift monitoring costs: our server (drift window on, 1000 rows) against the same
    server with MODEL_SERVER_DRIFT_WINDOW=0 (the issue's budget: at least 0.95x at c8, 1 row)."""
    _print_versus(
        rows, f"drift monitoring: req/s divided by {DRIFT_OFF}'s (on vs off)", (OURS,), DRIFT_OFF
    )


def print_shadow(rows: list[Row]) -> None:
    """What a shadow candidate costs the answers (issue 17's budget: latency within 5 % at c8):
    p50 and p99 of the shadow row divided by the plain row's, and req/s, per case."""
    if not _workers(rows, SHADOW):
        return
    print(
        f"\nshadow candidate: {SHADOW} divided by {OURS} (same workers; latency: lower is better)"
    )
    print(f"{'case':<22}{'req/s':>10}{'p50':>10}{'p99':>10}")
    for w in _workers(rows, SHADOW):
        for c, n in CASE_KEYS:
            a, b = _get(rows, SHADOW, w, c, n), _get(rows, OURS, w, c, n)
            if a is None or b is None or not b["rps"]:
                continue
            cells = [a["rps"] / b["rps"], a["p50_ms"] / b["p50_ms"], a["p99_ms"] / b["p99_ms"]]
            case = f"w={w} c={c} rows={n}"
            print(f"{case:<22}" + "".join(f"{x:>9.2f}x" for x in cells))


def print_v2_vs_json(rows: list[Row]) -> None:
    """What tritonclient sends by default, binary tensor data over HTTP and raw contents over
    gRPC, against the same request in V2 JSON."""
    _print_versus(
        rows,
        "V2 binary tensors and gRPC: req/s divided by V2 JSON's",
        (f"{OURS} (v2 binary)", f"{OURS} (grpc)"),
        f"{OURS} (v2)",
    )


def print_grpc(rows: list[Row]) -> None:
    """Our gRPC rows against gRPC yardsticks: the gRPC floor (grpc.aio answering a constant,
    the most this stack can do under grpcload) and MLServer's gRPC port."""
    for theirs in (GRPC_FLOOR, MLSERVER_GRPC):
        _print_versus(rows, f"gRPC: req/s divided by {theirs}'s", (f"{OURS} (grpc)",), theirs)


def _print_versus(rows: list[Row], title: str, names: tuple[str, ...], theirs: str) -> None:
    """Each of `names`' req/s divided by `theirs`' per case (same workers)."""
    if not any(_workers(rows, name) for name in names):
        return
    cols = "".join(f"{f'c={c} rows={n}':>16}" for c, n in CASE_KEYS)
    print(f"\n{title} (same workers)\n{'':<28}{cols}")
    for name in names:
        for w in _workers(rows, name):
            cells = []
            for c, n in CASE_KEYS:
                a, b = _get(rows, name, w, c, n), _get(rows, theirs, w, c, n)
                ok = a is not None and b is not None and b["rps"]
                cells.append(a["rps"] / b["rps"] if ok else None)  # type: ignore[index]
            text = "".join(f"{'-' if x is None else f'{x:,.2f}x':>16}" for x in cells)
            print(f"{f'{name} (w={w})':<28}{text}")


def print_targets(rows: list[Row]) -> None:
    """Each target of the issue, met or missed, with the figure behind it."""
    print("\ntargets")
    for met, text in targets(rows):
        mark = "n/a " if met is None else ("MET " if met else "MISS")
        print(f"  [{mark}] {text}")


def targets(rows: list[Row]) -> list[tuple[bool | None, str]]:
    """(met, description) for every target at every worker count our server ran with."""
    out: list[tuple[bool | None, str]] = []
    for w in _workers(rows, OURS):
        for peer in ("seed-gunicorn", "mlserver", "kserve"):
            out.append(_at_least(rows, peer, w, 1, 10.0, f"1-row c=8 w={w}: >=10x {peer}"))
        out.append(_at_least(rows, FLOOR, w, 1, 0.5, f"1-row c=8 w={w}: >=0.5x {FLOOR}"))
        out.append(_p99_target(rows, w))
        out.append(_batch_target(rows, w))
    return out


def _at_least(
    rows: list[Row], other: str, w: int, n_rows: int, factor: float, text: str
) -> tuple[bool | None, str]:
    ratio = _ratio(rows, other, w, 8, n_rows)
    if ratio is None:
        return None, f"{text} (not measured)"
    return ratio >= factor, f"{text} ({ratio:,.2f}x)"


def _p99_target(rows: list[Row], w: int) -> tuple[bool | None, str]:
    text = f"1-row c=1 w={w}: p99 < 1.5 ms"
    case = _get(rows, OURS, w, 1, 1)
    if case is None:
        return None, f"{text} (not measured)"
    floor = _get(rows, FLOOR, w, 1, 1)
    context = "" if floor is None else f"; {FLOOR} {floor['p99_ms']:.2f} ms"
    return case["p99_ms"] < 1.5, f"{text} ({case['p99_ms']:.2f} ms{context})"


def _batch_target(rows: list[Row], w: int) -> tuple[bool | None, str]:
    text = f"100-row c=1,8 w={w}: >=10x every peer"
    ratios = [
        (ratio, f"{peer} c={c}")
        for peer in PEERS
        for c in (1, 8)
        if (ratio := _ratio(rows, peer, w, c, 100)) is not None
    ]
    if not ratios:
        return None, f"{text} (not measured)"
    worst, where = min(ratios)
    return worst >= 10.0, f"{text} (lowest {worst:,.2f}x vs {where})"


def _ratio(
    rows: list[Row], other: str, w: int, conns: int, n_rows: int, ours: str = OURS
) -> float | None:
    mine, theirs = _get(rows, ours, w, conns, n_rows), _get(rows, other, w, conns, n_rows)
    if mine is None or theirs is None or not theirs["rps"]:
        return None
    return float(mine["rps"]) / float(theirs["rps"])


def _get(rows: Iterable[Row], server: str, w: int, conns: int, n_rows: int) -> Row | None:
    """The case, unless more than 1% of its requests failed (then it proves nothing)."""
    for r in rows:
        if (r["server"], r["workers"], r["connections"], r["rows"]) == (server, w, conns, n_rows):
            failed = r["socket_errors"] + r["bad_status"]
            return None if failed > 0.01 * max(r["requests"], 1) else r
    return None


def _workers(rows: Iterable[Row], server: str) -> list[int]:
    return sorted({r["workers"] for r in rows if r["server"] == server})
