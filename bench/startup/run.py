"""Start each server from nothing, time it to ready, read its memory, stop it; round-robin.

`uv run --frozen python -m bench.startup [--runs 5] [--requests 200] [--only NAME ...]`
(or `make bench-startup`).

Every run of every server is a fresh process: start -> `GET /v2/health/ready` answers 200
(polled every 10 ms) -> one prediction checked against the model card -> RSS -> `--requests`
one-row predictions -> RSS -> stop. Round 1 starts every server once, round 2 again, and so on
(each round starts one server later in the list than the last), so a burst of unrelated work
on the machine hits one run of several servers rather than every run of one.
"""

from __future__ import annotations

import argparse
import http.client
import os
import platform
import re
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.server import procs, protocols, venvs
from bench.server.run import build_model, sample_rows
from bench.server.servers import IRIS, OURS, PENGUINS, SERVERS, Model, Server
from bench.startup import importtime, report
from devcluster.waiting import WaitTimeout, wait_until
from mlmodel_artifact import ModelCard, ModelFormat

RESULTS = Path(__file__).parent.parent / "results" / "startup.json"
READY_PATH = "/v2/health/ready"  # ours, MLServer and KServe (which registers V1 and V2) alike
POLL_S = 0.01
DEADLINE_S = 180.0
PAUSE_S = 0.5  # between one server's stop and the next start
FIRST_DIFFERS = 0.25  # the first run is reported apart when it is this far from the median

# "2025-06-01 22:03:53,123 INFO model_server: model 'iris' ready in 0.21 s: RandomForest...
#  onnx, sha256 ab12..., runtime onnxruntime, inline up to 64 rows" (model_server.lifecycle)
_READY_LINE = re.compile(
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) \w+ [\w.]+: model '[^']*' ready in ([\d.]+) s: "
    r"(?P<estimator>\S+) (?P<format>\S+), sha256 (?P<sha256>\w+), runtime (?P<runtime>[^,]+),"
)


@dataclass(frozen=True)
class Subject:
    """One server as measured here: how bench/server launches it, and for ours which file's
    digest is pinned (which decides the file it serves)."""

    name: str
    server: Server
    pin: str | None = None  # ours only: "onnx" (serves model.onnx) or "primary" (converts)
    env: tuple[tuple[str, str], ...] = ()  # ours only: settings on top of bench/server's

    @property
    def ours(self) -> bool:
        """Our server (its log says where its start-up time goes)."""
        return self.pin is not None


def _server(name: str) -> Server:
    return next(s for s in SERVERS if s.name == name)


SUBJECTS: tuple[Subject, ...] = (
    Subject(f"{OURS} (onnx)", _server(OURS), pin="onnx"),
    # gRPC off (MODEL_SERVER_GRPC_PORT=0, what spec.service.grpcPort: 0 renders): what the
    # V2 gRPC service costs a worker, which the row above (gRPC on, the default) includes.
    Subject(report.NO_GRPC, _server(OURS), pin="onnx", env=(("MODEL_SERVER_GRPC_PORT", "0"),)),
    Subject(f"{OURS} (convert)", _server(OURS), pin="primary"),
    Subject("mlserver", _server("mlserver")),
    Subject("kserve", _server("kserve")),
    Subject(f"{OURS} (onnx, {PENGUINS})", _server(f"{OURS} ({PENGUINS})"), pin="onnx"),
    Subject(f"kserve ({PENGUINS})", _server(f"kserve ({PENGUINS})")),
)
FAST_PATH = SUBJECTS[0].name
PEER_VENVS = {"mlserver": venvs.MLSERVER, "kserve": venvs.KSERVE}
# Libraries the fast path should not need to import (the importtime start says which it did).
HEAVY = ("sklearn", "scipy", "pandas", "skl2onnx", "skops", "joblib", "onnx")


@dataclass(frozen=True)
class Artifact:
    """A trained artifact and the digests our server can be pinned to."""

    model: Model
    card: ModelCard

    def pin(self, which: str) -> str:
        """The sha256 to pin: the ONNX file's, or the primary (skops) file's."""
        if which == "onnx":
            onnx_file = self.card.files.get(ModelFormat.ONNX)
            if onnx_file is None:
                raise RuntimeError(
                    f"the {self.model.name} artifact has no model.onnx "
                    f"(onnx_check: {self.card.onnx_check})"
                )
            return onnx_file.sha256
        return self.card.sha256


@dataclass(frozen=True)
class Sample:
    """One start of one server."""

    ready_s: float  # process start -> first 200 from /v2/health/ready
    first_answer_ms: float  # that 200 -> the first prediction answered and checked
    rss_ready_mb: float  # the process tree's RSS / workers, at ready
    rss_after_mb: float  # the same after the requests
    load_1m: float  # the machine's 1-minute load average right after
    log_line_s: float | None = None  # ours: process start -> "model ... ready in X s" logged
    load_s: float | None = None  # ours: that X (settings -> model loaded and warm)
    served: dict[str, str] | None = None  # ours: format, runtime, sha256 from that line


