"""The ONNX check's own protobuf messages (mlmodel_artifact.onnx_proto) read a model exactly as
`onnx`'s generated classes do, for every field the check looks at."""

from __future__ import annotations

import onnx
import pytest
from google.protobuf.descriptor import FieldDescriptor
from onnx import TensorProto, helper

from mlmodel_artifact import ArtifactError, onnx_proto
from mlmodel_artifact.onnx_model import check_onnx_model

# Wire types: what makes two field declarations read the same bytes alike.
LENGTH_DELIMITED = {FieldDescriptor.TYPE_MESSAGE, FieldDescriptor.TYPE_BYTES,
                    FieldDescriptor.TYPE_STRING}  # fmt: skip
VARINT = {FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_ENUM}


def wire(kind: int) -> str:
    return "length-delimited" if kind in LENGTH_DELIMITED else "varint" if kind in VARINT else "?"


@pytest.mark.parametrize("message", sorted(onnx_proto.FIELDS))
def test_every_field_has_onnx_s_number_label_and_wire_type(message: str) -> None:
    theirs = getattr(onnx, message).DESCRIPTOR.fields_by_name
    ours = onnx_proto.messages().ModelProto.DESCRIPTOR.file.message_types_by_name[message]
    for name, number, label, kind, type_name in onnx_proto.FIELDS[message]:
        field = theirs[name]
        assert field.number == number, f"{message}.{name}"
        assert field.is_repeated == (label == onnx_proto.REPEATED), f"{message}.{name}"
        assert wire(field.type) == wire(kind) != "?", f"{message}.{name}"
        if type_name is not None:  # a message we look into: the same message as onnx's
            assert field.message_type.name == type_name, f"{message}.{name}"
        assert ours.fields_by_name[name].number == number


def test_the_hand_written_file_descriptor_is_what_descriptor_pb2_serializes() -> None:
    from google.protobuf import descriptor_pb2

    expected = descriptor_pb2.FileDescriptorProto(
        name="mlmodel_artifact/onnx_subset.proto", package=onnx_proto.PACKAGE, syntax="proto2"
    )
    for message, fields in onnx_proto.FIELDS.items():
        described = expected.message_type.add(name=message)
        for name, number, label, kind, type_name in fields:
            field = described.field.add(name=name, number=number, label=label, type=kind)
            if type_name is not None:
                field.type_name = f".{onnx_proto.PACKAGE}.{type_name}"
    ours = descriptor_pb2.FileDescriptorProto.FromString(onnx_proto.file_descriptor())
    assert ours == expected
    assert onnx_proto.file_descriptor() == expected.SerializeToString(deterministic=True)


def nested_model() -> bytes:
    """Tensors and domains in every place the check looks: initializers, sparse initializers,
    tensor attributes and an If branch's subgraph."""
    out = helper.make_tensor_value_info("label", TensorProto.FLOAT, [None, 4])
    inner = helper.make_node("Identity", ["input"], ["label"], domain="ai.onnx")
    branch = helper.make_graph([inner], "branch", [], [out], [helper.make_tensor("B", 1, [1], [1])])
    flag = helper.make_tensor("flag", TensorProto.BOOL, [], [True])
    node = helper.make_node("If", ["flag"], ["label"], then_branch=branch, else_branch=branch)
    constant = helper.make_node(
        "Constant", [], ["c"], value=helper.make_tensor("C", TensorProto.FLOAT, [1], [2.0])
    )
    sparse = helper.make_sparse_tensor(
        helper.make_tensor("S", TensorProto.FLOAT, [1], [3.0]),
        helper.make_tensor("S_idx", TensorProto.INT64, [1], [0]),
        [4],
    )
    graph = helper.make_graph(
        [constant, node],
        "g",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, 4])],
        [out],
        [flag],
        sparse_initializer=[sparse],
    )
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 3)]
    return bytes(helper.make_model(graph, opset_imports=opsets).SerializeToString())


def test_our_messages_see_what_onnx_sees() -> None:
    raw = nested_model()
    ours = onnx_proto.messages().ModelProto.FromString(raw)
    theirs = onnx.ModelProto.FromString(raw)
    assert [o.domain.decode() for o in ours.opset_import] == [o.domain for o in theirs.opset_import]
    assert [n.domain.decode() for n in ours.graph.node] == [n.domain for n in theirs.graph.node]
    (_, ours_if), (_, theirs_if) = ours.graph.node, theirs.graph.node
    assert ours_if.attribute[0].HasField("g") and theirs_if.attribute[0].HasField("g")
    assert ours_if.attribute[0].g.initializer[0].name == b"B"
    assert ours.graph.node[0].attribute[0].t.name == b"C"
    assert ours.graph.sparse_initializer[0].values.name == b"S"
    assert ours.graph.sparse_initializer[0].indices.name == b"S_idx"
    check_onnx_model(raw, "nested")  # standard domains, no external data: accepted


def test_a_name_that_is_not_utf8_is_still_named() -> None:
    weights = TensorProto(name="W", data_type=TensorProto.FLOAT, dims=[1])
    weights.data_location = TensorProto.EXTERNAL
    graph = helper.make_graph([], "g", [], [], [weights])
    raw = helper.make_model(graph).SerializeToString().replace(b"B\x01W", b"B\x01\xff")
    with pytest.raises(ArtifactError) as caught:  # field 8 (name) holds the byte 0xff
        check_onnx_model(raw, "odd")
    assert caught.value.reason == "ExternalData"
    assert "tensor(s) " + repr("\\xff") + " in external files" in str(caught.value)
