"""The lowering's core (issue 13): the graph walk, constant folding, the permutation bookkeeping, and
dynamic dims, checked against onnxruntime on hand-built ONNX models."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import need


@pytest.fixture(scope="module")
def tf():
    need("tensorflow", "onnx", "onnxruntime")
    from converter.deps import require

    return require("tensorflow")


def _model(nodes, inputs, outputs, inits=(), opset=17):
    from onnx import TensorProto, helper, numpy_helper

    def vi(name, shape, dtype=TensorProto.FLOAT):
        return helper.make_tensor_value_info(name, dtype, shape)

    graph = helper.make_graph(nodes, "g", [vi(*i) for i in inputs], [vi(*o) for o in outputs],
                              [numpy_helper.from_array(a, n) for n, a in inits])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


def _ort(model, feeds):
    import onnxruntime as ort

    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def test_broadcasting_ops_match_onnxruntime_at_two_batch_sizes(tf):
    from onnx import helper

    from converter.formats.tf.lower.harness import lower_model, run

    nodes = [helper.make_node("Add", ["x", "b"], ["s"]), helper.make_node("Mul", ["s", "y"], ["m"]),
             helper.make_node("Div", ["m", "b"], ["d"]), helper.make_node("Max", ["d", "x", "y"], ["out"])]
    model = _model(nodes, [("x", ["batch", 3, 4]), ("y", [4])], [("out", ["batch", 3, 4])],
                   [("b", np.linspace(1, 2, 12, dtype=np.float32).reshape(3, 4))])
    lowered = lower_model(model)
    assert lowered.inputs[0].shape == ("batch", 3, 4)
    rng = np.random.default_rng(0)
    for batch in (1, 5):
        feeds = {"x": rng.standard_normal((batch, 3, 4), dtype=np.float32),
                 "y": rng.standard_normal(4, dtype=np.float32)}
        got = run(lowered, model, feeds)
        np.testing.assert_allclose(got[0], _ort(model, feeds)[0], rtol=1e-6, atol=1e-6)


def test_missing_ops_are_named_all_at_once(tf):
    from onnx import helper

    from converter.formats.tf.lower import LoweringError, lower, missing_ops
    from converter.formats.onnx import io_specs

    nodes = [helper.make_node("NoSuchOp", ["x"], ["a"]), helper.make_node("AlsoMissing", ["a"], ["b"]),
             helper.make_node("NoSuchOp", ["b"], ["out"])]
    model = _model(nodes, [("x", [2])], [("out", [2])])
    assert missing_ops(model) == [("NoSuchOp", 17), ("AlsoMissing", 17)]
    with pytest.raises(LoweringError, match="NoSuchOp.*AlsoMissing"):
        lower(model, *io_specs(model))


def test_elementwise_op_keeps_a_channels_last_layout_without_transposes(tf):
    """A value laid out NHWC (as a conv leaves it) goes through Add with a per-channel bias and Mul
    with no Transpose: the bias constant is laid out in numpy instead."""
    from converter.formats.tf.lower import Ctx, V, channels_last, lookup
    from onnx import helper

    cx = Ctx(tf, np, 17)
    onnx_x = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)  # NCHW
    x = V(tf.constant(np.transpose(onnx_x, channels_last(4))), channels_last(4))
    bias = cx.const(np.array([1, 2, 3], np.float32).reshape(3, 1, 1))
    scale = cx.const(np.float32(2.0))
    (s,) = lookup("Add", 17)(cx, helper.make_node("Add", ["x", "b"], ["s"]), [x, bias])
    (m,) = lookup("Mul", 17)(cx, helper.make_node("Mul", ["s", "k"], ["m"]), [s, scale])
    assert m.perm == channels_last(4) and cx.transposes == 0
    want = (onnx_x + np.array([1, 2, 3], np.float32).reshape(3, 1, 1)) * 2
    np.testing.assert_array_equal(cx.onnx(m).numpy(), want)
    assert cx.transposes == 1  # materialising ONNX order is the one Transpose
    # a lower-rank live operand is brought to the same layout
    y = V(tf.constant(np.ones((4, 5), np.float32)))
    (z,) = lookup("Sub", 17)(cx, helper.make_node("Sub", ["m", "y"], ["z"]), [m, y])
    np.testing.assert_array_equal(cx.onnx(z).numpy(), want - 1)


def test_constant_inputs_fold_and_mark_all_outputs_every_value(tf):
    from onnx import helper

    from converter.formats.tf.lower.harness import lower_model, run

    nodes = [helper.make_node("Add", ["c", "c"], ["c2"]), helper.make_node("Mul", ["x", "c2"], ["m"]),
             helper.make_node("Sub", ["m", "x"], ["out"])]
    model = _model(nodes, [("x", ["n"])], [("out", ["n"])], [("c", np.array([3.0], np.float32))])
    lowered = lower_model(model, mark_all=True)
    ops = [n.op for n in lowered.graph_def.node]
    assert "AddV2" not in ops  # c + c was computed at conversion time
    assert lowered.value_names == ("out", "c2", "m")
    got = run(lowered, model, {"x": np.array([1, 2], np.float32)})
    np.testing.assert_array_equal(got[0], [5, 10])
    np.testing.assert_array_equal(got[2], [6, 12])
