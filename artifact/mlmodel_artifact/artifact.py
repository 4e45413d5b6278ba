"""Write, fetch, verify and load artifacts: the model file(s) plus `model-card.json`."""

from __future__ import annotations

import platform
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from mlmodel_artifact import serialization
from mlmodel_artifact.card import (
    MODEL_CARD_FILE,
    MODEL_FILE_NAMES,
    ModelCard,
    ModelDescription,
    ModelFile,
    ModelFormat,
    Task,
)
from mlmodel_artifact.digest import sha256_bytes, sha256_file
from mlmodel_artifact.errors import ArtifactError
from mlmodel_artifact.storage import (
    MAX_CARD_BYTES,
    Location,
    download,
    parse_location,
    read_bytes,
    upload,
)

_VERSIONED_LIBRARIES = (
    "scikit-learn",
    "numpy",
    "scipy",
    "joblib",
    "skops",
    "onnxruntime",
    "skl2onnx",
)


def library_versions() -> dict[str, str]:
    """Versions of Python and the libraries that shape how a model loads and predicts."""
    versions = {"python": platform.python_version()}
    for name in _VERSIONED_LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def write_artifact(
    model: Any,
    description: ModelDescription,
    dest: str,
    formats: Sequence[ModelFormat] = (ModelFormat.SKOPS,),
    check_onnx: bool = False,
) -> tuple[str, ModelCard]:
    """Serialize `model` in each format (the first is primary) with its card, to `dest`.

    `dest` is a local path, `file://` or `s3://bucket/prefix`. Returns the artifact URI and card.
    `check_onnx` converts the model to ONNX and checks the graph answers like it (the card's
    `onnx_check` records the outcome); a graph that agrees is written as `model.onnx` too, so a
    server can serve it without converting at start-up.
    """
    if not formats:
        raise ValueError("write_artifact needs at least one format")
    checked = None
    if check_onnx:
        from mlmodel_artifact.compiled import check_onnx_form

        checked = check_onnx_form(model, description)
        if checked.onnx_bytes is not None:
            formats = [*formats, ModelFormat.ONNX]
    loc = parse_location(dest)
    with tempfile.TemporaryDirectory(prefix="mlmodel-artifact-") as tmp:
        staging = Path(tmp)
        files = {}
        for fmt in dict.fromkeys(formats):
            name = MODEL_FILE_NAMES[fmt]
            if fmt is ModelFormat.ONNX and checked is not None and checked.onnx_bytes:
                (staging / name).write_bytes(checked.onnx_bytes)  # the graph that was checked
            else:
                serialization.serialize(
                    model, fmt, staging / name, description.n_features, description.input_schema
                )
            files[fmt] = ModelFile(
                file=name, sha256=sha256_file(staging / name), size=(staging / name).stat().st_size
            )
        primary = formats[0]
        card = ModelCard(
            **description.model_dump(),
            format=primary,
            sha256=files[primary].sha256,
            files=files,
            library_versions=library_versions(),
            created_at=datetime.now(UTC).replace(microsecond=0),
            onnx_check=checked.check if checked is not None else None,
        )
        (staging / MODEL_CARD_FILE).write_text(card.to_json())
        # The card goes last, so a reader never sees a card whose model file is not there yet.
        upload(staging, [f.file for f in files.values()], loc)
        upload(staging, [MODEL_CARD_FILE], loc)
    return (str(loc.path.resolve()) if loc.path is not None else loc.uri), card


def read_model_card(uri: str) -> ModelCard:
    """Read and parse the model card of the artifact at `uri`."""
    loc = parse_location(uri)
    return ModelCard.from_json(read_bytes(loc, MODEL_CARD_FILE), loc.child(MODEL_CARD_FILE))


def fetch_artifact(
    uri: str,
    workdir: Path,
    formats: Sequence[ModelFormat] | Callable[[ModelCard], Sequence[ModelFormat]] | None = None,
) -> Path:
    """Make the artifact available as a local directory and return it.

    A local artifact is used in place. A remote one is downloaded into `workdir`: its card and
    the model files of `formats` (default: the primary format; a function of the card chooses
    them once the card is read). Nothing is deserialized here.
    """
    loc = parse_location(uri)
    if loc.path is not None:
        if not (loc.path / MODEL_CARD_FILE).is_file():
            raise ArtifactError(uri, "ArtifactNotFound", f"no {MODEL_CARD_FILE} in {loc.path}")
        return loc.path
    card = _download_card(loc, workdir)
    if callable(formats):
        formats = formats(card)
    for fmt in formats or [card.format]:
        entry = _file_for(card, fmt, uri)  # ArtifactNotFound when the card lists no such file
        download(loc, MODEL_FILE_NAMES[fmt], workdir / MODEL_FILE_NAMES[fmt], entry.size)
    return workdir


