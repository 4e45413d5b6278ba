"""The operator-server contract: a rendered Deployment's env and probes boot the real server.

The operator renders the container (env, port, probes); this test starts `python -m model_server`
with exactly that env, except the listen address: pods bind 0.0.0.0 inside their own network
namespace, tests on this machine bind loopback only, on free ports (the rendered ports, HTTP and
gRPC, are first checked against the container's ports; gRPC off renders "0", kept as is).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import tritonclient.grpc as triton
from server_process import free_port, start, stop, wait_ready
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier

from mlmodel_artifact import ModelDescription, Sample, Task, TrainingInfo, write_artifact
from mlmodel_operator.render import render_deployment
from mlmodel_operator.resource import MLModel
from mlmodel_operator.settings import OperatorSettings

FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


def write_iris(root: Path) -> str:
    """Train a tiny iris forest and write it as an artifact under root/iris; returns its sha256."""
    data = load_iris()
    model = RandomForestClassifier(n_estimators=5, random_state=0).fit(data.data, data.target)
    rows = data.data[::30]
    description = ModelDescription(
        name="iris", task=Task.CLASSIFICATION, estimator="RandomForestClassifier", params={},
        feature_names=FEATURES, class_labels=[0, 1, 2], metrics={},
        training=TrainingInfo(dataset="iris", test_size=0.0, seed=0, n_train=150, n_test=0,
                              data_fingerprint="0" * 64),
        sample=Sample(inputs=rows.tolist(), outputs=model.predict(rows).tolist(),
                      probabilities=model.predict_proba(rows).tolist()),
    )  # fmt: skip
    _, card = write_artifact(model, description, str(root / "iris"))
    return card.sha256


def rendered_container(uri: str, sha256: str, service: dict[str, Any]) -> dict[str, Any]:
    body = {
        "apiVersion": "mlops.dev/v1alpha1",
        "kind": "MLModel",
        "metadata": {"name": "iris-contract", "namespace": "models", "uid": "u1", "generation": 1},
        "spec": {"model": {"uri": uri, "sha256": sha256}, "service": service},
    }
    deployment = render_deployment(MLModel.from_body(body), OperatorSettings(), sha256)
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    return container


def probe_path(container: dict[str, Any], probe: str) -> str:
    return str(container[probe]["httpGet"]["path"])


@pytest.mark.parametrize("service", [{}, {"grpcPort": 0}], ids=["grpc on", "grpc off"])
def test_the_server_boots_from_the_rendered_env_and_answers_the_rendered_probes(
    service: dict[str, Any], http_dir: tuple[Path, str], tmp_path: Path
) -> None:
    root, base_url = http_dir
    sha256 = write_iris(root)
    container = rendered_container(f"{base_url}/iris", sha256, service)
    env = {item["name"]: item["value"] for item in container["env"]}
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert env["MODEL_SERVER_PORT"] == str(ports.pop("http"))
    assert env["MODEL_SERVER_HOST"] == "0.0.0.0"
    if service.get("grpcPort") == 0:
        assert (env["MODEL_SERVER_GRPC_PORT"], ports) == ("0", {})
    else:
        assert env["MODEL_SERVER_GRPC_PORT"] == str(ports.pop("grpc"))
        assert ports == {}
        # a free loopback port, like HTTP's: a fixed one (8081) could clash on this machine
        env["MODEL_SERVER_GRPC_PORT"] = str(free_port())

    env["MODEL_SERVER_WORKDIR"] = str(tmp_path / "scratch")
    server = start(env, tmp_path / "server.log")  # the rendered env, on a loopback port
    try:
        with server.client() as client:
            wait_ready(server, probe_path(container, "readinessProbe"))
            for probe in ("startupProbe", "livenessProbe"):
                assert client.get(probe_path(container, probe)).status_code == 200
            name = env["MODEL_SERVER_MODEL_NAME"]
            body = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64",
                                "data": [5.1, 3.5, 1.4, 0.2]}]}  # fmt: skip
            answer = client.post(f"/v2/models/{name}/infer", json=body)
            assert answer.status_code == 200, answer.text
            assert answer.json()["outputs"][0]["data"] == [0]
            metadata = client.get(f"/v2/models/{name}").json()
            assert metadata["parameters"]["sha256"] == sha256
        if server.grpc_target:  # the rendered gRPC setting is served (or, at "0", not at all)
            assert triton.InferenceServerClient(server.grpc_target).is_model_ready(name)
        else:
            assert "over gRPC" not in server.output()
    finally:
        stop(server)
