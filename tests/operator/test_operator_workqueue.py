"""The work queue coalesces keys, never hands one key to two workers, and backs off retries."""

from __future__ import annotations

import threading

import pytest

from mlmodel_operator.workqueue import BACKOFF_MAX_SECONDS, ShutDown, WorkQueue


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_key_added_many_times_is_handed_out_once_with_its_first_reason() -> None:
    queue: WorkQueue[str] = WorkQueue()
    for reason in ("change", "child", "timer"):
        queue.add("a", reason)
    queue.add("b", "child")
    assert len(queue) == 2
    assert queue.get(timeout=0) == ("a", "change")
    assert queue.get(timeout=0) == ("b", "child")
    assert queue.get(timeout=0) is None


def test_a_key_added_while_active_waits_for_done_and_is_then_queued_once() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add("a", "change")
    assert queue.get(timeout=0) == ("a", "change")
    queue.add("a", "child")
    queue.add("a", "timer")
    assert queue.get(timeout=0) is None, "an active key must not go to a second worker"
    queue.done("a")
    assert queue.get(timeout=0) == ("a", "child")
    queue.done("a")
    assert queue.get(timeout=0) is None


def test_delayed_keys_come_due_on_the_clock() -> None:
    clock = FakeClock()
    queue: WorkQueue[str] = WorkQueue(clock=clock)
    queue.add_after("late", 5.0, "retry")
    assert queue.get(timeout=0) is None
    clock.now += 5.0
    assert queue.get(timeout=0) == ("late", "retry")


def test_retry_backs_off_exponentially_up_to_the_cap_and_forget_resets_it() -> None:
    queue: WorkQueue[str] = WorkQueue(clock=FakeClock())
    delays = [queue.retry("a") for _ in range(12)]
    assert delays[:4] == [1.0, 2.0, 4.0, 8.0]
    assert delays[-1] == BACKOFF_MAX_SECONDS
    queue.forget("a")
    assert queue.retry("a") == 1.0


def test_get_blocks_until_a_key_is_added_from_another_thread() -> None:
    queue: WorkQueue[str] = WorkQueue()
    got: list[tuple[str, str] | None] = []
    taker = threading.Thread(target=lambda: got.append(queue.get(timeout=30)))
    taker.start()
    queue.add("a", "change")
    taker.join(timeout=30)
    assert got == [("a", "change")]


def test_shutdown_wakes_blocked_workers_and_ignores_later_adds() -> None:
    queue: WorkQueue[str] = WorkQueue()
    errors: list[BaseException] = []

    def take() -> None:
        try:
            queue.get()
        except ShutDown as exc:
            errors.append(exc)

    taker = threading.Thread(target=take)
    taker.start()
    queue.shutdown()
    taker.join(timeout=30)
    assert len(errors) == 1
    queue.add("a", "change")
    with pytest.raises(ShutDown):
        queue.get(timeout=0)


def test_many_workers_never_hold_the_same_key_at_once() -> None:
    queue: WorkQueue[int] = WorkQueue()
    active: set[int] = set()
    overlaps: list[int] = []
    done_count = [0]
    guard = threading.Lock()

    def worker() -> None:
        while True:
            try:
                item = queue.get(timeout=0.5)
            except ShutDown:
                return
            if item is None:
                return
            key, _ = item
            with guard:
                if key in active:
                    overlaps.append(key)
                active.add(key)
            for _ in range(100):  # give other workers a chance to take the key too
                pass
            with guard:
                active.discard(key)
                done_count[0] += 1
            queue.done(key)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for round_ in range(200):
        queue.add(round_ % 5, "child")
    for thread in threads:
        thread.join(timeout=30)
    assert overlaps == []
    assert 5 <= done_count[0] <= 200


def test_oldest_wait_is_how_long_the_first_queued_key_has_waited() -> None:
    now = [100.0]
    queue: WorkQueue[str] = WorkQueue(clock=lambda: now[0])
    assert queue.oldest_wait() == 0.0
    queue.add("a", "change")
    now[0] = 103.0
    queue.add("b", "change")
    now[0] = 110.0
    assert queue.oldest_wait() == 10.0
    assert queue.get(timeout=0) == ("a", "change")
    assert queue.oldest_wait() == 7.0  # b, queued at 103
    queue.get(timeout=0)
    assert queue.oldest_wait() == 0.0


def test_a_key_delayed_many_times_holds_one_delayed_entry() -> None:
    """A key failing again and again (or asked for later many times) must not pile up entries."""
    clock = FakeClock()
    queue: WorkQueue[str] = WorkQueue(clock=clock)
    for _ in range(1_000):
        queue.add_after("a", 5.0, "retry")
    for step in range(1_000):  # each call earlier than the last: each replaces the last
        queue.add_after("b", 2_000.0 - step, "retry")
    for _ in range(1_000):
        queue.retry("c")
    assert queue.delayed() == 3
    assert len(queue._later) <= 2 * 3 + 16  # stale heap entries are bounded too
    clock.now += BACKOFF_MAX_SECONDS + 2_000.0
    handed = []
    while (item := queue.get(timeout=0)) is not None:
        handed.append(item[0])
        queue.done(item[0])
    assert sorted(handed) == ["a", "b", "c"]
    assert queue.delayed() == 0
    assert queue._later == []


def test_the_earliest_due_time_of_a_delayed_key_wins() -> None:
    clock = FakeClock()
    queue: WorkQueue[str] = WorkQueue(clock=clock)
    queue.add_after("a", 10.0, "late")
    queue.add_after("a", 3.0, "soon")
    queue.add_after("a", 7.0, "later")  # later than what is pending: ignored
    clock.now += 3.0
    assert queue.get(timeout=0) == ("a", "soon")
    queue.done("a")
    clock.now += 10.0
    assert queue.get(timeout=0) is None, "the replaced and the ignored times must not fire"


def test_a_key_queued_now_is_not_handed_out_again_later() -> None:
    clock = FakeClock()
    queue: WorkQueue[str] = WorkQueue(clock=clock)
    queue.add("a", "change")
    queue.add_after("a", 5.0, "retry")  # the reconcile it is queued for covers this
    queue.add_after("b", 5.0, "retry")
    queue.add("b", "child")  # queued now: its delayed entry is dropped
    assert queue.delayed() == 0
    assert queue.get(timeout=0) == ("a", "change")
    queue.done("a")
    assert queue.get(timeout=0) == ("b", "child")
    queue.done("b")
    clock.now += 10.0
    assert queue.get(timeout=0) is None


def test_a_retry_asked_for_while_active_comes_due_after_done() -> None:
    """The worker calls retry() before done(): the delayed entry must survive done()."""
    clock = FakeClock()
    queue: WorkQueue[str] = WorkQueue(clock=clock)
    queue.add("a", "change")
    assert queue.get(timeout=0) == ("a", "change")
    assert queue.retry("a") == 1.0
    queue.done("a")
    assert queue.get(timeout=0) is None
    clock.now += 1.0
    assert queue.get(timeout=0) == ("a", "retry")
