"""Tracking the artifact, not just its path: the operator reads the model card (over real HTTP
on loopback) and rolls the pods when a new artifact appears at the same URI; when the card
cannot be read, status says why and running pods are left alone."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from mlmodel_harness import Api, OperatorProcess, card_server, wait_until
from sklearn.datasets import load_iris
from sklearn.tree import DecisionTreeClassifier

from mlmodel_artifact import (
    ModelCard,
    ModelDescription,
    ModelFormat,
    Sample,
    Task,
    TrainingInfo,
    write_artifact,
)

# the operator's pods turn Ready on kwok's fake nodes, without images or a reachable artifact
pytestmark = [pytest.mark.cluster, pytest.mark.fake_pods]

DIGEST_ANNOTATION = "mlops.dev/model-digest"


def write_iris(dest: Path, depth: int, *, check_onnx: bool = False) -> str:
    """A real iris artifact at dest (a different tree depth gives a different file); with
    `check_onnx`, its model.onnx too, checked against the tree (what `mlmodel-train` writes).
    Returns the primary file's sha256."""
    data = load_iris()
    model = DecisionTreeClassifier(max_depth=depth, random_state=0).fit(data.data, data.target)
    rows = data.data[::50]
    description = ModelDescription(
        name="iris",
        task=Task.CLASSIFICATION,
        estimator="DecisionTreeClassifier",
        params={"max_depth": depth},
        feature_names=[f"f{i}" for i in range(4)],
        class_labels=[0, 1, 2],
        metrics={"accuracy": 1.0},
        training=TrainingInfo(
            dataset="iris", test_size=0.0, seed=0, n_train=150, n_test=0, data_fingerprint="0" * 64
        ),
        sample=Sample(inputs=rows.tolist(), outputs=model.predict(rows).tolist()),
    )
    _, card = write_artifact(model, description, str(dest), check_onnx=check_onnx)
    if check_onnx:
        assert card.checked_onnx, card.onnx_check
    return str(card.sha256)


def onnx_digest(directory: Path) -> str:
    card = ModelCard.from_json((directory / "model-card.json").read_bytes(), str(directory))
    return str(card.files[ModelFormat.ONNX].sha256)


def apply_unpinned(api: Api, name: str, uri: str) -> None:
    """An MLModel of one replica serving `uri`, nothing pinned: the card decides."""
    api.apply(f"""
apiVersion: mlops.dev/v1alpha1
kind: MLModel
metadata: {{name: {name}}}
spec:
  model: {{uri: "{uri}"}}
  replicas: 1
""")


def template(api: Api, name: str) -> dict[str, Any]:
    deployment = api.deployment(name)
    assert deployment is not None
    found: dict[str, Any] = deployment["spec"]["template"]
    return found


def served_digest(api: Api, name: str) -> str | None:
    deployment = api.deployment(name)
    if deployment is None:
        return None
    annotations = deployment["spec"]["template"]["metadata"].get("annotations") or {}
    value: str | None = annotations.get(DIGEST_ANNOTATION)
    return value


def test_new_artifact_at_the_same_uri_rolls_the_pods_and_a_broken_one_does_not(
    api: Api, operator: OperatorProcess
) -> None:
    # the session's card server: the one source the operator is allowed to read cards from
    server = card_server()
    test_dir = uuid.uuid4().hex[:8]
    root, base_url = server.root / test_dir, f"{server.base}/{test_dir}"
    first = write_iris(root / "iris", depth=1)
    apply_unpinned(api, "iris", f"{base_url}/iris")
    wait_until(
        "Ready serving the first artifact",
        lambda: api.is_ready("iris") and served_digest(api, "iris") == first,
    )
    assert api.mlmodel("iris")["status"]["modelDigest"] == first
    env = {e["name"]: e.get("value") for e in template(api, "iris")["spec"]["containers"][0]["env"]}
    # the card's digest rolls the pods (annotation) but is no pin: only spec.model.sha256 is
    # (the variable is there, empty, so that no envFrom key can supply it)
    assert env["MODEL_SERVER_MODEL_SHA256"] is None
    assert env["MODEL_SERVER_MODEL_URI"] == f"{base_url}/iris"

    second = write_iris(root / "iris", depth=3)
    assert second != first
    wait_until(
        "pods rolled to the new artifact",
        lambda: (
            served_digest(api, "iris") == second
            and api.mlmodel("iris")["status"].get("modelDigest") == second
        ),
        timeout=30,
    )
    wait_until("Ready again", lambda: api.is_ready("iris"))

    (root / "iris" / "model-card.json").unlink()
    degraded = wait_until(
        "Degraded with the card's error",
        lambda: (c := api.condition("iris", "Degraded")) and c["status"] == "True" and c,
        timeout=30,
    )
    assert degraded["reason"] == "ArtifactNotFound"
    assert f"{base_url}/iris" in degraded["message"]
    assert "Running pods keep serving sha256" in degraded["message"]
    assert served_digest(api, "iris") == second
    assert api.mlmodel("iris")["status"]["modelDigest"] == second
    # the pods still serve the digest they verified: Ready follows them, not the card
    assert api.condition("iris", "Ready")["status"] == "True"


def test_a_card_with_a_checked_onnx_form_puts_the_pods_on_the_slim_image(
    api: Api, operator: OperatorProcess
) -> None:
    """Unpinned, the card decides which file the pods load: its checked model.onnx (no
    scikit-learn needed: the slim image, that file's digest), and status.runtime says so
    through the real API server's schema. A new artifact without a checked graph moves the
    pods back to the full image and the primary file."""
    server = card_server()
    test_dir = uuid.uuid4().hex[:8]
    root, base_url = server.root / test_dir, f"{server.base}/{test_dir}"
    write_iris(root / "iris", depth=2, check_onnx=True)
    checked = onnx_digest(root / "iris")
    apply_unpinned(api, "slim", f"{base_url}/iris")
    wait_until(
        "Ready on the slim image",
        lambda: api.is_ready("slim") and served_digest(api, "slim") == checked,
    )
    assert template(api, "slim")["spec"]["containers"][0]["image"] == "mlmodel-server:slim"
    status = api.mlmodel("slim")["status"]
    assert status["modelDigest"] == checked
    assert status["runtime"] == {"image": "mlmodel-server:slim", "modelFormat": "onnx"}

    primary = write_iris(root / "iris", depth=4)  # no model.onnx: the full image converts it
    wait_until(
        "rolled to the full image and the primary file",
        lambda: served_digest(api, "slim") == primary,
        timeout=30,
    )
    assert template(api, "slim")["spec"]["containers"][0]["image"] == "mlmodel-server:dev"
    wait_until(
        "status.runtime follows",
        lambda: (
            api.mlmodel("slim")["status"].get("runtime")
            == {"image": "mlmodel-server:dev", "modelFormat": "skops"}
        ),
        timeout=30,
    )
