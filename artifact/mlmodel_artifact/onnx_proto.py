"""The few fields of ONNX's protobuf messages that `check_onnx_model` reads, without `onnx`.

Importing the `onnx` package to parse a model costs a serving process ~5 MB of resident memory
and ~80 ms of start-up (its C++ extension registers every operator schema, it pulls in
ml_dtypes and its helpers), for a check that only needs the wire format. These messages carry
the same field numbers and wire types as onnx/onnx.proto (proto2); every other field of a
model is kept as an unknown field, untouched. Strings are read as bytes (a domain or a tensor
name that is not UTF-8 is still named, not a parse error), and the messages nobody needs to
look into (functions, training graphs, external-data entries) as bytes, which is their wire
format too: the check only counts them.

The classes come from a private descriptor pool (package `mlmodel_artifact.onnx_subset`), so
they never clash with `onnx`'s own `onnx.ModelProto` where both are loaded (the trainer).
"""

from __future__ import annotations

import functools
from typing import Any, Final, NamedTuple

PACKAGE: Final = "mlmodel_artifact.onnx_subset"
_OPTIONAL: Final = 1  # FieldDescriptorProto.Label.LABEL_OPTIONAL
REPEATED: Final = 3  # LABELREPEATED
_INT32: Final = 5  # FieldDescriptorProto.Type.TYPE_INT32 (an enum's wire format)
_INT64: Final = 3  # TYPE_INT64
_MESSAGE: Final = 11  # TYPE_MESSAGE
_BYTES: Final = 12  # TYPE_BYTES

# message -> (field name, number, label, type, message type or None), as in onnx/onnx.proto.
FIELDS: Final[dict[str, tuple[tuple[str, int, int, int, str | None], ...]]] = {
    "ModelProto": (
        ("opset_import", 8, REPEATED, _MESSAGE, "OperatorSetIdProto"),
        ("graph", 7, _OPTIONAL, _MESSAGE, "GraphProto"),
        ("training_info", 20, REPEATED, _BYTES, None),  # TrainingInfoProto
        ("functions", 25, REPEATED, _BYTES, None),  # FunctionProto
    ),
    "OperatorSetIdProto": (
        ("domain", 1, _OPTIONAL, _BYTES, None),
        ("version", 2, _OPTIONAL, _INT64, None),
    ),
    "GraphProto": (
        ("node", 1, REPEATED, _MESSAGE, "NodeProto"),
        ("initializer", 5, REPEATED, _MESSAGE, "TensorProto"),
        ("sparse_initializer", 15, REPEATED, _MESSAGE, "SparseTensorProto"),
    ),
    "NodeProto": (
        ("attribute", 5, REPEATED, _MESSAGE, "AttributeProto"),
        ("domain", 7, _OPTIONAL, _BYTES, None),
    ),
    "AttributeProto": (
        ("t", 5, _OPTIONAL, _MESSAGE, "TensorProto"),
        ("g", 6, _OPTIONAL, _MESSAGE, "GraphProto"),
        ("tensors", 10, REPEATED, _MESSAGE, "TensorProto"),
        ("graphs", 11, REPEATED, _MESSAGE, "GraphProto"),
        ("sparse_tensor", 22, _OPTIONAL, _MESSAGE, "SparseTensorProto"),
        ("sparse_tensors", 23, REPEATED, _MESSAGE, "SparseTensorProto"),
    ),
    "TensorProto": (
        ("name", 8, _OPTIONAL, _BYTES, None),
        ("external_data", 13, REPEATED, _BYTES, None),  # StringStringEntryProto
        ("data_location", 14, _OPTIONAL, _INT32, None),  # enum DataLocation
    ),
    "SparseTensorProto": (
        ("values", 1, _OPTIONAL, _MESSAGE, "TensorProto"),
        ("indices", 2, _OPTIONAL, _MESSAGE, "TensorProto"),
    ),
}
EXTERNAL: Final = 1  # TensorProto.DataLocation.EXTERNAL


class Messages(NamedTuple):
    """The message classes `check_onnx_model` parses with."""

    ModelProto: Any
    TensorProto: Any


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        out.append(low | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number: int, value: int | str | bytes) -> bytes:
    """One field of a descriptor message in protobuf's wire format (varint or length-delimited)."""
    if isinstance(value, int):
        return _varint(number << 3) + _varint(value)
    data = value.encode() if isinstance(value, str) else value
    return _varint(number << 3 | 2) + _varint(len(data)) + data


def file_descriptor() -> bytes:
    """The subset as a serialized google.protobuf.FileDescriptorProto.

    Written here rather than built with `descriptor_pb2`, whose import alone costs a serving
    process ~2 MB (every descriptor message class of protobuf). Field numbers of
    descriptor.proto: FileDescriptorProto name 1, package 2, message_type 4, syntax 12;
    DescriptorProto name 1, field 2; FieldDescriptorProto name 1, number 3, label 4, type 5,
    type_name 6. (A unit test compares it with descriptor_pb2's own serialization.)
    """
    file = _field(1, "mlmodel_artifact/onnx_subset.proto") + _field(2, PACKAGE)
    for message, fields in FIELDS.items():
        described = _field(1, message)
        for name, number, label, kind, type_name in fields:
            field = _field(1, name) + _field(3, number) + _field(4, label) + _field(5, kind)
            if type_name is not None:
                field += _field(6, f".{PACKAGE}.{type_name}")
            described += _field(2, field)
        file += _field(4, described)
    return file + _field(12, "proto2")


@functools.cache
def messages() -> Messages:
    """Build the subset's message classes once (in a private pool)."""
    from google.protobuf import descriptor_pool, message_factory

    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(file_descriptor())
    return Messages(
        *(
            message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{PACKAGE}.{name}"))
            for name in Messages._fields
        )
    )
