"""`python -m devcluster up|down|status|env` as a user runs it, each test on its own cluster."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.cluster


def devcluster(
    state_dir: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the CLI on ``state_dir``."""
    argv = [sys.executable, "-m", "devcluster", "--dir", str(state_dir), *args]
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300)


def processes_mentioning(text: str) -> list[str]:
    """Command lines of every live process whose arguments contain ``text``."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            continue
        if text in cmdline and state != "Z" and int(proc.name) != os.getpid():
            found.append(f"{proc.name}: {cmdline}")
    return found


@pytest.fixture
def state_dir(tmp_path: Path) -> Iterator[Path]:
    """A state directory; whatever test leaves running there is stopped afterwards."""
    path = tmp_path / "dc"
    yield path
    devcluster(path, "down")


def test_up_then_down_leaves_no_process_behind(state_dir: Path) -> None:
    up = devcluster(state_dir, "up", "--fake-nodes", "1")
    assert up.returncode == 0, up.stderr
    status = json.loads(devcluster(state_dir, "status").stdout)
    assert status["phase"] == "up"
    names = {key.split(" ")[0] for key, alive in status["processes"].items() if alive}
    expected = {"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"}
    assert names == expected
    assert len(processes_mentioning(str(state_dir))) == len(expected)

    down = devcluster(state_dir, "down")
    assert down.returncode == 0, down.stderr
    assert processes_mentioning(str(state_dir)) == []
    assert json.loads(devcluster(state_dir, "status").stdout)["phase"] == "down"


def test_env_prints_the_kubeconfig_export_and_up_twice_is_idempotent(state_dir: Path) -> None:
    assert devcluster(state_dir, "up").returncode == 0
    env = devcluster(state_dir, "env")
    assert env.stdout.strip() == f"export KUBECONFIG={state_dir / 'kubeconfig'}"
    pids = json.loads(devcluster(state_dir, "status").stdout)["processes"]

    again = devcluster(state_dir, "up")
    assert again.returncode == 0, again.stderr
    assert "already up" in again.stdout
    assert json.loads(devcluster(state_dir, "status").stdout)["processes"] == pids

    different = devcluster(state_dir, "up", "--fake-nodes", "3")
    assert different.returncode == 1
    assert "run down first" in different.stderr


def test_failed_start_stops_what_it_started_and_prints_the_failing_log(state_dir: Path) -> None:
    env = dict(os.environ, DEVCLUSTER_EXTRA_ARGS_KUBE_APISERVER="--no-such-flag=1")
    up = devcluster(state_dir, "up", env=env)
    assert up.returncode == 1
    assert "kube-apiserver" in up.stderr
    assert "unknown flag: --no-such-flag" in up.stderr  # the component's own last log lines
    assert processes_mentioning(str(state_dir)) == []  # etcd, started before it, is stopped too
    assert devcluster(state_dir, "env").returncode == 3
