"""The Open Inference Protocol's binary tensor data extension (framework-free).

A request may carry tensors as raw bytes after its JSON: the `Inference-Header-Content-Length`
header says how long the JSON part is, and each input sent that way has
`parameters.binary_data_size` instead of `data`; the bytes follow in input order, little-endian,
BOOL one byte per value, BYTES as a 4-byte little-endian length then the bytes, per element.
tritonclient sends every tensor so by default. Outputs come back the same way when an output
asks for `binary_data: true`, or the request's parameters set `binary_data_output: true` (what
tritonclient sends when it names no outputs).

Framing that does not add up (a header length beyond the body, sizes that disagree with the
shape, bytes left over or missing) is MalformedRequest (400) saying which; a binary tensor's
values then go through the same checks as JSON ones (422 naming the feature).
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import orjson

from model_server.dataplane import check_rows
from model_server.errors import InvalidInput, MalformedRequest
from model_server.runtimes.base import Array, ModelInfo
from model_server.tensors import SHAPE_RULE, is_shape, shown_name, shown_value

HEADER: Final = b"inference-header-content-length"  # ASGI servers lower-case header names
EXTENSION: Final = "binary_tensor_data"
# Datatypes a binary input may have (what the model server takes), as little-endian numpy types.
NUMPY_TYPES: Final = {
    "BOOL": np.dtype("?"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
}
_LENGTH: Final = struct.Struct("<I")


@dataclass(frozen=True)
class Takes:
    """What the model can take in one request, checked from a raw tensor's shape and datatype
    before its values are read: reading 2 million empty BYTES elements (8 MB) took seconds of
    CPU, in the one big-body slot, before a numeric model's checks refused them."""

    max_values: int | None = None  # max_rows x n_features: no tensor of a request holds more
    strings: bool = True  # whether any feature takes strings (BYTES)

    @classmethod
    def of(cls, info: ModelInfo, max_rows: int) -> Takes:
        """The model's bounds: `max_rows` rows of its features; strings if a feature does."""
        return cls(max_rows * max(info.n_features, 1), info.string_features > 0)

    def check(self, shape: list[int], datatype: Any, where: str) -> int:
        """The tensor's value count, if the model can take that many of that datatype."""
        count = math.prod(shape)
        if self.max_values is not None and count > self.max_values:
            raise InvalidInput(
                f"{where} has shape {shape}: {count} values, more than this model takes in one "
                f"request ({self.max_values})"
            )
        if datatype == "BYTES" and not self.strings:
            raise InvalidInput(f"{where} has datatype 'BYTES'; this model takes numbers only")
        return count


def header_length(headers: list[tuple[bytes, bytes]], body_size: int) -> int | None:
    """The JSON part's length from the request's headers (ASGI's raw list: read directly, a
    JSON request pays one scan of a few names), or None for a plain JSON body."""
    raw = next((v for k, v in headers if k == HEADER), None)
    if raw is None:
        return None
    value = raw.decode("latin-1")
    # at most 19 digits before int(): Python refuses to read more than 4300 (ValueError, a 500)
    if not (value.isascii() and value.isdigit()) or len(value) > 19 or int(value) > body_size:
        raise MalformedRequest(
            f"Inference-Header-Content-Length is {value[:20]!r}; it must be the length in "
            f"bytes of the JSON part, at most the body's {body_size} bytes"
        )
    return int(value)


def attach_inputs(
    body: dict[str, Any], blob: bytes, max_rows: int | None, takes: Takes = Takes()
) -> None:
    """Give each input sent as `binary_data_size` bytes its `data`, read from `blob` in order.

    Numbers become a flat array of their datatype, BYTES a list of strings (UTF-8).
    """
    inputs = body.get("inputs")
    offset = 0
    for i, tensor in enumerate(inputs if isinstance(inputs, list) else []):
        where = shown_name(tensor.get("name"), f"inputs[{i}]") if isinstance(tensor, dict) else ""
        size = _binary_size(tensor, where)
        if size is None:
            continue
        if "data" in tensor:
            raise MalformedRequest(f"{where} has both data and parameters.binary_data_size")
        if size > len(blob) - offset:
            raise MalformedRequest(
                f"{where} has binary_data_size {size}, but only {len(blob) - offset} bytes of "
                "binary data are left in the body"
            )
        chunk = blob[offset : offset + size]
        offset += size
        tensor["data"] = raw_tensor(
            chunk,
            tensor.get("datatype"),
            tensor.get("shape"),
            where,
            max_rows,
            "binary_data_size",
            takes,
        )
    if offset != len(blob):
        raise MalformedRequest(
            f"the body has {len(blob) - offset} bytes of binary data beyond the inputs' "
            "binary_data_size (or Inference-Header-Content-Length is short of the JSON part)"
        )


def _binary_size(tensor: Any, where: str) -> int | None:
    if not isinstance(tensor, dict):
        return None
    parameters = tensor.get("parameters")
    if not isinstance(parameters, dict) or "binary_data_size" not in parameters:
        return None
    size = parameters["binary_data_size"]
    if size.__class__ is not int or size < 0:
        raise MalformedRequest(f"{where} binary_data_size must be a non-negative integer")
    return int(size)


