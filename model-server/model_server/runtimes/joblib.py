"""joblib artifacts (the seed guide's format): a pickle, so loaded only with a pinned digest."""

from __future__ import annotations

from pathlib import Path

from mlmodel_artifact import LoadedModel, ModelFormat, load_model
from mlmodel_artifact import require_pin as require_artifact_pin
from model_server.settings import ServerSettings


def require_pin(settings: ServerSettings) -> None:
    """A pickle runs code when loaded: refuse it unless the operator of this server pinned it.

    The pin is only ever MODEL_SERVER_MODEL_SHA256 / --model-sha256 as given to the process,
    never the card's digest; load_model then compares it with the file's actual sha256.
    """
    require_artifact_pin(ModelFormat.JOBLIB, settings.model_sha256, settings.model_uri)


def load(local_dir: Path, settings: ServerSettings) -> LoadedModel:
    """Load the joblib file only if MODEL_SERVER_MODEL_SHA256 pins it (checked before unpickle)."""
    require_pin(settings)
    return load_model(
        local_dir,
        format=ModelFormat.JOBLIB,
        expected_sha256=settings.model_sha256,
        uri=settings.model_uri,
    )
