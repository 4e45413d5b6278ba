"""A coalescing work queue of MLModel keys, with per-key retry backoff.

Many events name the same MLModel (its Deployment's status changes, a pod becomes Ready, the
status patch comes back as an MLModel event), and a level-based reconcile only needs to run
once for all of them. The queue therefore holds each key at most once; a key added while it is
being reconciled is queued again when that reconcile finishes, so the last event is never lost
and no key is ever reconciled by two workers at the same time. This is the client-go and
controller-runtime work queue, in Python and thread-safe (kopf's event loop adds keys, worker
threads take them).

A key also waits for at most one delay at a time (`add_after`, `retry`): the earliest due time
wins, and a key queued now drops its delayed entry, since the reconcile it is queued for covers
it (a reconcile that fails again asks for its next retry itself). So a key that keeps failing,
or is asked for many times, holds one delayed entry, not one per call.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)

BACKOFF_BASE_SECONDS = 1.0
BACKOFF_MAX_SECONDS = 300.0


class ShutDown(Exception):
    """The queue was shut down: a worker blocked in get() should stop."""


class WorkQueue(Generic[K]):
    """Keys to reconcile: each queued at most once, never handed to two workers at once.

    `reason` is the trigger that first queued a key (e.g. "change", "child", "timer"); it is
    what get() returns with the key, for metrics, and later triggers of a queued key coalesce
    into it.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._cond = threading.Condition()
        self._order: deque[K] = deque()
        self._queued: dict[K, str] = {}  # key -> reason, for keys waiting in _order
        self._since: dict[K, float] = {}  # key -> when it was queued, for keys in _order
        self._active: set[K] = set()  # keys a worker is reconciling now
        self._again: dict[K, str] = {}  # active keys added again meanwhile
        # Delayed keys: `_due` holds each key's one live entry, the heap orders them. A heap
        # entry whose seq is not its key's live one is stale (replaced or dropped) and is
        # skipped when it reaches the top; the heap is rebuilt when stale entries pile up.
        self._due: dict[K, tuple[float, int, str]] = {}  # key -> (due, seq, reason)
        self._later: list[tuple[float, int, K]] = []  # (due, seq, key)
        self._seq = itertools.count()
        self._failures: dict[K, int] = {}
        self._shut = False

    def add(self, key: K, reason: str) -> None:
        """Queue `key` now (no-op when it is already waiting)."""
        with self._cond:
            self._add_locked(key, reason)

    def _add_locked(self, key: K, reason: str) -> None:
        if self._shut or key in self._queued:
            return
        if key in self._active:
            self._again.setdefault(key, reason)
            return
        self._due.pop(key, None)  # the reconcile it is queued for covers a delayed one
        self._queued[key] = reason
        self._since[key] = self._clock()
        self._order.append(key)
        self._cond.notify()

    def add_after(self, key: K, delay: float, reason: str) -> None:
        """Queue `key` once `delay` seconds have passed.

        No-op when the key is waiting now or already waits for an earlier (or the same) time;
        an earlier time replaces a later one.
        """
        if delay <= 0:
            self.add(key, reason)
            return
        with self._cond:
            if self._shut or key in self._queued:
                return
            due = self._clock() + delay
            current = self._due.get(key)
            if current is not None and current[0] <= due:
                return
            seq = next(self._seq)
            self._due[key] = (due, seq, reason)
            heapq.heappush(self._later, (due, seq, key))
            self._compact_locked()
            self._cond.notify()

    def retry(self, key: K, reason: str = "retry") -> float:
        """Queue `key` again after its next backoff (1 s, 2 s, 4 s, ... 5 min); returns it."""
        with self._cond:
            failures = self._failures.get(key, 0)
            self._failures[key] = failures + 1
        delay = float(min(BACKOFF_MAX_SECONDS, BACKOFF_BASE_SECONDS * 2.0**failures))
        self.add_after(key, delay, reason)
        return delay

    def forget(self, key: K) -> None:
        """The key reconciled cleanly: its next failure starts the backoff from the bottom."""
        with self._cond:
            self._failures.pop(key, None)

    def get(self, timeout: float | None = None) -> tuple[K, str] | None:
        """The next key and why it was queued; blocks. None on timeout; ShutDown when shut."""
        deadline = None if timeout is None else self._clock() + timeout
        with self._cond:
            while True:
                if self._shut:
                    raise ShutDown
                self._promote_due_locked()
                if self._order:
                    key = self._order.popleft()
                    reason = self._queued.pop(key)
                    self._since.pop(key, None)
                    self._active.add(key)
                    return key, reason
                if deadline is not None and self._clock() >= deadline:
                    return None
                self._cond.wait(self._next_wait_locked(deadline))

    def done(self, key: K) -> None:
        """A worker finished `key`; if it was added meanwhile, it is queued again now."""
        with self._cond:
            self._active.discard(key)
            reason = self._again.pop(key, None)
            if reason is not None:
                self._add_locked(key, reason)

    def shutdown(self) -> None:
        """Wake every worker with ShutDown; later adds are ignored."""
        with self._cond:
            self._shut = True
            self._cond.notify_all()

    def __len__(self) -> int:
        """Keys waiting now (not counting delayed or active ones)."""
        with self._cond:
            return len(self._order)

    def oldest_wait(self) -> float:
        """Seconds the longest-waiting queued key has waited for a worker (0: none waits)."""
        with self._cond:
            if not self._order:
                return 0.0
            return max(0.0, self._clock() - self._since[self._order[0]])

    def delayed(self) -> int:
        """Keys waiting for a delay to pass (each counted once)."""
        with self._cond:
            return len(self._due)

    def _live_locked(self, entry: tuple[float, int, K]) -> bool:
        current = self._due.get(entry[2])
        return current is not None and current[1] == entry[1]

    def _drop_stale_top_locked(self) -> None:
        while self._later and not self._live_locked(self._later[0]):
            heapq.heappop(self._later)

    def _compact_locked(self) -> None:
        """Rebuild the heap from the live entries once stale ones clearly outnumber them."""
        if len(self._later) > 2 * len(self._due) + 16:
            self._later = [(due, seq, key) for key, (due, seq, _) in self._due.items()]
            heapq.heapify(self._later)

    def _promote_due_locked(self) -> None:
        now = self._clock()
        self._drop_stale_top_locked()
        while self._later and self._later[0][0] <= now:
            _, _, key = heapq.heappop(self._later)
            _, _, reason = self._due.pop(key)
            self._add_locked(key, reason)
            self._drop_stale_top_locked()

    def _next_wait_locked(self, deadline: float | None) -> float | None:
        now = self._clock()
        waits = []
        self._drop_stale_top_locked()
        if self._later:
            waits.append(self._later[0][0] - now)
        if deadline is not None:
            waits.append(deadline - now)
        return max(0.0, min(waits)) if waits else None  # None: until notified
