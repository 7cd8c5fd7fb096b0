"""The permutation bookkeeping of axis-taking and layout-relabelling handlers: each op run on a value
held channels-last (as a conv leaves it) must give, in ONNX order, what it gives on the same value
held in ONNX order (which the conformance data checks). Eager TensorFlow, no model needed."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import need

RNG = np.random.default_rng(0)
X4 = RNG.standard_normal((2, 3, 4, 5)).astype(np.float32)
X3 = RNG.standard_normal((2, 3, 4)).astype(np.float32)


def _i64(*v):
    return np.array(v, np.int64)


#: name -> (op, attributes, inputs (ONNX order; None: absent), opset, how many outputs)
CASES = {
    "concat": ("Concat", {"axis": 1}, [X4, X4 * 2], 17, 1),
    "concat_neg": ("Concat", {"axis": -1}, [X4, X4 + 1], 17, 1),
    "split": ("Split", {"axis": 1}, [X4, _i64(1, 2)], 17, 2),
    "split_last": ("Split", {"axis": -1, "num_outputs": 2}, [X4], 18, 2),
    "slice": ("Slice", {}, [X4, _i64(1, -1), _i64(3, 0), _i64(1, 3), _i64(1, -2)], 17, 1),
    "gather_scalar": ("Gather", {"axis": 1}, [X4, np.array(2, np.int64)], 17, 1),
    "gather_vector": ("Gather", {"axis": 3}, [X4, _i64(4, 0, -1)], 17, 1),
    "gather_matrix": ("Gather", {"axis": 2}, [X4, np.array([[0, 1], [3, -1]], np.int64)], 17, 1),
    "pad_constant": ("Pad", {}, [X4, _i64(0, 1, 2, 0, 0, 2, 1, 3), np.array(1.5, np.float32)], 17, 1),
    "pad_reflect": ("Pad", {"mode": "reflect"}, [X4, _i64(0, 1, 1, 2, 0, 1, 2, 1)], 17, 1),
    "pad_edge_negative": ("Pad", {"mode": "edge"}, [X4, _i64(0, -1, 2, 1, 0, 1, -1, 2)], 17, 1),
    "softmax": ("Softmax", {"axis": 1}, [X4], 17, 1),
    "softmax_coerced": ("Softmax", {"axis": 1}, [X4], 11, 1),
    "logsoftmax_last": ("LogSoftmax", {"axis": -1}, [X4], 13, 1),
    "hardmax": ("Hardmax", {"axis": 2}, [X4], 13, 1),
    "layernorm": ("LayerNormalization", {"axis": 1}, [X4, np.ones((3, 4, 5), np.float32) * 2,
                                                       np.full((3, 4, 5), 0.5, np.float32)], 17, 3),
    "squeeze": ("Squeeze", {}, [X4[:, :, :1], _i64(2)], 17, 1),
    "unsqueeze": ("Unsqueeze", {}, [X4, _i64(0, 3)], 17, 1),
    "transpose": ("Transpose", {"perm": [0, 3, 1, 2]}, [X4], 17, 1),
    "flatten": ("Flatten", {"axis": 2}, [X4], 17, 1),
    "reshape": ("Reshape", {}, [X4, _i64(0, -1, 5)], 17, 1),
    "shape": ("Shape", {"start": 1}, [X4], 17, 1),
    "tile": ("Tile", {}, [X4, _i64(1, 2, 1, 3)], 17, 1),
    "expand": ("Expand", {}, [X4[:, :1], _i64(2, 3, 4, 5)], 17, 1),
    "prelu_lower_rank": ("PRelu", {}, [X4, np.linspace(0, 1, 5, dtype=np.float32)], 17, 1),
    "where": ("Where", {}, [X4 > 0, X4, np.float32(0)], 17, 1),
    "add_live_lower_rank": ("Add", {}, [X4, RNG.standard_normal((4, 5)).astype(np.float32)], 17, 1),
    "matmul": ("MatMul", {}, [X4, RNG.standard_normal((5, 6)).astype(np.float32)], 17, 1),
    "clip": ("Clip", {}, [X4, np.float32(-0.5), np.float32(0.5)], 17, 1),
    "rank3_concat": ("Concat", {"axis": 1}, [X3, X3], 17, 1),
    # other engineers' handlers under the same contract
    "reduce_mean": ("ReduceMean", {"keepdims": 0}, [X4, _i64(1, 3)], 18, 1),
    "reduce_sum_keep": ("ReduceSum", {"keepdims": 1}, [X4, _i64(-1)], 13, 1),
    "reduce_max_all": ("ReduceMax", {"keepdims": 0}, [X4], 18, 1),
    "argmax": ("ArgMax", {"axis": 1, "keepdims": 1}, [X4], 13, 1),
    "cumsum": ("CumSum", {"reverse": 1}, [X4, np.array(1, np.int64)], 14, 1),
    "topk": ("TopK", {"axis": 1}, [X4, _i64(2)], 11, 2),
    "gather_elements": ("GatherElements", {"axis": 1}, [X4, RNG.integers(0, 3, (2, 2, 4, 5))], 13, 1),
    "trilu": ("Trilu", {"upper": 1}, [X4, np.array(1, np.int64)], 14, 1),
    "batchnorm": ("BatchNormalization", {}, [X4, *[np.linspace(0.5, 1.5, 3, dtype=np.float32)] * 4], 15, 1),
    "instancenorm": ("InstanceNormalization", {}, [X4, np.ones(3, np.float32), np.zeros(3, np.float32)], 6, 1),
}


@pytest.fixture(scope="module")
def tf():
    need("tensorflow", "onnx")
    from converter.deps import require

    return require("tensorflow")


def _run(tf, case, layout_first: bool, read: bool = True):
    from onnx import helper

    from converter.formats.tf.lower import Ctx, V, channels_last, lookup

    op_type, attrs, inputs, opset, n_out = case
    cx = Ctx(tf, np, opset)
    node = helper.make_node(op_type, [f"i{k}" for k in range(len(inputs))], [f"o{k}" for k in range(n_out)], **attrs)
    vs = []
    for k, arr in enumerate(inputs):
        if k == 0 and layout_first:  # a live value held channels-last, as a conv leaves it
            perm = channels_last(arr.ndim)
            vs.append(V(tf.constant(np.ascontiguousarray(np.transpose(arr, perm))), perm))
        elif k == 0:
            vs.append(V(tf.constant(arr)))
        else:
            vs.append(cx.const(arr))
    outs = lookup(op_type, opset)(cx, node, vs)
    if not read:
        return outs, [o.perm for o in outs], cx
    return [cx.onnx(o).numpy() for o in outs], [o.perm for o in outs], cx


@pytest.mark.parametrize("name", list(CASES))
def test_op_on_a_channels_last_value_matches_onnx_order(tf, name):
    want, _, _ = _run(tf, CASES[name], layout_first=False)
    got, _, _ = _run(tf, CASES[name], layout_first=True)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.shape == w.shape
        np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", ["concat", "split", "slice", "gather_vector", "pad_constant", "softmax", "layernorm",
                                  "tile", "prelu_lower_rank", "where", "clip", "squeeze", "unsqueeze", "transpose"])
def test_axis_taking_and_elementwise_ops_keep_the_layout_without_transposes(tf, name):
    """No Transpose is added by the op itself: its result keeps a layout (read in ONNX order only later)."""
    _, perms, cx = _run(tf, CASES[name], layout_first=True, read=False)
    assert all(p is not None for p in perms), perms
    assert cx.transposes == 0
