"""Model URI -> local artifact directory (download and digest rules live in mlmodel_artifact).

Also what the parent of worker processes checks before it starts them (`preflight`): this
module imports no numpy, ONNX Runtime or metrics, so that parent stays small (issue 16).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Final

from mlmodel_artifact import (
    MODEL_CARD_FILE,
    ArtifactError,
    ModelCard,
    ModelFormat,
    check_digest,
    fetch_artifact,
    parse_location,
)
from mlmodel_artifact import require_pin as require_artifact_pin
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


def preflight(local_dir: Path, settings: ServerSettings) -> None:
    """What can be checked without deserializing: the card parses, the format is allowed, the
    model file's digest matches the card and the pin (the parent of worker processes runs this
    once, so these failures are one log line, not one per worker)."""
    card = ModelCard.from_json((local_dir / MODEL_CARD_FILE).read_bytes(), settings.model_uri)
    fmt = served_format(card, settings)
    if fmt is ModelFormat.JOBLIB:
        require_joblib_pin(settings)
    check_digest(local_dir, card, fmt, settings.model_uri, settings.model_sha256)


def require_joblib_pin(settings: ServerSettings) -> None:
    """A pickle runs code when loaded: refuse it unless the operator of this server pinned it.

    The pin is only ever MODEL_SERVER_MODEL_SHA256 / --model-sha256 as given to the process,
    never the card's digest; load_model then compares it with the file's actual sha256.
    """
    require_artifact_pin(ModelFormat.JOBLIB, settings.model_sha256, settings.model_uri)


def describe(exc: BaseException) -> str:
    """One line saying what failed: artifact errors carry their reason and URI already."""
    if isinstance(exc, ArtifactError):
        return f"[{exc.reason}] {exc}"
    return f"{type(exc).__name__}: {exc}"
