"""The iris model server as a real process, for the security tests that attack it over loopback.

Shared by test_server_input (hostile bodies) and test_server_limits (slow, idle and many
clients): the artifact is trained by the trainer CLI and served with the variables the operator
renders into a pod, plus the test's own limits.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from server_process import Server, start, stop, wait_ready

from mlmodel_artifact import ModelCard

MODEL = "iris-guarded"
ROW = [5.1, 3.5, 1.4, 0.2]


def train_iris(out: Path) -> ModelCard:
    """A small iris forest artifact written by the trainer CLI (a tree ensemble: compiled)."""
    argv = [sys.executable, "-m", "mlmodel_trainer", "train", "--dataset", "iris",
            "--estimator", "random_forest", "--param", "n_estimators=20", "--seed", "1",
            "--out", str(out)]  # fmt: skip
    subprocess.run(argv, check=True, capture_output=True, timeout=300)
    return ModelCard.from_json((out / "model-card.json").read_text(), str(out))


def server_env(artifact: Path, card: ModelCard, workdir: Path, **extra: str) -> dict[str, str]:
    """The variables the operator renders into a pod, plus `extra` settings."""
    return {
        "MODEL_SERVER_MODEL_URI": str(artifact),
        "MODEL_SERVER_MODEL_NAME": MODEL,
        "MODEL_SERVER_MODEL_SHA256": card.sha256,
        "MODEL_SERVER_WORKDIR": str(workdir),
        **extra,
    }


def run_server(root: Path, artifact: Path, card: ModelCard, **settings: str) -> Iterator[Server]:
    """A ready server for `artifact` with `settings`; stopped (and its log checked) afterwards.

    Meant for `yield from` in a fixture.
    """
    env = server_env(artifact, card, root / "work", **settings)
    running = start(env, root / "server.log")
    try:
        wait_ready(running)
        yield running
    finally:
        stop(running)
    output = running.output()
    assert "Traceback" not in output
    assert " ERROR " not in output
