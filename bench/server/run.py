"""Run every server under the same load, print the table, ratios and targets, write the JSON.

`uv run --frozen python -m bench.server [--runs 3] [--seconds 3] [--only NAME ...]`
(or `make bench-server`).

All servers are started first and stay up (idle) while the others are measured; the measured
runs then go round-robin: round 1 measures every case of every server once, round 2 again, and
so on. A burst of unrelated work on the machine therefore hits one run of many servers rather
than every run of one server, and each case keeps its fastest clean run.
"""

from __future__ import annotations

import argparse
import itertools
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from bench.server import load, procs, protocols, report
from bench.server.servers import IRIS, PENGUINS, SERVERS, Model, Server
from mlmodel_artifact import ModelCard, ModelFormat, sha256_file

CASES = ((1, 1), (8, 1), (1, 100), (8, 100))  # (connections, rows per request)
RESULTS = Path(__file__).parent.parent / "results" / "server.json"
READY_DEADLINE_S = 180.0
T = TypeVar("T")


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
    cpu_us_per_req: float  # CPU the server's processes spent per request (all workers)
    runq_us_per_req: float  # time its threads waited for a CPU, per request
    load_1m: float  # the machine's 1-minute load average after the kept run (2 cores)
    rps_runs: list[float]  # every measured run; the figures above are the fastest clean one's


@dataclass(frozen=True)
class Run:
    """One measured load run (wrk or grpcload) and what it cost the server."""

    load: load.LoadResult
    cpu_ns: int
    runq_ns: int
    load_1m: float

    @property
    def clean(self) -> bool:
        """No socket errors and no non-2xx (gRPC: non-OK) answers."""
        return not self.load.socket_errors and not self.load.bad_status


@dataclass
class Instance:
    """One running server process and what was measured against it so far."""

    server: Server
    workers: int
    proc: subprocess.Popen[bytes]
    url: str
    runs: dict[tuple[int, int], list[Run]] = field(default_factory=dict)
    rss_mb: float = 0.0

    @property
    def label(self) -> str:
        """How messages name this instance."""
        return f"{self.server.name} workers={self.workers}"


def main(argv: Sequence[str] | None = None) -> int:
    """Benchmark the selected servers; exit 1 if any of them could not be measured."""
    args = _parse_args(argv)
    load.wrk_path()
    _say_how_busy()
    chosen = [
        (s, w)
        for s in SERVERS
        if not args.only or s.name in args.only
        for w in s.workers
        if not args.workers or w in args.workers
    ]
    failures: list[str] = []
    with tempfile.TemporaryDirectory(prefix="bench-server-") as tmp:
        scratch = Path(tmp)
        models = {
            name: build_model(scratch / f"artifact-{name}", name)
            for name in (IRIS, PENGUINS)
            if any(server.model == name for server, _ in chosen)
        }
        instances: list[Instance] = []
        try:
            for server, workers in chosen:
                label = f"{server.name} workers={workers}"
                model = models[server.model]
                instance = _attempt(
                    failures, label, start_instance, server, workers, model, scratch
                )
                if instance is not None:
                    instances.append(instance)
            measured = measure_rounds(instances, models, args, failures)
        finally:
            for instance in instances:
                procs.stop(instance.proc)
    rows = [asdict(case) for instance in measured for case in summarize(instance)]
    report.print_all(rows, failures)
    report.write_json(rows, args.out)
    print(f"\nwrote {args.out}")
    return 1 if failures else 0


def _attempt(failures: list[str], label: str, action: Callable[..., T], *args: Any) -> T | None:
    """`action(*args)`, or None after recording why it failed."""
    try:
        return action(*args)
    except (RuntimeError, TimeoutError, OSError, ValueError) as exc:
        failures.append(f"{label}: {exc}")
        print(f"[bench] FAILED {failures[-1]}", file=sys.stderr, flush=True)
        return None


