"""The routing arithmetic of candidate rollouts (docs/rollouts.md), without a server: the exact
canary split, the sticky buckets, the copy queue's bound and time budget, row agreement."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from model_server import versions as versions_module
from model_server.dataplane import Prediction
from model_server.metrics import VersionMetrics
from model_server.runtimes.base import Runtime
from model_server.versions import (
    BUDGET_SHARE,
    BUDGET_WINDOW_S,
    CANDIDATE,
    COPY_MAX_BYTES,
    COPY_MAX_ROWS,
    COPY_QUEUE_BYTES,
    FLUSH_S,
    INITIAL_COPY_COST_S,
    STABLE,
    Copies,
    Copy,
    Load,
    Split,
    Version,
    agreeing_rows,
    count_labels,
    sticky_bucket,
)


def documented_bucket(value: str) -> int:
    """docs/rollouts.md's formula, written out independently of the server's code."""
    digest = hashlib.blake2b(value.encode(), digest_size=8).digest()
    return int.from_bytes(digest[:8], byteorder="big") % 10_000


@pytest.mark.parametrize("percent", range(101))
def test_the_split_gives_exactly_the_percent_of_every_hundred_requests(percent: int) -> None:
    split = Split(percent)
    picks = [split.next() for _ in range(1000)]
    assert sum(picks) == 10 * percent
    for start in range(0, 901, 37):  # any 100 requests in a row, not only aligned ones
        assert sum(picks[start : start + 100]) == percent
    # the documented rule, request n counted from 0
    assert picks == [(n + 1) * percent // 100 > n * percent // 100 for n in range(1000)]


def test_sticky_buckets_follow_the_documented_hash_and_grow_with_the_share() -> None:
    values = [f"user-{i}" for i in range(5000)]
    assert [sticky_bucket(v.encode()) for v in values] == [documented_bucket(v) for v in values]
    inside = {p: {v for v in values if documented_bucket(v) < p * 100} for p in (10, 25, 50)}
    assert inside[10] <= inside[25] <= inside[50]  # a value inside at 10 % stays inside at 25 %
    for p, chosen in inside.items():
        assert abs(len(chosen) / len(values) - p / 100) < 0.02, (p, len(chosen))


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class CpuClock:
    """The process's CPU time, which grows by `share` of the wall time that passes."""

    def __init__(self, wall: FakeClock) -> None:
        self.wall = wall
        self.share = 0.0
        self.now = 0.0
        self._at = wall.now

    def __call__(self) -> float:
        self.now += (self.wall.now - self._at) * self.share
        self._at = self.wall.now
        return self.now


def loaded_version(role: str, metrics: VersionMetrics, labels: list[int]) -> Version:
    version = Version(role, "1" if role == STABLE else "c", metrics)
    version.runtime = object()  # type: ignore[assignment]  # only passed to the attempt
    return version


def attempt_returning(labels: list[int], clock: FakeClock | None = None, seconds: float = 0.0):
    async def attempt(runtime: Runtime, protocol: str | None) -> tuple[None, Prediction]:
        assert protocol is None  # a copy is never an answer
        if clock is not None:
            clock.now += seconds
        return None, Prediction(np.array(labels), None)

    return attempt


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


def test_a_full_queue_drops_the_copy_and_counts_it() -> None:
    registry = CollectorRegistry()
    metrics = VersionMetrics(registry)
    candidate = loaded_version(CANDIDATE, metrics, [])
    copies = Copies(2, metrics, clock=FakeClock())  # no worker runs: the queue only fills
    for _ in range(5):
        copies.offer(Copy(candidate, attempt_returning([1]), np.array([1]), stable_answered=True))
    assert len(copies) == 2
    dropped = "model_server_candidate_copies_dropped_total"
    assert sample(registry, dropped, reason="queue_full") == 0  # counted, not yet flushed
    copies.flush()
    assert sample(registry, dropped, reason="queue_full") == 3
    copies.flush()  # a flush adds only what came since the last one
    assert sample(registry, dropped, reason="queue_full") == 3
    zero = Copies(0, metrics, clock=FakeClock())  # MODEL_SERVER_SHADOW_QUEUE=0: no copies at all
    zero.offer(Copy(candidate, attempt_returning([1]), np.array([1]), stable_answered=True))
    assert len(zero) == 0
    zero.flush()
    assert sample(registry, dropped, reason="queue_full") == 4


