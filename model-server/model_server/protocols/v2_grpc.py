"""Open Inference Protocol V2 over gRPC (`inference.GRPCInferenceService`).

The same data plane as the REST paths: a ModelInferRequest becomes the tensors the V2 REST
decoder takes (`v2.model_input`), typed `contents` as flat arrays of their datatype and
`raw_input_contents` through the binary extension's decoder (`binary.raw_tensor`), so inputs
are checked alike and errors say the same things. Domain errors become gRPC status codes here
and only here (ERROR_CODE); a request the model cannot take is INVALID_ARGUMENT, never a crash.

Answers mirror the request: `raw_output_contents` when the inputs came raw (what tritonclient
sends and reads), typed `contents` when they came typed. The stubs are generated from
`grpc_v2/grpc_predict_v2.proto` at build time.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final, TypeVar

import grpc
import numpy as np
from google.protobuf.message import DecodeError

from model_server import binary, errors
from model_server.dataplane import DataPlane, Prediction
from model_server.grpc_v2 import grpc_predict_v2_pb2 as pb
from model_server.grpc_v2 import grpc_predict_v2_pb2_grpc as pb_grpc
from model_server.metrics import Metrics
from model_server.protocols import v2
from model_server.runtimes.base import Array, Runtime
from model_server.settings import KEEP_ALIVE_SECONDS, ServerSettings
from model_server.tensors import shown_name, shown_value

log = logging.getLogger("model_server")

PROTOCOL: Final = "grpc"  # the metrics' protocol label
VERSION_KEY: Final = "model-version"  # initial metadata: the version that answered
SERVICE: Final = "/inference.GRPCInferenceService/"
ERROR_CODE: Final[dict[type[errors.ServerError], grpc.StatusCode]] = {
    errors.MalformedRequest: grpc.StatusCode.INVALID_ARGUMENT,
    errors.InvalidInput: grpc.StatusCode.INVALID_ARGUMENT,
    errors.ModelNotFound: grpc.StatusCode.NOT_FOUND,
    errors.RequestTimeout: grpc.StatusCode.DEADLINE_EXCEEDED,
    errors.PayloadTooLarge: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.ModelNotReady: grpc.StatusCode.UNAVAILABLE,
    errors.ServerBusy: grpc.StatusCode.UNAVAILABLE,
}
# Typed contents: the InferTensorContents field of each datatype the server takes, and the
# numpy type its values become (what binary tensor data of that datatype becomes).
CONTENTS: Final = {
    "BOOL": "bool_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}
# Output datatypes (v2.datatype) -> the contents field their values go in.
OUTPUT_CONTENTS: Final = {
    **CONTENTS,
    "INT8": "int_contents",
    "INT16": "int_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
}
# The RPCs and their message types (the generated stubs' registration, kept in `register`).
METHODS: Final[dict[str, tuple[Any, Any]]] = {
    "ServerLive": (pb.ServerLiveRequest, pb.ServerLiveResponse),
    "ServerReady": (pb.ServerReadyRequest, pb.ServerReadyResponse),
    "ModelReady": (pb.ModelReadyRequest, pb.ModelReadyResponse),
    "ServerMetadata": (pb.ServerMetadataRequest, pb.ServerMetadataResponse),
    "ModelMetadata": (pb.ModelMetadataRequest, pb.ModelMetadataResponse),
    "ModelInfer": (pb.ModelInferRequest, pb.ModelInferResponse),
}
GRACE_SECONDS: Final = 5.0  # calls in flight at shutdown get this long to finish
# A connection gets GOAWAY after this long (clients open a new one, transparently): behind a
# Service, long-lived HTTP/2 connections would otherwise never move to pods added by a
# scale-up; and since gRPC has no per-message deadline, it is also what bounds a call whose
# message trickles in (age + grace), while at most max_connections calls hold a slot.
CONNECTION_AGE_MS: Final = 60_000
CONNECTION_AGE_GRACE_MS: Final = 10_000
IDLE_CONNECTION_MS: Final = 300_000

Request = TypeVar("Request")
Reply = TypeVar("Reply")
Handler = Callable[[Any, Request, grpc.aio.ServicerContext], Awaitable[Reply]]


def rpc(handler: Handler[Request, Reply]) -> Handler[Request, Reply]:
    """Count and time the call under its method name, and answer domain errors with their
    status code (ERROR_CODE); anything unexpected is INTERNAL and logged, never a dead process.
    """
    route = SERVICE + handler.__name__

    async def call(self: Servicer, request: Request, context: grpc.aio.ServicerContext) -> Reply:
        start = time.perf_counter()
        code = grpc.StatusCode.OK
        try:
            return await handler(self, request, context)
        except errors.ServerError as exc:
            code = next(ERROR_CODE[c] for c in type(exc).__mro__ if c in ERROR_CODE)
            details = exc.message
        except asyncio.CancelledError:
            code = grpc.StatusCode.CANCELLED  # the client went away or its deadline passed
            raise
        except Exception as exc:
            log.exception("unexpected error serving gRPC %s", route)
            code = grpc.StatusCode.INTERNAL
            details = f"internal error: {type(exc).__name__}"
        finally:
            self.metrics.observe_request(
                route, "POST", code.name, time.perf_counter() - start, PROTOCOL
            )
        # The status is set here, outside the except blocks, not by context.abort in them:
        # abort raises an error that grpc keeps on the call, whose context (the domain error)
        # holds the handler's frames and so the request, which stayed in memory after the
        # call (an 8 MB message that failed kept ~350 MB: a few such calls and the pod was
        # OOM-killed). grpc sends no message with a status that is not OK.
        context.set_code(code)
        context.set_details(details)
        return None  # type: ignore[return-value]

    call.__name__ = handler.__name__
    call.__doc__ = handler.__doc__
    return call


class Servicer(pb_grpc.GRPCInferenceServiceServicer):
    """The six RPCs of the protocol this server implements, over the shared data plane."""

    def __init__(self, plane: DataPlane, metrics: Metrics) -> None:
        self.plane = plane
        self.metrics = metrics

    @rpc
    async def ServerLive(self, request: Any, context: Any) -> Any:
        """Always live while the process answers."""
        return pb.ServerLiveResponse(live=True)

    @rpc
    async def ServerReady(self, request: Any, context: Any) -> Any:
        """Ready once the model is loaded and warmed up."""
        return pb.ServerReadyResponse(ready=self.plane.ready)

    @rpc
    async def ModelReady(self, request: Any, context: Any) -> Any:
        """Whether the named model (version) is ready; NOT_FOUND for a model or version this
        server does not serve; false for a candidate that failed to load."""
        if not self.plane.ready:
            return pb.ModelReadyResponse(ready=False)
        try:
            self.plane.runtime_named(request.name, request.version or None)
        except errors.ModelNotReady:
            return pb.ModelReadyResponse(ready=False)
        return pb.ModelReadyResponse(ready=True)

    @rpc
    async def ServerMetadata(self, request: Any, context: Any) -> Any:
        """Name and version; the binary tensor extension is REST's, so none are listed."""
        server = v2.server_metadata()
        return pb.ServerMetadataResponse(name=server["name"], version=server["version"])

    @rpc
    async def ModelMetadata(self, request: Any, context: Any) -> Any:
        """The model's inputs and outputs, as in the REST metadata document."""
        runtime = self.plane.runtime_named(request.name, request.version or None)
        meta = v2.model_metadata(runtime.metadata, self.plane.version_names())
        tensor = pb.ModelMetadataResponse.TensorMetadata
        return pb.ModelMetadataResponse(
            name=meta["name"],
            versions=meta["versions"],
            platform=meta["platform"],
            inputs=[tensor(name=t["name"], datatype=t["datatype"], shape=t["shape"])
                    for t in meta["inputs"]],
            outputs=[tensor(name=t["name"], datatype=t["datatype"], shape=t["shape"])
                     for t in meta["outputs"]],
        )  # fmt: skip

    @rpc
    async def ModelInfer(self, request: Any, context: Any) -> Any:
        """A prediction, answered in the form the inputs came in (raw or typed contents); the
        reply's model_version (and, with a candidate configured, initial metadata
        `model-version`) says which version answered.

        `request` is the message's bytes (`register`): parsed here, like a REST body, inline
        when small, else in a thread one big message at a time (`DataPlane.offload`): a
        message of many tiny fields takes ~40 times its size parsed, and parsing it on the
        event loop held every other request (and the probes) meanwhile."""
        plane = self.plane
        message: bytes = request
        size = len(message)
        request = await plane.offload(size, lambda: parse_infer_request(message))
        version = request.model_version or None
        runtime = plane.runtime_named(request.model_name, version)

        # The answer's attempt takes the parsed message; another (a candidate's copy, queued
        # meanwhile) parses the bytes again: a queued copy holds the message as received, not
        # the parsed form, which can be ~40 times bigger.
        parsed = [request]

        async def attempt(runtime: Runtime, protocol: str | None) -> tuple[list[str], Prediction]:
            info = runtime.metadata
            taken = parsed.pop() if parsed else None

            def decode() -> tuple[Any, list[str]]:
                infer = taken if taken is not None else parse_infer_request(message)
                body = request_body(infer, plane.max_rows, binary.Takes.of(info, plane.max_rows))
                return v2.model_input(body, info, plane.max_rows)

            x, wanted = await plane.offload(size, decode)
            proba = "predict_proba" in wanted
            return wanted, await plane.predict(runtime, x, probabilities=proba, protocol=protocol)

        wanted, result, answered = await plane.answer(
            runtime,
            attempt,
            PROTOCOL,
            context.invocation_metadata,
            explicit=version is not None,
            size=size,
        )
        info = answered.metadata
        if plane.versions is not None:
            # grpc.aio sends initial metadata as a batch of its own (~+20 % CPU a call, no
            # way to add it to the reply's batch), so only while a candidate is configured:
            # the reply's model_version always says who answered.
            await context.send_initial_metadata(((VERSION_KEY, info.version),))
        reply = pb.ModelInferResponse(
            model_name=info.name, model_version=info.version, id=request.id
        )
        raw = len(request.raw_input_contents) > 0
        for name in wanted:
            array = v2.output_array(name, result)
            tensor = reply.outputs.add(name=name, datatype=v2.datatype(array), shape=array.shape)
            if raw:
                reply.raw_output_contents.append(binary.output_bytes(array))
            else:
                typed_contents(tensor.contents, tensor.datatype, array)
        return reply


