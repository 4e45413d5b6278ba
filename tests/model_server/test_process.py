"""The real server process (`python -m model_server`) on loopback, configured like a pod."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from server_process import START_TIMEOUT_S, Server, start, stop, wait_ready
from serverkit import Artifact

from mlmodel_artifact import MODEL_CARD_FILE

ROW = [5.1, 3.5, 1.4, 0.2]


def pod_env(artifact: Artifact, workdir: Path, **extra: str) -> dict[str, str]:
    """The variables the operator renders into a model pod."""
    return {
        "MODEL_SERVER_MODEL_URI": artifact.uri,
        "MODEL_SERVER_MODEL_NAME": "iris-live",
        "MODEL_SERVER_MODEL_SHA256": artifact.card.sha256,
        "MODEL_SERVER_WORKERS": "1",
        "MODEL_SERVER_LOG_LEVEL": "info",
        "MODEL_SERVER_WORKDIR": str(workdir),
        **extra,
    }


@pytest.fixture(scope="module")
def live(iris_artifact: Artifact, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One single-worker server for the module."""
    workdir = tmp_path_factory.mktemp("live")
    server = start(pod_env(iris_artifact, workdir), workdir / "server.log")
    try:
        wait_ready(server)
        yield server
    finally:
        code = stop(server)
    # uvicorn shuts down gracefully, then re-raises SIGTERM so the exit status says why it ended.
    assert code in (0, -signal.SIGTERM), server.output()
    assert "Application shutdown complete" in server.output()


def test_process_serves_every_protocol_over_loopback(live: Server) -> None:
    with live.client() as client:
        assert client.post("/predict", json={"input": ROW}).json() == {"prediction": 0}
        v1 = client.post("/v1/models/iris-live:predict", json={"instances": [ROW, ROW]})
        assert v1.json() == {"predictions": [0, 0]}
        body = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": ROW}]}
        v2 = client.post("/v2/models/iris-live/infer", json=body).json()
        assert v2["outputs"][0]["data"] == [0]
        assert client.get("/v2/models/iris-live").json()["platform"] == "onnxruntime"
        assert "model_server_predictions_total" in client.get("/metrics").text


def test_process_keeps_serving_after_bad_requests(live: Server) -> None:
    with live.client() as client:
        assert client.post("/predict", content=b"{not json").status_code == 400
        assert client.post("/predict", json={"input": [1, 2]}).status_code == 422
        big = b'{"inputs": [' + b"[1,2,3,4]," * 1_000_000 + b"[1,2,3,4]]}"
        assert client.post("/predict", content=big).status_code == 413
        assert client.post("/predict", json={"input": ROW}).status_code == 200
    assert live.process.poll() is None


def test_process_logs_where_the_model_came_from_and_how_it_runs(live: Server) -> None:
    output = live.output()
    assert "compiled path on: ONNX Runtime agrees with scikit-learn" in output
    assert "model 'iris-live' ready in" in output
    assert "Traceback" not in output


@pytest.mark.parametrize(
    ("workers", "problem", "reason"),
    [
        ("1", {"MODEL_SERVER_MODEL_SHA256": "a" * 64}, "[ArtifactDigestMismatch]"),
        ("2", {"MODEL_SERVER_MODEL_SHA256": "a" * 64}, "[ArtifactDigestMismatch]"),
        ("2", {"MODEL_SERVER_MODEL_FORMAT": "joblib", "MODEL_SERVER_MODEL_SHA256": ""},
         "[UntrustedType]"),
    ],
    ids=["one-worker-wrong-digest", "two-workers-wrong-digest", "two-workers-unpinned-pickle"],
)  # fmt: skip
def test_a_load_failure_exits_non_zero_with_one_clear_line(
    iris_artifact: Artifact, tmp_path: Path, workers: str, problem: dict[str, str], reason: str
) -> None:
    env = pod_env(iris_artifact, tmp_path, MODEL_SERVER_WORKERS=workers, **problem)
    env = {k: v for k, v in env.items() if v}  # "" means: not set at all
    output, code = run_until_exit(start(env, tmp_path / "server.log"))
    assert code != 0
    failures = [line for line in output.splitlines() if "model load failed" in line]
    assert len(failures) == 1, output
    assert reason in failures[0]
    assert iris_artifact.uri in failures[0]
    assert "Traceback" not in output


