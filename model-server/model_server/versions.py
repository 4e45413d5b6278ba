"""Two versions of the model in one process: the stable one and a candidate (docs/rollouts.md).

`Versions` holds both runtimes and decides, per request, which one answers:

- a request naming a version (V2 `/versions/{v}/infer`, gRPC `model_version`) is answered by
  that version only;
- canary: a request carrying the sticky header goes to the candidate when the bucket of its
  value (`sticky_bucket`) is below `percent * 100`; any other request by `Split`, an exact
  share per process (error diffusion, not chance);
- shadow: the stable answers, and the candidate predicts a copy of the request;
- a candidate that fails while answering is answered for by the stable (`Versions.answer`).

Copies (shadow, and in canary the stable's prediction of what the candidate answered, so both
modes measure agreement) run on one background task (`Copies.run`) from a bounded queue and
within a time budget: while the process is busy, at most 0.25 % of the wall time, refilled
continuously and held to a second's worth (a token bucket). A copy that does not fit is dropped
and counted, never queued without bound.

Protocols give the plane an `Attempt`: "decode the request for this runtime and predict", a
closure over the request body, so the stable, the candidate, a fallback and a copy all decode
and predict a request exactly as that protocol does. A copy's attempt gets `protocol=None`,
which the data plane reads as "not an answer": no rows counted by protocol, no drift.
Nothing here runs per request unless a candidate is loaded (`DataPlane.answer`).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Generic, TypeVar

import numpy as np

from model_server.errors import (
    InvalidInput,
    MalformedRequest,
    ModelNotReady,
    PayloadTooLarge,
    load_failure_for_clients,
)
from model_server.metrics import VersionMetrics, observe_many
from model_server.runtimes.base import Array, Runtime

if TYPE_CHECKING:
    from model_server.dataplane import Prediction
    from model_server.settings import ServerSettings

log = logging.getLogger("model_server")

E = TypeVar("E")
# decode the request for `runtime` and predict; `protocol` None marks a copy (not an answer)
Attempt = Callable[[Runtime, str | None], Awaitable[tuple[E, "Prediction"]]]
# HTTP headers (lower-case bytes names and values) or a callable giving gRPC metadata
Headers = Iterable[tuple[Any, Any]] | Callable[[], Iterable[tuple[Any, Any]]]

STABLE: Final = "stable"
CANDIDATE: Final = "candidate"
CANARY: Final = "canary"
SHADOW: Final = "shadow"
ANSWER: Final = "answer"
COPY: Final = "copy"
OK: Final = "ok"
ERROR: Final = "error"
QUEUE_FULL: Final = "queue_full"
BUDGET: Final = "budget"
TOO_LARGE: Final = "too_large"
# A copy holds its request (body and parsed input) while it waits, and runs as one predict that
# answers arriving meanwhile wait behind: only batches up to this many rows are copied, of
# requests up to COPY_MAX_BYTES, and the queued copies' requests come to COPY_QUEUE_BYTES at most
# (bytes as received: the queue's memory has a bound whatever MODEL_SERVER_SHADOW_QUEUE says).
COPY_MAX_ROWS: Final = 256
COPY_MAX_BYTES: Final = 1 << 20
COPY_QUEUE_BYTES: Final = 8 << 20
BUCKETS: Final = 10_000  # sticky buckets: a share of p percent is buckets below p * 100
BUDGET_SHARE: Final = 0.0025  # copies may use this share of the wall time while busy
BUDGET_WINDOW_S: Final = 1.0  # ... held to this window's worth (0.25 % of a second: 2.5 ms)
INITIAL_COPY_COST_S: Final = 1e-4  # what a copy is taken to cost until one was measured
COST_SMOOTHING: Final = 0.1  # weight of the last copy in the moving average of their cost
BUSY_SHARE: Final = 0.8  # a process on the CPU more than 80 % of the wall time is busy (Load)
LOAD_WINDOW_S: Final = 0.05  # ... measured over the last window of at least this long
FLUSH_S: Final = 1.0  # what is counted reaches the metrics at least this often (Versions.flush)
FLUSH_COUNT: Final = 4096  # ... and once a version has this many predictions waiting (a bound)
FLUSH_ROWS: Final = 65_536  # ... or this many rows of batches whose labels wait to be counted
MAX_LABELS: Final = 100  # label values per version in model_server_version_predictions_total
OTHER_LABEL: Final = "other"
AGREE_ABS: Final = 1e-6  # regression: values agree within AGREE_ABS + AGREE_REL * |stable|
AGREE_REL: Final = 1e-3
# Errors that say the request itself is wrong: when the stable refuses the request with one of
# these after the candidate failed, the failure is not held against the candidate.
CLIENT_ERRORS: Final = (MalformedRequest, InvalidInput, PayloadTooLarge)


def sticky_bucket(value: bytes) -> int:
    """The bucket (0-9999) of a sticky header value: the first 8 bytes of its BLAKE2b digest
    as a big-endian integer, modulo 10,000. The same on every pod and at every share, so a
    value inside the candidate's share at 10 % stays inside it at 25 %."""
    digest = hashlib.blake2b(value, digest_size=8).digest()
    return int.from_bytes(digest, "big") % BUCKETS


