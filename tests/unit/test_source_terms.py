"""Source terms for ONNX nodes (converter/formats/onnx/scopes.py): module paths recovered from the
TorchScript exporter's / optimum's scoped node names, and the dynamo exporter's annotations read
into an in-memory map, so an error can name ``attn (torch.nn.MultiheadAttention)``."""

from __future__ import annotations

import pytest

from converter.core import reported_meta
from converter.formats.onnx.scopes import describe, scoped_path, source_map, source_term
from tests.conftest import need


@pytest.mark.parametrize("name, path", [
    ("/bert/encoder/layer.0/attention/self/MatMul", "bert.encoder.layer.0.attention.self"),
    ("/attn/MatMul_1", "attn"),
    ("/ff/ff.0/MatMul", "ff.0"),  # Sequential "ff", its item 0: the index joins the container's name
    ("/blocks.0/lin/Gemm", "blocks.0.lin"),  # ModuleList "blocks" is never a scope of its own
    ("/model/layers.11/self_attn/q_proj/MatMul", "model.layers.11.self_attn.q_proj"),
    ("/enc/seq/seq.2/Relu", "enc.seq.2"),
    ("/Add_1", ""),  # the top-level module's own forward
    ("node_MatMul_3", None),  # dynamo's names carry no scope
    ("Identity_24", None),
])
def test_module_path_from_a_scoped_node_name(name, path):
    assert scoped_path(name) == path


def test_the_module_list_tells_a_nested_module_from_a_container_index():
    # a module "seq" holding a submodule also called "seq": only the module list can tell
    assert scoped_path("/seq/seq.0/Gemm", {"seq": "x", "seq.seq": "x", "seq.seq.0": "x"}) == "seq.seq.0"
    assert scoped_path("/seq/seq.0/Gemm", {"seq": "x", "seq.0": "x"}) == "seq.0"


def test_source_term_prefers_the_recorded_map_then_the_scoped_name():
    recorded = {"node_permute": "attn (torch.nn.MultiheadAttention), aten.permute"}
    assert source_term("node_permute", recorded) == "attn (torch.nn.MultiheadAttention), aten.permute"
    assert source_term("/bert/encoder/layer.0/attention/self/Softmax", recorded) == "bert.encoder.layer.0.attention.self"
    assert source_term("/Add", None) == "the top-level module"
    assert source_term("node_MatMul_3", recorded) is None
    assert describe("norm1", "torch.nn.modules.normalization.LayerNorm") == "norm1 (torch.nn.LayerNorm)"


def test_map_from_dynamo_annotations_and_scoped_names_and_it_stays_out_of_the_report():
    need("onnx")
    from onnx import TensorProto, helper

    def node(op, name, scopes=None, classes=None):
        n = helper.make_node(op, ["x"], [f"{name}_out"], name=name)
        if scopes is not None:
            for key, value in (("pkg.torch.onnx.name_scopes", scopes), ("pkg.torch.onnx.class_hierarchy", classes)):
                prop = n.metadata_props.add()
                prop.key, prop.value = key, repr(value)
        return n

    nodes = [
        node("Transpose", "node_permute", ["", "attn", "permute"],
             ["m.Block", "torch.nn.modules.activation.MultiheadAttention", "aten.permute.default"]),
        node("Add", "node_add", ["", "add_1"], ["m.Block", "aten.add.Tensor"]),
        node("Shape", "node_Shape_0", ["_empty_nn_module_stack_from_metadata_hook", "sym_size_int"],
             ["_empty_nn_module_stack_from_metadata_hook", "aten.sym_size.int"]),
        node("Relu", "/ff/ff.1/Relu"),
        node("Relu", "node_Relu_9"),
    ]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])
    model = helper.make_model(helper.make_graph(nodes, "g", [x], [x]))
    terms = source_map(model, {"ff.1": "torch.nn.modules.activation.ReLU"})
    assert terms == {"node_permute": "attn (torch.nn.MultiheadAttention), aten.permute",
                     "node_add": "the top-level module (m.Block), aten.add.Tensor",
                     "node_Shape_0": "aten.sym_size.int",
                     "/ff/ff.1/Relu": "ff.1 (torch.nn.ReLU)"}
    assert reported_meta({"exporter": "dynamo", "_source_map": terms}) == {"exporter": "dynamo"}
