"""joblib artifacts (the seed guide's format): a pickle, so loaded only with a pinned digest."""

from __future__ import annotations

from pathlib import Path

from mlmodel_artifact import ArtifactError, LoadedModel, ModelFormat, load_model
from model_server.settings import ServerSettings


def require_pin(settings: ServerSettings) -> None:
    """A pickle runs code when loaded: refuse it unless its digest is pinned."""
    if settings.model_sha256 is None:
        raise ArtifactError(
            settings.model_uri,
            "UntrustedType",
            "a joblib model is a pickle that can run code when loaded; set "
            "MODEL_SERVER_MODEL_SHA256 to its expected sha256 (or use the skops format)",
        )


def load(local_dir: Path, settings: ServerSettings) -> LoadedModel:
    """Load the joblib file only if MODEL_SERVER_MODEL_SHA256 pins it (checked before unpickle)."""
    require_pin(settings)
    return load_model(
        local_dir,
        format=ModelFormat.JOBLIB,
        expected_sha256=settings.model_sha256,
        uri=settings.model_uri,
    )
