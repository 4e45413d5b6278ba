"""The model server as a real process (`python -m model_server`) on loopback, for tests.

Shared by the model server's process tests and the operator-server contract test (this
directory is on pytest's `pythonpath`).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from devcluster.waiting import NotYet, WaitTimeout, wait_until
from model_server.settings import READINESS_PATH

START_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 60.0


@dataclass
class Server:
    """A running server process and how to reach it."""

    process: subprocess.Popen[str]
    url: str
    log: Path
    grpc_target: str = ""  # host:port of the gRPC service ("" when it is off)

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, trust_env=False, timeout=30.0)

    def output(self) -> str:
        return self.log.read_text()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(env: dict[str, str], log: Path) -> Server:
    """Start `python -m model_server` with exactly the MODEL_SERVER_* variables given, on free
    loopback ports (gRPC's too, unless `env` sets MODEL_SERVER_GRPC_PORT)."""
    port = free_port()
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MODEL_SERVER_")}
    clean.update(MODEL_SERVER_GRPC_PORT=str(free_port()))
    clean.update(env, MODEL_SERVER_HOST="127.0.0.1", MODEL_SERVER_PORT=str(port))
    grpc_port = clean["MODEL_SERVER_GRPC_PORT"]
    with log.open("w") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "model_server"],
            env=clean,
            stdout=sink,
            stderr=subprocess.STDOUT,
            text=True,
        )
    grpc_target = f"127.0.0.1:{grpc_port}" if grpc_port != "0" else ""
    return Server(process, f"http://127.0.0.1:{port}", log, grpc_target)


def wait_ready(server: Server, path: str = READINESS_PATH) -> None:
    """Poll `path` until 200; fail with the process output if it exits or times out."""
    with server.client() as client:

        def ready() -> bool | NotYet:
            if server.process.poll() is not None:
                raise AssertionError(
                    f"server exited with {server.process.returncode} before ready:\n"
                    f"{server.output()}"
                )
            try:
                answer = client.get(path)
            except httpx.TransportError as exc:
                return NotYet(repr(exc))
            return answer.status_code == 200 or NotYet(f"{answer.status_code} {answer.text}")

        try:
            wait_until(f"{path} to answer 200", ready, START_TIMEOUT_S, 0.1)
        except WaitTimeout as exc:
            raise AssertionError(
                f"{path} not 200 after {START_TIMEOUT_S:.0f} s ({exc.last}):\n{server.output()}"
            ) from None


def stop(server: Server) -> int:
    """SIGTERM and wait for the exit code."""
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGTERM)
    try:
        return server.process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        server.process.kill()
        raise AssertionError(f"server ignored SIGTERM for {STOP_TIMEOUT_S:.0f} s") from None


def serving(env: dict[str, str], log: Path) -> Iterator[Server]:
    """A started, ready server, stopped afterwards (for `yield from` in a fixture)."""
    server = start(env, log)
    try:
        wait_ready(server)
        yield server
    finally:
        stop(server)
