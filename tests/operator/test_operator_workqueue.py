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
