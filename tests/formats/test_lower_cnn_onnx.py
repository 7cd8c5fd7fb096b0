"""The lowering's CNN/RNN handlers on hand-built ONNX models and whole architectures (issue 13):
ONNX's light CNNs with random weights, the default nearest Resize on TF's kernel where exact,
bidirectional RNNs with sequence_lens, and BatchNorm folding away in TF.js; each against
onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import need
from tests.formats.lower_check import check as _check
from tests.formats.lower_check import light_with_random_weights as _light_with_random_weights
from tests.formats.lower_check import node_dir as _node_dir
from tests.formats.lower_check import ort_run as _ort
from tests.formats.lower_check import rand as _rand


@pytest.fixture(scope="module")
def tf():
    need("tensorflow", "onnx", "onnxruntime")
    from converter.deps import require

    return require("tensorflow")


@pytest.mark.parametrize("name", ["squeezenet", "inception_v1",
                                  pytest.param("densenet121", marks=pytest.mark.slow),
                                  pytest.param("inception_v2", marks=pytest.mark.slow),
                                  pytest.param("resnet50", marks=pytest.mark.slow),
                                  pytest.param("shufflenet", marks=pytest.mark.slow)])
def test_light_model_matches_onnxruntime(tf, name):
    """Whole CNNs (fire modules, inception blocks with LRN and ceil-mode pools, dense blocks...) lowered
    with random weights, against onnxruntime on the same model; one Transpose, at the input (ShuffleNet's
    channel shuffle reshapes, which needs ONNX order)."""
    from converter.formats.tf.lower.harness import lower_model, run

    path = _node_dir().parent / "light" / f"light_{name}.onnx"
    if not path.exists():
        pytest.skip(f"{path.name} is not in this onnx package")
    model = _light_with_random_weights(path)
    inits = {i.name for i in model.graph.initializer}
    data = next(i for i in model.graph.input if i.name not in inits)
    x = _rand(0, *[d.dim_value for d in data.type.tensor_type.shape.dim])
    want = _ort(model, {data.name: x})[0]
    lowered = lower_model(model)
    got = run(lowered, model, [x])[0]
    np.testing.assert_allclose(got, want, atol=1e-5 * float(np.abs(want).max()), rtol=1e-4)
    if name != "shufflenet":
        assert sum(n.op == "Transpose" for n in lowered.graph_def.node) == 1


@pytest.mark.parametrize("scales, kernel", [((1.0, 1.0, 2.0, 3.0), "ResizeNearestNeighbor"), ((1.0, 1.0, 0.5, 0.5), None)])
def test_default_nearest_resize_uses_the_kernel_only_where_no_rounding_tie_exists(tf, scales, kernel):
    """ONNX's default nearest (half_pixel, round_prefer_floor) on dynamic H/W: an integer upscale has
    no ties and runs on TF's kernel; halving meets a tie at every pixel and is gathered instead."""
    from onnx import TensorProto, helper, numpy_helper

    from converter.formats.tf.lower.harness import lower_model, run

    node = helper.make_node("Resize", ["x", "", "scales"], ["y"], mode="nearest")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, "h", "w"])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(np.asarray(scales, np.float32), "scales")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    lowered = lower_model(model)
    ops = {n.op for n in lowered.graph_def.node}
    assert (kernel in ops) if kernel else not any(o.startswith("Resize") for o in ops)
    for i, shape in enumerate([(1, 3, 4, 6), (2, 3, 7, 5)]):
        x = _rand(i, *shape)
        np.testing.assert_array_equal(run(lowered, model, [x])[0], _ort(model, {"x": x})[0])


@pytest.mark.parametrize("kind", ["LSTM", "GRU", "RNN"])
def test_bidirectional_rnn_with_sequence_lens_and_initial_state_matches_onnxruntime(tf, kind):
    """Both directions over sequences of different lengths (the reverse one starts at each sequence's
    own last step; steps past the end give zeros and keep the state), with initial states, clip and
    GRU's linear_before_reset, on a dynamic time axis and batch."""
    from onnx import TensorProto, helper, numpy_helper

    from converter.formats.tf.lower.harness import lower_model, run

    hidden, size, gates = 5, 3, {"LSTM": 4, "GRU": 3, "RNN": 1}[kind]
    rng = np.random.default_rng(5)
    inits = {"W": rng.standard_normal((2, gates * hidden, size)), "R": rng.standard_normal((2, gates * hidden, hidden)),
             "B": rng.standard_normal((2, 2 * gates * hidden)) * 0.1}
    names = ["x", "W", "R", "B", "lens", "h0"] + (["c0"] if kind == "LSTM" else [])
    attrs = {"hidden_size": hidden, "direction": "bidirectional", "clip": 2.5}
    if kind == "GRU":
        attrs["linear_before_reset"] = 1
    outs = ["Y", "Y_h"] + (["Y_c"] if kind == "LSTM" else [])
    node = helper.make_node(kind, names, outs, **attrs)
    vi = helper.make_tensor_value_info
    ins = [vi("x", TensorProto.FLOAT, ["t", "b", size]), vi("lens", TensorProto.INT32, ["b"]),
           vi("h0", TensorProto.FLOAT, [2, "b", hidden])] + ([vi("c0", TensorProto.FLOAT, [2, "b", hidden])]
                                                              if kind == "LSTM" else [])
    graph = helper.make_graph([node], "g", ins, [vi(o, TensorProto.FLOAT, None) for o in outs],
                              [numpy_helper.from_array(a.astype(np.float32), n) for n, a in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)], ir_version=8)
    lowered = lower_model(model)
    for steps, lens in ((6, [6, 2, 4]), (3, [1, 3])):
        batch = len(lens)
        feeds = {"x": _rand(steps, steps, batch, size), "lens": np.asarray(lens, np.int32),
                 "h0": _rand(1, 2, batch, hidden)}
        if kind == "LSTM":
            feeds["c0"] = _rand(2, 2, batch, hidden)
        for g, w in zip(run(lowered, model, feeds), _ort(model, feeds)):
            np.testing.assert_allclose(g, w, atol=1e-5, rtol=1e-4)