def main(argv: list[str] | None = None) -> int:
    """Measure the selected servers; exit 1 if any of them could not be measured."""
    args = _parse_args(argv)
    chosen = [s for s in SUBJECTS if not args.only or s.name in args.only]
    load_before = note_load()
    failures: list[str] = []
    samples: dict[str, list[Sample]] = {s.name: [] for s in chosen}
    imports: dict[str, Any] | None = None
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        scratch = Path(tmp)
        artifacts = {
            name: _artifact(scratch / f"artifact-{name}", name)
            for name in (IRIS, PENGUINS)
            if any(s.server.model == name for s in chosen)
        }
        for subject in chosen:  # build a missing peer venv now, not inside a timed start
            spec = PEER_VENVS.get(subject.name.split(" ")[0])
            if spec is not None:
                venvs.ensure(spec)
        alive = list(chosen)
        for round_no in range(1, args.runs + 1):
            print(f"[bench] round {round_no}/{args.runs}", flush=True)
            shift = (round_no - 1) % max(len(alive), 1)
            for subject in alive[shift:] + alive[:shift]:
                tag = f"{_slug(subject.name)}-r{round_no}"
                try:
                    sample = measure_once(
                        subject, artifacts[subject.server.model], scratch / tag, args.requests
                    )
                except (RuntimeError, TimeoutError, OSError, ValueError) as exc:
                    failures.append(f"{subject.name} (round {round_no}): {exc}")
                    print(f"[bench] FAILED {failures[-1]}", file=sys.stderr, flush=True)
                    alive.remove(subject)
                    continue
                samples[subject.name].append(sample)
                print(f"[bench]   {subject.name}: {_describe(sample)}", flush=True)
                time.sleep(PAUSE_S)
        fast = next((s for s in alive if s.name == FAST_PATH), None)
        if fast is not None and not args.no_importtime:
            imports = _importtime(fast, artifacts[IRIS], scratch / "importtime", failures)
    load_after = os.getloadavg()
    result = {
        "what": "process start -> GET /v2/health/ready 200, one worker, fresh process each run",
        "runs": args.runs,
        "requests": args.requests,
        "poll_ms": POLL_S * 1000,
        "load_avg_before": [round(x, 2) for x in load_before],
        "load_avg_after": [round(x, 2) for x in load_after],
        "machine": machine(),
        "models": {name: _model_files(a) for name, a in artifacts.items()},
        "servers": [summarize(s, samples[s.name]) for s in chosen if samples[s.name]],
        "importtime": imports,
        "failures": failures,
    }
    result["ratios"] = report.ratios(result["servers"])
    result["targets"] = report.targets(result["servers"])
    text = report.render(result)
    print(f"\n{text}", end="")
    report.write(result, text, args.out)
    print(f"\nwrote {args.out} and {args.out.with_suffix('.txt')}")
    return 1 if failures else 0


def note_load() -> tuple[float, float, float]:
    """The load average now, printed, with a warning when other work keeps the cores busy."""
    load = os.getloadavg()
    busy, cores = load[0], os.cpu_count() or 1
    print(f"[bench] load average {busy:.2f} on {cores} cores before start", flush=True)
    if busy > cores / 2:
        print("[bench] WARNING: other work is running; figures will be noisy", flush=True)
    return load


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.startup", description=__doc__)
    parser.add_argument("--runs", type=int, default=5, help="starts per server (default 5)")
    parser.add_argument(
        "--requests", type=int, default=200, help="one-row predictions before the second RSS"
    )
    parser.add_argument(
        "--only", action="append", choices=[s.name for s in SUBJECTS], help="repeatable"
    )
    parser.add_argument(
        "--no-importtime", action="store_true", help="skip the `python -X importtime` start"
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"default: {RESULTS}")
    return parser.parse_args(argv)


def _artifact(dest: Path, dataset: str) -> Artifact:
    model = build_model(dest, dataset)  # the trainer CLI, as bench/server trains it
    card = ModelCard.from_json((dest / "model-card.json").read_text(), str(dest))
    return Artifact(model, card)


def _model_files(artifact: Artifact) -> dict[str, Any]:
    card = artifact.card
    return {
        "estimator": card.estimator,
        "files": {fmt.value: {"file": f.file, "bytes": f.size} for fmt, f in card.files.items()},
        "onnx_check_agrees": card.onnx_check.agrees if card.onnx_check is not None else None,
    }


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def _describe(sample: Sample) -> str:
    text = f"ready after {sample.ready_s:.2f} s, RSS {sample.rss_ready_mb:.0f} MB"
    text += f" -> {sample.rss_after_mb:.0f} MB"
    if sample.log_line_s is not None and sample.load_s is not None:
        text += f" (model loaded {sample.log_line_s:.2f} s in, load {sample.load_s:.2f} s)"
    return text


