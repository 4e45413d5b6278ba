"""Helpers shared by the operator's unit tests (no cluster)."""

from __future__ import annotations

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