def _say_how_busy() -> None:
    busy, cores = os.getloadavg()[0], os.cpu_count() or 1
    print(f"[bench] load average {busy:.2f} on {cores} cores before start", flush=True)
    if busy > cores / 2:
        print("[bench] WARNING: other work is running; figures will be noisy", flush=True)


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.server", description=__doc__)
    parser.add_argument("--runs", type=int, default=3, help="measured runs per case; best kept")
    parser.add_argument("--seconds", type=int, default=3, help="length of each measured run")
    parser.add_argument("--warmup", type=int, default=1, help="unmeasured seconds before a case")
    names = [s.name for s in SERVERS]
    parser.add_argument("--only", action="append", choices=names, help="repeatable")
    parser.add_argument(
        "--workers", action="append", type=int, help="repeatable; default: each server's own"
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"default: {RESULTS}")
    return parser.parse_args(argv)


def build_model(dest: Path, dataset: str = IRIS) -> Model:
    """Train a RandomForest(100 trees) artifact with the trainer CLI; check its joblib.

    iris is a float matrix model; penguins a Pipeline(ColumnTransformer -> forest) on a typed
    DataFrame (categorical and nullable columns). Our server serves both on the compiled path
    (penguins: one ONNX input per feature); KServe runs scikit-learn on a DataFrame.
    """
    formats = ["--format", "skops", "--format", "joblib"]
    if dataset == IRIS:
        formats += ["--format", "onnx"]
    argv = [sys.executable, "-m", "mlmodel_trainer", "train", "--dataset", dataset]
    argv += ["--estimator", "random_forest", "--param", "n_estimators=100", "--seed", "42"]
    subprocess.run([*argv, *formats, "--out", str(dest)], check=True, capture_output=True)
    card = ModelCard.from_json((dest / "model-card.json").read_text(), str(dest))
    joblib_file = card.files[ModelFormat.JOBLIB]
    # Peers load this pickle; it must be the file the trainer wrote.
    if sha256_file(dest / joblib_file.file) != joblib_file.sha256:
        raise RuntimeError(f"{dest / joblib_file.file}: digest differs from the model card")
    return Model(card.name, dest, card.sha256, dest / joblib_file.file, joblib_file.sha256)


def sample_rows(model: Model, n: int) -> tuple[list[protocols.Row], list[object]]:
    """`n` rows cycled from the model card's held-out sample, and the answers it recorded.

    A mixed-type model's rows are objects keyed by feature name (what a client of a
    DataFrame-fitted pipeline sends); a plain numeric model's are lists of numbers.
    """
    card = ModelCard.from_json((model.artifact / "model-card.json").read_text(), "artifact")
    inputs: list[protocols.Row] = list(card.sample.inputs)  # type: ignore[arg-type]
    if not card.feature_schema.plain_numeric:
        inputs = [dict(zip(card.feature_names, row, strict=True)) for row in card.sample.inputs]
    pairs = itertools.islice(itertools.cycle(zip(inputs, card.sample.outputs, strict=True)), n)
    rows, answers = zip(*pairs, strict=True)
    return list(rows), list(answers)


def start_instance(server: Server, workers: int, model: Model, scratch: Path) -> Instance:
    """Start one server and wait until all its workers answer; it stays up until the end."""
    name = server.name.replace(" ", "").replace(",", "-").replace("(", "-").replace(")", "")
    slug = f"{name}-w{workers}"
    port = procs.free_port()
    (scratch / slug).mkdir()
    launch = server.launch(model, workers, port, scratch / slug)
    log = scratch / f"{slug}.log"
    where = server.protocol.path(model.name)
    url = f"http://{procs.LOOPBACK}:{port}{where}"
    if server.protocol.grpc:
        if launch.grpc_port is None:
            raise RuntimeError(f"{server.name} is launched without a gRPC port")
        load.grpcload_path()  # built once (cached), before the server starts
        url = f"{procs.GRPC_SCHEME}{procs.LOOPBACK}:{launch.grpc_port}{where}"
    print(f"[bench] {server.name} workers={workers}: starting", flush=True)
    started = time.monotonic()
    proc = procs.start(launch, log)
    try:
        one_row, _ = sample_rows(model, 1)
        body = server.protocol.body(model.name, one_row)
        headers = server.protocol.headers(body)
        procs.wait_answering(proc, url, body, log, READY_DEADLINE_S, headers)
        exposed = procs.non_loopback_listeners(proc.pid)
        if exposed:
            raise RuntimeError(f"listens beyond loopback: {exposed}")
    except BaseException:
        procs.stop(proc)
        raise
    print(f"[bench]   answering after {time.monotonic() - started:.1f}s", flush=True)
    return Instance(server, workers, proc, url)


