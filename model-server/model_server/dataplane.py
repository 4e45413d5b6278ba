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

from mlmodel_artifact.schema import JSON_KINDS
from model_server.drift import DriftMonitor
from model_server.errors import (
    InvalidInput,
    ModelNotFound,
    ModelNotReady,
    PayloadTooLarge,
    load_failure_for_clients,
)
from model_server.runtimes.base import Array, ModelInfo, Runtime
from model_server.versions import Attempt, Headers, Versions

T = TypeVar("T")
E = TypeVar("E")
PREDICT_THREADS: Final = 4  # scikit-learn holds the GIL for much of a call; a few suffice
# Bodies up to this size are parsed on the event loop (~0.25 ms for 16 KiB of numbers, about
# ten thread hand-offs); bigger ones in a thread, so probes are answered meanwhile.
INLINE_BODY_BYTES: Final = 16 * 1024
# Big bodies are parsed one at a time: parsing holds the GIL (more threads add no speed, only
# memory: an 8 MiB body becomes ~130 MB of Python objects) and the loop must get it in between.
DECODE_CONCURRENCY: Final = 1
DEFAULT_MAX_ROWS: Final = 10_000
# Values a row may carry besides its features' (a separator each, keys of keyed rows), and
# commas anywhere else in a valid body (tensor shapes, outputs, parameters).
SEPARATORS_PER_ROW: Final = 2
OTHER_SEPARATORS: Final = 1024
# Commas a row may carry inside each of its strings (a category like "Oslo, Norway"): a full
# batch of rows averaging more is refused with the others (and told to split).
SEPARATORS_PER_STRING: Final = 8
FLOAT32_MAX: Final = float(np.finfo(np.float32).max)


@dataclass(frozen=True)
class Prediction:
    """Labels or values, and class probabilities when asked for."""

    labels: Array
    probabilities: Array | None