def test_the_copy_task_flushes_the_drops_while_it_waits() -> None:
    registry = CollectorRegistry()
    metrics = VersionMetrics(registry)
    candidate = loaded_version(CANDIDATE, metrics, [])
    copies = Copies(0, metrics, clock=FakeClock())
    dropped = "model_server_candidate_copies_dropped_total"

    async def scenario() -> list[float]:
        task = asyncio.create_task(copies.run())
        await asyncio.sleep(0)  # the task flushes (nothing) and waits
        seen = []
        for _ in range(3):
            copies.offer(Copy(candidate, attempt_returning([1]), np.array([1]), True))
        seen.append(sample(registry, dropped, reason="queue_full"))
        await asyncio.sleep(FLUSH_S * 1.5)  # its wait times out: it flushes
        seen.append(sample(registry, dropped, reason="queue_full"))
        task.cancel()
        return seen

    assert asyncio.run(scenario()) == [0, 3]


def test_the_copy_task_flushes_every_flush_s_while_copies_run_back_to_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Under load the queue may never run empty: the counts still reach the metrics."""
    monkeypatch.setattr(versions_module, "FLUSH_S", 0.05)
    registry = CollectorRegistry()
    metrics = VersionMetrics(registry)
    candidate = loaded_version(CANDIDATE, metrics, [])
    copies = Copies(100, metrics, clock=FakeClock())
    flushed_with_copies_queued: list[int] = []

    def flush() -> None:
        flushed_with_copies_queued.append(len(copies))

    async def slow(runtime: Runtime, protocol: str | None) -> tuple[None, Prediction]:
        await asyncio.sleep(0.02)
        return None, Prediction(np.array([1]), None)

    async def scenario() -> None:
        for _ in range(20):  # 20 copies of 20 ms: 0.4 s of copies back to back
            copies.offer(Copy(candidate, slow, np.array([1]), stable_answered=True))
        task = asyncio.create_task(copies.run(flush))
        while len(copies):
            await asyncio.sleep(0.01)
        task.cancel()

    asyncio.run(scenario())
    assert any(queued > 0 for queued in flushed_with_copies_queued), flushed_with_copies_queued


def test_copies_stop_once_they_used_their_share_of_the_wall_time() -> None:
    registry = CollectorRegistry()
    metrics = VersionMetrics(registry)
    candidate = loaded_version(CANDIDATE, metrics, [])
    clock = FakeClock()
    copies = Copies(100, metrics, clock=clock)

    def offer(seconds: float) -> None:
        attempt = attempt_returning([1, 2], clock, seconds)
        copies.offer(Copy(candidate, attempt, np.array([1, 1]), stable_answered=True))

    async def drain() -> None:
        while len(copies):
            await copies.run_one()

    # a second's worth of budget (0.25 %: 2.5 ms): one 2 ms copy fits, then 1 ms more goes over
    offer(0.002)
    offer(0.001)
    offer(0.001)
    asyncio.run(drain())
    dropped = "model_server_candidate_copies_dropped_total"
    candidate.flush()
    assert sample(registry, "model_server_version_requests_total", version="c", role=CANDIDATE,
                  kind="copy", outcome="ok") == 2  # fmt: skip
    copies.flush()
    assert sample(registry, dropped, reason="budget") == 1
    # 3 ms charged against 2.5 banked plus the 0.0075 ms earned meanwhile (0.25 % of 3 ms):
    # 0.4925 ms over, which 0.25 % of the wall time pays back in 197 ms; until then copies are
    # refused
    clock.now += 0.100
    offer(0.001)
    copies.flush()
    assert sample(registry, dropped, reason="budget") == 2 and len(copies) == 0
    clock.now += 0.100
    offer(0.001)
    assert len(copies) == 1
    asyncio.run(drain())
    copies.flush()
    assert sample(registry, "model_server_candidate_compared_rows_total") == 6
    assert sample(registry, "model_server_candidate_agreed_rows_total") == 3
    # never more than a second's worth (2.5 ms) banked, however long copies were idle: of ten
    # 0.5 ms copies in a row, five spend it, the sixth runs on what they earned (0.00625 ms)
    # and the rest are refused
    clock.now += 3600
    ok = {"version": "c", "role": CANDIDATE, "kind": "copy", "outcome": "ok"}
    candidate.flush()
    ran = sample(registry, "model_server_version_requests_total", **ok)
    for _ in range(10):
        offer(0.0005)
        asyncio.run(drain())
    candidate.flush()
    assert sample(registry, "model_server_version_requests_total", **ok) - ran == 6
    copies.flush()
    assert sample(registry, dropped, reason="budget") == 2 + 4
    assert BUDGET_SHARE == 0.0025


def copies_under_load() -> tuple[CollectorRegistry, Version, FakeClock, CpuClock, Copies]:
    """A copy queue whose Load reads fake clocks: wall time, and CPU time at `cpu.share`."""
    registry = CollectorRegistry()
    metrics = VersionMetrics(registry)
    candidate = loaded_version(CANDIDATE, metrics, [])
    clock = FakeClock()
    cpu = CpuClock(clock)
    return registry, candidate, clock, cpu, Copies(100, metrics, clock, load=Load(clock, cpu))


def test_copies_started_while_the_process_is_not_busy_are_not_charged() -> None:
    registry, candidate, clock, cpu, copies = copies_under_load()

    def run(seconds: float) -> None:
        attempt = attempt_returning([1], clock, seconds)
        copies.offer(Copy(candidate, attempt, np.array([1]), stable_answered=True))
        if len(copies):  # refused at the door once the budget is spent
            asyncio.run(copies.run_one())

    ok = {"version": "c", "role": CANDIDATE, "kind": "copy", "outcome": "ok"}
    dropped = "model_server_candidate_copies_dropped_total"
    cpu.share = 0.7  # waiting for clients part of the time
    for _ in range(20):  # 20 copies of 0.5 ms: four times the budget
        clock.now += 0.100
        run(0.0005)
    candidate.flush()
    assert sample(registry, "model_server_version_requests_total", **ok) == 20
    copies.flush()
    assert sample(registry, dropped, reason="budget") == 0
    cpu.share = 0.9  # answering nearly all the time: busy
    clock.now += 0.100
    for _ in range(10):  # the same copies spend the 2.5 ms, then are refused
        run(0.0005)
    candidate.flush()
    assert sample(registry, "model_server_version_requests_total", **ok) == 20 + 6
    copies.flush()
    assert sample(registry, dropped, reason="budget") == 4


def test_a_copy_that_fails_counts_as_that_versions_copy_error_and_compares_nothing() -> None:
    registry = CollectorRegistry()
    metrics = VersionMetrics(registry)
    stable = loaded_version(STABLE, metrics, [])
    copies = Copies(4, metrics, clock=FakeClock())

    async def broken(runtime: Any, protocol: str | None) -> Any:
        raise ValueError("no")

    copies.offer(Copy(stable, broken, np.array([1]), stable_answered=False))
    asyncio.run(copies.run_one())
    assert sample(registry, "model_server_version_requests_total", version="1", role=STABLE,
                  kind="copy", outcome="error") == 1  # fmt: skip
    assert sample(registry, "model_server_candidate_compared_rows_total") == 0


def test_rows_agree_on_equal_labels_or_regression_values_within_the_tolerance() -> None:
    assert agreeing_rows(np.array([0, 1, 2, 2]), np.array([0, 2, 2, 1]), regression=False) == 2
    names = np.array(["setosa", "virginica"], dtype=object)
    assert agreeing_rows(names, np.array(["setosa", "setosa"], dtype=object), False) == 1
    assert agreeing_rows(np.array([1, 0]), np.array(["1", "0"], dtype=object), False) == 0
    stable = np.array([100.0, 100.0, 0.0, 0.0])
    candidate = np.array([100.1, 100.2, 5e-7, 2e-6])  # 1e-6 + 1e-3 * 100 = 0.100001
    assert agreeing_rows(stable, candidate, regression=True) == 2


def test_batches_over_the_copy_row_limit_are_not_copied_and_are_counted() -> None:
    registry = CollectorRegistry()
    metrics = VersionMetrics(registry)
    candidate = loaded_version(CANDIDATE, metrics, [])
    copies = Copies(100, metrics, clock=FakeClock())
    big = np.ones(COPY_MAX_ROWS + 1, dtype=np.int64)
    copies.offer(Copy(candidate, attempt_returning([1]), big, stable_answered=True))
    assert len(copies) == 0
    dropped = "model_server_candidate_copies_dropped_total"
    copies.flush()
    assert sample(registry, dropped, reason="too_large") == 1
    fits = np.ones(COPY_MAX_ROWS, dtype=np.int64)
    copies.offer(Copy(candidate, attempt_returning([1]), fits, stable_answered=True))
    assert len(copies) == 1


def test_copies_are_bounded_by_the_bytes_of_their_requests() -> None:
    """A copy holds its request while it waits: one of a request over COPY_MAX_BYTES is not
    made (too_large), and the queued copies' requests never come to more than
    COPY_QUEUE_BYTES (queue_full), however many copies the queue's length allows."""
    registry = CollectorRegistry()
    metrics = VersionMetrics(registry)
    candidate = loaded_version(CANDIDATE, metrics, [])
    copies = Copies(100, metrics, clock=FakeClock())
    one = np.ones(1, dtype=np.int64)
    copies.offer(Copy(candidate, attempt_returning([1]), one, True, COPY_MAX_BYTES + 1))
    assert len(copies) == 0
    fitting = COPY_QUEUE_BYTES // COPY_MAX_BYTES
    for _ in range(fitting):
        copies.offer(Copy(candidate, attempt_returning([1]), one, True, COPY_MAX_BYTES))
    copies.offer(Copy(candidate, attempt_returning([1]), one, True, 1))
    assert len(copies) == fitting  # the last one found no room, though the length allows 100
    copies.flush()
    dropped = "model_server_candidate_copies_dropped_total"
    assert sample(registry, dropped, reason="too_large") == 1
    assert sample(registry, dropped, reason="queue_full") == 1
    asyncio.run(copies.run_one())  # one copy predicted: its bytes are free again
    copies.offer(Copy(candidate, attempt_returning([1]), one, True, COPY_MAX_BYTES))
    assert len(copies) == fitting


