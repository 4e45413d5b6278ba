"""Unit tier: the demo's artifact store image and manifests follow the project's rules."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from devcluster.stack import mlstack

REPO = Path(__file__).resolve().parents[2]
STORE_DOCKERFILE = REPO / mlstack.STORE_DOCKERFILE


def test_artifact_store_dockerfile_is_hadolint_clean() -> None:
    hadolint = str(Path(sys.executable).parent / "hadolint")
    result = subprocess.run(
        [hadolint, "--no-color", str(STORE_DOCKERFILE)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_artifact_store_image_takes_the_base_image_and_runs_as_non_root() -> None:
    lines = STORE_DOCKERFILE.read_text().splitlines()
    assert "ARG BASE_IMAGE=python:3.11-slim" in lines
    assert "USER 10001:10001" in lines


def test_artifact_store_pod_is_restricted_and_binds_only_its_pod_ip() -> None:
    deployment, service = mlstack.store_manifests("ns")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["args"][:2] == ["--host", "$(POD_IP)"]
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]


def test_each_protocol_request_names_the_model_and_carries_every_row() -> None:
    rows = [[5.1, 3.5, 1.4, 0.2], [6.2, 2.9, 4.3, 1.3]]
    assert mlstack.predict_request("seed", "iris", rows) == ("/predict", {"inputs": rows})
    assert mlstack.predict_request("v1", "iris", rows) == (
        "/v1/models/iris:predict",
        {"instances": rows},
    )
    path, body = mlstack.predict_request("v2", "iris", rows)
    assert path == "/v2/models/iris/infer"
    (tensor,) = body["inputs"]
    assert tensor["shape"] == [2, 4] and tensor["data"] == rows[0] + rows[1]
