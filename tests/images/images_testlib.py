"""Helpers shared by the image tests (imported by conftest and the test modules)."""

from __future__ import annotations

import socket
import subprocess

import httpx
import pytest

from devcluster.images import engine
from devcluster.waiting import NotYet, WaitTimeout, wait_until

READY_TIMEOUT_S = 120.0
RESTRICTED = ("--read-only", "--cap-drop=ALL", "--security-opt=no-new-privileges")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Debian's docker CLI against the private engine, output captured."""
    return engine.docker(*args, check=check, capture=True)


def serve_detached(image: str, artifact: object, name: str, *options: str) -> str:
    """Start a server image on the host network (loopback, free HTTP and gRPC ports), the
    artifact mounted read-only at /models/iris, with the restricted settings; its base URL."""
    port, grpc_port = free_port(), free_port()
    docker(
        "run", "--detach", f"--name={name}",
        "--network=host", *RESTRICTED, "--tmpfs=/tmp",
        f"--volume={artifact}:/models/iris:ro",
        "--env=MODEL_SERVER_HOST=127.0.0.1",
        f"--env=MODEL_SERVER_PORT={port}",
        f"--env=MODEL_SERVER_GRPC_PORT={grpc_port}",
        "--env=MODEL_SERVER_MODEL_URI=file:///models/iris",
        *options,
        image,
    )  # fmt: skip
    return f"http://127.0.0.1:{port}"


def wait_until_ready(base_url: str, container: str) -> None:
    """Poll readiness until 200; fail with the container's logs if it exits or times out."""

    def ready() -> bool | NotYet:
        state = docker("inspect", "--format", "{{.State.Running}}", container, check=False)
        if state.stdout.strip() != "true":
            logs = docker("logs", container, check=False)
            pytest.fail(f"server container exited before ready:\n{logs.stdout}{logs.stderr}")
        try:
            response = httpx.get(f"{base_url}/v2/health/ready", timeout=2.0)
        except httpx.TransportError as exc:
            return NotYet(repr(exc))
        return response.status_code == 200 or NotYet(f"HTTP {response.status_code}")

    try:
        wait_until(f"{base_url}/v2/health/ready to answer 200", ready, READY_TIMEOUT_S, 0.25)
    except WaitTimeout as exc:
        logs = docker("logs", container, check=False)
        pytest.fail(
            f"{base_url}/v2/health/ready not 200 within {READY_TIMEOUT_S:.0f}s (last: {exc.last}); "
            f"container logs:\n{logs.stdout}{logs.stderr}"
        )