class DataPlane:
    """Holds the served runtime once it is loaded; every protocol goes through it."""

    def __init__(
        self,
        on_rows: Callable[[str, int], None] | None = None,
        max_rows: int = DEFAULT_MAX_ROWS,
        drift: DriftMonitor | None = None,
        versions: Versions | None = None,
    ) -> None:
        self._runtime: Runtime | None = None
        # The stable version and a candidate (docs/rollouts.md) when one is configured; routing
        # between them (`_rollout`) only while the candidate is loaded.
        self.versions = versions
        self._rollout: Versions | None = None
        self.drift = drift
        # drift.observe while the drift window is on (None: no drift work per request)
        self._observe: Callable[[Any, Array], None] | None = None
        self._not_ready = "the model is still loading"
        self._on_rows = on_rows
        self.max_rows = max_rows
        self._executor: ThreadPoolExecutor | None = None  # made on first use, on the loop
        self._decoding: asyncio.Semaphore | None = None  # made on the serving loop
        self._gil_bound: asyncio.Semaphore | None = None  # one scikit-learn predict at a time

    @property
    def ready(self) -> bool:
        """True once a runtime is attached (loaded and warmed up)."""
        return self._runtime is not None

    def attach(
        self, runtime: Runtime, candidate: Runtime | None = None, failure: str | None = None
    ) -> None:
        """Start serving `runtime` (and monitoring its drift, when on), and beside it the
        `candidate` when it loaded (or record why it did not: `failure`)."""
        if self.drift is not None:
            self.drift.start(runtime.metadata, runtime.drift_reference)
            self._observe = self.drift.observe if self.drift.active else None
        if self.versions is not None:
            self.versions.attach(runtime, candidate, failure)
            self._rollout = self.versions if candidate is not None else None
        self._runtime = runtime

    def fail(self, message: str) -> None:
        """Record why the model will never be ready (readiness keeps answering 503)."""
        self._not_ready = f"the model failed to load: {load_failure_for_clients(message)}"

    def close(self) -> None:
        """Stop the prediction threads (at shutdown)."""
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)

    def run_in_thread(self, call: Callable[[], T]) -> Awaitable[T]:
        """Run `call` on a prediction thread (one OpenMP/BLAS thread each).

        The pool is made again after close(): an app whose lifespan ends and starts again (a
        test client, schemathesis' ASGI transport) must not answer 500 from a dead pool.
        """
        if self._executor is None:
            self._executor = ThreadPoolExecutor(
                max_workers=PREDICT_THREADS, thread_name_prefix="predict", initializer=_one_thread
            )
        return asyncio.get_running_loop().run_in_executor(self._executor, call)

    def runtime(self) -> Runtime:
        """The served runtime, or ModelNotReady."""
        if self._runtime is None:
            raise ModelNotReady(self._not_ready)
        return self._runtime

    def runtime_named(self, name: str, version: str | None = None) -> Runtime:
        """The runtime if `name` (and `version`) is what this server serves, else 404.

        Without a version, the stable's; the candidate's version gives the candidate, or 503
        saying why it is not loaded."""
        runtime = self.runtime()
        info = runtime.metadata
        if name != info.name:
            raise ModelNotFound(f"no model named {name!r}; this server serves {info.name!r}")
        if version is not None and version != info.version:
            versions = self.versions
            if versions is not None and version == versions.candidate.version:
                return versions.candidate_runtime(name)
            served = f"version {info.version!r}"
            if versions is not None:
                served = f"versions {info.version!r} and {versions.candidate.version!r}"
            raise ModelNotFound(f"model {name!r} has no version {version!r}; it serves {served}")
        return runtime

    def version_names(self) -> list[str]:
        """The versions served now: the stable's, and the candidate's while it is loaded."""
        if self._rollout is not None:
            return self._rollout.names()
        return [self.runtime().metadata.version]

    async def answer(
        self,
        runtime: Runtime,
        attempt: Attempt[E],
        protocol: str,
        headers: Headers = (),
        explicit: bool = False,
        size: int = 0,
    ) -> tuple[E, Prediction, Runtime]:
        """Where every protocol's prediction goes: `attempt` (decode for a runtime + predict)
        on the version that answers, and that version's runtime (Model-Version).

        Without a loaded candidate, `attempt(runtime)` and nothing else. With one, the routing
        of docs/rollouts.md (`Versions.answer`): `explicit` when the request named `runtime`'s
        version; `headers` (HTTP headers, or a callable giving gRPC metadata) for the sticky
        header; `size`, the request's bytes as received, bounds the copies' memory."""
        rollout = self._rollout
        if rollout is None:
            extra, result = await attempt(runtime, protocol)
            return extra, result, runtime
        return await rollout.answer(runtime, attempt, protocol, headers, explicit, size)

    async def decode(
        self,
        raw: bytes,
        n_features: int,
        decode: Callable[[bytes], T],
        strings: int = 0,
        text: bytes | None = None,
    ) -> T:
        """`decode(raw)` (parse and validate a body) on the loop when small, else in a thread.

        A big body is first checked to be able to hold at most `max_rows` rows at all (counting
        its commas takes ~2 ms for 8 MiB, parsing it ~230 ms), then parsed by one thread at a
        time; requests waiting here are bounded by the in-flight limit (max_connections).
        `strings` is how many features take strings (which may hold commas themselves); `text`
        is the body's JSON part when the rest is binary tensor data (whose bytes are no commas).
        """
        if len(raw) <= INLINE_BODY_BYTES:
            return decode(raw)
        check_separators(raw if text is None else text, n_features, self.max_rows, strings)
        return await self.offload(len(raw), lambda: decode(raw))

    async def offload(self, size: int, call: Callable[[], T]) -> T:
        """`call()` on the loop when the request is `size` <= INLINE_BODY_BYTES bytes, else in
        a thread, one big request at a time (see DECODE_CONCURRENCY)."""
        if size <= INLINE_BODY_BYTES:
            return call()
        if self._decoding is None:
            self._decoding = asyncio.Semaphore(DECODE_CONCURRENCY)
        async with self._decoding:
            return await self.run_in_thread(call)

    async def decode_rows(
        self,
        raw: bytes,
        info: ModelInfo,
        plain: Callable[[bytes, Sequence[str], int], T],
        typed: Callable[[bytes, ModelInfo, int], T],
    ) -> T:
        """`decode` with the protocol's float64 decoder (`plain`), or its `typed` one when the
        model takes the typed path (mixed-type input, chosen at load)."""
        if info.schema is None:
            features = info.feature_names
            return await self.decode(
                raw, len(features), lambda body: plain(body, features, self.max_rows)
            )
        return await self.decode(
            raw,
            info.n_features,
            lambda body: typed(body, info, self.max_rows),
            info.string_features,
        )

    async def predict(
        self, runtime: Runtime, x: Array, *, probabilities: bool, protocol: str | None
    ) -> Prediction:
        """Run the model on the event loop when it is cheap, else in a thread.

        Compiled models answer small batches in microseconds, less than a thread hand-off costs
        (it halves throughput for small requests); bigger batches and scikit-learn models run in
        a worker thread so the loop keeps serving. ONNX Runtime releases the GIL, so its batches
        run side by side; scikit-learn models one at a time: they hold the GIL for most of a
        predict, so threads would only take turns, and switching costs CPU (RandomForest(100),
        one row at 8 connections: 18 ms of CPU a request with 4 at once, 11.5 ms one at a time).
        The requests waiting for their turn are bounded by the in-flight limit.
        `protocol` None is a copy (docs/rollouts.md): not counted by protocol, no drift.
        """
        if len(x) <= runtime.inline_rows:
            result = run(runtime, x, probabilities)
        elif runtime.fast:
            result = await self.run_in_thread(lambda: run(runtime, x, probabilities))
        else:
            if self._gil_bound is None:
                self._gil_bound = asyncio.Semaphore(1)
            async with self._gil_bound:
                result = await self.run_in_thread(lambda: run(runtime, x, probabilities))
        if protocol is None:  # a copy predicted for comparison, not an answer
            return result
        if self._on_rows is not None:
            self._on_rows(protocol, len(x))
        if self._observe is not None and runtime is self._runtime:  # the stable's answers
            self._observe(x, result.labels)
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