def request_body(request: Any, max_rows: int, takes: binary.Takes) -> dict[str, Any]:
    """The request as the V2 REST decoder's body: tensors with flat typed `data` (each checked
    against what the model `takes` before its values are read)."""
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise errors.MalformedRequest(
            f"raw_input_contents has {len(raw)} entries for {len(request.inputs)} inputs; "
            "send one per input, in order, or use contents"
        )
    inputs = []
    for i, tensor in enumerate(request.inputs):
        where = shown_name(tensor.name, f"inputs[{i}]")
        shape = list(tensor.shape)
        if raw:
            if tensor.HasField("contents"):
                raise errors.MalformedRequest(
                    f"{where} has contents while the request uses raw_input_contents; "
                    "use one or the other for all inputs"
                )
            data = binary.raw_tensor(
                raw[i], tensor.datatype, shape, where, max_rows, "raw_input_contents of", takes
            )
        else:
            data = typed_values(tensor, shape, where, max_rows, takes)
        inputs.append({"name": tensor.name, "datatype": tensor.datatype, "shape": shape,
                       "data": data})  # fmt: skip
    body: dict[str, Any] = {"inputs": inputs}
    if request.outputs:
        body["outputs"] = [{"name": output.name} for output in request.outputs]
    return body


def typed_values(
    tensor: Any, shape: list[int], where: str, max_rows: int, takes: binary.Takes
) -> Any:
    """A tensor's typed contents as a flat array (strings for BYTES), checked against its shape
    and what the model `takes` the way raw contents are."""
    field = CONTENTS.get(tensor.datatype)
    if field is None:
        supported = ", ".join(CONTENTS)
        raise errors.InvalidInput(
            f"{where} has datatype {shown_value(tensor.datatype)}; supported: {supported}"
        )
    shape, count = binary.check_tensor(shape, tensor.datatype, where, max_rows, takes)
    values = getattr(tensor.contents, field)
    if len(values) != count:
        raise errors.MalformedRequest(
            f"{where} has {len(values)} values in contents.{field}; its shape {shape} takes {count}"
        )
    if field != "bytes_contents":
        return np.fromiter(values, dtype=binary.NUMPY_TYPES[tensor.datatype], count=len(values))
    try:
        return [v.decode() for v in values]
    except UnicodeDecodeError:
        raise errors.InvalidInput(f"{where}: a BYTES element is not UTF-8 text") from None