def launch_for(
    subject: Subject, artifact: Artifact, port: int, workdir: Path, python_flags: tuple[str, ...]
) -> procs.Launch:
    """bench/server's launch of this server with one worker; ours pinned as the subject says,
    logging at info (its "model ... ready in X s" line)."""
    model = artifact.model
    if subject.ours:
        assert subject.pin is not None
        model = replace(model, artifact_sha256=artifact.pin(subject.pin))
    launch = subject.server.launch(model, 1, port, workdir)
    if subject.ours:
        env = {**launch.env, "MODEL_SERVER_LOG_LEVEL": "info", **dict(subject.env)}
        argv = [launch.argv[0], *python_flags, *launch.argv[1:]]
        launch = replace(launch, env=env, argv=argv)
    elif python_flags:
        raise ValueError("python flags are for our server only")
    return launch


def measure_once(
    subject: Subject,
    artifact: Artifact,
    workdir: Path,
    requests: int,
    python_flags: tuple[str, ...] = (),
) -> Sample:
    """Start the server, time it to ready, check an answer, read RSS around `requests`
    one-row predictions, stop it."""
    workdir.mkdir(parents=True)
    model, protocol = artifact.model, subject.server.protocol
    port = procs.free_port()
    launch = launch_for(subject, artifact, port, workdir, python_flags)
    log = workdir / "server.log"
    predict_url = f"http://{procs.LOOPBACK}:{port}{protocol.path(model.name)}"
    rows, answers = sample_rows(model, max(requests, 1))
    started_wall = time.time()
    started = time.perf_counter()
    proc = procs.start(launch, log)
    try:
        ready = wait_ready(proc, port, log) - started
        rss_ready = procs.tree_rss_mb(proc.pid)
        first_answer = _first_answer(proc, predict_url, protocol, model.name, rows[0], answers[0])
        first_answer_ms = (first_answer - started - ready) * 1000
        exposed = procs.non_loopback_listeners(proc.pid)
        if exposed:
            raise RuntimeError(f"listens beyond loopback: {exposed}")
        for row, answer in zip(rows[:requests], answers[:requests], strict=True):
            _predict(predict_url, protocol, model.name, row, answer)
        rss_after = procs.tree_rss_mb(proc.pid)
    finally:
        procs.stop(proc)
    sample = Sample(
        round(ready, 4),
        round(first_answer_ms, 2),
        round(rss_ready, 1),  # one worker: the tree's RSS is the worker's
        round(rss_after, 1),
        round(os.getloadavg()[0], 2),
    )
    if not subject.ours:
        return sample
    line = ready_line(log)
    if line is None:
        raise RuntimeError(f"no 'model ... ready in X s' line in the log:\n{procs.tail(log)}")
    logged_at, load_s, served = line
    _check_served(subject, artifact, served)
    return replace(
        sample, log_line_s=round(logged_at - started_wall, 3), load_s=load_s, served=served
    )


def ready_status(port: int) -> int | None:
    """The status of one GET /v2/health/ready on a new connection (None: no answer)."""
    conn = http.client.HTTPConnection(procs.LOOPBACK, port, timeout=2.0)
    try:
        conn.request("GET", READY_PATH)
        response = conn.getresponse()
        response.read()
        return response.status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def wait_ready(proc: Any, port: int, log: Path) -> float:
    """Poll readiness every POLL_S until it answers 200; the perf_counter() of that answer."""
    last: list[int | None] = [None]

    def answered_200() -> float | None:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode} before ready:\n{procs.tail(log)}")
        last[0] = ready_status(port)
        return time.perf_counter() if last[0] == 200 else None

    try:
        return wait_until(f"{READY_PATH} to answer 200", answered_200, DEADLINE_S, POLL_S,
                          clock=time.perf_counter)  # fmt: skip
    except WaitTimeout:
        raise TimeoutError(
            f"{READY_PATH} not 200 within {DEADLINE_S:.0f}s (last: {last[0]})"
        ) from None


def _first_answer(
    proc: Any, url: str, protocol: protocols.Protocol, name: str, row: Any, answer: Any
) -> float:
    """Ask for a prediction right after ready (retrying only while the server says it is not
    ready yet); the perf_counter() once it answered as the model card says."""
    never = f"ready, but {url} never answered a prediction"

    def predicted() -> float | None:
        try:
            _predict(url, protocol, name, row, answer)
        except _NotYet:
            if proc.poll() is not None:
                raise RuntimeError(never) from None
            return None
        return time.perf_counter()

    try:
        return wait_until(f"{url} to predict", predicted, 30.0, POLL_S, clock=time.perf_counter)
    except WaitTimeout:
        raise RuntimeError(never) from None


