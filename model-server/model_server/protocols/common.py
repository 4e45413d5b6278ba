"""What every protocol shares: body parsing, JSON responses, tensor-friendly values."""

from __future__ import annotations

import json
from typing import Any, Final

import numpy as np
import orjson
from fastapi import Request
from fastapi.responses import Response
from starlette.requests import ClientDisconnect

from model_server.errors import InvalidInput, MalformedRequest
from model_server.runtimes.base import Array

JSON: Final = "application/json"
_NUMPY: Final = orjson.OPT_SERIALIZE_NUMPY


# Scope key the app's RequestGuard sets while a body is being read; removed once it is complete
# (that stops the body deadline, so a slow prediction is never cut short).
BODY_READING: Final = "model_server.body_reading"


async def read_body(request: Request) -> bytes:
    """The whole request body; ClientDisconnect if the client leaves first.

    A small body arrives in one message, so the usual case is one `receive` (cheaper than
    Starlette's `Request.body()`, which goes through an async generator).
    """
    receive = request.receive
    message = await receive()
    if message["type"] == "http.disconnect":
        raise ClientDisconnect()
    body: bytes = message.get("body", b"")
    if message.get("more_body", False):
        chunks = [body]
        while message.get("more_body", False):
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ClientDisconnect()
            chunks.append(message.get("body", b""))
        body = b"".join(chunks)
    request.scope.pop(BODY_READING, None)
    return body


JSON_DEPTH_LIMIT: Final = 1024  # orjson's: deeper nesting is refused while parsing


def parse_object(raw: bytes, expected: str) -> tuple[dict[str, Any], bool]:
    """The body as a JSON object, and whether its text has any true/false in it.

    `expected` names the keys for the error message.
    """
    body = parse_json(raw)
    if not isinstance(body, dict):
        raise InvalidInput(f"the request body must be a JSON object with {expected}")
    return body, b"true" in raw or b"false" in raw


def parse_json(body: bytes) -> Any:
    """Parse with orjson; fall back to the stdlib only to accept NaN/Infinity/1e999 literals.

    Those are not JSON, but Python clients send them; the data plane then rejects the value
    by name instead of the whole body being called malformed. Nesting deeper than orjson's
    limit is malformed too (400), never a RecursionError.
    """
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        reason = str(exc)
        if "depth" in reason or "recursion" in reason:
            raise MalformedRequest(
                f"the request body nests arrays or objects deeper than {JSON_DEPTH_LIMIT} levels"
            ) from None
        try:
            parsed = json.loads(body)  # NaN, Infinity, 1e999 (read as infinity)
        except (ValueError, RecursionError):
            raise MalformedRequest(f"the request body is not valid JSON: {reason}") from None
        # but not a lone UTF-16 surrogate ("\ud800"), which orjson refuses and the stdlib
        # takes: it is no Unicode text, and echoing it would fail the answer (a 500)
        try:
            json.dumps(parsed, ensure_ascii=False).encode()
        except UnicodeEncodeError:
            raise MalformedRequest(
                "the request body is not valid JSON: a string holds a lone UTF-16 surrogate"
            ) from None
        return parsed


def json_response(content: Any, status: int = 200) -> Response:
    """A JSON response; numpy arrays and scalars are serialized natively by orjson."""
    return Response(orjson.dumps(content, option=_NUMPY), status_code=status, media_type=JSON)


def values(array: Array) -> Any:
    """An array orjson can write directly (numbers), or a list (strings, objects)."""
    if array.dtype.kind in "fiub":
        return np.ascontiguousarray(array)
    return array.tolist()


def value(array: Array, index: int) -> Any:
    """One element as a plain JSON value."""
    return array[index].item() if hasattr(array[index], "item") else array[index]


def flag(parameters: Any, name: str, where: str) -> bool:
    """A boolean switch from a `parameters` object (absent means false)."""
    if parameters is None:
        return False
    if not isinstance(parameters, dict):
        raise InvalidInput(f"{where} must be an object")
    setting = parameters.get(name, False)
    if not isinstance(setting, bool):
        raise InvalidInput(f"{where}.{name} must be true or false")
    return setting
