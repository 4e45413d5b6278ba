"""Drift monitoring: the served model's recent rows against its card's training reference.

Every prediction (whatever the protocol: they all go through `DataPlane.predict`) hands its
validated input and the model's outputs to `DriftMonitor.observe`, which only keeps a reference
to them. They are binned later, many requests at once (vectorised: one searchsorted per numeric
feature over the whole batch), when enough rows are pending, every UPDATE_SECONDS, at a scrape
of /metrics and at GET .../drift. The bins (`mlmodel_artifact.drift.feature_bins`, the same
definition the trainer wrote the reference with) go into a ring buffer of the last `window`
rows: one int16 (int32 past 32k bins) per row and column, the columns being the features then
the outputs, each bin numbered globally so that one bincount per batch keeps running per-bin
counts, minus the rows the batch evicts. Memory is window x (features + 1) small integers,
whatever the traffic.

Gauges (per worker process; see DriftMonitor for the multiprocess mode): PSI per feature and of
the outputs against the reference, the missing-value share per feature, the rows in the window.
PSI is exported only once the window holds `min_rows` rows (PSI_MIN_ROWS, or the window if
smaller): on a handful of rows it says nothing.

numpy only: no pandas (a typed model's DataFrame input is read through its own methods) and no
scikit-learn, so the ONNX path keeps importing neither.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
from prometheus_client import CollectorRegistry, Gauge

from mlmodel_artifact.drift import (
    DriftReference,
    FeatureReference,
    OutputReference,
    feature_bins,
    n_feature_bins,
    n_output_bins,
    output_bins,
    psi,
    shares,
)
from model_server.runtimes.base import Array, ModelInfo

log = logging.getLogger("model_server")

# PSI on fewer rows than this (or than the window, if smaller) is noise: not exported.
PSI_MIN_ROWS: Final = 100
# The usual reading of PSI (what the docs and GET .../drift state): below MODERATE no shift.
PSI_MODERATE: Final = 0.1
PSI_MAJOR: Final = 0.25
# Gauges are recomputed at most this often (and at each scrape), never per request.
UPDATE_SECONDS: Final = 0.5
# Pending (not yet binned) rows older than the last window's worth are dropped unbinned (the
# window would evict them before anyone looks); with a window bigger than this, the pending rows
# are binned on the request path once this many wait, which bounds their memory.
FLUSH_ROWS: Final = 4096
OFF_BY_SETTING: Final = "drift monitoring is off (MODEL_SERVER_DRIFT_WINDOW is 0)"


@dataclass(frozen=True)
class _Column:
    """One column of the ring buffer: a feature, or the outputs."""

    offset: int  # global number of its first bin
    n_bins: int


class DriftWindow:
    """The last `size` rows' bins (features, then outputs) and running counts per bin."""

    def __init__(self, reference: DriftReference, size: int) -> None:
        self.reference = reference
        self.size = size
        widths = [n_feature_bins(f) for f in reference.features]
        if reference.outputs is not None:
            widths.append(n_output_bins(reference.outputs))
        offsets = np.cumsum([0, *widths])
        self.columns = [_Column(int(o), w) for o, w in zip(offsets, widths, strict=False)]
        self.n_bins = int(offsets[-1])
        dtype = np.int16 if self.n_bins < np.iinfo(np.int16).max else np.int32
        self.bins = np.full((size, len(widths)), -1, dtype=dtype)  # -1: an empty slot
        self.counts = np.zeros(self.n_bins, dtype=np.int64)
        self.rows = 0  # rows in the window
        self.position = 0  # the slot the next row goes to

    def add(self, features: list[Array], outputs: Array | None) -> None:
        """Bin one batch (a column per feature, the outputs) and slide the window over it."""
        n = len(outputs) if outputs is not None else len(features[0])
        if n == 0:
            return
        take = min(n, self.size)
        new = np.empty((take, len(self.columns)), dtype=self.bins.dtype)
        for j, (ref, values) in enumerate(zip(self.reference.features, features, strict=True)):
            new[:, j] = feature_bins(ref, values[n - take :]) + self.columns[j].offset
        if self.reference.outputs is not None:
            column = self.columns[-1]
            if outputs is None:  # never the case: the plane always passes outputs
                raise ValueError("no outputs to bin")
            new[:, -1] = _output_bins(self.reference.outputs, outputs[n - take :]) + column.offset
        slots = (self.position + np.arange(take)) % self.size
        evicted = self.bins[slots].ravel()
        evicted = evicted[evicted >= 0]
        if len(evicted):
            self.counts -= np.bincount(evicted, minlength=self.n_bins)
        self.bins[slots] = new
        self.counts += np.bincount(new.ravel().astype(np.intp), minlength=self.n_bins)
        self.position = int((self.position + take) % self.size)
        self.rows = min(self.rows + take, self.size)

    def feature_counts(self, j: int) -> Array:
        """Rows per bin of feature j (the missing bin last)."""
        column = self.columns[j]
        return self.counts[column.offset : column.offset + column.n_bins]

    def output_counts(self) -> Array | None:
        """Rows per output bin, when the reference has outputs."""
        if self.reference.outputs is None:
            return None
        column = self.columns[-1]
        return self.counts[column.offset : column.offset + column.n_bins]


