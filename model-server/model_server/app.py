"""The ASGI application: `create_app(settings)` wires data plane, protocols, metrics and errors.

Domain errors are mapped to HTTP statuses here and only here (ERROR_STATUS); every error answer
is JSON `{"error": "..."}`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from importlib.metadata import version
from pathlib import Path
from typing import Any, Final

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.routing import APIRoute
from fastapi_offline import FastAPIOffline
from starlette._utils import get_route_path
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from mlmodel_artifact.compiled import Converter
from model_server import errors
from model_server.dataplane import DataPlane
from model_server.drift import DriftMonitor
from model_server.lifecycle import ModelLoader
from model_server.metrics import (
    CLIENT_GONE,
    DOCS_ASSETS,
    ASGIApp,
    Message,
    Metrics,
    MetricsMiddleware,
    Receive,
    Scope,
    Send,
)
from model_server.protocols import drift as drift_routes
from model_server.protocols import schemas, seed, v1, v2
from model_server.protocols.common import BODY_READING, json_response
from model_server.protocols.v1 import PREDICT_PATH as V1_PREDICT
from model_server.protocols.v2 import INFER_PATHS as V2_INFER
from model_server.settings import LIVENESS_PATH, METRICS_PATH, READINESS_PATH, ServerSettings
from model_server.storage import Download
from model_server.versions import STABLE, Versions

log = logging.getLogger("model_server")

ERROR_STATUS: Final[dict[type[errors.ServerError], int]] = {
    errors.MalformedRequest: 400,
    errors.ModelNotFound: 404,
    errors.RequestTimeout: 408,
    errors.PayloadTooLarge: 413,
    errors.InvalidInput: 422,
    errors.ModelNotReady: 503,
    errors.ServerBusy: 503,
}
# Answers after which the connection is closed: the body may be unread (or still trickling),
# and closing is what frees it; uvicorn would otherwise keep reading and discarding it.
CLOSING_ERRORS: Final = (errors.RequestTimeout, errors.PayloadTooLarge, errors.ServerBusy)
RETRY_AFTER_SECONDS: Final = "1"

HOT_PATHS: Final = frozenset({seed.PREDICT_PATH, V1_PREDICT, *V2_INFER})
# Never counted against the in-flight limit: probes must answer while predictions queue.
UNGUARDED_PATHS: Final = frozenset({LIVENESS_PATH, READINESS_PATH, METRICS_PATH})
TIMED_OUT: Final = "model_server.body_timed_out"  # scope key: cancelled by the body deadline


def error_response(exc: errors.ServerError) -> Response:
    """The one place a domain error becomes an HTTP status and a JSON body."""
    status = next(ERROR_STATUS[cls] for cls in type(exc).__mro__ if cls in ERROR_STATUS)
    response = json_response({"error": exc.message}, status)
    if isinstance(exc, CLOSING_ERRORS):
        response.headers["connection"] = "close"
    if isinstance(exc, errors.ServerBusy):
        response.headers["retry-after"] = RETRY_AFTER_SECONDS
    return response


def create_app(
    settings: ServerSettings,
    *,
    on_load_failure: Callable[[str], None] | None = None,
    convert: Converter | None = None,
    local_dir: Path | None = None,
    load_before_serving: bool = False,
    grpc: bool = False,
    candidate_dir: Path | None = None,
    candidate_error: str | None = None,
    download: Download | None = None,
) -> FastAPI:
    """Build the app; its lifespan starts loading the model in the background.

    `on_load_failure` is called (from the loader thread) with the one-line reason when start-up
    fails; the CLI uses it to exit non-zero. `convert` replaces the compiled path's converter;
    `local_dir` is an artifact directory already fetched (by the parent of worker processes),
    `download` the model's download when the CLI started it before its imports.
    `load_before_serving` loads during start-up instead, so the server accepts no connection
    before the model is ready: with several workers on one socket, a request then never lands
    on a worker that is still loading (the workers that are up take it). `grpc` also serves
    the protocol over gRPC on settings.grpc_port (unless 0) in the same loop and data plane
    (the CLI's processes do; in-process test apps need not bind a port). With a candidate
    (settings.candidate_uri, docs/rollouts.md), `candidate_dir` / `candidate_error` are what
    the parent of worker processes found when it fetched it.
    """
    metrics = Metrics()
    metrics.versions.loading(settings.model_version, STABLE)
    drift = DriftMonitor(settings.drift_window, metrics.registry)
    versions = Versions(settings, metrics.versions) if settings.candidate_uri else None
    plane = DataPlane(
        on_rows=metrics.observe_rows, max_rows=settings.max_rows, drift=drift, versions=versions
    )
    loader = ModelLoader(
        settings, plane, metrics, on_load_failure, convert, local_dir,
        candidate_dir, candidate_error, download,
    )  # fmt: skip
    deadlines = BodyDeadlines(settings.body_timeout_seconds)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        watchdog = asyncio.create_task(deadlines.watch(), name="body-deadlines")
        drift_task = asyncio.create_task(drift.watch(), name="drift") if drift.size else None
        copies_task = None
        if versions is not None:  # shadow and agreement copies, off the request path
            copies_task = asyncio.create_task(versions.run(), name="copies")
        if load_before_serving:
            await asyncio.to_thread(loader.load)
        else:
            loader.start()
        grpc_server = None
        if grpc and settings.grpc_port:
            from model_server.protocols import v2_grpc  # imports grpc only when it is served

            grpc_server = await v2_grpc.start(settings, plane, metrics)
        yield
        if grpc_server is not None:
            await grpc_server.stop(v2_grpc.GRACE_SECONDS)
        watchdog.cancel()
        if drift_task is not None:
            drift_task.cancel()
        if copies_task is not None:
            copies_task.cancel()
        plane.close()

    # /docs and /redoc load their JavaScript and CSS from the server itself (DOCS_ASSETS), not
    # from a CDN: a cluster without internet access would show a blank page.
    app = FastAPIOffline(
        static_url=DOCS_ASSETS,
        title="mlmodel-server",
        version=version("mlmodel-server"),
        summary="Serves one scikit-learn/ONNX model: seed /predict, KServe V1, Open Inference V2.",
        lifespan=lifespan,
        # Prometheus is the metrics story here; skip OpenTelemetry's per-request checks.
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
    )
    app.state.plane = plane
    app.state.metrics = metrics
    _install_error_handlers(app)
    routers = [protocol.router(plane) for protocol in (seed, v1, v2, drift_routes)]
    for router in routers:
        app.include_router(router)

    app.openapi = _document(app, plane)  # type: ignore[method-assign]

    @app.get(
        METRICS_PATH,
        summary="Prometheus metrics",
        tags=["metrics"],
        response_class=Response,
        responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
    )
    async def metrics_text() -> Response:
        drift.refresh()  # this worker's drift gauges, current at the scrape
        if versions is not None:
            versions.flush()  # and its versions' counts (other workers': within FLUSH_S)
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    app.add_middleware(HotRoutes, routes=_hot_routes(routers))
    app.add_middleware(
        RequestGuard,
        max_bytes=settings.max_request_bytes,
        max_in_flight=settings.max_connections,
        deadlines=deadlines,
    )
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app


def _document(app: FastAPI, plane: DataPlane) -> Callable[[], dict[str, Any]]:
    """app.openapi: the generic document until the model is ready, then the model's own."""
    generic = app.openapi

    def document() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        base = generic()
        if not plane.ready:
            app.openapi_schema = None  # build again once the model is known
            return base
        app.openapi_schema = schemas.describe_model(base, plane.runtime().metadata)
        return app.openapi_schema

    return document


def _hot_routes(routers: list[APIRouter]) -> list[APIRoute]:
    """The prediction routes: POST endpoints whose only parameters are the request and path."""
    return [
        route
        for router in routers
        for route in router.routes
        if isinstance(route, APIRoute) and route.methods == {"POST"} and route.path in HOT_PATHS
    ]


class HotRoutes:
    """POSTs to the prediction routes go straight to their endpoint.

    FastAPI's per-request routing and dependency solving cost more than the compiled model's
    prediction (~60 us against ~10 us); these endpoints take only the request and string path
    parameters, so calling them directly is the same request handling without that overhead.
    Everything else (and every other method) goes through FastAPI as usual.
    """

    def __init__(self, app: ASGIApp, routes: list[APIRoute]) -> None:
        self.app = app
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Dispatch a hot route, or pass the request on."""
        if scope["type"] == "http" and scope["method"] == "POST":
            path = get_route_path(scope)
            for route in self.routes:
                match = route.path_regex.match(path)
                if match is not None:
                    scope["route"] = route
                    await self._call(route, match.groupdict(), scope, receive, send)
                    return
        await self.app(scope, receive, send)

    @staticmethod
    async def _call(
        route: APIRoute, params: dict[str, str], scope: Scope, receive: Receive, send: Send
    ) -> None:
        try:
            response = await route.endpoint(request=Request(scope, receive), **params)
        except errors.ServerError as exc:
            response = error_response(exc)
        except ClientDisconnect:
            scope[CLIENT_GONE] = True  # metrics count it as 499
            return  # the client left mid-body: nobody to answer
        await response(scope, receive, send)


def _install_error_handlers(app: FastAPI) -> None:
    async def domain(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, errors.ServerError)
        return error_response(exc)

    async def validation(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        first: dict[str, Any] = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(part) for part in first.get("loc", ()))
        return json_response({"error": f"{where}: {first.get('msg', 'invalid request')}"}, 422)

    async def http(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        response = json_response({"error": str(exc.detail)}, exc.status_code)
        response.headers.update(exc.headers or {})
        return response

    async def unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unexpected error serving %s %s", request.method, request.url.path)
        return json_response({"error": f"internal error: {type(exc).__name__}"}, 500)

    app.add_exception_handler(errors.ServerError, domain)
    app.add_exception_handler(RequestValidationError, validation)
    app.add_exception_handler(HTTPException, http)
    app.add_exception_handler(Exception, unexpected)


class BodyDeadlines:
    """Requests still sending their body, and the moment each must have finished.

    One watchdog task sweeps them a few times per timeout and cancels the handler of any that
    is late, instead of a timer per request: the hot path only adds and removes a dict entry
    and a scope key. The body reader (`protocols.common.read_body`) removes the scope key
    BODY_READING as soon as the body is complete, so a slow prediction is never cut short;
    RequestGuard turns the cancellation into a 408 and closes the connection, freeing the body.
    """

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.interval = min(0.5, timeout / 5)
        self.reading: dict[asyncio.Task[Any], tuple[float, Scope]] = {}

    def sweep(self, now: float) -> None:
        """Cancel every handler whose body is overdue (and mark its scope TIMED_OUT)."""
        for task, (deadline, scope) in list(self.reading.items()):
            if deadline <= now and scope.get(BODY_READING):
                del self.reading[task]
                scope[TIMED_OUT] = True
                task.cancel("request body deadline")

    async def watch(self) -> None:
        """Sweep forever (the app's lifespan cancels this)."""
        while True:
            await asyncio.sleep(self.interval)
            self.sweep(time.monotonic())


class RequestGuard:
    """Limits for every request but probes and metrics: in flight, body size, body deadline.

    - more than `max_in_flight` requests at once: 503 + Retry-After, before the body is read;
    - a body over `max_bytes` (from Content-Length up front, or counted while streaming): 413;
    - a body not complete within the deadline: 408, connection closed (see BodyDeadlines).
    A handler whose body is incomplete is waiting for it, with no answer started; the only
    routes that read bodies are the prediction POSTs, which answer after reading.
    """

    def __init__(
        self, app: ASGIApp, max_bytes: int, max_in_flight: int, deadlines: BodyDeadlines
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.max_in_flight = max_in_flight
        self.deadlines = deadlines
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Refuse, or pass on one request under the limits."""
        if scope["type"] != "http" or scope["path"] in UNGUARDED_PATHS:
            await self.app(scope, receive, send)
            return
        length = _content_length(scope)
        refusal = self._refusal(length)
        if refusal is not None:
            await error_response(refusal)(scope, receive, send)
            return
        task = asyncio.current_task()
        assert task is not None  # ASGI apps run in a task
        reading = self.deadlines.reading
        reading[task] = (time.monotonic() + self.deadlines.timeout, scope)
        scope[BODY_READING] = True
        self.in_flight += 1
        try:
            await self.app(scope, receive if length is not None else self._counting(receive), send)
        except asyncio.CancelledError:
            if not scope.get(TIMED_OUT):
                raise
            task.uncancel()  # our own cancellation: answer instead
            await error_response(self._timed_out())(scope, receive, send)
        finally:
            self.in_flight -= 1
            reading.pop(task, None)

    def _refusal(self, length: int | None) -> errors.ServerError | None:
        if self.in_flight >= self.max_in_flight:
            return errors.ServerBusy(
                f"{self.in_flight} requests are in flight, the most this server takes at once "
                "(MODEL_SERVER_MAX_CONNECTIONS); retry shortly"
            )
        if length is not None and length > self.max_bytes:
            return self._too_large(length)
        return None

    def _too_large(self, size: int) -> errors.PayloadTooLarge:
        return errors.PayloadTooLarge(
            f"the request body has {size} bytes; the limit is {self.max_bytes} "
            "(MODEL_SERVER_MAX_REQUEST_BYTES)"
        )

    def _timed_out(self) -> errors.RequestTimeout:
        return errors.RequestTimeout(
            f"the request body was not complete after {self.deadlines.timeout:g} s "
            "(MODEL_SERVER_BODY_TIMEOUT_SECONDS)"
        )

    def _counting(self, receive: Receive) -> Receive:
        """`receive` that refuses a body without Content-Length once it passes the limit."""
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise self._too_large(seen)
            return message

        return counted


def _content_length(scope: Scope) -> int | None:
    for key, raw in scope["headers"]:
        if key == b"content-length":
            try:
                return int(raw)
            except ValueError:
                return None
    return None
