"""The load generators: wrk (Debian's package) driven by a Lua script that POSTs a fixed body;
for gRPC, grpcload (grpcload/, Go) sending a fixed serialized request message."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bench.server.procs import GRPC_SCHEME, grpc_target, priority_prefix

_MARKER = "BENCH_RESULT "
GRPCLOAD_SOURCE = Path(__file__).parent / "grpcload"
BIN_CACHE = Path.home() / ".cache" / "mlmodel-operator" / "bench-bin"
TIMEOUT_S = 5  # a request not answered within it is an error (wrk's --timeout)

# `done` runs once after the run with the merged statistics of all wrk threads.
_LUA = """\
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
{headers}wrk.body = {body}

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{marker}{{"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,'
    .. '"errors":%d,"bad_status":%d}}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.timeout, e.status))
end
"""


@dataclass(frozen=True)
class LoadResult:
    """What one measured wrk run saw."""

    requests: int
    rps: float
    p50_ms: float
    p99_ms: float
    socket_errors: int
    bad_status: int


def wrk_path() -> str:
    """wrk's path; `make bench-server` installs it from Debian when missing."""
    path = shutil.which("wrk")
    if path is None:
        raise RuntimeError("wrk not found: run `make bench-server` (it runs apt-get install wrk)")
    return path


def run(
    url: str, body: bytes, connections: int, seconds: int, headers: dict[str, str] | None = None
) -> LoadResult:
    """POST `body` (with `headers`) to `url` over `connections` keep-alive connections for
    `seconds`; for a grpc:// URL, send it as the method's request message (`run_grpc`)."""
    if url.startswith(GRPC_SCHEME):
        return run_grpc(url, body, connections, seconds)
    extra = "".join(
        f"wrk.headers[{lua_string(k.encode())}] = {lua_string(v.encode())}\n"
        for k, v in (headers or {}).items()
    )
    with tempfile.TemporaryDirectory(prefix="bench-wrk-") as tmp:
        script = Path(tmp) / "post.lua"
        script.write_text(_LUA.format(headers=extra, body=lua_string(body), marker=_MARKER))
        # One wrk thread: it drives 8 connections easily and leaves the second core to servers.
        argv = [
            *priority_prefix(), wrk_path(), "--threads", "1", "--connections", str(connections),
            "--duration", f"{seconds}s", "--timeout", f"{TIMEOUT_S}s", "--script", str(script),
            url,
        ]  # fmt: skip
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=seconds + 30, check=False
        )
    return _parse(done.stdout, done.stderr, done.returncode, _MARKER, "wrk")


def run_grpc(url: str, message: bytes, connections: int, seconds: int) -> LoadResult:
    """Call the unary gRPC method of a grpc:// URL with the serialized `message` over
    `connections` separate connections (one closed-loop caller each) for `seconds`."""
    target, method = grpc_target(url)
    with tempfile.TemporaryDirectory(prefix="bench-grpcload-") as tmp:
        request = Path(tmp) / "request.bin"
        request.write_bytes(message)
        # One core for its callers (-procs 1), like the single wrk thread of the HTTP rows.
        argv = [
            *priority_prefix(), grpcload_path(), "-target", target, "-method", method,
            "-request", str(request), "-connections", str(connections),
            "-duration", f"{seconds}s", "-timeout", f"{TIMEOUT_S}s", "-procs", "1",
        ]  # fmt: skip
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=seconds + 30, check=False
        )
    return _parse(done.stdout, done.stderr, done.returncode, "", "grpcload")


@functools.cache
def grpcload_path() -> str:
    """grpcload's binary, built with `go build` unless one built from the same sources (and
    Go) is cached in BIN_CACHE; go.sum pins its modules (from the Go module proxy)."""
    go = shutil.which("go")
    if go is None:
        raise RuntimeError("go not found: the gRPC rows need Go (1.26) to build bench grpcload")
    env = {
        **os.environ,
        "GOTOOLCHAIN": "local",
        "GOFLAGS": "-mod=readonly -buildvcs=false",
        "CGO_ENABLED": "0",
    }
    version = subprocess.run(
        [go, "env", "GOVERSION"], capture_output=True, text=True, env=env, check=True
    ).stdout.strip()
    digest = hashlib.sha256(version.encode())
    for source in sorted(GRPCLOAD_SOURCE.iterdir()):
        if source.suffix == ".go" or source.name in ("go.mod", "go.sum"):
            digest.update(f"\0{source.name}\0".encode() + source.read_bytes())
    binary = BIN_CACHE / f"grpcload-{digest.hexdigest()[:16]}"
    if binary.exists():
        return str(binary)
    BIN_CACHE.mkdir(parents=True, exist_ok=True)
    tmp = binary.with_name(f"{binary.name}.tmp{os.getpid()}")
    print(f"[bench] building {binary} ({version}) ...", flush=True)
    built = subprocess.run(
        [go, "build", "-trimpath", "-o", str(tmp), "."],
        cwd=GRPCLOAD_SOURCE,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if built.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise RuntimeError(f"go build of {GRPCLOAD_SOURCE} failed:\n{built.stderr.strip()}")
    os.replace(tmp, binary)
    return str(binary)


def lua_string(data: bytes) -> str:
    """`data` as a Lua string literal, byte for byte (binary tensor bodies included): printable
    ASCII as is, everything else (and quote and backslash) as a three-digit decimal escape."""
    return (
        '"'
        + "".join(chr(b) if 32 <= b < 127 and b not in (34, 92) else f"\\{b:03d}" for b in data)
        + '"'
    )


def _parse(stdout: str, stderr: str, code: int, marker: str, tool: str) -> LoadResult:
    """The result line (after `marker`) the load generator printed; grpcload prints only it."""
    for line in stdout.splitlines():
        if line.startswith(marker) and line[len(marker) :].startswith("{"):
            raw = json.loads(line[len(marker) :])
            return LoadResult(
                requests=raw["requests"],
                rps=raw["requests"] / (raw["duration_us"] / 1e6),
                p50_ms=raw["p50_us"] / 1000,
                p99_ms=raw["p99_us"] / 1000,
                socket_errors=raw["errors"],
                bad_status=raw["bad_status"],
            )
    raise RuntimeError(f"{tool} (exit {code}) printed no result:\n{stdout}\n{stderr}")
