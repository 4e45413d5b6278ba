"""A private Docker engine: its own containerd, data root, exec root and unix socket.

It never listens on TCP, touches no iptables and creates no bridge, so it cannot collide
with a system Docker or with the devcluster's containerd. Containers use `--network=host`.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

from devcluster.images import apt, paths
from devcluster.waiting import WaitTimeout, wait_until

ENGINE_PACKAGES = ("docker.io", "containerd", "runc")
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 60.0


def _containerd_socket() -> Path:
    return paths.docker_dir() / "exec" / "containerd.sock"


def _pidfile(name: str) -> Path:
    return paths.docker_dir() / f"{name}.pid"


def docker_env() -> dict[str, str]:
    """The process environment for a docker CLI talking to the private engine."""
    env = {**os.environ, "DOCKER_HOST": paths.docker_host(), "DOCKER_BUILDKIT": "1"}
    env.pop("DOCKER_CONTEXT", None)
    return env


def docker(
    *args: str, check: bool = True, capture: bool = False, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run Debian's docker CLI against the private engine."""
    return subprocess.run(
        [paths.DOCKER, *args],
        env=docker_env(),
        check=check,
        text=True,
        capture_output=capture,
        input=input,
    )


def is_running() -> bool:
    """True when the private dockerd answers on its socket."""
    if not paths.docker_socket().exists() or not Path(paths.DOCKER).exists():
        return False
    result = docker("version", "--format", "{{.Server.Version}}", check=False, capture=True)
    return result.returncode == 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read_pid(name: str) -> int | None:
    try:
        return int(_pidfile(name).read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def containerd_config_text() -> str:
    """containerd's config: private root, state and sockets; no CRI, debug or metrics listener."""
    root = paths.docker_dir()
    return (
        "version = 2\n"
        f'root = "{root / "containerd"}"\n'
        f'state = "{root / "exec" / "containerd-state"}"\n'
        'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
        "[grpc]\n"
        f'  address = "{_containerd_socket()}"\n'
        "[ttrpc]\n"
        f'  address = "{_containerd_socket()}.ttrpc"\n'
        "[debug]\n"
        '  address = ""\n'
        "[metrics]\n"
        '  address = ""\n'
    )


def _containerd_config() -> Path:
    config = paths.docker_dir() / "containerd.toml"
    config.write_text(containerd_config_text())
    return config


def _spawn(name: str, argv: list[str]) -> int:
    log = (paths.docker_dir() / f"{name}.log").open("ab")
    env = {**os.environ, "PATH": f"/usr/sbin:/usr/bin:/sbin:/bin:{os.environ.get('PATH', '')}"}
    proc = subprocess.Popen(
        argv,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # survives `make` and is not killed with its process group
    )
    _pidfile(name).write_text(f"{proc.pid}\n")
    return proc.pid


def _wait_for(what: str, ready: Callable[[], bool], pid: int, log: Path) -> None:
    def ready_or_exited() -> str:
        if ready():
            return "ready"
        return "" if _alive(pid) else "exited"

    with contextlib.suppress(WaitTimeout):
        if wait_until(f"{what} (pid {pid})", ready_or_exited, START_TIMEOUT_S) == "ready":
            return
    tail = log.read_text(errors="replace").splitlines()[-15:] if log.exists() else []
    raise RuntimeError(
        f"{what} (pid {pid}) did not become ready within {START_TIMEOUT_S:.0f}s; "
        f"last lines of {log}:\n" + "\n".join(tail)
    )


def dockerd_argv() -> list[str]:
    """dockerd on private paths: unix socket only, no iptables, no bridge, own containerd."""
    root = paths.docker_dir()
    return [
        paths.DOCKERD,
        f"--host={paths.docker_host()}",
        f"--containerd={_containerd_socket()}",
        f"--data-root={root / 'data'}",
        f"--exec-root={root / 'exec' / 'dockerd'}",
        f"--pidfile={root / 'exec' / 'dockerd-own.pid'}",
        "--iptables=false",
        "--ip-masq=false",
        "--ip-forward=false",
        "--bridge=none",
        "--storage-driver=overlay2",
        f"--add-runtime={paths.KIND_RUNTIME}={paths.kind_runtime()}",
    ]


def start() -> None:
    """Start the private containerd and dockerd unless the engine already answers."""
    if is_running():
        return
    apt.ensure_packages(ENGINE_PACKAGES)
    root = paths.docker_dir()
    (root / "exec").mkdir(parents=True, exist_ok=True)
    _stop_process("dockerd")  # a half-dead engine from an earlier run
    _stop_process("containerd")
    # Sockets left by a crash or a reboot would make the readiness checks below pass too early.
    _containerd_socket().unlink(missing_ok=True)
    paths.docker_socket().unlink(missing_ok=True)
    containerd_pid = _spawn("containerd", [paths.CONTAINERD, "--config", str(_containerd_config())])
    _wait_for(
        "private containerd",
        _containerd_socket().exists,
        containerd_pid,
        root / "containerd.log",
    )
    dockerd_pid = _spawn("dockerd", dockerd_argv())
    _wait_for("private dockerd", is_running, dockerd_pid, root / "dockerd.log")


def _ours(pid: int, name: str) -> bool:
    """True when `pid` still runs `name` with our private paths (pids get reused after a reboot)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return Path(argv[0].decode(errors="replace")).name == name and any(
        str(paths.docker_dir()).encode() in arg for arg in argv[1:]
    )


def _stop_process(name: str) -> None:
    pid = _read_pid(name)
    if pid is None or not _alive(pid) or not _ours(pid, name):
        _pidfile(name).unlink(missing_ok=True)
        return
    os.kill(pid, signal.SIGTERM)

    def gone() -> bool:
        _reap(pid)
        return not _alive(pid)

    with contextlib.suppress(WaitTimeout):
        wait_until(f"{name} (pid {pid}) to exit", gone, STOP_TIMEOUT_S)
    if _alive(pid):
        os.kill(pid, signal.SIGKILL)
    _pidfile(name).unlink(missing_ok=True)


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def runtimes() -> set[str]:
    """The OCI runtimes the running engine knows."""
    out = docker("info", "--format", "{{json .Runtimes}}", capture=True).stdout
    return set(json.loads(out or "{}"))


def stop() -> None:
    """Stop the private dockerd, then its containerd (by their recorded pids only)."""
    _stop_process("dockerd")
    _stop_process("containerd")
