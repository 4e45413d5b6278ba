"""Server processes: start in their own process group, poll until they answer, measure, stop."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import grpc

from devcluster import waiting

LOOPBACK = "127.0.0.1"
_PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024
_NS_PER_TICK = 1_000_000_000 // os.sysconf("SC_CLK_TCK")
_READY_STREAK = 30  # consecutive 200s (gRPC: OKs), each on a new connection
GRPC_SCHEME = "grpc://"  # grpc://host:port/package.Service/Method names one gRPC method


def priority_prefix() -> list[str]:
    """`nice -n -10` when allowed: servers and wrk then win the CPU from unrelated work on the
    machine, all alike, so the figures are less noisy. Empty when not root."""
    return ["nice", "-n", "-10"] if os.geteuid() == 0 else []


@dataclass(frozen=True)
class Launch:
    """What to run for one server: argv, extra environment and working directory, and the port
    it serves gRPC on, if it does."""

    argv: list[str]
    env: dict[str, str]
    cwd: Path
    grpc_port: int | None = None


def free_port(*avoid: int) -> int:
    """A TCP port on loopback that nothing listens on right now (and not one of `avoid`)."""
    while True:
        with socket.socket() as sock:
            sock.bind((LOOPBACK, 0))
            port: int = sock.getsockname()[1]
        if port not in avoid:
            return port


def start(launch: Launch, log: Path) -> subprocess.Popen[bytes]:
    """Start the server in a new session (so its whole process group can be stopped)."""
    env = {**os.environ, **launch.env}
    env.pop("VIRTUAL_ENV", None)  # each server runs its own venv's interpreter
    with log.open("wb") as out:
        return subprocess.Popen(
            [*priority_prefix(), *launch.argv],
            env=env,
            cwd=launch.cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def post(
    url: str, body: bytes, timeout: float = 10.0, headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    """POST a body (JSON unless `headers` say otherwise); return status and answer (HTTP
    errors included, not raised)."""
    sent = {"Content-Type": "application/json", **(headers or {})}
    request = urllib.request.Request(url, data=body, method="POST", headers=sent)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def grpc_target(url: str) -> tuple[str, str]:
    """(host:port, full method name) of a grpc:// URL."""
    target, _, method = url.removeprefix(GRPC_SCHEME).partition("/")
    return target, f"/{method}"


def grpc_call(url: str, message: bytes, timeout: float = 10.0) -> tuple[grpc.StatusCode, bytes]:
    """Call the unary method a grpc:// URL names with a serialized request message, on a new
    connection; return the status and the serialized reply (b"" unless OK) or error details."""
    target, method = grpc_target(url)
    # A channel of its own connection: grpcio otherwise shares one among equal channels.
    options = [("grpc.use_local_subchannel_pool", 1)]
    with grpc.insecure_channel(target, options=options) as channel:
        call = channel.unary_unary(method)  # no (de)serializers: bytes in, bytes out
        try:
            reply: bytes = call(message, timeout=timeout)
        except grpc.RpcError as exc:
            return exc.code(), str(exc.details()).encode()
    return grpc.StatusCode.OK, reply


def ask(
    url: str, body: bytes, timeout: float = 10.0, headers: dict[str, str] | None = None
) -> tuple[bool, str, bytes]:
    """POST `body` to an http:// URL, or send it to the gRPC method of a grpc:// URL: (answered
    OK, the status as text, the answer or error)."""
    if url.startswith(GRPC_SCHEME):
        code, raw = grpc_call(url, body, timeout)
        return code == grpc.StatusCode.OK, f"gRPC {code.name}", raw
    status, raw = post(url, body, timeout, headers)
    return status == 200, f"HTTP {status}", raw


def wait_answering(
    proc: subprocess.Popen[bytes],
    url: str,
    body: bytes,
    log: Path,
    deadline_s: float,
    headers: dict[str, str] | None = None,
) -> bytes:
    """Poll with requests (`ask`) until the server answers OK many times in a row; fail naming
    the wait.

    Every request opens a new connection, so with several worker processes the streak shows
    that all of them have loaded the model, not only the first one up.
    """

    def streak() -> tuple[bytes] | waiting.NotYet:
        """Requests back to back until one is not OK (not yet) or the streak is complete."""
        answer = b""
        for _ in range(_READY_STREAK):
            if proc.poll() is not None:
                raise RuntimeError(
                    f"server exited with {proc.returncode} before answering {url}:\n{tail(log)}"
                )
            try:
                ok, status, answer = ask(url, body, timeout=2.0, headers=headers)
            except OSError as exc:
                return waiting.NotYet(str(exc))
            if not ok:
                return waiting.NotYet(f"{status}: {answer[:200]!r}")
        return (answer,)  # a tuple: an OK answer may be empty

    what = f"{url} to answer OK {_READY_STREAK} times in a row"
    try:
        (answer,) = waiting.wait_until(what, streak, deadline_s, 0.1)
    except waiting.WaitTimeout as exc:
        raise TimeoutError(
            f"server did not answer OK to {url} {_READY_STREAK} times in a row within "
            f"{deadline_s:.0f}s (last: {exc.last}):\n{tail(log)}"
        ) from None
    return answer


