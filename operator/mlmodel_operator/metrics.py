"""Prometheus metrics of the operator and the small HTTP server for /healthz and /metrics."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

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


async def _healthz(_: web.Request) -> web.Response:
    return web.Response(text="ok\n")


async def _metrics(_: web.Request) -> web.Response:
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})


async def start_http_server(host: str, port: int) -> web.AppRunner:
    """Serve /healthz and /metrics on host:port until the runner is cleaned up."""
    app = web.Application()
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/metrics", _metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
