"""skops artifacts: the safe default (only trusted scikit-learn/numpy types are loaded)."""

from __future__ import annotations

from pathlib import Path

from mlmodel_artifact import LoadedModel, ModelFormat, load_model
from model_server.settings import ServerSettings


def load(local_dir: Path, settings: ServerSettings) -> LoadedModel:
    """Verify the digest and load the skops file of the artifact in `local_dir`."""
    return load_model(
        local_dir,
        format=ModelFormat.SKOPS,
        expected_sha256=settings.model_sha256,
        uri=settings.model_uri,
    )
