"""The gRPC floor: a grpc.aio server on uvloop that answers every ModelInfer with a constant.

What http-floor (floor.py) is for the HTTP rows: the least a Python server on the model
server's gRPC stack can do (grpcio's asyncio server, uvloop, the model server's generated
stubs, which still parse each request), without decoding tensors or running a model. The reply
is built once: the shape our server gives a 1-row iris request (output `predict`, INT64, one
label in raw_output_contents), whatever the request's rows.

`python -m bench.server.apps.grpc_floor --port P --model iris --label 0 [--workers N]`: with
N > 1 it starts N processes of itself on the one port (SO_REUSEPORT), as our server does.
"""

from __future__ import annotations

import argparse
import os
import socket
import struct
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

import grpc
import uvloop

from model_server.grpc_v2 import grpc_predict_v2_pb2 as pb
from model_server.grpc_v2 import grpc_predict_v2_pb2_grpc as pb_grpc

HOST = "127.0.0.1"


class Floor(pb_grpc.GRPCInferenceServiceServicer):  # type: ignore[misc]
    """ModelInfer answered with one prebuilt reply; readiness always true."""

    def __init__(self, reply: Any) -> None:
        self.reply = reply

    async def ModelInfer(self, request: Any, context: Any) -> Any:
        """The constant reply, without reading the request's tensors."""
        return self.reply

    async def ServerReady(self, request: Any, context: Any) -> Any:
        """Ready as soon as it serves."""
        return pb.ServerReadyResponse(ready=True)

    async def ModelReady(self, request: Any, context: Any) -> Any:
        """Every model name is ready: there is no model."""
        return pb.ModelReadyResponse(ready=True)


def constant_reply(model: str, label: int) -> Any:
    """A ModelInferResponse like our server's for one iris row: `predict`, INT64, [label]."""
    reply = pb.ModelInferResponse(model_name=model)
    reply.outputs.add(name="predict", datatype="INT64", shape=[1])
    reply.raw_output_contents.append(struct.pack("<q", label))
    return reply


async def serve(port: int, reply: Any, reuseport: bool) -> None:
    """Serve until killed (the benchmark stops the whole process group)."""
    server = grpc.aio.server(options=[("grpc.so_reuseport", int(reuseport))])
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(Floor(reply), server)
    server.add_insecure_port(f"{HOST}:{port}")
    await server.start()
    await server.wait_for_termination()


def port_free(port: int) -> bool:
    """Whether the port can be bound without SO_REUSEPORT (nothing else has it)."""
    with socket.socket() as probe:
        try:
            probe.bind((HOST, port))
        except OSError:
            return False
    return True


def main(argv: Sequence[str] | None = None) -> int:
    """One server process, or (--workers N > 1) N of them sharing the port."""
    parser = argparse.ArgumentParser(prog="python -m bench.server.apps.grpc_floor")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--model", default="iris", help="model_name in the reply")
    parser.add_argument("--label", type=int, default=0, help="the one predicted label")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--reuseport", action="store_true", help="(set for worker processes)")
    args = parser.parse_args(argv)
    if args.workers == 1:
        uvloop.run(serve(args.port, constant_reply(args.model, args.label), args.reuseport))
        return 0
    if not port_free(args.port):  # SO_REUSEPORT would share it with whoever has it
        print(f"grpc_floor: {HOST}:{args.port} is in use", file=sys.stderr)
        return 1
    child = [sys.executable, "-m", "bench.server.apps.grpc_floor", "--port", str(args.port),
             "--model", args.model, "--label", str(args.label), "--reuseport"]  # fmt: skip
    workers = [subprocess.Popen(child) for _ in range(args.workers)]
    # A worker that exits ends the floor (the benchmark then sees it fail); the rest go with
    # the process group when the benchmark stops it.
    pid, status = os.wait()
    for worker in workers:
        if worker.pid != pid:
            worker.kill()
    return os.waitstatus_to_exitcode(status)


if __name__ == "__main__":
    sys.exit(main())
