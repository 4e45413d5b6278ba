"""The framework-free data plane: validate input, run the runtime, shape the output.

Protocols hand it parsed JSON values; it returns numpy arrays or raises the domain errors of
`model_server.errors`. Nothing here knows about HTTP.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Final, TypeVar

import numpy as np
import orjson
from threadpoolctl import threadpool_limits

from model_server.errors import InvalidInput, ModelNotFound, ModelNotReady
from model_server.runtimes.base import Array, Runtime

T = TypeVar("T")
PREDICT_THREADS: Final = 4  # scikit-learn holds the GIL for much of a call; a few suffice


@dataclass(frozen=True)
class Prediction:
    """Labels or values, and class probabilities when asked for."""

    labels: Array
    probabilities: Array | None


class DataPlane:
    """Holds the served runtime once it is loaded; every protocol goes through it."""

    def __init__(self, on_rows: Callable[[str, int], None] | None = None) -> None:
        self._runtime: Runtime | None = None
        self._not_ready = "the model is still loading"
        self._on_rows = on_rows
        self._executor = ThreadPoolExecutor(
            max_workers=PREDICT_THREADS, thread_name_prefix="predict", initializer=_one_thread
        )

    @property
    def ready(self) -> bool:
        """True once a runtime is attached (loaded and warmed up)."""
        return self._runtime is not None

    def attach(self, runtime: Runtime) -> None:
        """Start serving `runtime`."""
        self._runtime = runtime

    def fail(self, message: str) -> None:
        """Record why the model will never be ready (readiness keeps answering 503)."""
        self._not_ready = f"the model failed to load: {message}"

    def close(self) -> None:
        """Stop the prediction threads (at shutdown)."""
        self._executor.shutdown(wait=False, cancel_futures=True)

    def run_in_thread(self, call: Callable[[], T]) -> Awaitable[T]:
        """Run `call` on a prediction thread (one OpenMP/BLAS thread each)."""
        return asyncio.get_running_loop().run_in_executor(self._executor, call)

    def runtime(self) -> Runtime:
        """The served runtime, or ModelNotReady."""
        if self._runtime is None:
            raise ModelNotReady(self._not_ready)
        return self._runtime

    def runtime_named(self, name: str, version: str | None = None) -> Runtime:
        """The runtime if `name` (and `version`) is what this server serves, else 404."""
        runtime = self.runtime()
        info = runtime.metadata
        if name != info.name:
            raise ModelNotFound(f"no model named {name!r}; this server serves {info.name!r}")
        if version is not None and version != info.version:
            raise ModelNotFound(
                f"model {name!r} has no version {version!r}; it serves version {info.version!r}"
            )
        return runtime

    async def predict(
        self, runtime: Runtime, x: Array, *, probabilities: bool, protocol: str
    ) -> Prediction:
        """Run the model on the event loop when it is cheap, else in a thread.

        Compiled models answer small batches in microseconds, less than a thread hand-off costs
        (it halves throughput for small requests); bigger batches and scikit-learn models run in
        a worker thread so the loop keeps serving.
        """
        if len(x) <= runtime.inline_rows:
            result = run(runtime, x, probabilities)
        else:
            result = await self.run_in_thread(lambda: run(runtime, x, probabilities))
        if self._on_rows is not None:
            self._on_rows(protocol, len(x))
        return result


def _one_thread() -> None:
    """Each prediction thread uses one OpenMP/BLAS thread (the limit is per thread).

    More workers, not more threads, use more cores: pools spin against each other and the other
    workers (HistGradientBoosting on one row: ~3 ms with one thread, 40-60 ms with the default
    pool on a busy 2-core machine).
    """
    threadpool_limits(limits=1)


def run(runtime: Runtime, x: Array, probabilities: bool) -> Prediction:
    """Call the runtime (blocking).

    Input has been validated already; a ValueError left is the model refusing a value it cannot
    represent (scikit-learn trees reject numbers beyond float32's range), so it is the client's.
    """
    try:
        if probabilities:
            labels, proba = runtime.predict_both(x)
            return Prediction(labels, proba)
        return Prediction(runtime.predict(x), None)
    except ValueError as exc:
        raise InvalidInput(f"the model cannot use this input: {exc}") from exc


def rows_matrix(rows: Any, features: Sequence[str], where: str, booleans: bool = True) -> Array:
    """A (n, len(features)) float64 matrix from rows given as lists or feature-keyed objects.

    `booleans=False` promises the JSON held no true/false anywhere (the caller looked at the
    raw bytes), which skips the per-value check for booleans posing as numbers.
    """
    if not isinstance(rows, list):
        raise InvalidInput(f"{where} must be a list of rows, got {json_kind(rows)}")
    if not rows:
        raise InvalidInput(f"{where} is an empty batch; send at least one row")
    if isinstance(rows[0], dict):
        rows = [_ordered(row, features, f"{where}[{i}]") for i, row in enumerate(rows)]
    return _matrix(rows, features, where, booleans)


def row_matrix(row: Any, features: Sequence[str], where: str, booleans: bool = True) -> Array:
    """A (1, n_features) matrix from one row (a list of numbers or a feature-keyed object)."""
    if not isinstance(row, list | dict):
        raise InvalidInput(
            f"{where} must be a list of {len(features)} numbers, got {json_kind(row)}"
        )
    if isinstance(row, list) and not row:
        raise InvalidInput(f"{where} is empty; send {len(features)} feature values")
    return rows_matrix([row], features, where, booleans)


def _ordered(row: Any, features: Sequence[str], where: str) -> list[Any]:
    if not isinstance(row, dict):
        raise InvalidInput(f"{where} must be an object keyed by feature name, got {json_kind(row)}")
    unknown = [key for key in row if key not in features]
    if unknown:
        raise InvalidInput(
            f"{where} has unknown feature name {unknown[0]!r}; "
            f"the model's features are: {', '.join(features)}"
        )
    missing = [name for name in features if name not in row]
    if missing:
        raise InvalidInput(f"{where} is missing feature {missing[0]!r}")
    return [row[name] for name in features]


def _matrix(rows: list[Any], features: Sequence[str], where: str, booleans: bool) -> Array:
    try:
        x = np.array(rows)
    except (ValueError, TypeError, OverflowError):
        x = None
    ok = x is not None and x.dtype.kind in "fiu" and x.ndim == 2 and x.shape[1] == len(features)
    if x is None or not ok or (booleans and _has_bool(rows)):
        raise InvalidInput(_first_problem(rows, features, where))
    return finite_float64(x, features, lambda i: f"{where}[{i}]")


def finite_float64(x: Array, features: Sequence[str], row: Callable[[int], str]) -> Array:
    """`x` as float64, or InvalidInput naming the first NaN/infinite cell (`row(i)` names row i)."""
    x = x.astype(np.float64, copy=False)
    if not np.isfinite(x).all():
        i, j = (int(v) for v in np.argwhere(~np.isfinite(x))[0])
        raise InvalidInput(
            f"{row(i)} feature {features[j]!r} is {x[i, j]}; NaN and infinity are not valid inputs"
        )
    return x


def _has_bool(rows: list[Any]) -> bool:
    # numpy silently turns True into 1.0 next to numbers; JSON booleans are not features.
    return any(value.__class__ is bool for row in rows for value in row)


def _first_problem(rows: list[Any], features: Sequence[str], where: str) -> str:
    """Explain why `rows` is not a numeric matrix (the slow path, only for bad input)."""
    n = len(features)
    for i, row in enumerate(rows):
        if not isinstance(row, list):
            return f"{where}[{i}] must be a list of {n} numbers, got {json_kind(row)}"
        if len(row) != n:
            return f"{where}[{i}] has {len(row)} feature values; the model expects {n}"
        for j, value in enumerate(row):
            if value.__class__ is bool or not isinstance(value, int | float):
                return (
                    f"{where}[{i}] feature {features[j]!r} must be a number, got {json_kind(value)}"
                )
            if isinstance(value, int) and abs(value) > 2**63:
                return f"{where}[{i}] feature {features[j]!r} is too large: {value}"
    return f"{where} must be a list of rows of {n} numbers"


def json_kind(value: Any) -> str:
    """A JSON-ish name for the type of `value`, with the value when short."""
    names = {
        bool: "boolean",
        int: "number",
        float: "number",
        str: "string",
        list: "array",
        dict: "object",
        type(None): "null",
    }
    if value is None:
        return "null"
    kind = names.get(type(value), type(value).__name__)
    try:
        text = orjson.dumps(value).decode()
    except TypeError:
        text = repr(value)
    return f"{kind} {text}" if len(text) <= 40 else kind
