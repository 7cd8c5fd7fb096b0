"""The pure pieces of the ONNX -> TF export: the ONNX graph rewrites done before onnx2tf (the
results must compute exactly what the graph did, in onnxruntime), the ladder of shapes it tries,
and how validation feeds a model that takes another layout or fixed shapes."""

from __future__ import annotations

import numpy as np
import pytest

from converter.core import Artifact, Format, TensorSpec
from tests.conftest import need


def _model(nodes, inputs, outputs, inits=()):
    from onnx import helper

    graph = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9)
    return model


def _run(model, feeds):
    import onnxruntime as ort

    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)


def test_transposes_that_move_axis_0_are_pinned_and_compute_the_same():
    need("onnx", "onnxruntime")
    import onnx
    from onnx import TensorProto, helper

    from converter.formats.tf.onnx_prep import pin_axis0_transposes

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4, 4, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 2, 4, 8])
    z = helper.make_tensor_value_info("z", TensorProto.FLOAT, [2, 4, 4, 8])
    model = _model([helper.make_node("Transpose", ["x"], ["y"], name="heads_last", perm=[2, 0, 1, 3]),
                    helper.make_node("Transpose", ["x"], ["z"], name="keeps_0", perm=[0, 2, 1, 3])], [x], [y, z])
    feeds = {"x": np.random.default_rng(0).standard_normal((2, 4, 4, 8)).astype(np.float32)}
    before = _run(model, feeds)
    assert pin_axis0_transposes(onnx, model) == 1
    onnx.checker.check_model(model)
    ops = [(n.op_type, list(n.attribute[0].ints) if n.attribute else None) for n in model.graph.node]
    assert ops == [("Unsqueeze", None), ("Transpose", [0, 3, 1, 2, 4]), ("Squeeze", None), ("Transpose", [0, 2, 1, 3])]
    for a, b in zip(before, _run(model, feeds)):
        np.testing.assert_array_equal(a, b)


def test_transposes_next_to_rnn_ops_are_left_to_onnx2tf():
    need("onnx", "onnxruntime")
    import onnx
    from onnx import TensorProto, helper

    from converter.formats.tf.onnx_prep import pin_axis0_transposes

    rng = np.random.default_rng(1)
    inits = [onnx.numpy_helper.from_array(rng.standard_normal(s).astype(np.float32), n)
             for n, s in (("W", (1, 12, 3)), ("R", (1, 12, 4)))]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 5, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    model = _model([helper.make_node("Transpose", ["x"], ["t"], perm=[1, 0, 2]),
                    helper.make_node("GRU", ["t", "W", "R"], ["y"], hidden_size=4)], [x], [y], inits)
    assert pin_axis0_transposes(onnx, model) == 0


def _view_model(extra=()):
    """x[batch,4,8] -> view(batch * 4, 8) -> Relu -> view(batch, 32), targets computed from x.shape as
    torch.onnx writes them."""
    import onnx
    from onnx import TensorProto, helper

    def const(name, values):
        return onnx.numpy_helper.from_array(np.array(values, np.int64), name)

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 32])
    nodes = [helper.make_node("Shape", ["x"], ["b"], start=0, end=1),
             helper.make_node("Mul", ["b", "four"], ["b4"]),
             helper.make_node("Concat", ["b4", "eight"], ["t1"], axis=0),
             helper.make_node("Reshape", ["x", "t1"], ["r1"], name="view"),
             helper.make_node("Relu", ["r1"], ["h"]),
             helper.make_node("Concat", ["b", "thirty_two"], ["t2"], axis=0),
             helper.make_node("Reshape", ["h", "t2"], ["y"], name="view_1"), *extra]
    return _model(nodes, [x], [y], [const("four", [4]), const("eight", [8]), const("thirty_two", [32])])


