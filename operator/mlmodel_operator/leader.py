"""Leader election on a coordination.k8s.io/v1 Lease, with client-go's semantics.

Every replica keeps its caches warm; only the one holding the Lease reconciles and writes.

- A candidate reads the Lease every `retry_seconds`. It takes the Lease when nobody holds it,
  or when the holder's record has not changed for `lease_seconds` *as this candidate observed
  it* (its own monotonic clock, never the timestamps in the Lease: clocks of two nodes may
  disagree). Writes carry the Lease's resourceVersion, so of two candidates at most one wins.
- The holder renews every `retry_seconds`. It counts itself leader only until
  `renew_deadline_seconds` after its last successful renewal, which is shorter than
  `lease_seconds`: a holder cut off from the API server stops writing before any other
  candidate can take over. Then it campaigns again (its caches stay warm).
- On shutdown the holder releases the Lease (empty holder), so a rolling update hands over at
  once instead of after `lease_seconds`.

Why not the kubernetes client's `leaderelection` package: it uses the process-wide default
client (no request timeouts), wall-clock time, cannot be stopped or release its Lease, and
does not keep `leaseTransitions`.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from mlmodel_operator import metrics

LOG = logging.getLogger("mlmodel_operator.leader")


@dataclass(frozen=True)
class LeaseTimes:
    """client-go's three durations (its defaults are 15 s, 10 s and 2 s)."""

    lease_seconds: float
    renew_deadline_seconds: float
    retry_seconds: float
    request_seconds: float


def default_identity() -> str:
    """This process's name in the Lease: the pod's host name and a random suffix."""
    return f"{socket.gethostname()}_{uuid.uuid4().hex[:8]}"


def _now() -> datetime:
    return datetime.now(UTC)


