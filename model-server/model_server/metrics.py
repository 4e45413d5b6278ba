"""Prometheus metrics: requests by route and status, predictions, model load, model info, and
per model version (stable, candidate: docs/rollouts.md).

With several worker processes, PROMETHEUS_MULTIPROC_DIR (set by the parent before the workers
start) makes every worker write its samples to files there, and /metrics sums them.
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any, Final

import numpy as np
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector

from model_server.runtimes.base import ModelInfo

MULTIPROC_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"
LATENCY_BUCKETS: Final = (
    0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0
)  # fmt: skip
UNMATCHED: Final = "<unmatched>"
# Served without a route: the API docs' pages, and their files under DOCS_ASSETS (app.py).
DOCS_PAGES: Final = frozenset({"/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect"})
DOCS_ASSETS: Final = "/docs/static"
# nginx's status for "the client closed the connection before the answer"; not a server error.
CLIENT_CLOSED_REQUEST: Final = 499
CLIENT_GONE: Final = "model_server.client_gone"  # scope key: the client disconnected
HTTP: Final = "http"  # the `protocol` label of requests served over HTTP (gRPC's: "grpc")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class Metrics:
    """The server's metric families, registered in a registry of their own (one per app)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.multiprocess = MULTIPROC_ENV in os.environ
        self.requests = Counter(
            "model_server_requests",
            "Requests by protocol (http, grpc), route (HTTP route template or gRPC method), "
            "method and status (HTTP status code, or gRPC status name such as OK).",
            ["protocol", "route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "model_server_request_duration_seconds",
            "Time from request start to the end of the response, by protocol, route, method and "
            "status (as model_server_requests_total).",
            ["protocol", "route", "method", "status"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.predictions = Counter(
            "model_server_predictions",
            "Rows predicted, by protocol (seed, v1, v2, grpc).",
            ["protocol"],
            registry=self.registry,
        )
        self.load_seconds = Gauge(
            "model_server_model_load_duration_seconds",
            "Seconds from start-up to ready: fetch, verify, load, compile and warm up.",
            registry=self.registry,
            multiprocess_mode="max",
        )
        self.info = Gauge(
            "model_server_model_info",
            "Always 1; the labels describe the served model.",
            ["name", "format", "digest", "runtime"],
            registry=self.registry,
            multiprocess_mode="max",
        )
        self._children: dict[tuple[str, str, str, int | str], tuple[Any, Any]] = {}
        self.versions = VersionMetrics(self.registry)

    def observe_request(
        self, route: str, method: str, status: int | str, seconds: float, protocol: str = HTTP
    ) -> None:
        """Count one finished request and its latency."""
        key = (protocol, route, method, status)
        children = self._children.get(key)
        if children is None:
            labels = (protocol, route, method, str(status))
            children = (self.requests.labels(*labels), self.latency.labels(*labels))
            self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def observe_rows(self, protocol: str, rows: int) -> None:
        """Count predicted rows."""
        self.predictions.labels(protocol).inc(rows)

    def model_loaded(self, info: ModelInfo, seconds: float) -> None:
        """Record the load duration and the model's identity."""
        self.load_seconds.set(seconds)
        self.info.labels(info.name, info.format, info.digest, info.runtime).set(1)
        self.versions.loaded(info.version, "stable", info.digest, info.format)

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        if self.multiprocess:
            registry = CollectorRegistry()
            MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def observe_many(series: Any, seconds: Sequence[float]) -> None:
    """Add many observations to one histogram series (a `Histogram.labels(...)` child) at once:
    one update per bucket that got any, and one of the sum, where `observe` makes two per value
    (in multiprocess mode each is a locked write to a memory-mapped file, ~0.7 us).

    prometheus_client has no public call for this; it updates what `observe` updates: the
    series' `_sum` and its per-bucket (not cumulative) `_buckets`, the first whose bound in
    `_upper_bounds` is >= the value. tests/model_server/test_metrics.py checks the exposition
    equals one `observe` per value, and fails if those attributes change.
    """
    bounds = series._upper_bounds
    counts = np.bincount(np.searchsorted(bounds, seconds, side="left"), minlength=len(bounds))
    for bucket in np.flatnonzero(counts):
        series._buckets[bucket].inc(int(counts[bucket]))
    series._sum.inc(float(sum(seconds)))


class VersionMetrics:
    """The per-version families of docs/rollouts.md (names exact: the operator's analysis and
    the e2e tests read them). Without a candidate only `version_info` and `version_ready` get
    samples (the stable's): nothing is recorded per request then."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.info = Gauge(
            "model_server_version_info",
            "1 per loaded version of the model; role is stable or candidate.",
            ["version", "role", "digest", "format"],
            registry=registry,
            multiprocess_mode="max",
        )
        self.ready = Gauge(
            "model_server_version_ready",
            "1 when the version is loaded, 0 while loading or after it failed to load.",
            ["version", "role"],
            registry=registry,
            multiprocess_mode="max",
        )
        self.requests = Counter(
            "model_server_version_requests",
            "Requests a version predicted while a candidate is served, by kind (answer: meant "
            "to answer the client; copy: a shadow or agreement copy) and outcome (ok, error).",
            ["version", "role", "kind", "outcome"],
            registry=registry,
        )
        self.duration = Histogram(
            "model_server_version_duration_seconds",
            "Decode + predict time of a version (answers and copies that succeeded).",
            ["version", "role"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.predictions = Counter(
            "model_server_version_predictions",
            "Rows a version predicted, by output label (classification: at most 100 labels, "
            'then "other"; regression: "").',
            ["version", "role", "label"],
            registry=registry,
        )
        self.compared = Counter(
            "model_server_candidate_compared_rows",
            "Rows both versions predicted (copies that finished).",
            registry=registry,
        )
        self.agreed = Counter(
            "model_server_candidate_agreed_rows",
            "Of the compared rows, those where both versions gave the same label (regression: "
            "within 1e-6 + 1e-3 * |stable|).",
            registry=registry,
        )
        self.dropped = Counter(
            "model_server_candidate_copies_dropped",
            "Copies not predicted: queue_full (MODEL_SERVER_SHADOW_QUEUE) or budget (copies "
            "used 0.25 % of the last second's wall time while the process was busy).",
            ["reason"],
            registry=registry,
        )

    def loading(self, version: str, role: str) -> None:
        """A version is configured and not loaded (yet): ready 0."""
        self.ready.labels(version, role).set(0)

    def loaded(self, version: str, role: str, digest: str, format: str) -> None:
        """A version is loaded and warmed up: its info, and ready 1."""
        self.info.labels(version, role, digest, format).set(1)
        self.ready.labels(version, role).set(1)


class MetricsMiddleware:
    """Pure ASGI middleware (cheaper than BaseHTTPMiddleware) timing every HTTP request."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on; record route template, method, status and duration."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 0

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            elapsed = time.perf_counter() - start
            if not status:  # no answer: the client left, or the app failed
                status = CLIENT_CLOSED_REQUEST if scope.get(CLIENT_GONE) else 500
            self.metrics.observe_request(_route(scope, status), scope["method"], status, elapsed)


def _route(scope: Scope, status: int) -> str:
    """The route template; the API docs' pages by path and their files under one label;
    anything else without a route under one label. Never a path a client chose: the docs'
    file mount normalizes `/docs/static/<anything>/../favicon.png` and answers 200, so
    labelling by path gave a client a new time series (and a bigger /metrics) per request."""
    route = scope.get("route")
    if route is not None:
        return str(route.path)
    path = str(scope["path"])
    if path in DOCS_PAGES and status < 300:
        return path
    if path.startswith(DOCS_ASSETS + "/"):
        return DOCS_ASSETS
    return UNMATCHED
