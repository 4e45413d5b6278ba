"""KServe's own clients against the real server process (issue 15): InferenceRESTClient (V1,
and V2 with JSON and binary tensors) and InferenceGRPCClient (typed and raw contents).

kserve 0.21 pins pandas<3 and protobuf<7, which the workspace's lock cannot take, so the
clients run in KServe's own pinned venv, the one `make bench-server` runs KServe's server from
(bench/server/venvs.py; built once into ~/.cache/mlmodel-operator/bench-venvs).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from server_process import Server
from sklearn.ensemble import RandomForestClassifier

from bench.server import venvs
from mlmodel_artifact.compiled import PROBA_TOLERANCE

ROWS = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]])
SCRIPT = Path(__file__).with_name("kserve_clients.py")


@pytest.fixture(scope="module")
def seen(iris_server: Server) -> Any:
    """What KServe's clients saw from the served iris model (one run of the client script)."""
    python = venvs.ensure(venvs.KSERVE)
    args = [str(python), str(SCRIPT), iris_server.url, iris_server.grpc_target, "iris"]
    done = subprocess.run(
        [*args, json.dumps(ROWS.tolist())], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, f"{done.stderr}\n{iris_server.output()}"
    return json.loads(done.stdout.splitlines()[-1])


def test_rest_v1_client(seen: Any, iris_forest: RandomForestClassifier) -> None:
    rest = seen["rest"]
    assert rest["v1_live"] and rest["v1_model_ready"]
    assert rest["v1"]["predictions"] == iris_forest.predict(ROWS).tolist()


@pytest.mark.parametrize(
    ("client", "kind"),
    [("rest", "v2_json"), ("rest", "v2_binary"), ("grpc", "typed"), ("grpc", "raw")],
)
def test_v2_clients(seen: Any, iris_forest: RandomForestClassifier, client: str, kind: str) -> None:
    """InferenceRESTClient (V2; JSON and binary tensors) and InferenceGRPCClient (typed and raw
    contents): health, and predictions equal to the forest's."""
    health = ("live", "ready", "model_ready")
    answers = seen[client]
    assert all(answers[f"v2_{h}" if client == "rest" else h] for h in health)
    assert answers[kind]["predict"] == iris_forest.predict(ROWS).tolist()
    np.testing.assert_allclose(
        answers[kind]["predict_proba"], iris_forest.predict_proba(ROWS), atol=PROBA_TOLERANCE
    )


def test_grpc_client_default_output(seen: Any) -> None:
    assert list(seen["grpc"]["default"]) == ["predict"]


def test_bad_tensors_are_client_errors_in_both(seen: Any) -> None:
    status, body = seen["rest"]["v2_bad"]
    assert status == 422, body
    assert "input 'input-0' has shape [3, 3]" in body
    code, details = seen["grpc"]["bad"]
    assert code == "INVALID_ARGUMENT"
    assert "input 'input-0' has shape [3, 3]" in details