class Split:
    """An exact share without chance: request n (counted from 0) goes to the candidate when
    floor((n + 1) * p / 100) > floor(n * p / 100), so every 100 requests in a row hold exactly
    p candidate ones, spread evenly. The pattern repeats every 100 requests, so n is kept
    modulo 100."""

    def __init__(self, percent: int) -> None:
        self.percent = percent
        self._n = 0

    def next(self) -> bool:
        """Whether the next request goes to the candidate."""
        n, p = self._n, self.percent
        self._n = (n + 1) % 100
        return (n + 1) * p // 100 > n * p // 100


class Version:
    """One served version: its runtime once loaded (or why it failed) and its metric series.

    What succeeded is counted in plain Python on the request path (`succeeded`) and added to
    the metric families by `flush` (Versions.flush: at each scrape, every FLUSH_S, and whenever
    FLUSH_COUNT predictions wait): the metric updates per answer cost ~3.5 us in multiprocess
    mode, the tally ~0.5 us (measured in-process). Errors are counted at once.
    """

    def __init__(self, role: str, version: str, metrics: VersionMetrics) -> None:
        self.role = role
        self.version = version
        self.runtime: Runtime | None = None
        self.failure: str | None = None
        self._metrics = metrics
        self._requests: dict[tuple[str, str], Any] = {}
        self._duration = metrics.duration.labels(version, role)
        self._labels: dict[Any, Any] = {}
        self.regression = False
        # counted since the last flush: successes by kind, their durations, rows by label
        self._ok = dict.fromkeys((ANSWER, COPY), 0)
        self._durations: list[float] = []
        self._rows: dict[Any, int] = {}
        self._batches: list[Array] = []  # labels of batches (several rows), counted at a flush
        self._batch_rows = 0
        metrics.loading(version, role)

    def attach(self, runtime: Runtime) -> None:
        """Loaded and warmed up: serve it."""
        info = runtime.metadata
        self.regression = info.task == "regression"
        self.runtime = runtime
        self._metrics.loaded(self.version, self.role, info.digest, info.format)

    def fail(self, message: str) -> None:
        """It failed to load: `message` is the one-line reason (ready stays 0)."""
        self.failure = message

    def count(self, kind: str, outcome: str, n: int = 1) -> None:
        """`n` requests of `kind` (answer, copy) ended with `outcome` (ok, error), now."""
        child = self._requests.get((kind, outcome))
        if child is None:
            child = self._metrics.requests.labels(self.version, self.role, kind, outcome)
            self._requests[(kind, outcome)] = child
        child.inc(n)

    def succeeded(self, kind: str, seconds: float, labels: Array) -> None:
        """A prediction of `kind` took `seconds` (decode + predict) and answered `labels`."""
        self._ok[kind] += 1
        self._tally(seconds, labels)

    def _tally(self, seconds: float, labels: Array) -> None:
        durations = self._durations
        durations.append(seconds)
        rows = self._rows
        n = len(labels)
        if self.regression:
            rows[""] = rows.get("", 0) + n
        elif n == 1:
            label = labels.tolist()[0]
            rows[label] = rows.get(label, 0) + 1
        else:  # batches are counted at the flush, all at once (count_labels)
            self._batches.append(labels)
            self._batch_rows += n
        if len(durations) >= FLUSH_COUNT or self._batch_rows >= FLUSH_ROWS:
            self.flush()

    def flush(self) -> None:
        """Add what succeeded since the last flush to the metric families."""
        ok = self._ok
        for kind, n in ok.items():
            if n:
                self.count(kind, OK, n)
                ok[kind] = 0
        if self._durations:
            durations, self._durations = self._durations, []
            observe_many(self._duration, durations)
        if self._batches:
            batches, self._batches, self._batch_rows = self._batches, [], 0
            rows = self._rows
            for label, n in count_labels(batches).items():
                rows[label] = rows.get(label, 0) + n
        if self._rows:
            rows, self._rows = self._rows, {}
            for label, n in rows.items():
                self._label_child(label).inc(n)

    def _label_child(self, label: Any) -> Any:
        child = self._labels.get(label)
        if child is None:
            name = str(label) if len(self._labels) < MAX_LABELS else OTHER_LABEL
            child = self._metrics.predictions.labels(self.version, self.role, name)
            if name != OTHER_LABEL:
                self._labels[label] = child
        return child