def test_view_targets_computed_from_shapes_become_constants_with_minus_one_for_the_batch():
    need("onnx", "onnxruntime")
    import onnx
    from onnx import helper

    from converter.formats.tf.onnx_fold import RESHAPE_FOLD, fold_shape_arithmetic

    spec = [TensorSpec("x", ("batch", 4, 8), "float32")]
    model = _view_model()
    feeds = [{"x": np.random.default_rng(n).standard_normal((n, 4, 8)).astype(np.float32)} for n in (1, 5)]
    before = [_run(model, f) for f in feeds]
    assert fold_shape_arithmetic(onnx, model, spec, {"x": ("batch", 4, 8)}) == {RESHAPE_FOLD: 2}
    onnx.checker.check_model(model, full_check=True)
    assert [n.op_type for n in model.graph.node] == ["Reshape", "Relu", "Reshape"]  # the arithmetic is gone
    targets = {i.name: onnx.numpy_helper.to_array(i).tolist() for i in model.graph.initializer}
    assert sorted(targets.values()) == [[-1, 8], [-1, 32]]
    inner = {v.name: [d.dim_value or None for d in v.type.tensor_type.shape.dim] for v in model.graph.value_info}
    assert inner["h"] == [None, 8]  # inferred again: known where the target says so
    for f, want in zip(feeds, before):
        np.testing.assert_array_equal(_run(model, f)[0], want[0])
    # nothing is folded with two dynamic dims, or where a shape may depend on input values
    assert fold_shape_arithmetic(onnx, _view_model(), spec, {"x": ("batch", "seq", 8)}) == {}
    nonzero = _view_model([helper.make_node("NonZero", ["x"], ["nz"])])
    assert fold_shape_arithmetic(onnx, nonzero, spec, {"x": ("batch", 4, 8)}) == {}
    # nor where an input is read only for its shape (it would be left unread)
    from onnx import TensorProto

    z = helper.make_tensor_value_info("z", TensorProto.FLOAT, ["batch", 8])
    by_shape = _model([helper.make_node("Shape", ["z"], ["s"]), helper.make_node("Reshape", ["x", "s"], ["y"])],
                      [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 8]), z],
                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 8])])
    two = [TensorSpec("x", ("batch", 8), "float32"), TensorSpec("z", ("batch", 8), "float32")]
    assert fold_shape_arithmetic(onnx, by_shape, two, {"x": ("batch", 8), "z": ("batch", 8)}) == {}
    assert [n.input[1] for n in by_shape.graph.node if n.op_type == "Reshape"] == ["s"]
    assert not by_shape.graph.initializer


def test_shape_values_the_same_at_every_size_become_constants():
    """BERT's attention scale as optimum exports it: x / sqrt(x.shape[-1]), with batch and sequence
    dynamic. The scale is folded (onnx2tf computed it on a channels-last shape); x.shape[1], which
    moves with the sequence, is not, nor x.shape[1] // 8, which only moves at larger sizes."""
    need("onnx", "onnxruntime")
    import onnx
    from onnx import TensorProto, helper

    from converter.formats.tf.onnx_fold import VALUE_FOLD, fold_shape_arithmetic

    def const(name, values, dtype=np.int64):
        return onnx.numpy_helper.from_array(np.array(values, dtype), name)

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "seq", 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "seq", 8])
    nodes = [helper.make_node("Shape", ["x"], ["s"]),
             helper.make_node("Slice", ["s", "minus_one", "big"], ["last"]),
             helper.make_node("Cast", ["last"], ["lastf"], to=TensorProto.FLOAT),
             helper.make_node("Sqrt", ["lastf"], ["scale"], name="sqrt"),
             helper.make_node("Div", ["x", "scale"], ["d"]),
             helper.make_node("Gather", ["s", "one"], ["seq"], axis=0),
             helper.make_node("Cast", ["seq"], ["seqf"], to=TensorProto.FLOAT),
             helper.make_node("Mul", ["d", "seqf"], ["m"]),
             # seq // 8: 0 at every small size, not at 15 or 17
             helper.make_node("Div", ["seq", "eight"], ["chunks"]),
             helper.make_node("Cast", ["chunks"], ["chunksf"], to=TensorProto.FLOAT),
             helper.make_node("Add", ["m", "chunksf"], ["y"])]
    model = _model(nodes, [x], [y], [const("minus_one", [-1]), const("big", [2**62]), const("one", 1),
                                     const("eight", 8)])
    spec = [TensorSpec("x", ("batch", "seq", 8), "float32")]
    feeds = [{"x": np.random.default_rng(n).standard_normal((n, n + 2 + 9 * n, 8)).astype(np.float32)} for n in (1, 4)]
    before = [_run(model, f) for f in feeds]
    assert fold_shape_arithmetic(onnx, model, spec, {"x": ("batch", "seq", 8)}) == {VALUE_FOLD: 1}
    onnx.checker.check_model(model, full_check=True)
    assert "Sqrt" not in [n.op_type for n in model.graph.node] and "Gather" in [n.op_type for n in model.graph.node]
    folded = [onnx.numpy_helper.to_array(i) for i in model.graph.initializer if i.name.endswith("/ck_const")]
    assert [a.tolist() for a in folded] == [[pytest.approx(8 ** 0.5)]]
    for f, want in zip(feeds, before):
        np.testing.assert_allclose(_run(model, f)[0], want[0], rtol=1e-6)


