"""KServe's own clients against the real server process (issue 15): InferenceRESTClient (V1,
and V2 with JSON and binary tensors) and InferenceGRPCClient (typed and raw contents).

kserve 0.21 pins pandas<3 and protobuf<7, which the workspace's lock cannot take, so the
clients run in KServe's own pinned venv, the one `make bench-server` runs KServe's server from
(bench/server/venvs.py; built once into ~/.cache/mlmodel-operator/bench-venvs).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from server_process import Server, serving
from serverkit import Artifact
from sklearn.ensemble import RandomForestClassifier

from bench.server import venvs
from mlmodel_artifact.compiled import PROBA_TOLERANCE

ROWS = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]])
SCRIPT = Path(__file__).with_name("kserve_clients.py")


@pytest.fixture(scope="module")
def seen(iris_artifact: Artifact, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """What KServe's clients saw from a served iris model (one run of the client script)."""
    python = venvs.ensure(venvs.KSERVE)
    root = tmp_path_factory.mktemp("kserve-clients")
    env = {
        "MODEL_SERVER_MODEL_URI": iris_artifact.uri,
        "MODEL_SERVER_MODEL_NAME": "iris",
        "MODEL_SERVER_MODEL_SHA256": iris_artifact.card.sha256,
        "MODEL_SERVER_WORKDIR": str(root / "work"),
    }
    server: Server
    for server in serving(env, root / "server.log"):
        args = [str(python), str(SCRIPT), server.url, server.grpc_target, "iris"]
        done = subprocess.run(
            [*args, json.dumps(ROWS.tolist())], capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, f"{done.stderr}\n{server.output()}"
        yield json.loads(done.stdout.splitlines()[-1])


def test_rest_v1_client(seen: Any, iris_forest: RandomForestClassifier) -> None:
    rest = seen["rest"]
    assert rest["v1_live"] and rest["v1_model_ready"]
    assert rest["v1"]["predictions"] == iris_forest.predict(ROWS).tolist()


@pytest.mark.parametrize("kind", ["v2_json", "v2_binary"])
def test_rest_v2_client(seen: Any, iris_forest: RandomForestClassifier, kind: str) -> None:
    rest = seen["rest"]
    assert rest["v2_live"] and rest["v2_ready"] and rest["v2_model_ready"]
    assert rest[kind]["predict"] == iris_forest.predict(ROWS).tolist()
    np.testing.assert_allclose(
        rest[kind]["predict_proba"], iris_forest.predict_proba(ROWS), atol=PROBA_TOLERANCE
    )


@pytest.mark.parametrize("kind", ["typed", "raw"])
def test_grpc_client(seen: Any, iris_forest: RandomForestClassifier, kind: str) -> None:
    over_grpc = seen["grpc"]
    assert over_grpc["live"] and over_grpc["ready"] and over_grpc["model_ready"]
    assert over_grpc[kind]["predict"] == iris_forest.predict(ROWS).tolist()
    np.testing.assert_allclose(
        over_grpc[kind]["predict_proba"], iris_forest.predict_proba(ROWS), atol=PROBA_TOLERANCE
    )
    assert list(over_grpc["default"]) == ["predict"]


def test_bad_tensors_are_client_errors_in_both(seen: Any) -> None:
    status, body = seen["rest"]["v2_bad"]
    assert status == 422, body
    assert "input 'input-0' has shape [3, 3]" in body
    code, details = seen["grpc"]["bad"]
    assert code == "INVALID_ARGUMENT"
    assert "input 'input-0' has shape [3, 3]" in details