def _conv_bn_model():
    """Conv -> BatchNormalization -> Relu with static parameters, dynamic batch and H/W."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(3)
    params = {"w": rng.standard_normal((6, 3, 3, 3)) * 0.3, "b": rng.standard_normal(6) * 0.1,
              "scale": rng.uniform(0.5, 1.5, 6), "bias": rng.standard_normal(6) * 0.1,
              "mean": rng.standard_normal(6) * 0.1, "var": rng.uniform(0.5, 1.5, 6)}
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1], strides=[2, 2]),
             helper.make_node("BatchNormalization", ["c", "scale", "bias", "mean", "var"], ["n"], epsilon=1e-5),
             helper.make_node("Relu", ["n"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", 3, "h", "w"])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(a.astype(np.float32), n) for n, a in params.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15)], ir_version=8)


def test_batchnorm_after_a_conv_is_fused_and_folds_away_in_tfjs(tf, tmp_path):
    """A BatchNorm on a channels-last conv output is FusedBatchNormV3, which the TF.js converter folds
    into the conv's weights: the TF.js graph is one fused conv, verified in TF.js."""
    import json

    import onnx

    model = _conv_bn_model()
    lowered = _check(model, [{"x": _rand(1, 1, 3, 8, 10)}, {"x": _rand(2, 2, 3, 7, 5)}], atol=1e-5)
    assert "FusedBatchNormV3" in {n.op for n in lowered.graph_def.node}
    from tests.e2e.test_to_tfjs import need_tfjs

    need_tfjs()
    import converter

    onnx.save(model, tmp_path / "m.onnx")
    report = converter.export(tmp_path / "m.onnx", to="tfjs", out_dir=tmp_path / "out", onnx_to_tf="own")
    assert report.verdict == "PASSED", report.parity.summary()
    ops = [n["op"] for n in json.loads((tmp_path / "out" / "model.json").read_text())["modelTopology"]["node"]]
    assert "_FusedConv2D" in ops and not {"FusedBatchNormV3", "Mul", "AddV2", "PadV2"} & set(ops)


def _bilinear_on_shape(op: str, k: list[int]):
    """Resize (linear, pytorch_half_pixel) to sizes = Shape(x) op k, known only at run time."""
    from onnx import TensorProto, helper, numpy_helper

    nodes = [helper.make_node("Shape", ["x"], ["s"]), helper.make_node(op, ["s", "k"], ["sizes"]),
             helper.make_node("Resize", ["x", "", "", "sizes"], ["y"], mode="linear",
                              coordinate_transformation_mode="pytorch_half_pixel")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", 3, "h", "w"])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(np.asarray(k, np.int64), "k")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


def test_pytorch_bilinear_on_run_time_sizes_takes_the_kernel_behind_an_if(tf, tmp_path):
    """pytorch_half_pixel maps an output of size 1 to -0.5, which ResizeBilinear does not: with sizes
    known only at run time the kernel runs behind an If (StatelessIf, which TF.js runs) on the output
    size, the gathers otherwise. Checked against onnxruntime on both branches, and in TF.js."""
    import onnx

    model = _bilinear_on_shape("Div", [1, 1, 4, 1])
    # H 8 -> 2 (the kernel), H 4 -> 1 (the gathers: the kernel would average rows 1 and 2, not take row 0)
    lowered = _check(model, [{"x": _rand(1, 2, 3, 8, 5)}, {"x": _rand(2, 1, 3, 4, 7)}], atol=1e-5)
    assert any(n.op == "ResizeBilinear" for f in lowered.graph_def.library.function for n in f.node_def)
    from tests.e2e.test_to_tfjs import need_tfjs

    need_tfjs()
    import converter

    onnx.save(_bilinear_on_shape("Mul", [1, 1, 2, 3]), tmp_path / "m.onnx")  # any input size works
    report = converter.export(tmp_path / "m.onnx", to="tfjs", out_dir=tmp_path / "out", onnx_to_tf="own")
    assert report.verdict == "PASSED", report.parity.summary()


@pytest.mark.parametrize("attrs", [{"input_forget": 1}, {"activations": ["Softsign", "Tanh", "Softsign"]},
                                   {"activations": ["HardSigmoid", "Elu", "LeakyRelu"],
                                    "activation_alpha": [0.3, 0.9, 0.05], "activation_beta": [0.4]}],
                         ids=["input_forget", "softsign", "alpha_beta"])
def test_lstm_options_match_onnxruntime(tf, attrs):
    """LSTM's coupled input/forget gates and its activations attribute (Softsign composed: TF.js has
    no Softsign kernel; alpha/beta taken in order)."""
    from onnx import TensorProto, helper, numpy_helper

    hidden, size = 4, 3
    rng = np.random.default_rng(0)
    weights = {"W": rng.standard_normal((1, 4 * hidden, size)), "R": rng.standard_normal((1, 4 * hidden, hidden))}
    node = helper.make_node("LSTM", ["x", "W", "R"], ["Y"], hidden_size=hidden, **attrs)
    vi = helper.make_tensor_value_info
    graph = helper.make_graph([node], "g", [vi("x", TensorProto.FLOAT, ["t", 2, size])], [vi("Y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(a.astype(np.float32), n) for n, a in weights.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)], ir_version=8)
    _check(model, [{"x": _rand(1, 5, 2, size)}, {"x": _rand(2, 2, 2, size)}], atol=1e-5)