def test_outputs_the_versions_cannot_compare_are_the_copys_error_and_the_task_goes_on() -> None:
    """A regression stable and a candidate answering class names: the comparison fails for
    that copy (counted as its error), and the copy task keeps predicting the next ones."""
    registry = CollectorRegistry()
    metrics = VersionMetrics(registry)
    candidate = loaded_version(CANDIDATE, metrics, [])
    copies = Copies(100, metrics, clock=FakeClock())
    copies.stable_regression = True

    def attempt_labels(labels: list[Any]) -> Any:
        async def attempt(runtime: Runtime, protocol: str | None) -> tuple[None, Prediction]:
            return None, Prediction(np.array(labels), None)

        return attempt

    copies.offer(Copy(candidate, attempt_labels(["setosa"]), np.array([1.5]), stable_answered=True))
    copies.offer(Copy(candidate, attempt_labels([1.5]), np.array([1.5]), stable_answered=True))

    def flush() -> None:
        candidate.flush()
        copies.flush()

    async def drain() -> None:
        task = asyncio.create_task(copies.run(flush))
        for _ in range(100):  # bounded: a dead task would leave the second copy queued
            await asyncio.sleep(0)
        task.cancel()
        flush()

    asyncio.run(drain())
    labels = {"version": "c", "role": CANDIDATE, "kind": "copy"}
    total = "model_server_version_requests_total"
    assert sample(registry, total, **labels, outcome="error") == 1
    assert sample(registry, total, **labels, outcome="ok") == 1
    assert sample(registry, "model_server_candidate_compared_rows_total") == 1
    assert sample(registry, "model_server_candidate_agreed_rows_total") == 1