def _output_bins(reference: OutputReference, outputs: Array) -> Array:
    """`output_bins`, each distinct class label looked up once: it maps values one by one in
    Python (~0.3 us a row), and a batch holds only a few distinct labels."""
    if reference.classes is None or len(outputs) < 16:
        return output_bins(reference, outputs)
    try:
        distinct, inverse = np.unique(outputs, return_inverse=True)
    except TypeError:  # values that do not order (mixed types): one by one
        return output_bins(reference, outputs)
    return output_bins(reference, distinct)[inverse.reshape(-1)]


@dataclass(frozen=True)
class FeatureDrift:
    """One feature's window against its reference."""

    reference: FeatureReference
    window_shares: list[float]
    missing_share: float
    psi: float


@dataclass(frozen=True)
class Snapshot:
    """The window's shares and PSI, feature by feature and for the outputs."""

    rows: int
    features: list[FeatureDrift]
    output_shares: list[float] | None
    output_psi: float | None


def snapshot(window: DriftWindow) -> Snapshot:
    """Shares and PSI of the window as it is now."""
    features = []
    for j, ref in enumerate(window.reference.features):
        found = shares(window.feature_counts(j).tolist())
        features.append(FeatureDrift(ref, found, found[-1], psi(ref.shares, found)))
    output_shares = output_psi = None
    out_counts = window.output_counts()
    if out_counts is not None and window.reference.outputs is not None:
        output_shares = shares(out_counts.tolist())
        output_psi = psi(window.reference.outputs.shares, output_shares)
    return Snapshot(window.rows, features, output_shares, output_psi)