def measure_rounds(
    instances: list[Instance],
    models: dict[str, Model],
    args: argparse.Namespace,
    failures: list[str],
) -> list[Instance]:
    """Measure every case of every instance once per round; drop an instance that fails."""
    alive = list(instances)
    for round_no in range(1, args.runs + 1):
        print(f"[bench] round {round_no}/{args.runs}", flush=True)
        alive = [
            i
            for i in alive
            if _attempt(
                failures, i.label, _measure_instance, i, models[i.server.model], args, round_no
            )
        ]
    return alive


def _measure_instance(
    instance: Instance, model: Model, args: argparse.Namespace, round_no: int
) -> bool:
    first, last = round_no == 1, round_no == args.runs
    for connections, n_rows in CASES:
        rows, answers = sample_rows(model, n_rows)
        body = instance.server.protocol.body(model.name, rows)
        headers = instance.server.protocol.headers(body)
        if first:
            _check_answer(instance.server, instance.url, body, answers)
            load.run(instance.url, body, connections, args.warmup, headers)
        cpu_before, runq_before = procs.tree_cpu_ns(instance.proc.pid)
        got = load.run(instance.url, body, connections, args.seconds, headers)
        cpu_after, runq_after = procs.tree_cpu_ns(instance.proc.pid)
        run = Run(got, cpu_after - cpu_before, runq_after - runq_before, os.getloadavg()[0])
        instance.runs.setdefault((connections, n_rows), []).append(run)
        print(
            f"[bench]   {instance.label} c={connections} rows={n_rows}: {got.rps:,.0f} req/s "
            f"p50 {got.p50_ms:.2f} ms p99 {got.p99_ms:.2f} ms",
            flush=True,
        )
        if last:
            _check_answer(instance.server, instance.url, body, answers)  # still right
    if last:
        instance.rss_mb = procs.tree_rss_mb(instance.proc.pid) / instance.workers
    return True


def summarize(instance: Instance) -> list[Case]:
    """One Case per measured cell: its fastest run without errors (or fastest at all)."""
    cases = []
    for (connections, n_rows), runs in instance.runs.items():
        best = max([r for r in runs if r.clean] or runs, key=lambda r: r.load.rps)
        got, requests = best.load, max(best.load.requests, 1)
        cases.append(
            Case(
                instance.server.name,
                instance.server.version,
                instance.workers,
                connections,
                n_rows,
                rps=round(got.rps, 1),
                p50_ms=round(got.p50_ms, 3),
                p99_ms=round(got.p99_ms, 3),
                rss_mb=round(instance.rss_mb, 1),
                requests=got.requests,
                socket_errors=got.socket_errors,
                bad_status=got.bad_status,
                cpu_us_per_req=round(best.cpu_ns / requests / 1000, 1),
                runq_us_per_req=round(best.runq_ns / requests / 1000, 1),
                load_1m=round(best.load_1m, 2),
                rps_runs=[round(r.load.rps, 1) for r in runs],
            )
        )
    return cases


def _check_answer(server: Server, url: str, body: bytes, answers: list[object]) -> None:
    ok, status, raw = procs.ask(url, body, headers=server.protocol.headers(body))
    if not ok:
        raise RuntimeError(f"{url} answered {status}: {raw[:300]!r}")
    if not server.answers_model:
        return
    got = server.protocol.answers(server.protocol.parse(raw))
    if not protocols.same_labels(got, answers):
        raise RuntimeError(f"{url} predicted {got[:5]}..., the model card says {answers[:5]}")
