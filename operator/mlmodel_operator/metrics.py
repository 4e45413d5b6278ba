"""Prometheus metrics of the operator and the small HTTP server for /healthz, /readyz, /metrics."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Final

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

RECONCILES: Final = Counter(
    "mlmodel_operator_reconcile_total",
    "Reconciles run, by trigger (change, child, timer, retry, card: a card read a reconcile "
    "did not wait for is done) and result (ok, error).",
    ["trigger", "result"],
)
QUEUE_DEPTH: Final = Gauge(
    "mlmodel_operator_queue_depth", "MLModels waiting in the work queue for a reconcile."
)
RECONCILE_SECONDS: Final = Histogram(
    "mlmodel_operator_reconcile_duration_seconds",
    "Time one reconcile took, by trigger.",
    ["trigger"],
)
RECONCILE_ERRORS: Final = Counter(
    "mlmodel_operator_reconcile_errors_total",
    "Reconciles that failed (each is retried with backoff), by trigger and error type.",
    ["trigger", "error"],
)
CHILD_WRITES: Final = Counter(
    "mlmodel_operator_child_writes_total",
    "Writes to children, by verb and kind.",
    ["verb", "kind"],
)

WORKER_RESTARTS: Final = Counter(
    "mlmodel_operator_worker_restarts_total",
    "Reconcile workers that crashed (an error outside a reconcile) and were started again.",
)
WATCH_RESTARTS: Final = Counter(
    "mlmodel_operator_watch_restarts_total",
    "Watches started again, by kind and why the last one ended (ended: the API server's "
    "timeout; expired: 410 Gone, a re-list follows; timeout: no byte within the deadline; "
    "error).",
    ["kind", "reason"],
)
RELISTS: Final = Counter(
    "mlmodel_operator_lists_total",
    "Full lists that replaced the cache, by kind and why they were needed (initial, expired, "
    "resync; a list retried after failing keeps its reason).",
    ["kind", "reason"],
)
LEADER: Final = Gauge(
    "mlmodel_operator_leader", "1 while this replica holds the leader Lease and reconciles."
)
LEADER_TRANSITIONS: Final = Counter(
    "mlmodel_operator_leader_acquired_total", "Times this replica became leader."
)


@contextmanager
def observe_reconcile(trigger: str) -> Iterator[None]:
    """Count and time one reconcile; a raised error is counted and re-raised."""
    started = time.monotonic()
    try:
        yield
    except Exception as exc:
        RECONCILES.labels(trigger, "error").inc()
        RECONCILE_ERRORS.labels(trigger, type(exc).__name__).inc()
        raise
    else:
        RECONCILES.labels(trigger, "ok").inc()
    finally:
        RECONCILE_SECONDS.labels(trigger).observe(time.monotonic() - started)


Checks = Callable[[], list[str]]  # what is wrong now; empty when all is well


def _probe(checks: Checks) -> Callable[[web.Request], Any]:
    async def answer(_: web.Request) -> web.Response:
        problems = checks()
        if problems:
            return web.Response(status=503, text="".join(f"{p}\n" for p in problems))
        return web.Response(text="ok\n")

    return answer


async def _metrics(_: web.Request) -> web.Response:
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})


async def start_http_server(
    host: str, port: int, healthz: Checks = list, readyz: Checks = list
) -> web.AppRunner:
    """Serve /healthz, /readyz and /metrics on host:port until the runner is cleaned up.

    A probe answers 200 "ok" when its checks find nothing wrong, else 503 listing what is.
    """
    app = web.Application()
    app.router.add_get("/healthz", _probe(healthz))
    app.router.add_get("/readyz", _probe(readyz))
    app.router.add_get("/metrics", _metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