def raw_tensor(
    chunk: bytes,
    datatype: Any,
    shape: Any,
    where: str,
    max_rows: int | None,
    size_name: str,
    takes: Takes = Takes(),
) -> Any:
    """One tensor's values from its raw bytes: a flat array of its datatype, or for BYTES a
    list of strings. The shape is checked first (its batch against `max_rows`, its values and
    datatype against what the model `takes`), then that the bytes are exactly what the shape
    takes; `size_name` names the size in messages (the REST extension's binary_data_size,
    gRPC's raw_input_contents)."""
    shape, count = check_tensor(shape, datatype, where, max_rows, takes)
    return _decode(chunk, datatype, shape, count, where, size_name)


def check_tensor(
    shape: Any, datatype: Any, where: str, max_rows: int | None, takes: Takes
) -> tuple[list[int], int]:
    """`shape` if it is a non-empty list of tensor dimensions whose batch (the first) is within
    `max_rows`, else InvalidInput (PayloadTooLarge for the batch); and its value count, which
    the model must be able to take in `datatype` (`Takes.check`)."""
    if not is_shape(shape):
        raise InvalidInput(f"{where} {SHAPE_RULE}")
    check_rows(shape[0], max_rows, where)
    return shape, takes.check(shape, datatype, where)


def _decode(
    chunk: bytes, datatype: Any, shape: list[int], count: int, where: str, size_name: str
) -> Any:
    if datatype == "BYTES":
        return _strings(chunk, count, where)
    dtype = NUMPY_TYPES.get(datatype) if isinstance(datatype, str) else None
    if dtype is None:
        supported = ", ".join([*NUMPY_TYPES, "BYTES"])
        raise InvalidInput(f"{where} has datatype {shown_value(datatype)}; supported: {supported}")
    if len(chunk) != count * dtype.itemsize:
        raise MalformedRequest(
            f"{where} has {size_name} {len(chunk)}, but shape {shape} of {datatype} takes "
            f"{count * dtype.itemsize} bytes"
        )
    if datatype == "BOOL" and chunk.translate(None, b"\x00\x01"):
        raise InvalidInput(f"{where} is BOOL; its bytes must be 0 or 1")
    return np.frombuffer(chunk, dtype=dtype)


def _strings(chunk: bytes, count: int, where: str) -> list[str]:
    """BYTES elements: each a 4-byte little-endian length and that many bytes of UTF-8."""
    values: list[str] = []
    offset = 0
    while offset < len(chunk):
        if len(values) == count:
            raise MalformedRequest(
                f"{where} holds more than the {count} BYTES elements its shape says"
            )
        if offset + 4 > len(chunk):
            raise MalformedRequest(f"{where}: a BYTES element's 4-byte length is cut off")
        (length,) = _LENGTH.unpack_from(chunk, offset)
        offset += 4
        if length > len(chunk) - offset:
            raise MalformedRequest(
                f"{where}: BYTES element {len(values)} says {length} bytes, but only "
                f"{len(chunk) - offset} are left in its binary data"
            )
        try:
            values.append(chunk[offset : offset + length].decode())
        except UnicodeDecodeError:
            raise InvalidInput(f"{where}: BYTES element {len(values)} is not UTF-8 text") from None
        offset += length
    if len(values) != count:
        raise MalformedRequest(
            f"{where} holds {len(values)} BYTES elements; its shape says {count}"
        )
    return values


def wants_binary(body: dict[str, Any]) -> set[str] | bool:
    """Which outputs to answer as binary: True for all (`binary_data_output`), else the names
    of the outputs whose parameters ask for `binary_data`."""
    parameters = body.get("parameters")
    if isinstance(parameters, dict) and parameters.get("binary_data_output") is True:
        return True
    names: set[str] = set()
    outputs = body.get("outputs")
    for output in outputs if isinstance(outputs, list) else []:
        if not isinstance(output, dict):
            continue
        params = output.get("parameters")
        if isinstance(params, dict) and params.get("binary_data") is True:
            names.add(str(output.get("name")))
    return names


def output_bytes(array: Array) -> bytes:
    """One output tensor's raw bytes (little-endian; strings as BYTES elements)."""
    flat = array.reshape(-1)
    if flat.dtype.kind in "OUS":
        parts = []
        for value in flat.tolist():
            data = value if isinstance(value, bytes) else str(value).encode()
            parts.append(_LENGTH.pack(len(data)) + data)
        return b"".join(parts)
    if flat.dtype.kind == "b":
        return flat.astype(np.uint8).tobytes()
    return flat.astype(flat.dtype.newbyteorder("<"), copy=False).tobytes()


def binary_body(header: dict[str, Any], blobs: list[bytes]) -> tuple[bytes, int]:
    """The response body (JSON header then the outputs' bytes) and the header's length."""
    head = orjson.dumps(header, option=orjson.OPT_SERIALIZE_NUMPY)  # JSON outputs are arrays
    return head + b"".join(blobs), len(head)