def test_predictions_are_counted_per_label_for_one_row_and_for_batches_of_mixed_labels() -> None:
    registry = CollectorRegistry()
    metrics = VersionMetrics(registry)
    stable = loaded_version(STABLE, metrics, [])
    stable.succeeded("answer", 0.001, np.array(["setosa"], dtype=object))
    stable.succeeded("answer", 0.001, np.array(["setosa", 1, "virginica", "setosa"], dtype=object))
    name = "model_server_version_predictions_total"
    # counted in plain Python on the request path; the metrics get them at a flush
    assert sample(registry, name, version="1", role=STABLE, label="setosa") == 0
    stable.flush()
    counted = {
        label: sample(registry, name, version="1", role=STABLE, label=label)
        for label in ("setosa", "1", "virginica")
    }
    assert counted == {"setosa": 3, "1": 1, "virginica": 1}
    assert sample(registry, "model_server_version_requests_total", version="1", role=STABLE,
                  kind="answer", outcome="ok") == 2  # fmt: skip
    duration = "model_server_version_duration_seconds_count"
    assert sample(registry, duration, version="1", role=STABLE) == 2
    stable.flush()  # a flush adds only what came since the last one
    assert sample(registry, name, version="1", role=STABLE, label="setosa") == 3


def test_a_process_on_the_cpu_only_for_copies_is_not_busy() -> None:
    """Copies at light load must not stop themselves: their own time is left out of Load."""
    registry, candidate, clock, cpu, copies = copies_under_load()
    cpu.share = 1.0  # the CPU runs whenever time passes, and only copies make time pass here
    for _ in range(40):  # 40 copies of 20 ms back to back: 80 times the budget
        copies.offer(Copy(candidate, attempt_returning([1], clock, 0.020), np.array([1]), True))
        asyncio.run(copies.run_one())
    copies.flush()
    candidate.flush()
    ok = {"version": "c", "role": CANDIDATE, "kind": "copy", "outcome": "ok"}
    assert sample(registry, "model_server_version_requests_total", **ok) == 40
    assert sample(registry, "model_server_candidate_copies_dropped_total", reason="budget") == 0