def typed_contents(contents: Any, datatype: str, array: Array) -> None:
    """Put an output's values in the contents field of its datatype."""
    field = getattr(contents, OUTPUT_CONTENTS[datatype])
    flat = array.reshape(-1)
    if datatype == "BYTES":
        field.extend(v if isinstance(v, bytes) else str(v).encode() for v in flat.tolist())
    else:
        field.extend(flat.tolist())


def parse_infer_request(raw: bytes) -> Any:
    """A ModelInferRequest from its bytes; a message that does not parse is INVALID_ARGUMENT
    with words of ours (grpc's own deserializer answered UNKNOWN with protobuf's)."""
    try:
        return pb.ModelInferRequest.FromString(raw)
    except DecodeError:
        raise errors.MalformedRequest("the message is not a valid ModelInferRequest") from None


def register(servicer: Servicer, server: grpc.aio.Server) -> None:
    """The generated registration, but ModelInfer takes the message's bytes (parsed by the
    servicer, see `Servicer.ModelInfer`)."""
    handlers = {}
    for method, (request_type, reply_type) in METHODS.items():
        handlers[method] = grpc.unary_unary_rpc_method_handler(
            getattr(servicer, method),
            request_deserializer=None if method == "ModelInfer" else request_type.FromString,
            response_serializer=reply_type.SerializeToString,
        )
    generic = grpc.method_handlers_generic_handler(SERVICE.strip("/"), handlers)
    server.add_generic_rpc_handlers((generic,))