def count_labels(batches: list[Array]) -> Counter[Any]:
    """Rows per label over arrays of labels: numbers by one numpy sort per dtype, anything else
    (class names, labels of mixed types) with a Counter, which needs no order. Equal values are
    one label whatever their type (1 and 1.0), as in a dict."""
    counts: Counter[Any] = Counter()
    numeric: dict[np.dtype[Any], list[Array]] = {}
    for labels in batches:
        if labels.dtype.kind in "biuf":
            numeric.setdefault(labels.dtype, []).append(labels)
        else:
            counts.update(labels.tolist())
    for arrays in numeric.values():
        values, n = np.unique(np.concatenate(arrays), return_counts=True)
        counts.update(dict(zip(values.tolist(), n.tolist(), strict=True)))
    return counts


@dataclass(slots=True)
class Copy(Generic[E]):
    """A request another version predicts off the request path, to compare with the answer."""

    version: Version  # the one that predicts the copy
    attempt: Attempt[E]
    answered: Array  # the labels the client got
    stable_answered: bool  # whether those were the stable's (shadow) or the candidate's
    size: int = 0  # bytes of the request as received (what the copy holds, at least)


def agreeing_rows(stable: Array, candidate: Array, regression: bool) -> int:
    """Rows where both versions gave the same label (regression: the candidate's value within
    1e-6 + 1e-3 * |stable's|)."""
    if regression:
        s = np.asarray(stable, dtype=np.float64)
        c = np.asarray(candidate, dtype=np.float64)
        return int(np.count_nonzero(np.abs(c - s) <= AGREE_ABS + AGREE_REL * np.abs(s)))
    if stable.dtype.kind in "biuf" and candidate.dtype.kind in "biuf":
        return int(np.count_nonzero(stable == candidate))
    return sum(a == b for a, b in zip(stable.tolist(), candidate.tolist(), strict=True))


