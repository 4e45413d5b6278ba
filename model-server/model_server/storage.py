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
import time
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


def fetch_model(settings: ServerSettings, started: Download | None = None) -> Path:
    """Make the configured artifact local: local paths in place, remote ones under workdir,
    downloaded by a child process (`Download`; `started`, when `start_download` began it)."""
    if started is None:
        uri = local_uri(settings.model_uri)
        if parse_location(uri).is_local:  # used in place: nothing to download
            target = artifact_dir(settings, uri)
            return Path(fetch_artifact(uri, target, lambda card: [served_format(card, settings)]))
        started = _begin_download(settings, uri)
    return started.wait()


def artifact_dir(settings: ServerSettings, uri: str) -> Path:
    """One directory per URI, so workers and restarts reuse it and two models never mix files."""
    return settings.workdir / "artifacts" / hashlib.sha256(uri.encode()).hexdigest()[:16]


def start_download(settings: ServerSettings) -> Download | None:
    """Start downloading a remote artifact now, for `fetch_model(settings, started)` to wait
    for; None for a local one.

    The server starts it before it imports numpy, ONNX Runtime, FastAPI and grpc, so the
    child's own start (an interpreter, the S3 or HTTP client: about a second) and the download
    overlap those imports instead of following them.
    """
    uri = local_uri(settings.model_uri)
    try:
        return None if parse_location(uri).is_local else _begin_download(settings, uri)
    except (ArtifactError, OSError):  # fetch_model meets it again and reports it
        return None


def _begin_download(settings: ServerSettings, uri: str) -> Download:
    target = artifact_dir(settings, uri)
    target.mkdir(parents=True, exist_ok=True)
    return Download(uri, target, settings)


class Download:
    """The artifact's card and served model file, downloaded by a child process.

    The S3 client (boto3 and botocore with its service models) takes ~24 MB of a process
    that imports it and stays for the process's life, for one download at start-up; httpx
    several more. The child (`python -m model_server.download`) imports them and gives the
    memory back when it exits; the server never imports them. Besides the clients' own
    deadlines (per request), the child has download_timeout_seconds in all from its start,
    then is killed. A child that cannot start is an ArtifactError (StorageError) at once; one
    of the child's comes back as the same error from `wait`;
    anything else (a crash, an exit without its JSON, the deadline) as a StorageError. Its
    output goes to temporary files, of which only a bounded head and tail are read.
    """

    def __init__(self, uri: str, target: Path, settings: ServerSettings) -> None:
        request = {
            "uri": uri,
            "target": str(target),
            "format": settings.model_format,
            "sha256": settings.model_sha256,
            "compiled": settings.compiled,
        }
        self.uri, self.target = uri, target
        self._timeout = settings.download_timeout_seconds
        self._deadline = time.monotonic() + self._timeout
        self._out = tempfile.TemporaryFile()  # noqa: SIM115  # closed by wait
        self._err = tempfile.TemporaryFile()  # noqa: SIM115
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "model_server.download", json.dumps(request)],
                stdout=self._out,
                stderr=self._err,
            )
        except OSError as exc:
            self._out.close()
            self._err.close()
            raise ArtifactError(uri, "StorageError", f"cannot start the download: {exc}") from exc

    def wait(self) -> Path:
        """The target directory once the child succeeded; else its error (the child is killed
        at the deadline)."""
        try:
            try:
                code = self._proc.wait(timeout=max(0.0, self._deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
                raise ArtifactError(
                    self.uri,
                    "StorageError",
                    f"the download did not finish within {self._timeout:g} s "
                    f"(MODEL_SERVER_DOWNLOAD_TIMEOUT_SECONDS); the store is stalled or too slow",
                ) from None
            if code == 0:
                return self.target
            if code == DOWNLOAD_FAILED:  # its error names the file it was about: card, model
                failure = _reported_error(head(self._out, CHILD_OUTPUT_BYTES))
                if failure is not None:
                    raise failure
            lines = tail(self._err, CHILD_OUTPUT_BYTES).decode(errors="replace").strip()
            last = (lines.splitlines() or ["no output"])[-1][:500]
            raise ArtifactError(
                self.uri, "StorageError", f"the download process failed (exit {code}): {last}"
            )
        finally:
            self._out.close()
            self._err.close()

    def cancel(self) -> None:
        """Kill the child if it still runs (the server stopped before the model was fetched;
        a `wait` in progress then fails, and the files close with it or with the process)."""
        if self._proc.poll() is None:
            self._proc.kill()


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