async def start(settings: ServerSettings, plane: DataPlane, metrics: Metrics) -> grpc.aio.Server:
    """Serve the protocol on settings.host:settings.grpc_port in the running event loop.

    Bounds as for HTTP: a message over max_request_bytes is refused (RESOURCE_EXHAUSTED) by
    gRPC before it is buffered whole; at most max_connections calls run at once per process
    (the next is RESOURCE_EXHAUSTED); connections are idle at most 5 minutes and live at most
    a minute (then GOAWAY, 10 s grace: see CONNECTION_AGE_MS). Several worker processes share
    the port (SO_REUSEPORT; the parent checked it was free), so the kernel spreads connections
    over them; a single process binds it alone, so a port in use is an error, not a silent
    share with another server.
    """
    server = grpc.aio.server(
        maximum_concurrent_rpcs=settings.max_connections,
        options=[
            ("grpc.max_receive_message_length", settings.max_request_bytes),
            ("grpc.so_reuseport", int(settings.workers > 1)),
            ("grpc.max_connection_idle_ms", IDLE_CONNECTION_MS),
            ("grpc.max_connection_age_ms", CONNECTION_AGE_MS),
            ("grpc.max_connection_age_grace_ms", CONNECTION_AGE_GRACE_MS),
            ("grpc.http2.max_ping_strikes", 2),
            ("grpc.keepalive_time_ms", KEEP_ALIVE_SECONDS * 12_000),
        ],
    )
    register(Servicer(plane, metrics), server)
    address = f"{settings.host}:{settings.grpc_port}"
    try:
        server.add_insecure_port(address)
    except RuntimeError as exc:
        raise errors.ModelLoadError(f"cannot listen for gRPC on {address}: {exc}") from None
    await server.start()
    log.info("serving the Open Inference Protocol over gRPC on %s", address)
    return server
