"""Reconcile workers: a crash outside a reconcile is counted and the worker runs again; keys
taken while not leading are dropped; an outcome asking for a retry backs off."""

from __future__ import annotations

import threading
from typing import Any

from devcluster.waiting import wait_until
from mlmodel_operator import metrics
from mlmodel_operator.informer import _lines
from mlmodel_operator.main import NotLeader, supervised, work
from mlmodel_operator.reconcile import Outcome
from mlmodel_operator.workqueue import WorkQueue


class Recorder:
    def __init__(self, fail: bool = False) -> None:
        self.recorded: list[tuple[str, str]] = []
        self.fail = fail

    def record(self, body: Any, reason: str, message: str) -> None:
        if self.fail:
            raise RuntimeError("event recorder broke")
        self.recorded.append((reason, message))


class Reconciler:
    def __init__(self, outcome: Outcome) -> None:
        self.outcome = outcome
        self.keys: list[tuple[str, str]] = []

    def reconcile_key(self, namespace: str, name: str) -> tuple[dict[str, Any], Outcome]:
        self.keys.append((namespace, name))
        return {"metadata": {"namespace": namespace, "name": name}}, self.outcome


def start_worker(
    reconciler: Reconciler, queue: WorkQueue[tuple[str, str]], leading: list[bool]
) -> threading.Thread:
    """A reconcile worker on a thread of its own, leading while `leading[0]`."""
    thread = threading.Thread(
        target=work,
        args=(reconciler, queue, Recorder()),
        kwargs={"leading": lambda: leading[0]},
        daemon=True,
    )
    thread.start()
    return thread


def test_a_crashed_target_is_counted_and_run_again() -> None:
    runs: list[int] = []
    done = threading.Event()

    def target() -> None:
        runs.append(1)
        if len(runs) < 3:
            raise RuntimeError("boom")
        done.set()

    before = metrics.WORKER_RESTARTS._value.get()
    thread = supervised(target, "test-worker")
    assert done.wait(10)
    thread.join(5)
    assert len(runs) == 3
    assert metrics.WORKER_RESTARTS._value.get() == before + 2


def test_a_worker_whose_event_posting_raises_keeps_working() -> None:
    from mlmodel_operator.reconcile import Change

    queue: WorkQueue[tuple[str, str]] = WorkQueue()
    reconciler = Reconciler(Outcome({}, (Change("Created", "Deployment", "x"),)))
    thread = supervised(
        lambda: work(reconciler, queue, Recorder(fail=True)),  # type: ignore[arg-type]
        "test-reconcile",
    )
    queue.add(("ns", "a"), "change")
    queue.add(("ns", "b"), "change")
    try:
        wait_until("both keys to be reconciled", lambda: len(reconciler.keys) == 2, 10, 0.05)
    finally:
        queue.shutdown()
        thread.join(5)
    assert reconciler.keys == [("ns", "a"), ("ns", "b")]


def test_keys_taken_while_not_leading_are_dropped_and_retry_outcomes_back_off() -> None:
    queue: WorkQueue[tuple[str, str]] = WorkQueue()
    reconciler = Reconciler(Outcome({}, retry=True))
    leading = [False]
    thread = start_worker(reconciler, queue, leading)
    queue.add(("ns", "follower"), "change")
    wait_until("the follower's key to be taken", lambda: len(queue) == 0, 2, 0.02)
    threading.Event().wait(0.1)
    assert reconciler.keys == []
    leading[0] = True
    queue.add(("ns", "refused"), "change")
    wait_until("the key to be reconciled", lambda: reconciler.keys, 2, 0.02)
    threading.Event().wait(0.1)
    assert reconciler.keys == [("ns", "refused")]
    assert queue.delayed() == 1  # queued again after its backoff
    queue.shutdown()
    thread.join(5)


class RefusingReconciler(Reconciler):
    """Every reconcile ends in a write refused for the leader's term; for a key named "lost"
    the term ends during the reconcile."""

    def __init__(self, leading: list[bool]) -> None:
        super().__init__(Outcome({}))
        self.leading = leading

    def reconcile_key(self, namespace: str, name: str) -> tuple[dict[str, Any], Outcome]:
        self.keys.append((namespace, name))
        if name == "lost":
            self.leading[0] = False
        raise NotLeader("not the leader for another 1 s: write refused")


def refusing_worker(name: str) -> tuple[list[tuple[str, str]], int]:
    """A worker's one reconcile of `name`, ending in NotLeader: the keys it reconciled and how
    many keys then waited for a retry."""
    queue: WorkQueue[tuple[str, str]] = WorkQueue()
    leading = [True]
    reconciler = RefusingReconciler(leading)
    thread = start_worker(reconciler, queue, leading)
    queue.add(("ns", name), "change")
    try:
        wait_until("the key to be reconciled", lambda: reconciler.keys, 5, 0.02)
        threading.Event().wait(0.2)  # a retry comes after 1 s at the earliest
        return reconciler.keys, queue.delayed()
    finally:
        queue.shutdown()
        thread.join(5)


def test_a_write_refused_near_the_end_of_the_term_is_retried_while_still_leading() -> None:
    """A key whose write found too little of the term left is retried while this replica still
    leads (the renewal that follows extends the term, and nothing else would queue the key
    again); it is dropped once leadership is lost (the next leader queues every MLModel)."""
    assert refusing_worker("renewing") == ([("ns", "renewing")], 1)
    assert refusing_worker("lost") == ([("ns", "lost")], 0)


def test_watch_lines_are_split_across_chunk_boundaries() -> None:
    chunks = [b'{"a":', b"1}\n{", b'"b":2}\n\n{"c"', b":3}"]
    assert list(_lines(iter(chunks))) == [b'{"a":1}', b'{"b":2}', b'{"c":3}']