class Load:
    """Whether this process is busy: answering (on the CPU, all its threads, for anything but
    copies) more than BUSY_SHARE of the time copies left free, over the last LOAD_WINDOW_S or
    more, measured when asked (`busy`).

    One event loop answers every request in a process, so a process near 100 % is answering
    back to back and a copy delays answers; one well below it is waiting for clients, and a
    copy then delays no one (wrk's 8 connections kept the iris server at ~98 %: CPU time per
    request x requests per second). The CPU time copies took (`copying`) is left out of both
    sides: out of the CPU time, so that copies run while clients are slow do not make the
    process look busy and stop themselves; out of the wall time, so that copies crowding answers
    out (answers 65 %, copies 30 % of a window) do not make it look idle and run uncharged.
    CPU time, not the copies' clock: that includes what a copy waited for (a thread, a
    CPU-limited pod's quota), and windows filled by copies' clocks looked busy at light load
    (the shadow e2e lost 69 of 300 copies to the budget that way). The clocks are injectable.
    """

    def __init__(
        self,
        wall: Callable[[], float] = time.perf_counter,
        cpu: Callable[[], float] = time.process_time,
    ) -> None:
        self._wall = wall
        self.cpu = cpu  # the process's CPU time (Copies reads it around each copy)
        self._at = wall()
        self._used = cpu()
        self._busy = False
        self.copying = 0.0  # CPU seconds of the process while copies ran, added by Copies
        self._copied = 0.0

    def busy(self) -> bool:
        """Whether the process was busy over the last window (the one before, mid-window)."""
        now = self._wall()
        if now - self._at >= LOAD_WINDOW_S:
            used, copied = self.cpu(), self.copying
            copying = copied - self._copied
            answering = (used - self._used) - copying
            self._busy = answering > BUSY_SHARE * (now - self._at - copying)
            self._at, self._used, self._copied = now, used, copied
        return self._busy