def run_until_exit(server: Server) -> tuple[str, int]:
    """Wait for a server that should stop by itself; its output and exit code."""
    try:
        code = server.process.wait(timeout=START_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        server.process.kill()
        raise AssertionError(f"server kept running:\n{server.output()}") from None
    return server.output(), code


def test_invalid_settings_exit_2_naming_the_variable(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODEL_SERVER_")}
    env.update(MODEL_SERVER_MODEL_URI=str(tmp_path), MODEL_SERVER_WORKERS="many")
    result = subprocess.run(
        [sys.executable, "-m", "model_server"], env=env, capture_output=True, text=True,
        timeout=START_TIMEOUT_S,
    )  # fmt: skip
    assert result.returncode == 2
    assert "invalid setting workers (MODEL_SERVER_WORKERS)" in result.stderr


def test_several_workers_serve_and_sum_their_metrics_then_stop_on_sigterm(
    iris_artifact: Artifact, tmp_path: Path
) -> None:
    server = start(pod_env(iris_artifact, tmp_path, MODEL_SERVER_WORKERS="2"), tmp_path / "w.log")
    try:
        wait_ready(server)
        for _ in range(10):  # a new connection each time, so both workers get requests
            with server.client() as client:
                assert client.post("/predict", json={"inputs": [ROW, ROW]}).status_code == 200
        with server.client() as client:
            metrics = client.get("/metrics").text
    finally:
        code = stop(server)
    assert 'model_server_predictions_total{protocol="seed"} 20.0' in metrics
    assert code == 0, server.output()
    assert list(tmp_path.glob("metrics-*")) == []  # the multiprocess directory is cleaned up


def test_workers_are_forked_from_the_server_after_its_imports_not_spawned(
    iris_artifact: Artifact, tmp_path: Path
) -> None:
    """A forked worker starts with the parent's imported libraries (pages shared until
    written); a spawned one runs `python -c "from multiprocessing.spawn import spawn_main..."`
    and imports them all again, beside a multiprocessing resource tracker."""
    server = start(pod_env(iris_artifact, tmp_path, MODEL_SERVER_WORKERS="2"), tmp_path / "w.log")
    try:
        wait_ready(server)
        pid = server.process.pid
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        parent = Path(f"/proc/{pid}/cmdline").read_bytes()
        commands = [Path(f"/proc/{child}/cmdline").read_bytes() for child in children]
        with server.client() as client:  # and the forked workers answer
            assert client.post("/predict", json={"inputs": [ROW]}).status_code == 200
    finally:
        stop(server)
    assert len(children) == 2, commands
    assert commands == [parent, parent]


def test_a_worker_that_cannot_load_stops_the_whole_server_non_zero(
    iris_artifact: Artifact, tmp_path: Path
) -> None:
    # The digest is right (the parent's check passes) but the card's sample answers disagree
    # with the model, which only loading finds out: each worker fails, the parent stops.
    broken = tmp_path / "broken"
    shutil.copytree(iris_artifact.uri, broken)
    card = json.loads((broken / MODEL_CARD_FILE).read_text())
    card["sample"]["outputs"] = [(label + 1) % 3 for label in card["sample"]["outputs"]]
    (broken / MODEL_CARD_FILE).write_text(json.dumps(card))
    env = pod_env(Artifact(str(broken), iris_artifact.card), tmp_path, MODEL_SERVER_WORKERS="2")
    output, code = run_until_exit(start(env, tmp_path / "server.log"))
    assert code != 0
    assert "model load failed: [SampleMismatch]" in output
    assert "Traceback" not in output
