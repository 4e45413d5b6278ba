"""joblib artifacts (the seed guide's format): a pickle, so loaded only with a pinned digest."""

from __future__ import annotations

from pathlib import Path

from mlmodel_artifact import LoadedModel, ModelFormat, load_model
from model_server.settings import ServerSettings
from model_server.storage import require_joblib_pin as require_pin

__all__ = ["load", "require_pin"]


def load(local_dir: Path, settings: ServerSettings) -> LoadedModel:
    """Load the joblib file only if MODEL_SERVER_MODEL_SHA256 pins it (checked before unpickle)."""
    require_pin(settings)
    return load_model(
        local_dir,
        format=ModelFormat.JOBLIB,
        expected_sha256=settings.model_sha256,
        uri=settings.model_uri,
    )
