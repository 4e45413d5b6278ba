"""The load generator: wrk (Debian's package) driven by a Lua script that POSTs a fixed body."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bench.server.procs import priority_prefix

_MARKER = "BENCH_RESULT "

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
    `seconds`."""
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
            "--duration", f"{seconds}s", "--timeout", "5s", "--script", str(script), url,
        ]  # fmt: skip
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=seconds + 30, check=False
        )
    return _parse(done.stdout, done.stderr, done.returncode)


def lua_string(data: bytes) -> str:
    """`data` as a Lua string literal, byte for byte (binary tensor bodies included): printable
    ASCII as is, everything else (and quote and backslash) as a three-digit decimal escape."""
    return (
        '"'
        + "".join(chr(b) if 32 <= b < 127 and b not in (34, 92) else f"\\{b:03d}" for b in data)
        + '"'
    )


def _parse(stdout: str, stderr: str, code: int) -> LoadResult:
    for line in stdout.splitlines():
        if line.startswith(_MARKER):
            raw = json.loads(line[len(_MARKER) :])
            return LoadResult(
                requests=raw["requests"],
                rps=raw["requests"] / (raw["duration_us"] / 1e6),
                p50_ms=raw["p50_us"] / 1000,
                p99_ms=raw["p99_us"] / 1000,
                socket_errors=raw["errors"],
                bad_status=raw["bad_status"],
            )
    raise RuntimeError(f"wrk (exit {code}) printed no result:\n{stdout}\n{stderr}")