class Copies:
    """The bounded queue of copies and the one task that predicts them, within the budget.

    A copy is dropped (and counted, by reason) when the queue already holds `limit` copies
    (`queue_full`), or when copies have used up their budget (`budget`): BUDGET_SHARE of the
    wall time, accrued continuously and held to BUDGET_WINDOW_S's worth, each copy charged its
    wall time (decode + predict, thread hand-offs included). So under load copies stop, the
    queue never grows beyond `limit`, and the loop time they take from answers is bounded.
    A copy that starts while the process is not busy (`load`, see Load: the server mostly
    waits for its clients) is not charged: it delays no one but a request arriving during it,
    so at light load every copy runs, and the budget bites when answers keep the process on
    the CPU. `clock` is injectable for tests; without `load` every copy is charged.
    """

    def __init__(
        self,
        limit: int,
        metrics: VersionMetrics,
        clock: Callable[[], float] = time.perf_counter,
        load: Load | None = None,
    ) -> None:
        self.limit = limit
        self._metrics = metrics
        self._clock = clock
        self._load = load
        self._queue: deque[Copy[Any]] = deque()
        self._bytes = 0  # the queued copies' sizes
        self._wake: asyncio.Event | None = None
        self._capacity = BUDGET_SHARE * BUDGET_WINDOW_S
        self._allowance = self._capacity
        self._cost = INITIAL_COPY_COST_S  # a copy's cost, a moving average of measured ones
        self._at = clock()
        self._dropped = {
            reason: metrics.dropped.labels(reason) for reason in (QUEUE_FULL, BUDGET, TOO_LARGE)
        }
        self._unflushed = dict.fromkeys(self._dropped, 0)
        self._compared = self._agreed = 0  # rows, since the last flush
        self._task_failed = False
        self.stable_regression = False  # the stable's task decides how rows are compared

    def __len__(self) -> int:
        return len(self._queue)

    def offer(self, copy: Copy[Any]) -> None:
        """Queue a copy, or drop and count it."""
        if self.admit(len(copy.answered), copy.size):
            self.enqueue(copy)

    def admit(self, rows: int, size: int = 0) -> bool:
        """Whether a copy of `rows` rows, of a request of `size` bytes, would be queued now; if
        not, it is counted as dropped (checked before a copy is made, which most requests under
        load never need).

        Drops are counted in plain integers here and added to the metric by `flush` (the
        copy task does every FLUSH_S, the /metrics route at each scrape): a metric update per
        refused copy cost answers more than the copies themselves (bench-server).
        """
        if rows > COPY_MAX_ROWS or size > COPY_MAX_BYTES:
            self._unflushed[TOO_LARGE] += 1
            return False
        if len(self._queue) >= self.limit or self._bytes + size > COPY_QUEUE_BYTES:
            self._unflushed[QUEUE_FULL] += 1
            return False
        # While busy, the queued copies will spend their share of what is left: without this,
        # a burst of requests queued `limit` copies at once, ran them back to back and overdrew
        # the budget (then no copy for seconds: copies came in bursts).
        allowance = self._refill()
        if allowance <= 0 or (
            allowance <= len(self._queue) * self._cost and (self._load is None or self._load.busy())
        ):
            self._unflushed[BUDGET] += 1
            return False
        return True

    def flush(self) -> None:
        """Add the drops, compared and agreed rows counted since the last flush to their
        metrics (model_server_candidate_copies_dropped, _compared_rows, _agreed_rows)."""
        unflushed = self._unflushed
        for reason, count in unflushed.items():
            if count:
                self._dropped[reason].inc(count)
                unflushed[reason] = 0
        if self._compared:
            self._metrics.compared.inc(self._compared)
            self._compared = 0
        if self._agreed:
            self._metrics.agreed.inc(self._agreed)
            self._agreed = 0

    def enqueue(self, copy: Copy[Any]) -> None:
        """Queue a copy `admit` accepted."""
        self._queue.append(copy)
        self._bytes += copy.size
        if self._wake is not None:
            self._wake.set()

    def _refill(self) -> float:
        now = self._clock()
        elapsed, self._at = now - self._at, now
        self._allowance = min(self._capacity, self._allowance + elapsed * BUDGET_SHARE)
        return self._allowance

    async def run(self, flush: Callable[[], None] | None = None) -> None:
        """Predict queued copies one at a time, forever (the app's lifespan cancels this), and
        call `flush` (default: this queue's) every FLUSH_S, copies running or not.

        The flush is a timer of the loop, not a timeout of the wait for copies: a wait with a
        timeout (`asyncio.wait_for`) makes a task and a timer each time the queue runs empty,
        which under load is after nearly every copy."""
        flush = flush or self.flush
        loop = asyncio.get_running_loop()
        ticker: asyncio.TimerHandle | None = None

        def tick() -> None:
            nonlocal ticker
            try:
                flush()
            except Exception:  # logged here, so that the timer is re-armed below all the same
                log.exception("flushing the version metrics failed")
            ticker = loop.call_later(FLUSH_S, tick)

        wake = self._wake = asyncio.Event()
        tick()
        try:
            await self._copy_forever(wake)
        finally:
            if ticker is not None:
                ticker.cancel()

    async def _copy_forever(self, wake: asyncio.Event) -> None:
        queue = self._queue
        while True:
            while not queue:
                wake.clear()
                await wake.wait()
            try:
                await self.run_one()
            except Exception:  # a copy's bookkeeping failed: log once, keep serving copies
                if not self._task_failed:
                    self._task_failed = True
                    log.exception("a candidate copy failed outside its prediction")
            # A compiled copy runs inline without suspending: let waiting answers go first,
            # so a backlog never holds the loop for more than one copy at a time.
            await asyncio.sleep(0)

    async def run_one(self) -> None:
        """Predict the oldest queued copy (or drop it when the budget is spent meanwhile)."""
        copy = self._queue.popleft()
        self._bytes -= copy.size
        if self._refill() <= 0:
            self._unflushed[BUDGET] += 1
            return
        load = self._load
        charged = load is None or load.busy()
        start = self._clock()
        cpu_start = load.cpu() if load is not None else 0.0
        try:
            await self._predict(copy)
        finally:
            took = self._clock() - start
            self._cost += COST_SMOOTHING * (took - self._cost)
            if charged:
                self._allowance -= took
            if load is not None:
                load.copying += load.cpu() - cpu_start

    async def _predict(self, copy: Copy[Any]) -> None:
        version = copy.version
        runtime = version.runtime
        assert runtime is not None  # copies are offered only while both versions are loaded
        start = time.perf_counter()
        try:
            _, result = await copy.attempt(runtime, None)
            labels = result.labels
            if len(labels) != len(copy.answered):
                raise InvalidInput(
                    f"{len(labels)} rows predicted for a request answered with {len(copy.answered)}"
                )
            if copy.stable_answered:
                stable, candidate = copy.answered, labels
            else:
                stable, candidate = labels, copy.answered
            # outputs the two cannot compare (a number against a class name) are an error of
            # the copy, never of the copy task
            agreed = agreeing_rows(stable, candidate, self.stable_regression)
        except Exception as exc:  # a copy never fails anything but its own count
            version.count(COPY, ERROR)
            log.debug("copy predicted by version %r failed: %s", version.version, exc)
            return
        version.succeeded(COPY, time.perf_counter() - start, labels)
        self._compared += len(labels)
        self._agreed += agreed


