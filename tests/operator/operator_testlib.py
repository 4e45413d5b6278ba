"""Helpers shared by the operator's unit tests (no cluster)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from mlmodel_operator.resource import MLModel

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "crds" / "samples"
CRD_PATH = REPO / "crds" / "mlmodel.yaml"


def mlmodel_body(spec: dict[str, Any], name: str = "iris", generation: int = 1) -> dict[str, Any]:
    """An MLModel API body as the API server would hand it to the operator."""
    return {
        "apiVersion": "mlops.dev/v1alpha1",
        "kind": "MLModel",
        "metadata": {
            "name": name,
            "namespace": "models",
            "uid": f"uid-{name}",
            "generation": generation,
        },
        "spec": spec,
    }


def make_mlmodel(spec: dict[str, Any], **kwargs: Any) -> MLModel:
    """Parse an MLModel from a spec dict."""
    return MLModel.from_body(mlmodel_body(spec, **kwargs))


def sample_mlmodels() -> dict[str, dict[str, Any]]:
    """Every MLModel document in crds/samples, by file stem."""
    found = {}
    for path in sorted(SAMPLES.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == "MLModel":
                found[path.stem] = doc
    return found


def card_json(sha: str, *, onnx_sha: str | None = None, onnx_agrees: bool | None = None) -> bytes:
    """A valid model card (the contract's schema) whose skops file has digest `sha`; with
    `onnx_sha`, a model.onnx too, checked against it when `onnx_agrees` is given."""
    card = json.loads(
        b'{"name":"m","task":"regression","estimator":"E","params":{},"feature_names":["a"],'
        b'"metrics":{},"training":{"dataset":"d","test_size":0.2,"seed":0,"n_train":1,'
        b'"n_test":1,"data_fingerprint":"' + b"0" * 64 + b'"},"sample":{"inputs":[[1.0]],'
        b'"outputs":[1.0]},"format":"skops","sha256":"' + sha.encode() + b'","files":{"skops":'
        b'{"file":"model.skops","sha256":"' + sha.encode() + b'","size":1}},'
        b'"library_versions":{},"created_at":"2026-01-01T00:00:00Z"}'
    )
    if onnx_sha is not None:
        card["files"]["onnx"] = {"file": "model.onnx", "sha256": onnx_sha, "size": 1}
    if onnx_agrees is not None:
        card["onnx_check"] = {"agrees": onnx_agrees, "rows": 8, "tolerance": 1e-5, "detail": ""}
    return json.dumps(card).encode()