class _NotYet(RuntimeError):
    """A prediction answered 503 or 404: the server is not serving the model yet."""


def _predict(url: str, protocol: protocols.Protocol, name: str, row: Any, answer: Any) -> None:
    body = protocol.body(name, [row])
    ok, status, raw = procs.ask(url, body, headers=protocol.headers(body))
    if not ok:
        if status in ("HTTP 503", "HTTP 404"):
            raise _NotYet(status)
        raise RuntimeError(f"{url} answered {status}: {raw[:300]!r}")
    got = protocol.answers(protocol.parse(raw))
    if not protocols.same_labels(got, [answer]):
        raise RuntimeError(f"{url} predicted {got}, the model card says {answer}")


def ready_line(log: Path) -> tuple[float, float, dict[str, str]] | None:
    """Our server's "model ... ready in X s" line: (when it was logged, epoch seconds; X;
    the format, runtime and sha256 it names)."""
    for text in log.read_text(errors="replace").splitlines():
        match = _READY_LINE.match(text)
        if match:
            stamp = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
            served = {k: match.group(k) for k in ("estimator", "format", "runtime", "sha256")}
            return stamp, float(match.group(2)), served
    return None


def _check_served(subject: Subject, artifact: Artifact, served: dict[str, str]) -> None:
    """The pin chose the file it should: the ONNX file as is, or the skops file converted."""
    assert subject.pin is not None
    want = artifact.pin(subject.pin)
    if served["sha256"] != want:
        raise RuntimeError(f"served sha256 {served['sha256']}, pinned {want}")
    if (subject.pin == "onnx") != (served["format"] == ModelFormat.ONNX.value):
        raise RuntimeError(f"pinned the {subject.pin} file, served format {served['format']}")


def _importtime(
    subject: Subject, artifact: Artifact, workdir: Path, failures: list[str]
) -> dict[str, Any] | None:
    """One more fast-path start under `python -X importtime`: where its import time goes."""
    print("[bench] one more start under python -X importtime", flush=True)
    try:
        sample = measure_once(subject, artifact, workdir, 1, ("-X", "importtime"))
    except (RuntimeError, TimeoutError, OSError, ValueError) as exc:
        failures.append(f"{subject.name} (-X importtime): {exc}")
        return None
    found = importtime.parse((workdir / "server.log").read_text(errors="replace").splitlines())
    return {
        "server": subject.name,
        "ready_s_under_importtime": sample.ready_s,  # importtime slows the start it measures
        "modules": len(found),
        "total_ms": importtime.total_ms(found),
        "top_cumulative": importtime.top_cumulative(found),
        "top_packages_self": importtime.top_packages(found),
        "imported": importtime.imported(found, HEAVY),
    }


def summarize(subject: Subject, samples: list[Sample]) -> dict[str, Any]:
    """Median, min and first of each figure over a server's runs, and every run."""
    server = subject.server
    out: dict[str, Any] = {
        "server": subject.name,
        "version": server.version,
        "model": server.model,
        "workers": 1,
        "pin": subject.pin,
        "ready_s": _stats([s.ready_s for s in samples]),
        "first_answer_ms": _stats([s.first_answer_ms for s in samples]),
        "rss_ready_mb": _stats([s.rss_ready_mb for s in samples]),
        "rss_after_mb": _stats([s.rss_after_mb for s in samples]),
        "load_1m": [s.load_1m for s in samples],
    }
    if subject.ours:
        out["served"] = samples[0].served
        out["log_line_s"] = _stats([s.log_line_s for s in samples if s.log_line_s is not None])
        out["load_s"] = _stats([s.load_s for s in samples if s.load_s is not None])
    return out


def _stats(values: list[float]) -> dict[str, Any]:
    median = statistics.median(values)
    first = values[0]
    return {
        "median": round(median, 4),
        "min": round(min(values), 4),
        "first": first,
        # Page cache and the like: the first start of a server may pay what later ones do not.
        "first_differs": bool(median) and abs(first - median) > FIRST_DIFFERS * median,
        "runs": values,
    }


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    mem_kb = next(
        int(line.split()[1])
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal:")
    )
    libs = ("onnxruntime", "scikit-learn", "numpy", "fastapi", "uvicorn", "pydantic")
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "niced": bool(procs.priority_prefix()),
        "workspace": {name: metadata.version(name) for name in libs},
        "peers": {name: spec.version for name, spec in PEER_VENVS.items()},
    }