def verify_artifact(uri: str, expected_sha256: str | None = None) -> ModelCard:
    """Re-compute the digest of every model file the card lists; never deserializes anything."""
    with tempfile.TemporaryDirectory(prefix="mlmodel-verify-") as tmp:
        loc = parse_location(uri)
        card = read_model_card(uri)
        local = fetch_artifact(uri, Path(tmp), list(card.files))
        for fmt in card.files:
            check_digest(local, card, fmt, uri, None)
        if expected_sha256 is not None and expected_sha256 != card.sha256:
            raise ArtifactError(
                loc.uri,
                "ArtifactDigestMismatch",
                f"the primary model file has sha256 {card.sha256}, expected {expected_sha256}",
            )
        return card


def check_digest(
    local_dir: Path, card: ModelCard, fmt: ModelFormat, uri: str, expected_sha256: str | None
) -> Path:
    """Return the path of `fmt`'s model file after checking its sha256 against card and pin.

    The file is the contract's name for `fmt` inside `local_dir` (never a path from the card),
    and it must resolve inside `local_dir`: a symlink out of it is refused unread.
    """
    entry = _file_for(card, fmt, uri)
    path = _existing_model_file(local_dir, fmt, uri, entry.file)
    _compare(entry.file, sha256_file(path), entry.sha256, expected_sha256, uri)
    return path


def read_checked(
    local_dir: Path, card: ModelCard, fmt: ModelFormat, uri: str, expected_sha256: str | None
) -> bytes:
    """`fmt`'s model file, read once, after its sha256 matched card and pin (`check_digest`).

    What is loaded must be these bytes, never the file read again: on a shared volume (a
    `pvc://` claim others can write) the file could be replaced between the check and the load.
    """
    entry = _file_for(card, fmt, uri)
    data = _existing_model_file(local_dir, fmt, uri, entry.file).read_bytes()
    _compare(entry.file, sha256_bytes(data), entry.sha256, expected_sha256, uri)
    return data


def _existing_model_file(local_dir: Path, fmt: ModelFormat, uri: str, name: str) -> Path:
    path = model_file_path(local_dir, fmt, uri)
    if not path.is_file():
        raise ArtifactError(uri, "ArtifactNotFound", f"the model file {name} is missing")
    return path


def _compare(
    name: str, actual: str, card_sha256: str | None, expected_sha256: str | None, uri: str
) -> None:
    for expected, source in ((card_sha256, "the model card"), (expected_sha256, "the pinned")):
        if expected is not None and actual != expected:
            raise ArtifactError(
                uri,
                "ArtifactDigestMismatch",
                f"{name} has sha256 {actual} but {source} sha256 is {expected}; "
                "the file was changed or truncated, so it was not loaded",
            )


def model_file_path(local_dir: Path, fmt: ModelFormat, uri: str) -> Path:
    """`local_dir / model.<fmt>`, or ArtifactError(InvalidModelCard) if it resolves elsewhere."""
    path = local_dir / MODEL_FILE_NAMES[fmt]
    if not path.resolve().is_relative_to(local_dir.resolve()):
        raise ArtifactError(
            uri,
            "InvalidModelCard",
            f"{MODEL_FILE_NAMES[fmt]} is a link to a file outside the artifact directory; "
            "it was not read",
        )
    return path


def require_pin(fmt: ModelFormat, expected_sha256: str | None, uri: str) -> None:
    """A joblib file is a pickle, which runs code when loaded: only with a person's pin.

    The pin must come from whoever asked for the model (an MLModel's spec.model.sha256, the
    server's MODEL_SERVER_MODEL_SHA256 / --model-sha256); the card's digest is no pin, since
    whoever can replace the pickle can replace the card next to it.
    """
    if fmt is ModelFormat.JOBLIB and expected_sha256 is None:
        raise ArtifactError(
            uri,
            "UntrustedType",
            "a joblib model is a pickle that can run code when loaded; it is loaded only "
            "with a sha256 pinned by you (expected_sha256, MODEL_SERVER_MODEL_SHA256 or "
            "--model-sha256), never on the model card's word; or use the skops format",
        )


@dataclass
class LoadedModel:
    """A model loaded from a verified artifact."""

    card: ModelCard
    format: ModelFormat
    path: Path
    model: Any
    warnings: list[str] = field(default_factory=list)


