"""Runtimes: one module per artifact format behind one interface (`Runtime`)."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mlmodel_artifact import (
    MODEL_CARD_FILE,
    ArtifactError,
    InputSchema,
    LoadedModel,
    ModelCard,
    ModelFormat,
    OnnxModel,
    Task,
    compiled,
    takes_frame,
)
from mlmodel_artifact.compiled import Compiled
from model_server.errors import ModelLoadError
from model_server.runtimes import joblib, onnx, skops
from model_server.runtimes.base import ModelInfo, Runtime
from model_server.settings import ServerSettings
from model_server.storage import checked_onnx_skipped, preflight, served_format

__all__ = ["ModelInfo", "Runtime", "load_runtime", "preflight", "served_format"]

log = logging.getLogger("model_server")

LOADERS: dict[ModelFormat, Callable[[Path, ServerSettings], LoadedModel]] = {
    ModelFormat.SKOPS: skops.load,
    ModelFormat.JOBLIB: joblib.load,
    ModelFormat.ONNX: onnx.load,
}


def load_runtime(
    local_dir: Path, settings: ServerSettings, convert: compiled.Converter | None = None
) -> Runtime:
    """Load the artifact in `local_dir` and wrap it; sklearn models try the compiled path."""
    card = ModelCard.from_json((local_dir / MODEL_CARD_FILE).read_bytes(), settings.model_uri)
    fmt = served_format(card, settings)
    try:
        loaded = LOADERS[fmt](local_dir, settings)
    except (ModuleNotFoundError, ArtifactError) as exc:
        missing = exc if isinstance(exc, ModuleNotFoundError) else exc.__cause__
        if not isinstance(missing, ModuleNotFoundError):
            raise
        # The slim image holds no scikit-learn, skops or joblib.
        name = (missing.name or "a library").partition(".")[0]
        raise ModelLoadError(
            f"this server has no {name} installed, so it cannot load {card.files[fmt].file} "
            "(the slim image serves ONNX graphs only): serve the artifact's model.onnx (pin its "
            "sha256, or set MODEL_SERVER_MODEL_FORMAT=onnx) or use the full image"
        ) from None
    for warning in loaded.warnings:
        log.warning("%s", warning)
    schema = loaded.card.feature_schema
    if fmt is ModelFormat.ONNX:
        typed = None
        if not schema.plain_numeric:
            if loaded.model.input_names != schema.names:
                raise ModelLoadError(
                    "the card's input schema has categorical, boolean or nullable features, but "
                    f"the ONNX graph's inputs are {loaded.model.input_names[:10]}, not one per "
                    "feature; serve the skops file instead"
                )
            typed = schema  # one input per feature: the typed path's object array
        proba = bool(loaded.model.has_proba)
        if card.checked_onnx and card.onnx_check is not None:
            log.info(
                "serving the ONNX file checked as the artifact was written: %s",
                card.onnx_check.detail,
            )
        info = _info(loaded, settings, "onnxruntime", card.checked_onnx, proba, typed)
        return Runtime(loaded.model, info, fast=True)
    if checked_onnx_skipped(card, settings, fmt):
        log.info(
            "the artifact's ONNX file was checked when it was written, but the pin names %s: "
            "converting at start-up instead (pin model.onnx's sha256 to serve it directly)",
            card.files[fmt].file,
        )
    _single_threaded(loaded.model)
    proba = hasattr(loaded.model, "predict_proba")
    if settings.compiled:
        outcome = _compile(loaded, schema, convert)
        if outcome.model is not None:
            log.info("compiled path on: %s", outcome.reason)
            typed = None if schema.plain_numeric else schema  # the graph takes an object array
            info = _info(loaded, settings, "onnxruntime", True, proba, typed)
            return Runtime(outcome.model, info, fast=True)
        log.warning("compiled path off, serving with scikit-learn: %s", outcome.reason)
    frame = takes_frame(loaded.model)
    typed = None if schema.plain_numeric and not frame else schema
    info = _info(loaded, settings, "sklearn", False, proba, typed, frame)
    return Runtime(loaded.model, info, fast=False)


def _compile(
    loaded: LoadedModel, schema: InputSchema, convert: compiled.Converter | None
) -> Compiled:
    """The compiled path; a mixed-type model's graph takes one input per feature."""
    if schema.plain_numeric:
        return compiled.compile_estimator(
            loaded.model, loaded.card, convert or OnnxModel.from_sklearn
        )
    convert = convert or functools.partial(OnnxModel.from_sklearn, schema=schema)
    return compiled.compile_estimator(loaded.model, loaded.card, convert, schema)


def _info(
    loaded: LoadedModel,
    settings: ServerSettings,
    runtime: str,
    compiled: bool,
    proba: bool,
    schema: InputSchema | None = None,
    frame: bool = False,
) -> ModelInfo:
    card = loaded.card
    labels = card.class_labels if card.task is Task.CLASSIFICATION else None
    return ModelInfo(
        name=settings.model_name or card.name,
        version=settings.model_version,
        format=loaded.format.value,
        digest=card.files[loaded.format].sha256,
        task=card.task.value,
        estimator=card.estimator,
        feature_names=tuple(card.feature_names),
        class_labels=tuple(labels) if labels is not None else None,
        runtime=runtime,
        compiled=compiled,
        proba=proba,
        schema=schema,
        frame=frame,
    )


def _single_threaded(estimator: Any) -> None:
    """n_jobs=-1 makes small predictions several times slower; a server runs one per worker."""
    get_params = getattr(estimator, "get_params", None)
    if get_params is None:
        return
    jobs = {key: None for key in get_params(deep=True) if key.endswith("n_jobs")}
    if jobs:
        estimator.set_params(**jobs)