class Versions:
    """The stable version, the candidate, and the routing between them (docs/rollouts.md)."""

    def __init__(self, settings: ServerSettings, metrics: VersionMetrics) -> None:
        self.mode = settings.candidate_mode
        self.percent = settings.candidate_percent
        self.stable = Version(STABLE, settings.model_version, metrics)
        self.candidate = Version(CANDIDATE, settings.candidate_version, metrics)
        self.copies = Copies(settings.shadow_queue, metrics, load=Load())
        self._canary = self.mode == CANARY and self.percent > 0
        self._shadow = self.mode == SHADOW
        self._split = Split(self.percent)
        self._threshold = self.percent * BUCKETS // 100
        sticky = settings.sticky_header
        self._sticky_str = sticky.lower() if sticky else None  # gRPC metadata keys
        self._sticky_bytes = self._sticky_str.encode() if self._sticky_str else None  # HTTP
        self._failure_logged = False

    @property
    def loaded(self) -> bool:
        """Whether the candidate is loaded (and requests are routed between the two)."""
        return self.candidate.runtime is not None

    def attach(self, stable: Runtime, candidate: Runtime | None, failure: str | None) -> None:
        """Both versions are loaded, or the candidate failed with `failure`."""
        self.stable.attach(stable)
        self.copies.stable_regression = self.stable.regression
        if candidate is not None:
            self.candidate.attach(candidate)
        elif failure is not None:
            self.candidate.fail(failure)

    async def run(self) -> None:
        """The copy task (Copies.run), which also flushes both versions' counts."""
        await self.copies.run(self.flush)

    def flush(self) -> None:
        """Add what both versions and the copies counted to the metric families: at each
        scrape of this worker, and every FLUSH_S from the copy task (other workers')."""
        self.stable.flush()
        self.candidate.flush()
        self.copies.flush()

    def names(self) -> list[str]:
        """The versions served now (the V2 metadata's `versions`)."""
        return [v.version for v in (self.stable, self.candidate) if v.runtime is not None]

    def candidate_runtime(self, name: str) -> Runtime:
        """The candidate for a request naming its version, or ModelNotReady saying why not."""
        runtime = self.candidate.runtime
        if runtime is None:
            version = self.candidate.version
            if self.candidate.failure is not None:
                raise ModelNotReady(
                    f"version {version!r} of model {name!r} failed to load: "
                    f"{load_failure_for_clients(self.candidate.failure)}"
                )
            raise ModelNotReady(f"version {version!r} of model {name!r} is still loading")
        return runtime

    def to_candidate(self, headers: Headers) -> bool:
        """Whether a request that names no version goes to the candidate (canary only)."""
        if not self._canary:
            return False
        if self._sticky_bytes is not None:
            value = self._sticky_value(headers)
            if value is not None:
                return sticky_bucket(value) < self._threshold
        return self._split.next()

    def _sticky_value(self, headers: Headers) -> bytes | None:
        pairs = headers() if callable(headers) else headers
        for key, value in pairs:
            if key == self._sticky_bytes or key == self._sticky_str:
                return value if isinstance(value, bytes) else str(value).encode()
        return None

    async def answer(
        self,
        runtime: Runtime,
        attempt: Attempt[E],
        protocol: str,
        headers: Headers,
        explicit: bool,
        size: int = 0,
    ) -> tuple[E, Prediction, Runtime]:
        """Answer a request (the plane's `answer` while a candidate is loaded): the part the
        attempt returns besides the prediction, the prediction, and the runtime that made it.

        `runtime` is the version the request named when `explicit`, else the stable's. `size`:
        the request's bytes as received, which a copy of it holds while queued.
        """
        if explicit:
            version = self.candidate if runtime is self.candidate.runtime else self.stable
            extra, result = await self._answer(version, attempt, protocol)
            return extra, result, runtime
        if self._canary and self.to_candidate(headers):
            candidate = self.candidate
            try:
                extra, result = await self._timed(candidate, attempt, protocol)
            except Exception as failure:
                return await self._fall_back(attempt, protocol, failure)
            copies = self.copies
            if copies.admit(len(result.labels), size):
                copies.enqueue(Copy(self.stable, attempt, result.labels, False, size))
            assert candidate.runtime is not None
            return extra, result, candidate.runtime
        # The stable answers (most requests): _answer written out, one coroutine fewer.
        stable = self.stable
        served = stable.runtime
        assert served is not None
        start = time.perf_counter()
        try:
            extra, result = await attempt(served, protocol)
        except CLIENT_ERRORS:
            raise
        except Exception:
            stable.count(ANSWER, ERROR)
            raise
        stable.succeeded(ANSWER, time.perf_counter() - start, result.labels)
        if self._shadow:
            copies = self.copies
            if copies.admit(len(result.labels), size):
                copies.enqueue(Copy(self.candidate, attempt, result.labels, True, size))
        return extra, result, served

    async def _answer(
        self, version: Version, attempt: Attempt[E], protocol: str
    ) -> tuple[E, Prediction]:
        try:
            return await self._timed(version, attempt, protocol)
        except CLIENT_ERRORS:
            # the request's mistake, not the version's: malformed bodies sent to
            # /versions/candidate/infer must not fail a rollout's maxErrorRate
            raise
        except Exception:
            version.count(ANSWER, ERROR)
            raise

    async def _timed(
        self, version: Version, attempt: Attempt[E], protocol: str
    ) -> tuple[E, Prediction]:
        runtime = version.runtime
        assert runtime is not None
        start = time.perf_counter()
        extra, result = await attempt(runtime, protocol)
        version.succeeded(ANSWER, time.perf_counter() - start, result.labels)
        return extra, result

    async def _fall_back(
        self, attempt: Attempt[E], protocol: str, failure: Exception
    ) -> tuple[E, Prediction, Runtime]:
        """The candidate failed: the stable answers (or its error is the client's answer).

        The failure counts as the candidate's error, unless the stable refuses the request
        too as the client's mistake (malformed, invalid, too large): then it was the request.
        """
        try:
            extra, result = await self._timed(self.stable, attempt, protocol)
        except CLIENT_ERRORS:
            self.stable.count(ANSWER, ERROR)
            raise
        except Exception:
            self.stable.count(ANSWER, ERROR)
            self._candidate_failed(failure)
            raise
        self._candidate_failed(failure)
        assert self.stable.runtime is not None
        return extra, result, self.stable.runtime

    def _candidate_failed(self, failure: Exception) -> None:
        self.candidate.count(ANSWER, ERROR)
        if not self._failure_logged:  # once per process: the counter says how often
            self._failure_logged = True
            log.warning(
                "candidate version %r failed a request, the stable version %r answered it "
                "(logged once; model_server_version_requests_total counts them): %s",
                self.candidate.version,
                self.stable.version,
                getattr(failure, "message", None) or f"{type(failure).__name__}: {failure}",
            )