class LeaderElector:
    """Campaign for, hold and release one Lease; see the module docstring.

    `on_started` runs (on the elector's thread) when this process becomes leader, `on_stopped`
    when it stops being leader. `is_leader()` is what guards every write.
    """

    def __init__(
        self,
        api: client.ApiClient,
        namespace: str,
        name: str,
        times: LeaseTimes,
        identity: str | None = None,
        on_started: Callable[[], None] = lambda: None,
        on_stopped: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.leases = client.CoordinationV1Api(api)
        self.namespace = namespace
        self.name = name
        self.times = times
        self.identity = identity or default_identity()
        self.on_started = on_started
        self.on_stopped = on_stopped
        self.clock = clock
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._valid_until = 0.0  # leader until then (monotonic); 0: not leader
        self._observed: tuple[Any, ...] | None = None  # the holder's record as last seen
        self._observed_at = 0.0
        self._thread: threading.Thread | None = None
        self._was_leader = False  # what on_started/on_stopped last announced
        self._held: client.V1Lease | None = None  # the Lease as our last write left it

    # --- the guard
    def is_leader(self) -> bool:
        """Whether this process holds the Lease now (renewed within the renew deadline)."""
        return self.valid_for() > 0

    def valid_for(self) -> float:
        """Seconds this process still counts itself leader without another renewal; 0: not
        leader. A write must be done by then (LeaderKube gives it this as its deadline)."""
        with self._lock:
            return max(0.0, self._valid_until - self.clock())

    # --- lifecycle
    def start(self) -> None:
        """Campaign on a daemon thread until stop()."""
        self._thread = threading.Thread(target=self._run, name="leader-election", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop campaigning; release the Lease if held (best effort, one request)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.times.request_seconds + self.times.retry_seconds)
        if self.is_leader():
            self._set_leader(False)
            try:
                self._release()
            except Exception as exc:
                LOG.warning("could not release Lease %s: %s", self.name, exc)

    def alive(self) -> bool:
        """Whether the campaign thread runs."""
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                renewed = self.try_acquire_or_renew()
            except Exception as exc:
                LOG.warning("Lease %s/%s: %s", self.namespace, self.name, _brief(exc))
                renewed = False
            # announce a change: held now but not before, or past the renew deadline
            self._set_leader(renewed or self.is_leader())
            self._stop.wait(self.times.retry_seconds)

    def _set_leader(self, leading: bool) -> None:
        if leading == self._was_leader:
            return
        self._was_leader = leading
        metrics.LEADER.set(1 if leading else 0)
        if leading:
            metrics.LEADER_TRANSITIONS.inc()
            LOG.info("became leader (Lease %s/%s, %s)", self.namespace, self.name, self.identity)
            self.on_started()
        else:
            with self._lock:
                self._valid_until = 0.0
            LOG.warning("stopped leading (Lease %s/%s)", self.namespace, self.name)
            self.on_stopped()

    # --- one round
    def try_acquire_or_renew(self) -> bool:
        """Read the Lease and take or renew it if allowed; True when this process holds it."""
        started = self.clock()
        timeout = self.times.request_seconds
        if self._held is not None and self.is_leader():
            # Renewing: write the Lease we last wrote (its resourceVersion guards the write), so
            # a renewal is one request, not a read and a write.
            held, self._held = self._held, None
            if held.spec is not None:
                held.spec.renew_time = _now()
            try:
                self._held = self.leases.replace_namespaced_lease(
                    self.name, self.namespace, held, _request_timeout=timeout
                )
            except ApiException as exc:
                if exc.status != 409:
                    raise
                # someone else wrote it: read it below, as a candidate would
            else:
                self._held_since(started)
                return True
        try:
            lease = self.leases.read_namespaced_lease(
                self.name, self.namespace, _request_timeout=timeout
            )
        except ApiException as exc:
            if exc.status != 404:
                raise
            body = client.V1Lease(
                metadata=client.V1ObjectMeta(name=self.name, namespace=self.namespace),
                spec=self._spec(acquired=_now(), transitions=0),
            )
            try:
                self._held = self.leases.create_namespaced_lease(
                    self.namespace, body, _request_timeout=timeout
                )
            except ApiException as created:
                if created.status == 409:  # another candidate created it first
                    return False
                raise
            self._held_since(started)
            return True
        spec = lease.spec or client.V1LeaseSpec()
        record = (spec.holder_identity, spec.renew_time, spec.acquire_time, spec.lease_transitions)
        if record != self._observed:
            self._observed, self._observed_at = record, started
        holder = spec.holder_identity or ""
        mine = holder == self.identity
        duration = float(spec.lease_duration_seconds or self.times.lease_seconds)
        if holder and not mine and started < self._observed_at + duration:
            return False  # held by another, and not expired as far as we have seen
        transitions = int(spec.lease_transitions or 0) + (0 if mine else 1)
        lease.spec = self._spec(
            acquired=spec.acquire_time if mine and spec.acquire_time else _now(),
            transitions=transitions,
        )
        try:
            self._held = self.leases.replace_namespaced_lease(
                self.name, self.namespace, lease, _request_timeout=timeout
            )
        except ApiException as exc:
            if exc.status == 409:  # someone wrote the Lease since we read it
                return False
            raise
        self._held_since(started)
        return True

    def _held_since(self, started: float) -> None:
        """We hold the Lease as of `started` (the round's start: the safe side)."""
        with self._lock:
            self._valid_until = started + self.times.renew_deadline_seconds

    def _spec(self, acquired: datetime, transitions: int) -> client.V1LeaseSpec:
        return client.V1LeaseSpec(
            holder_identity=self.identity,
            lease_duration_seconds=int(self.times.lease_seconds),
            acquire_time=acquired,
            renew_time=_now(),
            lease_transitions=transitions,
        )

    def _release(self) -> None:
        lease = self.leases.read_namespaced_lease(
            self.name, self.namespace, _request_timeout=self.times.request_seconds
        )
        if lease.spec is None or lease.spec.holder_identity != self.identity:
            return
        lease.spec.holder_identity = None
        lease.spec.lease_duration_seconds = 1
        lease.spec.renew_time = _now()
        self.leases.replace_namespaced_lease(
            self.name, self.namespace, lease, _request_timeout=self.times.request_seconds
        )
        LOG.info("released Lease %s/%s", self.namespace, self.name)


def _brief(exc: BaseException) -> str:
    if isinstance(exc, ApiException):
        return f"HTTP {exc.status} {exc.reason}"
    return f"{type(exc).__name__}: {exc}"
