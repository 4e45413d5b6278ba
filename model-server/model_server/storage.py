"""Model URI -> local artifact directory (download and digest rules live in mlmodel_artifact)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Final

from mlmodel_artifact import ModelCard, ModelFormat, fetch_artifact, parse_location
from model_server.settings import ServerSettings

# pvc://<claim>/<path> is mounted read-only here by the operator (it renders file:// URIs).
PVC_MOUNT_PATH: Final = Path("/mnt/models")


def local_uri(uri: str) -> str:
    """Map `pvc://<claim>/<path>` to its mounted directory; other URIs are unchanged."""
    if not uri.startswith("pvc://"):
        return uri
    _, _, path = uri.removeprefix("pvc://").partition("/")
    return str(PVC_MOUNT_PATH / path)


def fetch_model(settings: ServerSettings) -> Path:
    """Make the configured artifact local: local paths in place, remote ones under workdir."""
    uri = local_uri(settings.model_uri)
    # One directory per URI, so workers and restarts reuse it and two models never mix files.
    target = settings.workdir / "artifacts" / hashlib.sha256(uri.encode()).hexdigest()[:16]
    if not parse_location(uri).is_local:
        target.mkdir(parents=True, exist_ok=True)
    return Path(fetch_artifact(uri, target, lambda card: [served_format(card, settings)]))


def served_format(card: ModelCard, settings: ServerSettings) -> ModelFormat:
    """Which of the artifact's model files this server loads: MODEL_SERVER_MODEL_FORMAT when
    set, else by the card's rule (`ModelCard.served_format`: the checked ONNX file when nothing
    else is pinned and the compiled path is on)."""
    requested = ModelFormat(settings.model_format) if settings.model_format else None
    return card.served_format(requested, settings.model_sha256, compiled=settings.compiled)


def checked_onnx_skipped(card: ModelCard, settings: ServerSettings, fmt: ModelFormat) -> bool:
    """Whether a checked ONNX file is left unused only because the pin names another file."""
    return (
        card.checked_onnx
        and settings.compiled
        and fmt is not ModelFormat.ONNX
        and not (settings.model_format or settings.model_sha256 is None)
    )
