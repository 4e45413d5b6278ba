"""joblib artifacts (the seed guide's format): a pickle, so loaded only with a pinned digest."""

from __future__ import annotations

from pathlib import Path

from mlmodel_artifact import ArtifactError, LoadedModel, ModelFormat, load_model
from model_server.settings import ServerSettings


def load(local_dir: Path, settings: ServerSettings) -> LoadedModel:
    """Load the joblib file only if MODEL_SERVER_MODEL_SHA256 pins it (checked before unpickle)."""
    if settings.model_sha256 is None:
        raise ArtifactError(
            settings.model_uri,
            "UntrustedType",
            "a joblib model is a pickle that can run code when loaded; set "
            "MODEL_SERVER_MODEL_SHA256 to its expected sha256 (or use the skops format)",
        )
    return load_model(
        local_dir,
        format=ModelFormat.JOBLIB,
        expected_sha256=settings.model_sha256,
        uri=settings.model_uri,
    )
