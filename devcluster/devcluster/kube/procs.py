"""Starting, recording, checking and stopping the cluster's processes.

Every process is started in its own session with its output in ``<state>/logs/<name>.log``; its
PID and kernel start time are recorded, so ``down`` stops exactly the processes it started (a
recycled PID belonging to something else is never signalled).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from devcluster.waiting import WaitTimeout, wait_until


@dataclass(frozen=True)
class Proc:
    """One started process."""

    name: str
    pid: int
    start_ticks: int
    argv: tuple[str, ...]
    log: str

    def to_json(self) -> dict[str, Any]:
        """A JSON-able form for the state file."""
        data = asdict(self)
        data["argv"] = list(self.argv)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Proc:
        """The inverse of :meth:`to_json`."""
        return cls(
            name=str(data["name"]),
            pid=int(data["pid"]),
            start_ticks=int(data["start_ticks"]),
            argv=tuple(str(a) for a in data["argv"]),
            log=str(data["log"]),
        )


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # the command name (field 2) may contain spaces: split after its closing parenthesis
    return raw[raw.rindex(")") + 2 :].split()


def start_ticks(pid: int) -> int:
    """The kernel start time of ``pid`` in clock ticks (0 if it is gone)."""
    fields = _stat_fields(pid)
    return int(fields[19]) if fields else 0


def is_alive(proc: Proc) -> bool:
    """Whether the recorded process still runs (same PID *and* same start time, not a zombie)."""
    fields = _stat_fields(proc.pid)
    if fields is None:
        return False
    _reap(proc.pid)
    fields = _stat_fields(proc.pid)
    if fields is None or fields[0] in ("Z", "X"):
        return False
    return int(fields[19]) == proc.start_ticks


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def spawn(
    name: str,
    argv: list[str],
    log_dir: Path,
    *,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> Proc:
    """Start ``argv`` in its own session, output appended to ``<log_dir>/<name>.log``."""
    log = log_dir / f"{name}.log"
    with log.open("ab") as out:
        popen = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
            cwd=cwd,
        )
    # Popen objects are not kept: the child is reaped by _reap() when it is stopped
    popen.returncode = 0  # keep Popen.__del__ from warning about a running child
    return Proc(name, popen.pid, start_ticks(popen.pid), tuple(argv), str(log))


def signal_group(proc: Proc, sig: signal.Signals) -> None:
    """Send ``sig`` to the process (and its process group) if it is still the recorded one."""
    if not is_alive(proc):
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, sig)


def stop(proc: Proc, *, grace: float = 10.0) -> bool:
    """SIGTERM, wait up to ``grace`` seconds, then SIGKILL. True if it had been running."""
    if not is_alive(proc):
        _reap(proc.pid)
        return False
    signal_group(proc, signal.SIGTERM)
    if not wait_gone(proc, grace):
        signal_group(proc, signal.SIGKILL)
        wait_gone(proc, 5.0)
    return True


def wait_gone(proc: Proc, timeout: float) -> bool:
    """Poll until the process is gone; False if it still runs after ``timeout`` seconds."""
    try:
        return wait_until(f"{proc.name} to exit", lambda: not is_alive(proc), timeout, 0.1)
    except WaitTimeout:
        return False


def tail(path: str | Path, lines: int = 30) -> str:
    """The last ``lines`` lines of a log file ('' if it does not exist)."""
    try:
        text = Path(path).read_text(errors="replace")
    except FileNotFoundError:
        return ""
    return "\n".join(text.splitlines()[-lines:])
