"""Helpers for the e2e tests: a looping client, status watching, artifacts in the store."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from devcluster import mlstack
from devcluster.mlstack import Kube

ROW = (5.1, 3.5, 1.4, 0.2)
READY_TIMEOUT = 240.0


@dataclass
class LoopResult:
    """What a looping client saw: one entry per request."""

    ok: int = 0
    failures: list[str] = field(default_factory=list)
    digests: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        """Requests sent."""
        return self.ok + len(self.failures)


@contextmanager
def looping_client(base_url: str, model: str, max_seconds: float = 400.0) -> Iterator[LoopResult]:
    """Send predictions back to back (new connection each) until the block ends (bounded)."""
    result = LoopResult()
    stop = threading.Event()

    def loop() -> None:
        deadline = time.monotonic() + max_seconds
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                status, body = mlstack.http(
                    "POST", f"{base_url}/predict", {"input": list(ROW)}, timeout=10
                )
            except OSError as exc:
                result.failures.append(f"{time.strftime('%X')} {type(exc).__name__}: {exc}")
                continue
            if status == 200:
                result.ok += 1
            else:
                result.failures.append(f"{time.strftime('%X')} HTTP {status}: {body}")

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield result
    finally:
        stop.set()
        thread.join(timeout=30)


def served_digest(base_url: str, model: str) -> str:
    """The sha256 a server behind ``base_url`` serves (V2 model metadata)."""
    status, body = mlstack.http("GET", f"{base_url}/v2/models/{model}")
    assert status == 200, f"GET /v2/models/{model}: {status} {body}"
    return str(body["parameters"]["sha256"])


class ConditionLog:
    """Records every distinct (type, status, reason) a MLModel's conditions go through."""

    def __init__(self, kube: Kube, namespace: str, name: str) -> None:
        self.kube, self.namespace, self.name = kube, namespace, name
        self.seen: list[tuple[str, str, str]] = []
        self.last: dict[str, Any] = {}

    def poll(self) -> dict[str, Any]:
        """Fetch the MLModel once and record new condition states."""
        self.last = self.kube.get("mlm", self.name, self.namespace) or {}
        for cond in (self.last.get("status") or {}).get("conditions") or []:
            entry = (cond["type"], cond["status"], cond.get("reason", ""))
            if entry not in self.seen:
                self.seen.append(entry)
        return self.last

    def wait(self, what: str, check: Any, timeout: float) -> float:
        """Poll until ``check(mlmodel)``; the error shows the conditions seen so far."""
        try:
            return mlstack.wait_for(what, lambda: bool(check(self.poll())), timeout, interval=1.0)
        except mlstack.StackError as exc:
            conds = (self.last.get("status") or {}).get("conditions")
            raise AssertionError(f"{exc}; conditions now: {conds}; seen: {self.seen}") from exc


def unique(prefix: str) -> str:
    """A short unique name."""
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def rows_as_lists(rows: Sequence[Sequence[float]]) -> list[list[float]]:
    """Plain lists of floats (numpy rows become JSON-able)."""
    return [[float(v) for v in row] for row in rows]