def check_separators(raw: bytes, n_features: int, max_rows: int, strings: int = 0) -> None:
    """PayloadTooLarge when `raw` has more commas than a body of `max_rows` rows can have.

    Every feature value but a row's last is followed by a comma, and rows by one each (keyed
    rows have the same commas, between key-value pairs); a body with far more cannot hold an
    allowed batch, so it is refused before the costly parse. Commas inside strings are counted
    too (telling them apart costs as much as parsing), so each of a row's `strings` string
    features may hold SEPARATORS_PER_STRING on average.
    """
    per_row = n_features + SEPARATORS_PER_ROW + strings * SEPARATORS_PER_STRING
    budget = max_rows * per_row + OTHER_SEPARATORS
    if raw.count(b",") > budget:
        raise PayloadTooLarge(
            f"the request body has more values than {max_rows} rows of {n_features} features "
            "(MODEL_SERVER_MAX_ROWS); split the batch"
        )


def check_rows(n: int, max_rows: int | None, where: str) -> None:
    """PayloadTooLarge when a batch of `n` rows is over the row limit."""
    if max_rows is not None and n > max_rows:
        raise PayloadTooLarge(
            f"{where} has {n} rows; the limit is {max_rows} (MODEL_SERVER_MAX_ROWS), "
            "split the batch"
        )


