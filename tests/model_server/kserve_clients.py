"""Runs inside KServe's own venv (kserve 0.21, see test_kserve_clients.py), not the workspace's.

Talks to a running mlmodel-server with KServe's InferenceRESTClient (V1 and V2, JSON and binary
tensors) and InferenceGRPCClient (typed and raw contents), and prints what it saw as one JSON
object: python kserve_clients.py HTTP_URL GRPC_TARGET MODEL ROWS_JSON
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import grpc
import httpx
import numpy as np
from kserve import InferenceGRPCClient, InferenceRESTClient, InferInput, InferRequest, RESTConfig
from kserve.protocol.infer_type import RequestedOutput


def request(model: str, rows: np.ndarray, raw: bool, outputs: bool = True) -> InferRequest:
    tensor = InferInput("input-0", list(rows.shape), "FP64")
    if raw:
        tensor.set_data_from_numpy(rows, binary_data=True)
    else:
        tensor.set_data_from_numpy(rows, binary_data=False)
    wanted = [RequestedOutput("predict"), RequestedOutput("predict_proba")] if outputs else None
    return InferRequest(model_name=model, infer_inputs=[tensor], request_outputs=wanted)


def answers(response: Any) -> dict[str, Any]:
    return {o.name: np.asarray(o.as_numpy()).tolist() for o in response.outputs}


async def rest(url: str, model: str, rows: np.ndarray) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    v1 = InferenceRESTClient(RESTConfig(protocol="v1", retries=0))
    seen["v1_live"] = await v1.is_server_live(url)
    seen["v1_model_ready"] = await v1.is_model_ready(url, model)
    seen["v1"] = await v1.infer(url, {"instances": rows.tolist()}, model_name=model)
    await v1.close()
    v2 = InferenceRESTClient(RESTConfig(protocol="v2", retries=0))
    seen["v2_live"] = await v2.is_server_live(url)
    seen["v2_ready"] = await v2.is_server_ready(url)
    seen["v2_model_ready"] = await v2.is_model_ready(url, model)
    seen["v2_json"] = answers(await v2.infer(url, request(model, rows, raw=False), model))
    seen["v2_binary"] = answers(await v2.infer(url, request(model, rows, raw=True), model))
    try:
        await v2.infer(url, request(model, rows[:, :3].copy(), raw=False), model)
        seen["v2_bad"] = "answered"
    except httpx.HTTPStatusError as exc:
        seen["v2_bad"] = [exc.response.status_code, exc.response.text]
    await v2.close()
    return seen


async def over_grpc(target: str, model: str, rows: np.ndarray) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    client = InferenceGRPCClient(target)
    seen["live"] = await client.is_server_live()
    seen["ready"] = await client.is_server_ready()
    seen["model_ready"] = await client.is_model_ready(model)
    seen["typed"] = answers(await client.infer(request(model, rows, raw=False)))
    seen["raw"] = answers(await client.infer(request(model, rows, raw=True)))
    seen["default"] = answers(await client.infer(request(model, rows, raw=False, outputs=False)))
    try:
        await client.infer(request(model, rows[:, :3].copy(), raw=False))
        seen["bad"] = "answered"
    except grpc.RpcError as exc:
        seen["bad"] = [exc.code().name, exc.details()]
    await client.close()
    return seen


async def main() -> None:
    url, target, model, rows_json = sys.argv[1:5]
    rows = np.array(json.loads(rows_json), dtype=np.float64)
    print(
        json.dumps(
            {"rest": await rest(url, model, rows), "grpc": await over_grpc(target, model, rows)}
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