def load_model(
    local_dir: Path,
    *,
    format: ModelFormat | str | None = None,
    expected_sha256: str | None = None,
    uri: str | None = None,
) -> LoadedModel:
    """Verify, deserialize and sanity-check the model in `local_dir`.

    The file's sha256 is checked against the card (and `expected_sha256`, if pinned) before any
    byte of it is deserialized; a joblib file (a pickle) needs `expected_sha256`. After loading,
    the card's sample rows must reproduce; with a different scikit-learn version that is a
    warning if they do and an error if they do not.
    """
    uri = uri or str(local_dir)
    card_path = local_dir / MODEL_CARD_FILE
    if not card_path.is_file():
        raise ArtifactError(uri, "ArtifactNotFound", f"no {MODEL_CARD_FILE} in the artifact")
    card = ModelCard.from_json(card_path.read_bytes(), uri)
    fmt = parse_format(format, uri) if format is not None else card.format
    require_pin(fmt, expected_sha256, uri)
    data = read_checked(local_dir, card, fmt, uri, expected_sha256)
    model = serialization.deserialize(fmt, data, uri, card.n_features)
    del data  # the file's bytes: not kept while the model is checked and served
    path = model_file_path(local_dir, fmt, uri)
    loaded = LoadedModel(card=card, format=fmt, path=path, model=model)
    loaded.warnings.extend(check_sample(loaded, uri))
    return loaded


def parse_format(value: ModelFormat | str, uri: str) -> ModelFormat:
    """The format named by `value`, or ArtifactError(UnknownFormat)."""
    try:
        return ModelFormat(value)
    except ValueError:
        known = ", ".join(f.value for f in ModelFormat)
        raise ArtifactError(
            uri, "UnknownFormat", f"unknown model format {value!r}; known formats: {known}"
        ) from None


def check_sample(loaded: LoadedModel, uri: str) -> list[str]:
    """Check the loaded model reproduces the card's sample outputs; returns warnings."""
    card = loaded.card
    trained = card.library_versions.get("scikit-learn")
    running = _installed_version("scikit-learn")
    mismatch = reproduces_sample(loaded.model, card, loaded.format)
    version_note = f"trained with scikit-learn {trained}, loaded with scikit-learn {running}"
    if trained != running and loaded.format is not ModelFormat.ONNX:
        if mismatch:
            raise ArtifactError(
                uri,
                "IncompatibleVersion",
                f"model {version_note} does not reproduce its "
                f"model card's sample outputs ({mismatch})",
            )
        return [f"model {version_note}; its sample outputs reproduce"]
    if mismatch:
        raise ArtifactError(
            uri,
            "SampleMismatch",
            f"the loaded model does not reproduce its model card's sample outputs ({mismatch})",
        )
    return []


def reproduces_sample(model: Any, card: ModelCard, fmt: ModelFormat) -> str:
    """Empty string if `model` gives the card's sample outputs, else what differed."""
    sample = card.sample
    if not sample.inputs:
        return ""
    import numpy as np  # here, not at the top: reading cards (the operator) needs no numpy

    from mlmodel_artifact.schema import FeatureValueError, sample_input

    try:
        x = sample_input(card.feature_schema, sample.inputs, model)
    except (FeatureValueError, ValueError, TypeError) as exc:
        return f"the sample rows do not fit the input schema: {exc}"
    try:
        got = np.asarray(model.predict(x))
    except Exception as exc:
        return f"predict failed: {type(exc).__name__}: {exc}"
    want = np.asarray(sample.outputs)
    if card.task is Task.CLASSIFICATION:
        if got.tolist() != want.tolist():
            return f"labels {got.tolist()} instead of {want.tolist()}"
    else:
        rtol = 1e-4 if fmt is ModelFormat.ONNX else 1e-7
        if not np.allclose(got.astype(np.float64), want.astype(np.float64), rtol=rtol, atol=1e-6):
            return f"values {got.tolist()} instead of {want.tolist()}"
    if sample.probabilities is not None and hasattr(model, "predict_proba"):
        proba = np.asarray(model.predict_proba(x), dtype=np.float64)
        if proba.shape != np.shape(sample.probabilities) or not np.allclose(
            proba, sample.probabilities, atol=1e-5
        ):
            return "class probabilities differ by more than 1e-5"
    return ""


def _download_card(loc: Location, workdir: Path) -> ModelCard:
    workdir.mkdir(parents=True, exist_ok=True)
    download(loc, MODEL_CARD_FILE, workdir / MODEL_CARD_FILE, MAX_CARD_BYTES)
    return ModelCard.from_json((workdir / MODEL_CARD_FILE).read_bytes(), loc.child(MODEL_CARD_FILE))


def _file_for(card: ModelCard, fmt: ModelFormat, uri: str) -> ModelFile:
    try:
        return card.files[fmt]
    except KeyError:
        have = ", ".join(f.value for f in card.files)
        raise ArtifactError(
            uri, "ArtifactNotFound", f"the artifact has no {fmt} model file (it has: {have})"
        ) from None


def _installed_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None