class DriftGauges:
    """The drift metric families, registered only when drift is monitored.

    multiprocess_mode "max": with several workers each keeps its own window (the kernel spreads
    connections over them) and /metrics shows, per feature, the largest PSI and missing share
    of any worker, so an alert on it fires when any worker's recent traffic has drifted (a
    drift that only shows in one worker's share of the traffic is still drift). The rows gauge
    is "max" too: the fullest window. Values of a worker that died stay until the pod restarts.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.feature_psi = Gauge(
            "model_server_feature_drift_psi",
            "Population stability index of each feature's recent rows (the drift window) "
            "against the training rows (the model card's drift_reference); 0.1-0.25 a moderate "
            "shift, above 0.25 a major one. Exported once the window holds enough rows; with "
            "several workers, the largest of any worker's window.",
            ["feature"],
            registry=registry,
            multiprocess_mode="max",
        )
        self.missing_share = Gauge(
            "model_server_feature_missing_share",
            "Share of the drift window's rows in which each feature is missing (null).",
            ["feature"],
            registry=registry,
            multiprocess_mode="max",
        )
        self._registry = registry
        # made once PSI is exported: a gauge without labels exports 0 from the start
        self.prediction_psi: Gauge | None = None
        self.rows = Gauge(
            "model_server_drift_window_rows",
            "Rows in the drift window (at most MODEL_SERVER_DRIFT_WINDOW; per worker, the "
            "largest).",
            registry=registry,
            multiprocess_mode="max",
        )
        # children per feature, made on first use (a child made is a sample exported)
        self._missing: dict[str, Any] = {}
        self._psi: dict[str, Any] = {}

    def show(self, found: Snapshot, min_rows: int) -> None:
        """Set every gauge from a snapshot (PSI only with at least `min_rows` rows)."""
        self.rows.set(found.rows)
        enough = found.rows >= min_rows
        for feature in found.features:
            name = feature.reference.name
            missing = self._missing.get(name)
            if missing is None:
                missing = self._missing[name] = self.missing_share.labels(name)
            missing.set(feature.missing_share)
            if enough:
                psi_child = self._psi.get(name)
                if psi_child is None:
                    psi_child = self._psi[name] = self.feature_psi.labels(name)
                psi_child.set(feature.psi)
        if enough and found.output_psi is not None:
            if self.prediction_psi is None:
                self.prediction_psi = Gauge(
                    "model_server_prediction_drift_psi",
                    "Population stability index of the model's recent outputs (the drift "
                    "window) against its outputs on held-out rows at training time. Exported "
                    "once the window holds enough rows; with several workers, the largest.",
                    registry=self._registry,
                    multiprocess_mode="max",
                )
            self.prediction_psi.set(found.output_psi)


class DriftMonitor:
    """The served model's drift window, its gauges and its report (one per worker process).

    Off when the window is 0 (no work on the request path, no gauges) or the card has no drift
    reference; an unexpected error while binning logs once and turns it off. Everything runs
    on the event loop (requests, the update task, /metrics and /drift), so nothing is locked.
    """

    def __init__(self, window: int, registry: CollectorRegistry) -> None:
        self.size = window
        self.min_rows = min(PSI_MIN_ROWS, window)
        self._registry = registry
        self.off_reason: str | None = OFF_BY_SETTING if window == 0 else None
        self._window: DriftWindow | None = None
        self._gauges: DriftGauges | None = None
        self._info: ModelInfo | None = None
        # requests not binned yet: (input, outputs, rows), at most a window's worth + one
        self._pending: deque[tuple[Any, Array, int]] = deque()
        self._pending_rows = 0
        self.seen = 0  # rows observed since the model was loaded
        self._dirty = False

    @property
    def active(self) -> bool:
        """True while rows are being monitored."""
        return self._window is not None

    def start(self, info: ModelInfo, reference: DriftReference | None) -> None:
        """Begin monitoring the loaded model (from its card's reference), or say why not."""
        if self.off_reason is not None:
            return
        if reference is None:
            self.off_reason = (
                f"drift monitoring is off: the model card of {info.name!r} has no "
                "drift_reference (written before the trainer recorded one); train or package "
                "the model again to monitor it"
            )
            log.info("%s", self.off_reason)
            return
        names = [f.name for f in reference.features]
        if names != list(info.feature_names):
            self.off_reason = (
                "drift monitoring is off: the card's drift_reference lists other features than "
                "the model takes"
            )
            log.warning("%s", self.off_reason)
            return
        try:
            self._info = info
            self._window = DriftWindow(reference, self.size)
            self._pending.clear()
            self._pending_rows = self.seen = 0
            if self._gauges is None:  # an app whose lifespan runs again loads again
                self._gauges = DriftGauges(self._registry)
            self._gauges.show(snapshot(self._window), self.min_rows)
        except Exception as exc:  # never stop the model from serving
            self._stop(exc)
            return
        log.info(
            "drift monitoring on: a window of the last %d rows, %d features%s",
            self.size, len(names), " and the outputs" if reference.outputs else "",
        )  # fmt: skip

    def observe(self, x: Any, labels: Array) -> None:
        """Keep a request's validated input and the model's outputs for binning (cheap)."""
        if self._window is None:
            return
        try:
            if not isinstance(x, np.ndarray):
                # A DataFrame (scikit-learn fitted on named columns, a path that costs ms per
                # call): its rows now, as one object array (~40 us), since reading many small
                # frames later would stall the event loop (~0.15 ms a row, all at once).
                x = x.to_numpy(dtype=object)
            n = len(labels)
            pending = self._pending
            pending.append((x, labels, n))
            self._pending_rows += n
            self.seen += n
            # Rows a window's worth of newer ones follows would be evicted unseen: drop them
            # unbinned. Under load most rows go this way, at O(1) each.
            while self._pending_rows - pending[0][2] >= self.size:
                self._pending_rows -= pending.popleft()[2]
        except Exception as exc:  # never into a request: stop monitoring instead
            self._stop(exc)
            return
        if self._pending_rows >= FLUSH_ROWS:
            self.flush()

    def flush(self) -> None:
        """Bin the pending rows into the window."""
        window = self._window
        if window is None or not self._pending:
            return
        pending, self._pending, self._pending_rows = list(self._pending), deque(), 0
        try:
            features, outputs = self._batch(pending, window.size)
            window.add(features, outputs)
        except Exception as exc:  # never into a request: stop monitoring instead
            self._stop(exc)
            return
        self._dirty = True

    def refresh(self) -> None:
        """Bin what is pending and set the gauges, when anything changed."""
        self.flush()
        if self._window is None or self._gauges is None or not self._dirty:
            return
        try:
            self._gauges.show(snapshot(self._window), self.min_rows)
        except Exception as exc:
            self._stop(exc)
            return
        self._dirty = False

    async def watch(self) -> None:
        """Refresh every UPDATE_SECONDS (the app's lifespan runs and cancels this): the gauges
        of a worker that does not serve the scrape stay current too."""
        while self.off_reason is None:  # ends once monitoring is off (no reference, an error)
            await asyncio.sleep(UPDATE_SECONDS)
            if self._window is not None:
                self.refresh()

    def report(self) -> dict[str, Any] | None:
        """GET .../drift: the window, and per feature and for the outputs the bins, reference
        and window shares, PSI (null below min_rows rows); None when off (see off_reason)."""
        self.refresh()
        window, info = self._window, self._info
        if window is None or info is None:
            return None
        found = snapshot(window)
        enough = found.rows >= self.min_rows
        features = [
            {
                "name": f.reference.name,
                "kind": f.reference.kind.value,
                "bins": f.reference.labels,
                "reference_shares": f.reference.shares,
                "window_shares": f.window_shares,
                "missing_share": f.missing_share,
                "psi": f.psi if enough else None,
            }
            for f in found.features
        ]
        outputs = None
        ref_out = window.reference.outputs
        if ref_out is not None and found.output_shares is not None:
            outputs = {
                "kind": "classes" if ref_out.classes is not None else "deciles",
                "bins": ref_out.labels,
                "reference_shares": ref_out.shares,
                "window_shares": found.output_shares,
                "psi": found.output_psi if enough else None,
            }
        return {
            "model_name": info.name,
            "model_version": info.version,
            "window": window.size,
            "rows": found.rows,
            "rows_seen": self.seen,
            "min_rows": self.min_rows,
            "thresholds": {"moderate": PSI_MODERATE, "major": PSI_MAJOR},
            "features": features,
            "outputs": outputs,
        }

    def _batch(self, pending: list[tuple[Any, Array, int]], keep: int) -> tuple[list[Array], Array]:
        """The pending requests as one column per feature and the outputs (last `keep` rows)."""
        assert self._info is not None
        names = self._info.feature_names
        outputs = np.concatenate([np.ravel(labels) for _, labels, _ in pending])
        inputs = [x for x, _, _ in pending]
        matrix = inputs[0] if len(inputs) == 1 else np.concatenate(inputs)
        matrix = matrix[-keep:]
        columns = [matrix[:, j] for j in range(len(names))]
        outputs = outputs[-keep:]
        if len(outputs) != len(columns[0]):
            raise ValueError(f"{len(outputs)} outputs for {len(columns[0])} rows")
        return columns, outputs

    def _stop(self, exc: Exception) -> None:
        log.exception("drift monitoring stopped after an unexpected error")
        self.off_reason = (
            f"drift monitoring stopped after an unexpected error: {type(exc).__name__}: {exc}"
        )
        self._window = None
        self._pending, self._pending_rows = deque(), 0