def rows_matrix(
    rows: Any,
    features: Sequence[str],
    where: str,
    booleans: bool = True,
    max_rows: int | None = None,
) -> Array:
    """A (n, len(features)) float64 matrix from rows given as lists or feature-keyed objects.

    `booleans=False` promises the JSON held no true/false anywhere (the caller looked at the
    raw bytes), which skips the per-value check for booleans posing as numbers. A row is one
    level of lists (or an object) deep; anything nested deeper is named as the wrong value,
    without recursing into it. More than `max_rows` rows is PayloadTooLarge.
    """
    if not isinstance(rows, list):
        raise InvalidInput(f"{where} must be a list of rows, got {json_kind(rows)}")
    if not rows:
        raise InvalidInput(f"{where} is an empty batch; send at least one row")
    check_rows(len(rows), max_rows, where)
    if isinstance(rows[0], dict):
        known = frozenset(features)  # a wide model: no scan of every feature name per key
        rows = [_ordered(row, features, known, f"{where}[{i}]") for i, row in enumerate(rows)]
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


def _ordered(row: Any, features: Sequence[str], known: frozenset[str], where: str) -> list[Any]:
    if not isinstance(row, dict):
        raise InvalidInput(f"{where} must be an object keyed by feature name, got {json_kind(row)}")
    unknown = [key for key in row if key not in known]
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
    # numpy reads nested lists in C and stops at 64 dimensions, so deep nesting is a
    # ValueError here, never a recursion; the explanation below looks two levels deep only.
    try:
        x = np.array(rows)
    except (ValueError, TypeError, OverflowError):
        x = None
    ok = x is not None and x.dtype.kind in "fiu" and x.ndim == 2 and x.shape[1] == len(features)
    if x is None or not ok or (booleans and _has_bool(rows)):
        raise InvalidInput(_first_problem(rows, features, where))
    return finite_float64(x, features, lambda i: f"{where}[{i}]")


def finite_float64(x: Array, features: Sequence[str], row: Callable[[int], str]) -> Array:
    """`x` as float64, or InvalidInput naming the first cell that is not a usable number.

    NaN, infinity and magnitudes beyond float32's range (~3.4e38) are refused, whatever the
    runtime: the compiled (float32) path would turn the last into infinity and answer anyway,
    while scikit-learn's trees refuse them; one rule gives every runtime the same answer.
    `row(i)` names row i in the message.
    """
    x = x.astype(np.float64, copy=False)
    # One pass as cheap as an isfinite check: a NaN anywhere makes the max NaN, and NaN <= y is
    # false. The callers never pass an empty matrix.
    if not np.abs(x).max() <= FLOAT32_MAX:
        usable = np.abs(x) <= FLOAT32_MAX
        i, j = (int(v) for v in np.argwhere(~usable)[0])
        value, name = x[i, j], features[j]
        if not np.isfinite(value):
            problem = "NaN and infinity are not valid inputs"
        else:
            problem = f"values beyond float32's range (±{FLOAT32_MAX:.4g}) are not valid inputs"
        raise InvalidInput(f"{row(i)} feature {name!r} is {value}; {problem}")
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


_SHOWN_CHARS: Final = 40


def json_kind(value: Any) -> str:
    """A JSON-ish name for the type of `value`, with the value when short.

    Never recurses into a deep value: a container is shown only when it is a few scalars.
    """
    if value is None:
        return "null"
    kind = JSON_KINDS.get(type(value), type(value).__name__)
    if isinstance(value, list | dict) and (
        len(value) > 8 or any(isinstance(v, list | dict) for v in _members(value))
    ):
        return kind
    try:
        text = orjson.dumps(value).decode()
    except TypeError:  # orjson refuses it (e.g. a huge int): say only what it is
        return kind
    return f"{kind} {text}" if len(text) <= _SHOWN_CHARS else kind


def _members(value: list[Any] | dict[str, Any]) -> list[Any]:
    return list(value.values()) if isinstance(value, dict) else value