def stop(proc: subprocess.Popen[bytes], grace_s: float = 10.0) -> None:
    """SIGTERM the server's process group; SIGKILL it if it is not gone within `grace_s`."""
    _signal_group(proc.pid, signal.SIGTERM)
    if not _wait_group_gone(proc, grace_s):
        _signal_group(proc.pid, signal.SIGKILL)
        _wait_group_gone(proc, 5.0)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def _wait_group_gone(proc: subprocess.Popen[bytes], timeout_s: float) -> bool:
    what = f"process group {proc.pid} to exit"
    try:
        gone: bool = waiting.wait_until(what, lambda: _group_gone(proc), timeout_s, 0.05)
    except waiting.WaitTimeout:
        return False
    return gone


def _group_gone(proc: subprocess.Popen[bytes]) -> bool:
    proc.poll()  # reap the leader, or the group never empties
    try:
        os.killpg(proc.pid, 0)
    except ProcessLookupError:
        return True
    return False


def tree(pid: int) -> list[int]:
    """The process and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def tree_cpu_ns(pid: int) -> tuple[int, int]:
    """(on-CPU, runnable-but-waiting) nanoseconds of the process tree so far.

    On-CPU is user + system time from /proc/<pid>/stat, which keeps the time of threads that
    have exited (Flask's dev server runs each request on a new thread); it is the figure other
    work on the machine barely changes. Waiting is summed over the live threads' schedstat: how
    long they sat in the run queue, which is where a busy machine puts its latency tail
    (threads that exited are missing from it).
    """
    on_cpu = waiting = 0
    for member in tree(pid):
        proc_dir = Path("/proc") / str(member)
        try:
            fields = (proc_dir / "stat").read_text().rsplit(")", 1)[1].split()
            tasks = list((proc_dir / "task").iterdir())
        except (OSError, IndexError):
            continue
        on_cpu += (int(fields[11]) + int(fields[12])) * _NS_PER_TICK  # utime, stime
        for task in tasks:
            try:
                waiting += int((task / "schedstat").read_text().split()[1])
            except (OSError, ValueError, IndexError):
                continue
    return on_cpu, waiting


def tree_rss_mb(pid: int) -> float:
    """Resident memory of the process tree, summed, in MiB."""
    total_pages = 0
    for member in tree(pid):
        try:
            total_pages += int((Path("/proc") / str(member) / "statm").read_text().split()[1])
        except (OSError, IndexError, ValueError):
            continue
    return total_pages * _PAGE_KB / 1024


def non_loopback_listeners(pid: int) -> list[str]:
    """Listening TCP addresses of the process tree that are not loopback (should be none)."""
    inodes = _socket_inodes(pid)
    bad = []
    for table in ("tcp", "tcp6"):
        for line in (Path("/proc/net") / table).read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and inode in inodes and not _is_loopback(local):
                bad.append(f"{table} {local}")
    return bad


def _socket_inodes(pid: int) -> set[str]:
    inodes: set[str] = set()
    for member in tree(pid):
        fd_dir = Path("/proc") / str(member) / "fd"
        try:
            links = [os.readlink(fd) for fd in fd_dir.iterdir()]
        except OSError:
            continue
        inodes.update(link[8:-1] for link in links if link.startswith("socket:["))
    return inodes


def _is_loopback(hex_addr: str) -> bool:
    address = hex_addr.split(":")[0]
    if len(address) == 8:  # IPv4, little-endian: 127.x.x.x ends in 7F
        return address[-2:] == "7F"
    v4_mapped_loopback = address[:24] == "0000000000000000FFFF0000" and address[-2:] == "7F"
    return address == "00000000000000000000000001000000" or v4_mapped_loopback


def tail(log: Path, lines: int = 20) -> str:
    """The last lines of a server log, for error messages."""
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no log at {log})"
