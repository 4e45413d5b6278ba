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


@functools.cache
def messages() -> Messages:
    """Build the subset's message classes once (in a private pool)."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    file = descriptor_pb2.FileDescriptorProto(
        name="mlmodel_artifact/onnx_subset.proto", package=PACKAGE, syntax="proto2"
    )
    for message, fields in FIELDS.items():
        described = file.message_type.add(name=message)
        for name, number, label, kind, type_name in fields:
            field = described.field.add(name=name, number=number, label=label, type=kind)
            if type_name is not None:
                field.type_name = f".{PACKAGE}.{type_name}"
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return Messages(
        *(
            message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{PACKAGE}.{name}"))
            for name in Messages._fields
        )
    )
