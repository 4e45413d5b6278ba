"""ONNX artifacts, run by ONNX Runtime through mlmodel_artifact.OnnxModel."""

from __future__ import annotations

from pathlib import Path

from mlmodel_artifact import LoadedModel, ModelFormat, load_model
from model_server.settings import ServerSettings


def load(local_dir: Path, settings: ServerSettings) -> LoadedModel:
    """Verify the digest and open an ONNX Runtime session on the artifact's model.onnx."""
    return load_model(
        local_dir,
        format=ModelFormat.ONNX,
        expected_sha256=settings.model_sha256,
        uri=settings.model_uri,
    )
