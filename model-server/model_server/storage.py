"""Model URI -> local artifact directory (download and digest rules live in mlmodel_artifact).

Also what the parent of worker processes checks before it starts them (`preflight`): this
module imports no numpy, ONNX Runtime or metrics, so that parent stays small (issue 16).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import IO, Final

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

# The download child's exit status for an ArtifactError (its JSON on stdout says which).
DOWNLOAD_FAILED: Final = 3
# What is read of the child's stdout (its JSON) and stderr (a traceback's last line): our own
# child's output, but a library that logs a lot must not grow the server's memory.
CHILD_OUTPUT_BYTES: Final = 64 * 1024
# pvc://<claim>/<path> is mounted read-only here by the operator (it renders file:// URIs).
PVC_MOUNT_PATH: Final = Path("/mnt/models")


def local_uri(uri: str) -> str:
    """Map `pvc://<claim>/<path>` to its mounted directory; other URIs are unchanged."""
    if not uri.startswith("pvc://"):
        return uri
    _, _, path = uri.removeprefix("pvc://").partition("/")
    return str(PVC_MOUNT_PATH / path)


def fetch_model(settings: ServerSettings) -> Path:
    """Make the configured artifact local: local paths in place, remote ones under workdir,
    downloaded by a child process (`download_in_child`)."""
    uri = local_uri(settings.model_uri)
    # One directory per URI, so workers and restarts reuse it and two models never mix files.
    target = settings.workdir / "artifacts" / hashlib.sha256(uri.encode()).hexdigest()[:16]
    if parse_location(uri).is_local:  # used in place: nothing to download
        return Path(fetch_artifact(uri, target, lambda card: [served_format(card, settings)]))
    target.mkdir(parents=True, exist_ok=True)
    return download_in_child(uri, target, settings)


def download_in_child(uri: str, target: Path, settings: ServerSettings) -> Path:
    """Download the artifact's card and served model file in a child process.

    The S3 client (boto3 and botocore with its service models) takes ~24 MB of a process
    that imports it and stays for the process's life, for one download at start-up; httpx
    several more. The child (`python -m model_server.download`) imports them and gives the
    memory back when it exits; the server never imports them. Besides the clients' own
    deadlines (per request), the child has download_timeout_seconds in all, then is killed.
    An ArtifactError of the child comes back as the same error; anything else (a crash, an
    exit without its JSON, the deadline) as a StorageError. Its output goes to temporary
    files, of which only a bounded head and tail are read.
    """
    request = {
        "uri": uri,
        "target": str(target),
        "format": settings.model_format,
        "sha256": settings.model_sha256,
        "compiled": settings.compiled,
    }
    deadline = settings.download_timeout_seconds
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        try:
            code = subprocess.run(
                [sys.executable, "-m", "model_server.download", json.dumps(request)],
                stdout=out,
                stderr=err,
                check=False,
                timeout=deadline,  # then the child is killed
            ).returncode
        except OSError as exc:
            raise ArtifactError(uri, "StorageError", f"cannot start the download: {exc}") from exc
        except subprocess.TimeoutExpired:
            raise ArtifactError(
                uri,
                "StorageError",
                f"the download did not finish within {deadline:g} s "
                f"(MODEL_SERVER_DOWNLOAD_TIMEOUT_SECONDS); the store is stalled or too slow",
            ) from None
        if code == 0:
            return target
        if code == DOWNLOAD_FAILED:  # its error names the file it was about: card, model file
            failure = _reported_error(head(out, CHILD_OUTPUT_BYTES))
            if failure is not None:
                raise failure
        lines = tail(err, CHILD_OUTPUT_BYTES).decode(errors="replace").strip().splitlines()
    last = (lines or ["no output"])[-1][:500]
    raise ArtifactError(uri, "StorageError", f"the download process failed (exit {code}): {last}")


def _reported_error(stdout: bytes) -> ArtifactError | None:
    """The ArtifactError the child wrote as JSON, or None when its stdout is not one."""
    try:
        error = json.loads(stdout)
        return ArtifactError(str(error["uri"]), str(error["reason"]), str(error["message"]))
    except (ValueError, TypeError, KeyError):
        return None


def head(file: IO[bytes], limit: int) -> bytes:
    """The first `limit` bytes written to `file`."""
    file.seek(0)
    return file.read(limit)


def tail(file: IO[bytes], limit: int) -> bytes:
    """The last `limit` bytes written to `file`."""
    size = file.seek(0, os.SEEK_END)
    file.seek(max(0, size - limit))
    return file.read(limit)


def served_format(card: ModelCard, settings: ServerSettings) -> ModelFormat:
    """Which of the artifact's model files this server loads: MODEL_SERVER_MODEL_FORMAT when
    set, else by the card's rule (`ModelCard.served_format`: the checked ONNX file when nothing
    else is pinned and the compiled path is on)."""
    return choose_format(card, settings.model_format, settings.model_sha256, settings.compiled)


def choose_format(
    card: ModelCard, requested: str | None, pin: str | None, compiled: bool
) -> ModelFormat:
    """`served_format` from the settings' values (what the download child is given)."""
    fmt = ModelFormat(requested) if requested else None
    return card.served_format(fmt, pin, compiled=compiled)


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
