"""Run every server under the same load, print the table, ratios and targets, write the JSON.

`uv run --frozen python -m bench.server [--runs 3] [--seconds 3] [--only NAME ...]`
(or `make bench-server`).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.server import load, procs, protocols, report
from bench.server.servers import SERVERS, Model, Server
from mlmodel_artifact import ModelCard, ModelFormat, sha256_file

CASES = ((1, 1), (8, 1), (1, 100), (8, 100))  # (connections, rows per request)
RESULTS = Path(__file__).parent.parent / "results" / "server.json"
READY_DEADLINE_S = 180.0


@dataclass(frozen=True)
class Case:
    """One measured (server, workers, connections, rows) cell."""

    server: str
    version: str
    workers: int
    connections: int
    rows: int
    rps: float
    p50_ms: float
    p99_ms: float
    rss_mb: float  # resident memory of the server's process tree divided by its workers
    requests: int
    socket_errors: int
    bad_status: int
    load_1m: float  # the machine's 1-minute load average after the case (2 cores)
    rps_runs: list[float]  # every measured run; the figures above are the fastest one's


def main(argv: Sequence[str] | None = None) -> int:
    """Benchmark the selected servers; exit 1 if any of them could not be measured."""
    args = _parse_args(argv)
    load.wrk_path()
    _say_how_busy()
    chosen = [s for s in SERVERS if not args.only or s.name in args.only]
    results: list[Case] = []
    failures: list[str] = []
    with tempfile.TemporaryDirectory(prefix="bench-server-") as tmp:
        scratch = Path(tmp)
        model = build_model(scratch / "artifact")
        for server, workers in ((s, w) for s in chosen for w in s.workers):
            try:
                results.extend(bench_server(server, workers, model, scratch, args))
            except (RuntimeError, TimeoutError, OSError) as exc:
                failures.append(f"{server.name} workers={workers}: {exc}")
                print(f"[bench] FAILED {failures[-1]}", file=sys.stderr, flush=True)
    rows = [asdict(case) for case in results]
    report.print_all(rows, failures)
    report.write_json(rows, args.out)
    print(f"\nwrote {args.out}")
    return 1 if failures else 0


def _say_how_busy() -> None:
    busy, cores = os.getloadavg()[0], os.cpu_count() or 1
    print(f"[bench] load average {busy:.2f} on {cores} cores before start", flush=True)
    if busy > cores / 2:
        print("[bench] WARNING: other work is running; figures will be noisy", flush=True)


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.server", description=__doc__)
    parser.add_argument("--runs", type=int, default=3, help="measured runs per case; best kept")
    parser.add_argument("--seconds", type=int, default=3, help="length of each measured run")
    parser.add_argument("--warmup", type=int, default=1, help="unmeasured seconds before each case")
    names = [s.name for s in SERVERS]
    parser.add_argument("--only", action="append", choices=names, help="repeatable")
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"default: {RESULTS}")
    return parser.parse_args(argv)


def build_model(dest: Path) -> Model:
    """Train the iris RandomForest(100 trees) artifact with the trainer CLI; check its joblib."""
    formats = ["--format", "skops", "--format", "joblib", "--format", "onnx"]
    argv = [sys.executable, "-m", "mlmodel_trainer", "train", "--dataset", "iris"]
    argv += ["--estimator", "random_forest", "--param", "n_estimators=100", "--seed", "42"]
    subprocess.run([*argv, *formats, "--out", str(dest)], check=True, capture_output=True)
    card = ModelCard.from_json((dest / "model-card.json").read_text(), str(dest))
    joblib_file = card.files[ModelFormat.JOBLIB]
    # Peers load this pickle; it must be the file the trainer wrote.
    if sha256_file(dest / joblib_file.file) != joblib_file.sha256:
        raise RuntimeError(f"{dest / joblib_file.file}: digest differs from the model card")
    return Model(card.name, dest, card.sha256, dest / joblib_file.file, joblib_file.sha256)


def sample_rows(model: Model, n: int) -> tuple[list[list[float]], list[object]]:
    """`n` rows cycled from the model card's held-out sample, and the answers it recorded."""
    card = ModelCard.from_json((model.artifact / "model-card.json").read_text(), "artifact")
    pairs = itertools.islice(
        itertools.cycle(zip(card.sample.inputs, card.sample.outputs, strict=True)), n
    )
    rows, answers = zip(*pairs, strict=True)
    return list(rows), list(answers)


def bench_server(
    server: Server, workers: int, model: Model, scratch: Path, args: argparse.Namespace
) -> list[Case]:
    """Start one server, measure every case against it, stop it."""
    slug = f"{server.name.replace(' ', '').replace('(', '-').replace(')', '')}-w{workers}"
    port = procs.free_port()
    (scratch / slug).mkdir()
    launch = server.launch(model, workers, port, scratch / slug)
    log = scratch / f"{slug}.log"
    url = f"http://{procs.LOOPBACK}:{port}{server.protocol.path(model.name)}"
    print(f"[bench] {server.name} workers={workers}: starting", flush=True)
    started = time.monotonic()
    proc = procs.start(launch, log)
    try:
        one_row, _ = sample_rows(model, 1)
        procs.wait_answering(proc, url, server.protocol.body(one_row), log, READY_DEADLINE_S)
        print(f"[bench]   answering after {time.monotonic() - started:.1f}s", flush=True)
        exposed = procs.non_loopback_listeners(proc.pid)
        if exposed:
            raise RuntimeError(f"listens beyond loopback: {exposed}")
        return [_measure(server, workers, url, model, proc.pid, case, args) for case in CASES]
    finally:
        procs.stop(proc)


def _measure(
    server: Server,
    workers: int,
    url: str,
    model: Model,
    pid: int,
    case: tuple[int, int],
    args: argparse.Namespace,
) -> Case:
    connections, n_rows = case
    rows, answers = sample_rows(model, n_rows)
    body = server.protocol.body(rows)
    _check_answer(server, url, body, answers)
    load.run(url, body, connections, args.warmup)
    runs = [load.run(url, body, connections, args.seconds) for _ in range(args.runs)]
    # Unrelated work on the machine only ever slows a run down: the fastest run is the one
    # least disturbed, and every server is judged the same way.
    clean = [run for run in runs if not run.socket_errors and not run.bad_status]
    got = max(clean or runs, key=lambda run: run.rps)
    _check_answer(server, url, body, answers)  # still serving, still right
    rss = procs.tree_rss_mb(pid) / workers
    print(
        f"[bench]   c={connections} rows={n_rows}: {got.rps:,.0f} req/s "
        f"p50 {got.p50_ms:.2f} ms p99 {got.p99_ms:.2f} ms "
        f"(runs: {', '.join(f'{run.rps:,.0f}' for run in runs)})",
        flush=True,
    )
    return Case(
        server.name, server.version, workers, connections, n_rows, round(got.rps, 1),
        round(got.p50_ms, 3), round(got.p99_ms, 3), round(rss, 1), got.requests,
        got.socket_errors, got.bad_status, round(os.getloadavg()[0], 2),
        [round(run.rps, 1) for run in runs],
    )  # fmt: skip


def _check_answer(server: Server, url: str, body: bytes, answers: list[object]) -> None:
    status, raw = procs.post(url, body)
    if status != 200:
        raise RuntimeError(f"POST {url} answered {status}: {raw[:300]!r}")
    if not server.answers_model:
        return
    got = server.protocol.answers(json.loads(raw))
    if not protocols.same_labels(got, answers):
        raise RuntimeError(f"POST {url} predicted {got[:5]}..., the model card says {answers[:5]}")