def test_while_busy_copies_queue_only_as_far_as_the_budget_left_reaches() -> None:
    """A burst of requests must not queue `limit` copies that then overdraw the budget: while
    busy, a copy is queued only while the budget left exceeds what the queued copies will cost
    (INITIAL_COPY_COST_S each until one was measured). Not busy, copies are not charged and
    the queue's limit alone applies."""
    registry, candidate, clock, cpu, copies = copies_under_load()
    dropped = "model_server_candidate_copies_dropped_total"

    def burst(n: int) -> None:
        for _ in range(n):
            copies.offer(Copy(candidate, attempt_returning([1]), np.array([1]), True))

    cpu.share = 0.9
    clock.now += 0.100
    burst(40)
    bank = BUDGET_SHARE * BUDGET_WINDOW_S
    assert len(copies) == round(bank / INITIAL_COPY_COST_S) == 25
    copies.flush()
    assert sample(registry, dropped, reason="budget") == 15

    _, candidate, clock, cpu, idle = copies_under_load()
    cpu.share = 0.5
    clock.now += 0.100
    copies = idle
    burst(40)
    assert len(copies) == 40


def test_batch_labels_are_counted_by_value_over_every_dtype() -> None:
    """Numbers by numpy per dtype, class names and mixed labels by a Counter; equal values are
    one label whatever their type (1 and 1.0, as Python compares them)."""
    counted = count_labels(
        [
            np.array([0, 1, 1, 2]),
            np.array([1, 2]),
            np.array([1.0, 2.5]),
            np.array(["setosa", "setosa", 1], dtype=object),
        ]
    )
    assert counted == {0: 1, 1: 5, 2: 2, 2.5: 1, "setosa": 2}
    assert count_labels([]) == {}


def test_copies_that_crowd_answers_out_do_not_make_the_process_look_idle() -> None:
    """Answers on the CPU 65 % of a window and copies 30 %: of the time copies left, answers
    took 93 %, so the process is busy (answers over the whole window, 65 %, would say idle, and
    copies would then run uncharged and crowd answers out further)."""
    clock = FakeClock()
    cpu = CpuClock(clock)
    load = Load(clock, cpu)
    cpu.share = 0.95
    clock.now += 0.100
    load.copying += 0.030
    assert load.busy()
    cpu.share = 0.70  # 70 % with no copies is not busy
    clock.now += 0.100
    assert not load.busy()


def test_a_copy_is_charged_to_load_with_its_cpu_time_not_its_clock() -> None:
    """A copy that waits (a thread, a CPU-limited pod's quota) takes longer by the clock than on
    the CPU; Load leaves out only what the process spent on the CPU meanwhile."""
    _registry, candidate, clock, cpu, copies = copies_under_load()
    cpu.share = 0.25  # on the CPU a quarter of the time, copies included
    copies.offer(Copy(candidate, attempt_returning([1], clock, 0.040), np.array([1]), True))
    load = copies._load
    assert load is not None
    asyncio.run(copies.run_one())
    assert load.copying == pytest.approx(0.010)  # 40 ms by the clock, 10 ms on the CPU
