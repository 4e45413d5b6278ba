"""Start-up: fetch -> verify digest -> load -> warm up -> ready, off the event loop."""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import numpy as np

from mlmodel_artifact import (
    MODEL_CARD_FILE,
    Feature,
    FeatureKind,
    ModelCard,
)
from mlmodel_artifact.compiled import Converter
from mlmodel_artifact.schema import Value, sample_input
from model_server.dataplane import DataPlane, run
from model_server.metrics import Metrics
from model_server.runtimes import Runtime, load_runtime
from model_server.settings import ServerSettings
from model_server.storage import Download, describe, fetch_model

log = logging.getLogger("model_server")

WARM_UP_ROWS: Final = 64
INLINE_BUDGET_S: Final = 0.001  # the longest a prediction may hold the event loop
INLINE_ROWS_CAP: Final = 4096


def load_and_warm(
    settings: ServerSettings,
    convert: Converter | None = None,
    local_dir: Path | None = None,
    download: Download | None = None,
) -> Runtime:
    """Fetch (unless `local_dir` holds it already; waiting for `download` when it was started
    early), verify, load and warm up (blocking)."""
    local_dir = local_dir or fetch_model(settings, download)
    runtime = load_runtime(local_dir, settings, convert)
    card = ModelCard.from_json((local_dir / MODEL_CARD_FILE).read_bytes(), settings.model_uri)
    warm_up(runtime, warm_up_input(card, runtime))
    runtime.drift_reference = card.drift_reference
    return runtime


def warm_up_input(card: ModelCard, runtime: Runtime) -> Any:
    """The card's sample rows as the served model takes them (strings, booleans and nulls
    included), or one made-up row when the card has none."""
    schema = card.feature_schema
    rows = card.sample.inputs or [[_placeholder(f) for f in schema.features]]
    return sample_input(schema, rows, runtime.model)


def _placeholder(feature: Feature) -> Value:
    if feature.kind is FeatureKind.BOOLEAN:
        return False
    if feature.kind is FeatureKind.CATEGORICAL:
        return feature.categories[0] if feature.categories else ""
    return 0.0


def warm_up(runtime: Runtime, sample: Any) -> None:
    """Predict before reporting ready, and size what may run on the event loop.

    The card's sample rows are inputs the model is known to take. A compiled model may run
    inline as many rows as fit INLINE_BUDGET_S, from the measured cost of one row and of a batch
    (a big ensemble gets fewer rows than a small linear model). A model on the typed path
    (`sample` a DataFrame or object array) runs on scikit-learn, never inline: one call warms it.
    """
    proba = runtime.metadata.has_proba
    if not runtime.fast:
        run(runtime, sample[:1], proba)
        return
    rows = np.resize(sample, (WARM_UP_ROWS, sample.shape[1]))
    run(runtime, rows[:1], proba)
    one = _fastest(lambda: run(runtime, rows[:1], proba))
    batch = _fastest(lambda: run(runtime, rows, proba))
    runtime.inline_rows = inline_rows(one, batch, WARM_UP_ROWS)


def inline_rows(one_s: float, batch_s: float, batch_rows: int) -> int:
    """Rows that fit INLINE_BUDGET_S, given the time of one row and of `batch_rows` rows."""
    per_row = max((batch_s - one_s) / (batch_rows - 1), 1e-9)
    return int(min(INLINE_ROWS_CAP, max(0.0, (INLINE_BUDGET_S - one_s) / per_row)))


def _fastest(call: Callable[[], object], repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return min(times)


def settle_heap() -> None:
    """Collect once, then move every object alive now out of the garbage collector's sight.

    The imported libraries and the model are ~200k long-lived objects; a full collection over
    them takes ~60 ms, a pause that lands on whichever request triggers it (p99 latency).
    Where `freeze_imports` ran first, this collection walks only what the load made.
    """
    gc.collect()
    gc.freeze()


def freeze_imports() -> None:
    """Before the load, move the imported libraries and the app out of the collector's sight.

    For the server's own processes (the CLI calls it once its imports are done): nothing among
    those objects is garbage yet (a full collection at that point finds none, measured on the
    iris server) but walking ~70k of them costs 60-120 ms, which `settle_heap` would spend
    between the model being loaded and the server being ready. Frozen first, that collection
    walks only the objects the load made (under 1 ms).
    """
    gc.freeze()


class ModelLoader:
    """Loads the model (then the candidate, when one is set) in a daemon thread and attaches
    them to the data plane when ready.

    `download` is the model's download, started before the server's imports
    (`storage.start_download`). `candidate_dir` is the candidate's artifact directory already
    fetched and checked (by the parent of worker processes), `candidate_error` why that failed:
    the candidate is then not tried again.
    """

    def __init__(
        self,
        settings: ServerSettings,
        plane: DataPlane,
        metrics: Metrics,
        on_failure: Callable[[str], None] | None = None,
        convert: Converter | None = None,
        local_dir: Path | None = None,
        candidate_dir: Path | None = None,
        candidate_error: str | None = None,
        download: Download | None = None,
    ) -> None:
        self._settings = settings
        self._download = download
        self._plane = plane
        self._metrics = metrics
        self._on_failure = on_failure
        self._convert = convert
        self._local_dir = local_dir
        self._candidate_dir = candidate_dir
        self._candidate_error = candidate_error
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Begin loading; returns at once (readiness answers 503 until done)."""
        self._thread = threading.Thread(target=self.load, name="model-loader", daemon=True)
        self._thread.start()

    def load(self) -> None:
        """Load now (blocking); on failure log one line and call `on_failure`."""
        start = time.perf_counter()
        try:
            runtime = load_and_warm(self._settings, self._convert, self._local_dir, self._download)
        except Exception as exc:  # every failure ends start-up with one line, never a traceback
            message = describe(exc)
            log.error("model load failed: %s", message)
            self._plane.fail(message)
            if self._on_failure is not None:
                self._on_failure(message)
            return
        info = runtime.metadata
        candidate, failure = None, None
        if self._settings.candidate_uri is not None:
            candidate, failure = self.load_candidate(info.name)
        settle_heap()
        seconds = time.perf_counter() - start
        self._metrics.model_loaded(info, seconds)
        self._plane.attach(runtime, candidate, failure)
        log.info(
            "model %r ready in %.2f s: %s %s, sha256 %s, runtime %s, inline up to %d rows",
            info.name, seconds, info.estimator, info.format, info.digest, info.runtime,
            runtime.inline_rows,
        )  # fmt: skip

    def load_candidate(self, name: str) -> tuple[Runtime | None, str | None]:
        """The candidate, loaded like the stable model and served under its `name`; or None
        and the one-line reason it failed (logged; the stable then serves every request)."""
        if self._candidate_error is not None:  # the parent of the workers logged it
            return None, self._candidate_error
        settings = self._settings.candidate_settings(name)
        try:
            candidate = load_and_warm(settings, self._convert, self._candidate_dir)
        except Exception as exc:  # a candidate never stops the server: the stable serves on
            message = describe(exc)
            log.error(
                "candidate load failed: %s; version %r serves every request",
                message, self._settings.model_version,
            )  # fmt: skip
            return None, message
        info = candidate.metadata
        log.info(
            "candidate version %r of model %r loaded (%s mode): %s %s, sha256 %s, runtime %s",
            info.version, name, self._settings.candidate_mode, info.estimator, info.format,
            info.digest, info.runtime,
        )  # fmt: skip
        return candidate, None
