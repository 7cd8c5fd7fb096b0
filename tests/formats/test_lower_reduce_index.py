"""Reductions, index and post-processing ops through the lowering with DYNAMIC dims (the conformance
data is static): a seeded model run at two batch sizes against onnxruntime, and a reduction after a
conv that stays channels-last (no Transpose back to NCHW)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import need


def _model():
    """x [batch, 4, 6] -> ReduceMean(axes input 2, opset 18), ArgMax(axis 1), TopK(2, axis 2), GatherElements by the
    ArgMax'd indices, CumSum(axis 1), OneHot(ArgMax, depth 4), NonZero(x > 0.5): seven outputs."""
    from onnx import TensorProto, helper, numpy_helper

    def const(name, value):
        return numpy_helper.from_array(np.asarray(value), name)

    nodes = [
        helper.make_node("ReduceMean", ["x", "axes2"], ["mean"], keepdims=0),
        helper.make_node("ArgMax", ["x"], ["arg"], axis=1, keepdims=1),
        helper.make_node("TopK", ["x", "k"], ["top_v", "top_i"], axis=2),
        helper.make_node("GatherElements", ["x", "arg"], ["picked"], axis=1),
        helper.make_node("CumSum", ["x", "axis1"], ["cum"], reverse=1),
        helper.make_node("Squeeze", ["arg", "axis1"], ["arg2"]),
        helper.make_node("OneHot", ["arg2", "depth", "onoff"], ["hot"], axis=1),
        helper.make_node("Greater", ["x", "half"], ["gt"]),
        helper.make_node("NonZero", ["gt"], ["nz"]),
    ]
    inits = [const("axes2", np.array([2], np.int64)), const("k", np.array([2], np.int64)),
             const("axis1", np.array([1], np.int64)), const("depth", np.array([4], np.int64)),
             const("onoff", np.array([0.0, 1.0], np.float32)), const("half", np.array(0.5, np.float32))]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4, 6])
    outs = [helper.make_tensor_value_info(n, t, None) for n, t in [
        ("mean", 1), ("arg", 7), ("top_v", 1), ("top_i", 7), ("picked", 1), ("cum", 1), ("hot", 1), ("nz", 7)]]
    model = helper.make_model(helper.make_graph(nodes, "reduce_index", [x], outs, inits),
                              opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8  # what onnxruntime 1.23 reads (onnx 1.19 writes 12)
    return model


def test_dynamic_batch_matches_onnxruntime():
    need("onnx", "onnxruntime", "tensorflow")
    import onnxruntime as ort

    from converter.core import TensorSpec
    from converter.formats.tf.lower import lower
    from converter.formats.tf.lower.harness import run

    model = _model()
    lowered = lower(model, [TensorSpec("x", ("batch", 4, 6), "float32")],
                    [TensorSpec(o.name, None, "float32") for o in model.graph.output])
    assert lowered.inputs[0].shape == ("batch", 4, 6)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(3)
    for batch in (1, 5):
        x = rng.random((batch, 4, 6), dtype=np.float32)
        want = session.run(None, {"x": x})
        got = run(lowered, model, [x])
        for name, w, g in zip([o.name for o in model.graph.output], want, got):
            assert g.shape == w.shape and g.dtype == w.dtype, (name, batch, g.shape, w.shape)
            np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6, err_msg=f"{name} at batch {batch}")


@pytest.mark.parametrize("keepdims", [0, 1])
def test_reduction_after_conv_stays_channels_last(keepdims):
    """Conv -> ReduceMax over H, W: the reduction runs on the NHWC tensor's axes 1, 2; the only
    Transpose is the NCHW input's, none is added to bring the conv output back to NCHW."""
    need("onnx", "onnxruntime", "tensorflow")
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from converter.formats.onnx import io_specs
    from converter.formats.tf.lower import lower
    from converter.formats.tf.lower.harness import run

    rng = np.random.default_rng(5)
    w = numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype(np.float32), "w")
    axes = numpy_helper.from_array(np.array([2, 3], np.int64), "axes")
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("ReduceMax", ["c", "axes"], ["y"], keepdims=keepdims)]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, "h", "w"])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    model = helper.make_model(helper.make_graph(nodes, "g", [x], [y], [w, axes]),
                              opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    lowered = lower(model, *io_specs(model))
    transposes = [n for n in lowered.graph_def.node if n.op == "Transpose"]
    assert len(transposes) == 1  # the input's (back to NCHW for [n,c,1,1] is a Reshape: unit axes move)
    feeds = rng.standard_normal((2, 3, 5, 7)).astype(np.float32)
    want = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": feeds})
    np.testing.assert_allclose(run(lowered, model, [feeds])[0], want[0], rtol=1e-5, atol=1e-5)
