"""Helpers shared by the image tests (imported by conftest and the test modules)."""

from __future__ import annotations

import socket
import subprocess

from devcluster.images import engine


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Debian's docker CLI against the private engine, output captured."""
    return engine.docker(*args, check=check, capture=True)
