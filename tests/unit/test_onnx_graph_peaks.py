"""``onnx_graph.nodes_touching``: the one scan behind static int8's sentinel nodes (``>= 1e6``) and
fp16's out-of-range nodes (``> 65504 / 4``), on a hand-built ONNX graph with a hand-written peak map.
A peak exactly at the bound is where ``>=`` and ``>`` part, so the map puts one at each bound."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from tests.conftest import need

SENTINEL = 1e6  # quantize.SENTINEL_ABS
FP16_BOUND = 16376.0  # fp16.RANGE_LIMIT = 65504 / 4

#: max |x| per tensor, as activation_absmax would report it; "sc" (an initializer) is left out
PEAKS = {
    "x": 1.0,  # graph input
    "w": SENTINEL,  # initializer, exactly at the sentinel bound
    "h": FP16_BOUND,  # exactly at the fp16 bound
    "mask": 3.4e38,  # graph input: an additive attention mask
    "s": 3.4e38,
    "p": 1.0,
    "y": 20000.0,  # beyond the fp16 bound, far below the sentinel one
}


def _model() -> Any:
    """x, mask -> mm: MatMul(x, w) -> h -> add: Add(h, mask) -> s -> sm: Softmax -> p -> mul: Mul(p, sc) -> y"""
    from onnx import TensorProto, helper, numpy_helper

    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"], name="mm"),
             helper.make_node("Add", ["h", "mask"], ["s"], name="add"),
             helper.make_node("Softmax", ["s"], ["p"], name="sm"),
             helper.make_node("Mul", ["p", "sc"], ["y"], name="mul")]
    inits = [numpy_helper.from_array(np.eye(4, dtype=np.float32), "w"), numpy_helper.from_array(np.float32(2.0), "sc")]
    io = lambda name: helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, 4])  # noqa: E731
    graph = helper.make_graph(nodes, "peaks", [io("x"), io("mask")], [io("y")], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def _hits(model: Any, peaks: dict[str, float], above: float, **kw: bool) -> list[tuple[int, str, str, str, float]]:
    from converter.passes.onnx_graph import nodes_touching

    return [(t.index, t.node.name, t.tensor, t.side, t.peak) for t in nodes_touching(model, peaks, above, **kw)]


@pytest.mark.parametrize("above, inclusive, skip, expected", [
    # static int8 (inclusive, initializers looked at): w sits exactly at 1e6 and counts
    (SENTINEL, True, False, [(0, "mm", "w", "input", SENTINEL), (1, "add", "s", "output", 3.4e38),
                             (2, "sm", "s", "input", 3.4e38)]),
    (SENTINEL, False, False, [(1, "add", "s", "output", 3.4e38), (2, "sm", "s", "input", 3.4e38)]),
    (SENTINEL, True, True, [(1, "add", "s", "output", 3.4e38), (2, "sm", "s", "input", 3.4e38)]),
    # fp16 (exclusive, initializers skipped): h sits exactly at 16376 and does not count
    (FP16_BOUND, False, True, [(1, "add", "s", "output", 3.4e38), (2, "sm", "s", "input", 3.4e38),
                               (3, "mul", "y", "output", 20000.0)]),
    (FP16_BOUND, True, True, [(0, "mm", "h", "output", FP16_BOUND), (1, "add", "s", "output", 3.4e38),
                              (2, "sm", "s", "input", 3.4e38), (3, "mul", "y", "output", 20000.0)]),
    # the initializer w (1e6) counts once it is looked at: the input side is reported
    (FP16_BOUND, False, False, [(0, "mm", "w", "input", SENTINEL), (1, "add", "s", "output", 3.4e38),
                                (2, "sm", "s", "input", 3.4e38), (3, "mul", "y", "output", 20000.0)]),
    # h (output) and w (input) both count: outputs come first, one tensor per node
    (FP16_BOUND, True, False, [(0, "mm", "h", "output", FP16_BOUND), (1, "add", "s", "output", 3.4e38),
                               (2, "sm", "s", "input", 3.4e38), (3, "mul", "y", "output", 20000.0)]),
])
def test_nodes_touching_thresholds_and_comparisons(above, inclusive, skip, expected):
    need("onnx")
    model = _model()
    assert _hits(model, PEAKS, above, inclusive=inclusive, skip_initializers=skip) == expected
    assert _hits(model.graph, PEAKS, above, inclusive=inclusive, skip_initializers=skip) == expected  # a graph works too


def test_nodes_touching_graph_inputs_and_missing_tensors():
    need("onnx")
    model = _model()
    # without s, the Add is caught by its graph input mask, and the Softmax by nothing
    assert _hits(model, {**PEAKS, "s": 0.0}, SENTINEL, inclusive=True, skip_initializers=True) == [
        (1, "add", "mask", "input", 3.4e38)]
    # a tensor missing from the map counts as 0: at a bound of 0 only ">=" catches it
    assert _hits(model, {}, 0.0, inclusive=False) == []
    assert [h[:4] for h in _hits(model, {}, 0.0, inclusive=True)] == [
        (0, "mm", "h", "output"), (1, "add", "s", "output"), (2, "sm", "p", "output"), (3, "mul", "y", "output")]


def _chain() -> Any:
    """x -> a: Relu -> r -> b: Neg -> n -> c: Abs -> y: |x| flows through every node unchanged."""
    from onnx import TensorProto, helper

    nodes = [helper.make_node("Relu", ["x"], ["r"], name="a"), helper.make_node("Neg", ["r"], ["n"], name="b"),
             helper.make_node("Abs", ["n"], ["y"], name="c")]
    io = lambda name: helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, 2])  # noqa: E731
    model = helper.make_model(helper.make_graph(nodes, "chain", [io("x")], [io("y")]),
                              opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def test_quantize_sentinels_count_a_value_at_the_bound():
    need("onnx", "onnxruntime")
    from converter.passes.quantize import SENTINEL_ABS, _sentinel_nodes

    model = _chain()
    at = [{"x": np.array([[1.0, SENTINEL_ABS]], np.float32)}]
    below = [{"x": np.array([[1.0, np.nextafter(np.float32(SENTINEL_ABS), np.float32(0))]], np.float32)}]
    why = _sentinel_nodes(model, at, ["c", "a", "b"])
    assert list(why) == ["a", "b", "c"]  # graph order, not candidate order
    assert why["a"].startswith("output r reaches |x| = 1e+06 (a sentinel")
    assert list(_sentinel_nodes(model, at, ["b"])) == ["b"]  # only candidates
    assert _sentinel_nodes(model, below, ["a", "b", "c"]) == {}


def test_fp16_out_of_range_does_not_count_a_value_at_the_bound():
    need("onnx", "onnxruntime")
    from converter.passes.fp16 import RANGE_LIMIT, Fp16

    model = _chain()
    at = [{"x": np.array([[1.0, RANGE_LIMIT]], np.float32)}]
    above = [{"x": np.array([[1.0, np.nextafter(np.float32(RANGE_LIMIT), np.float32(np.inf))]], np.float32)}]
    assert Fp16()._out_of_range(model, at, np) == {}
    why = Fp16()._out_of_range(model, above, np)
    assert list(why) == ["a", "b", "c"]
    assert why["a"] == f"output r reaches |x| = {float(np.nextafter(np.float32(RANGE_LIMIT), np.float32(np.inf))):.3g} > 16376"
