"""When the lowering's self-check fails, one mark-all run (every ONNX value an output, in TensorFlow
and in onnxruntime) names the first diverging node. A deliberately wrong handler stands in for a
lowering bug: it is registered for one opset only, and removed again."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import need


@pytest.fixture()
def wrong_neg():
    need("tensorflow", "onnx", "onnxruntime")
    from converter.formats.tf.lower import V, op, registry

    registry.discover()

    @op("Neg", since=21, until=21)
    def neg_wrong(cx, node, ins):
        return [V(ins[0].t * 1.0, ins[0].perm)]  # forgets the sign

    yield
    table = registry._TABLE[("", "Neg")]
    table[:] = [r for r in table if r[2] is not neg_wrong]


def _model(opset: int):
    from onnx import TensorProto, helper

    nodes = [helper.make_node("Add", ["x", "x"], ["a"], name="add"), helper.make_node("Neg", ["a"], ["n"], name="neg"),
             helper.make_node("Relu", ["n"], ["r"], name="relu"), helper.make_node("Mul", ["r", "x"], ["y"], name="mul")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=10)


def test_mark_all_names_the_first_diverging_node(wrong_neg):
    from converter.formats.onnx import io_specs
    from converter.formats.tf.own import first_diverging

    model = _model(21)
    inputs, outputs = io_specs(model)
    found = first_diverging(model, inputs, outputs, "source")
    assert found["node"] == "neg" and found["op"] == "Neg" and found["conversions"] == 1
    assert found["max_abs"] > 0.1


def test_mark_all_finds_nothing_where_the_lowering_is_right(wrong_neg):
    from converter.formats.onnx import io_specs
    from converter.formats.tf.lower.harness import lower_model, run
    from converter.formats.tf.own import first_diverging

    model = _model(17)  # the right Neg
    inputs, outputs = io_specs(model)
    found = first_diverging(model, inputs, outputs, "source")
    assert found["node"] is None and "every value matches" in found["why"]
    lowered = lower_model(model, mark_all=True)
    assert lowered.value_names == ("y", "a", "n", "r")
    x = np.array([[1, -2, 3, -4]], np.float32)
    y, a, n, r = run(lowered, model, {"x": x})
    np.testing.assert_array_equal(a, 2 * x)
    np.testing.assert_array_equal(y, np.maximum(-2 * x, 0) * x)


def test_the_stage_says_which_node_when_its_lowering_is_wrong(wrong_neg, tmp_path):
    """own: the wrong model exits 3 naming the node; auto: onnx2tf makes the model instead, and the
    notes say why (the self-check and the node)."""
    need("onnx2tf")
    import onnx

    import converter
    from converter.errors import ConvertkitError

    path = tmp_path / "m.onnx"
    onnx.save(_model(21), str(path))
    with pytest.raises(ConvertkitError) as err:
        converter.export(str(path), to="tf", out_dir=tmp_path / "own", onnx_to_tf="own")
    assert err.value.exit_code == 3 and "'neg'" in str(err.value), str(err.value)
    report = converter.export(str(path), to="tf", out_dir=tmp_path / "auto")
    notes = report.stages[0].notes
    assert report.verdict == "PASSED" and notes["converter"].startswith("onnx2tf ")
    assert "self-check failed" in notes["lowering_fallback_reason"]
    assert "first diverging node 'neg' (Neg)" in notes["lowering_fallback_reason"]