def test_inputs_are_renamed_and_a_passed_through_input_keeps_its_output_name():
    need("onnx", "onnxruntime")
    from onnx import TensorProto, helper

    from converter.formats.tf.onnx_prep import rename_inputs

    a = helper.make_tensor_value_info("input:0", TensorProto.FLOAT, [2])
    b = helper.make_tensor_value_info("b", TensorProto.FLOAT, [2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])
    model = _model([helper.make_node("Add", ["input:0", "b"], ["y"])], [a, b], [y, b])
    assert rename_inputs(model) == ["ck_input_0", "ck_input_1"]
    one, two = np.ones(2, np.float32), np.full(2, 2, np.float32)
    got = _run(model, {"ck_input_0": one, "ck_input_1": two})
    assert [o.name for o in model.graph.output] == ["y", "b"]
    np.testing.assert_array_equal(got[0], one + two)
    np.testing.assert_array_equal(got[1], two)


def test_shape_ladder_goes_from_dynamic_to_batch_only_to_static():
    from converter.formats.tf.from_onnx import example_sizes, variants

    seq = [TensorSpec("x", ("batch", "seq", 32), "float32")]
    ladder = variants(seq, example_sizes(seq, None))
    assert [v.label for v in ladder] == ["as the model declares them", "dynamic batch, other dims fixed", "static"]
    assert [dict(v.fixed) for v in ladder] == [{}, {"x": [None, 4, 32]}, {"x": [2, 4, 32]}]
    image = [TensorSpec("x", ("batch", 3, 32, 32), "float32")]
    assert [v.label for v in variants(image, example_sizes(image, None))] == ["as the model declares them", "static"]
    # the export example's sizes win over the seeded defaults
    sizes = example_sizes(seq, {"x": np.zeros((5, 7, 32), np.float32)})
    assert sizes == {"batch": 5, "seq": 7}
    assert len(variants([TensorSpec("x", (1, 8), "float32")], {})) == 1


def test_validation_feeds_follow_the_models_layout_and_fixed_shapes(tmp_path):
    need("onnx", "onnxruntime")
    import onnx
    from onnx import TensorProto, helper

    from converter.formats import onnx as onnx_fmt
    from converter.parity.validate import feeds_for, fit_fixed_shape

    rng = np.random.default_rng(2)
    feeds = [{"x": rng.standard_normal((n, 3, 4, 5)).astype(np.float32)} for n in (2, 3)]
    nhwc = Artifact(Format("tfjs"), None, (TensorSpec("x", (None, 4, 5, 3), "float32"),),
                    meta={"input_layout": {"x": {"layout": "NHWC", "source_layout": "NCHW", "perm": [0, 2, 3, 1]}}})
    out, note = feeds_for(nhwc, feeds)
    assert out[1]["x"].shape == (3, 4, 5, 3) and np.array_equal(out[1]["x"], feeds[1]["x"].transpose(0, 2, 3, 1))
    assert note == "inputs transposed as the model takes them: x NCHW->NHWC"

    # a model that takes x[2,3,4,5] only: the batch-3 sample is replaced, and run through the reference
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 4, 5])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3, 4, 5])
    onnx.save(_model([helper.make_node("Relu", ["x"], ["y"])], [x], [y]), str(tmp_path / "relu.onnx"))
    reference = Artifact(onnx_fmt.FORMAT, tmp_path / "relu.onnx", (TensorSpec("x", ("batch", 3, 4, 5), "float32"),))
    refs = [{"y": np.maximum(f["x"], 0)} for f in feeds]
    fixed = nhwc.with_(meta={"fixed_shape": {"x": [2, 3, 4, 5]}})
    new_feeds, new_refs, note = fit_fixed_shape(reference, fixed, feeds, refs)
    assert [f["x"].shape for f in new_feeds] == [(2, 3, 4, 5), (2, 3, 4, 5)]
    assert new_feeds[0]["x"] is feeds[0]["x"] and new_refs[0] is refs[0]
    np.testing.assert_array_equal(new_refs[1]["y"], np.maximum(new_feeds[1]["x"], 0))
    assert note == ("the model takes fixed shapes x[2,3,4,5]; sample(s) 1 of other sizes were replaced by seeded "
                    "samples of that shape")
    unchanged = fit_fixed_shape(reference, nhwc, feeds, refs)
    assert unchanged[1] is refs and unchanged[2] is None


@pytest.mark.parametrize("layout", ["nchw", "NHWC", ""])
def test_unknown_layout_is_a_usage_error(layout):
    from converter.errors import UsageError
    from converter.formats.tf.from_onnx import OnnxToTf

    with pytest.raises(UsageError, match="unknown layout"):
        OnnxToTf(tfjs_layout=layout)
