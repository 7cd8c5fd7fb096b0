"""The lowering's conv, pooling, normalization, resize and RNN handlers (issue 13).

ONNX's own conformance cases for these ops with every dim of their data input made dynamic (the
suite-wide test runs them as written), lowered and run in TensorFlow on the case's inputs; and
tiny seeded PyTorch modules (the cnn / dwcnn / rnn fixtures, ConvTranspose with output_padding,
Resize, grouped and 1-D convs, pools, bidirectional RNNs) exported with torch.onnx, lowered, and
compared with onnxruntime on the same ONNX file at two sizes of each dynamic dim. A conv net's
lowered graph runs channels-last with no Transpose between two convs.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import need

#: conformance cases of the ops these handlers own (case-name prefixes)
PREFIXES = ("test_conv", "test_basic_conv", "test_qlinearconv", "test_convtranspose", "test_maxpool", "test_averagepool",
            "test_globalaveragepool", "test_globalmaxpool", "test_lppool", "test_batchnorm", "test_instancenorm",
            "test_lrn", "test_group_normalization", "test_mvn", "test_resize", "test_upsample", "test_depthtospace",
            "test_spacetodepth", "test_lstm", "test_gru", "test_rnn", "test_simple_rnn")


def _node_dir() -> Path | None:
    try:
        import onnx
    except ImportError:
        return None
    return Path(os.path.dirname(onnx.__file__)) / "backend" / "test" / "data" / "node"


def _cases() -> list[str]:
    root = _node_dir()
    if root is None or not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.name.startswith(PREFIXES) and not p.name.endswith("_expanded"))


@pytest.fixture(scope="module")
def tf():
    need("tensorflow", "onnx", "onnxruntime")
    from converter.deps import require

    return require("tensorflow")


def _dynamic_data_input(model) -> None:
    """Every dim of the model's first input unknown (so pads, output sizes, masks... are computed
    in the graph), the outputs' dims too."""
    graph = model.graph
    inits = {i.name for i in graph.initializer}
    first = next(i for i in graph.input if i.name not in inits)
    for v in (first, *graph.output):
        for k, dim in enumerate(v.type.tensor_type.shape.dim):
            dim.dim_param = f"{v.name}_d{k}"


#: cases the lowering refuses when their data input's dims are unknown, and why
REFUSED_DYNAMIC = {c: "antialias" for c in ("test_resize_downsample_scales_cubic_antialias",
                                             "test_resize_downsample_scales_linear_antialias",
                                             "test_resize_downsample_sizes_cubic_antialias",
                                             "test_resize_downsample_sizes_linear_antialias")}


@pytest.mark.parametrize("name", sorted(REFUSED_DYNAMIC))
def test_what_needs_static_sizes_is_refused_naming_the_node(tf, name):
    from converter.formats.tf.lower import LoweringError
    from converter.formats.tf.lower.harness import load_case, lower_model

    model, _, _ = load_case(_node_dir() / name)
    _dynamic_data_input(model)
    with pytest.raises(LoweringError, match=rf"\(Resize\): .*{REFUSED_DYNAMIC[name]}"):
        lower_model(model)


@pytest.mark.parametrize("name", [c for c in _cases() if c not in REFUSED_DYNAMIC])
def test_conformance_case_with_dynamic_dims_matches_expected_outputs(tf, name):
    from converter.formats.tf.lower.harness import load_case, lower_model, run

    model, inputs, expected = load_case(_node_dir() / name)
    _dynamic_data_input(model)
    lowered = lower_model(model)
    assert all(d is None or isinstance(d, str) for d in lowered.inputs[0].shape)
    got = run(lowered, model, inputs)
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert g.shape == e.shape and g.dtype == e.dtype
        # some cases' expected outputs are written to 4 decimals
        np.testing.assert_allclose(g.astype(np.float64), e.astype(np.float64), atol=1e-4, rtol=1e-3)


# -- PyTorch modules exported with torch.onnx ------------------------------------------------------
def _export(module, args, path: Path, dynamic: dict[str, dict[int, str]]) -> object:
    """module -> ONNX (TorchScript exporter: fast, and it keeps the dynamic axes asked for)."""
    import onnx
    import torch

    names = list(dynamic) if dynamic else [f"in{i}" for i in range(len(args))]
    with torch.no_grad():
        torch.onnx.export(module, tuple(torch.from_numpy(a) for a in args), str(path), dynamo=False,
                          input_names=names, output_names=["y"], dynamic_axes=dynamic, opset_version=17)
    return onnx.load(str(path))


def _ort(model, feeds: dict) -> list[np.ndarray]:
    import onnxruntime as ort

    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def _check(model, feed_sets: list[dict], atol: float = 1e-4):
    """Lower once (dynamic dims stay dynamic), then match onnxruntime on every feed set."""
    from converter.formats.tf.lower.harness import lower_model, run

    lowered = lower_model(model)
    for feeds in feed_sets:
        want = _ort(model, feeds)
        got = run(lowered, model, feeds)
        for g, w in zip(got, want):
            assert g.shape == w.shape
            np.testing.assert_allclose(g, w, atol=atol, rtol=1e-4)
    return lowered


def _rand(seed: int, *shape: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _conv_ops(graph_def) -> set[str]:
    return {n.name for n in graph_def.node if n.op in ("Conv2D", "DepthwiseConv2dNative", "Conv3D", "_FusedConv2D",
                                                  "FusedDepthwiseConv2dNative")}


def _transposes_between_convs(graph_def) -> list[str]:
    """Transpose nodes with a conv both upstream and downstream of them."""
    inputs = {n.name: [i.lstrip("^").split(":")[0] for i in n.input] for n in graph_def.node}
    outputs: dict[str, list[str]] = {}
    for name, ins in inputs.items():
        for i in ins:
            outputs.setdefault(i, []).append(name)
    convs = _conv_ops(graph_def)

    def reaches(start: str, edges: dict) -> bool:
        seen, todo = set(), list(edges.get(start, []))
        while todo:
            n = todo.pop()
            if n in convs:
                return True
            if n not in seen:
                seen.add(n)
                todo.extend(edges.get(n, []))
        return False

    return [n.name for n in graph_def.node if n.op == "Transpose" and reaches(n.name, inputs)
            and reaches(n.name, outputs)]


@pytest.mark.parametrize("fixture", ["cnn", "dwcnn"])
def test_conv_fixture_runs_channels_last_with_a_dynamic_batch(tf, tmp_path, fixture):
    need("torch")
    from fixtures import torch_models

    model = _export(getattr(torch_models, fixture)(), [_rand(0, 1, 3, 32, 32)], tmp_path / "m.onnx",
                    {"x": {0: "batch"}})
    lowered = _check(model, [{"x": _rand(1, 1, 3, 32, 32)}, {"x": _rand(2, 3, 3, 32, 32)}])
    gd = lowered.graph_def
    assert len(_conv_ops(gd)) >= 2
    assert _transposes_between_convs(gd) == []
    ops = {n.op for n in gd.node}
    assert not ops & {"Pad", "PadV2"}  # stride-2 pads that "SAME" does not make go inside the conv
    if fixture == "dwcnn":
        assert "DepthwiseConv2dNative" in ops  # depthwise convs on TF's (and TF.js's) own kernel


def test_rnn_fixture_takes_any_sequence_length(tf, tmp_path):
    need("torch")
    from fixtures import torch_models

    model = _export(torch_models.rnn(), [_rand(0, 2, 4, 8)], tmp_path / "m.onnx", {"x": {0: "batch", 1: "time"}})
    lowered = _check(model, [{"x": _rand(1, 2, 4, 8)}, {"x": _rand(2, 3, 9, 8)}, {"x": _rand(3, 1, 1, 8)}])
    assert lowered.inputs[0].shape[1] is None or isinstance(lowered.inputs[0].shape[1], str)


def _torch_module(kind: str):
    from tests.formats.lower_torch_modules import build

    return build(kind)


#: module -> (input shapes at export, dynamic axes, shapes the lowered model must also take)
TORCH = {
    "convtranspose": ((1, 4, 6, 6), {0: "b", 2: "h", 3: "w"}, [(2, 4, 6, 6), (1, 4, 5, 9)]),
    "resize": ((1, 3, 4, 6), {0: "b", 2: "h", 3: "w"}, [(2, 3, 4, 6), (1, 3, 7, 5)]),
    "mixed": ((1, 4, 17, 12), {0: "b"}, [(1, 4, 17, 12), (3, 4, 17, 12)]),
    "recurrent": ((2, 5, 6), {0: "b", 1: "t"}, [(2, 5, 6), (3, 11, 6), (1, 1, 6)]),
    "volumetric": ((1, 2, 6, 8, 8), {0: "b", 2: "d"}, [(1, 2, 6, 8, 8), (2, 2, 4, 8, 8)]),
}


@pytest.mark.parametrize("kind", list(TORCH))
def test_torch_module_matches_onnxruntime_at_two_sizes(tf, tmp_path, kind):
    need("torch")
    shape, dynamic, sizes = TORCH[kind]
    model = _export(_torch_module(kind), [_rand(0, *shape)], tmp_path / "m.onnx", {"x": dynamic})
    ops = {n.op_type for n in model.graph.node}
    assert {"convtranspose": "ConvTranspose", "resize": "Resize", "mixed": "InstanceNormalization",
            "recurrent": "LSTM", "volumetric": "ConvTranspose"}[kind] in ops
    _check(model, [{"x": _rand(i + 1, *s)} for i, s in enumerate(sizes)])


# -- through the CLI's route to TF.js ----------------------------------------------------------------
def _tfjs_conv_transposes(out: Path) -> list[str]:
    """Transposes between two convs in the written TF.js graph (model.json)."""
    import json

    from tensorflow.core.framework import graph_pb2
    from google.protobuf import json_format

    topo = json.loads((out / "model.json").read_text())["modelTopology"]
    gd = json_format.ParseDict({"node": [{k: v for k, v in n.items() if k in ("name", "op", "input")}
                                         for n in topo["node"]]}, graph_pb2.GraphDef())
    return _transposes_between_convs(gd)


@pytest.mark.parametrize("fixture", ["cnn", "dwcnn", "rnn"])
def test_fixture_verifies_in_tfjs_through_the_lowering(tmp_path, fixture):
    """torch -> ONNX -> TF (our lowering, not onnx2tf) -> TF.js, validated by convertkit in TF.js; the
    conv nets' TF.js graphs have no Transpose between convs; the RNN takes other sequence lengths."""
    need("torch", "onnx", "onnxruntime")
    from tests.e2e.test_to_tfjs import need_tfjs

    need_tfjs()
    import converter
    from fixtures.catalog import CATALOG

    fx = CATALOG[fixture]
    out = tmp_path / "out"
    report = converter.export(fx.builder, to="tfjs", out_dir=out, inputs=list(fx.inputs), onnx_to_tf="own")
    assert report.verdict == "PASSED", report.parity.summary()
    assert report.stages[1].notes["converter"] == "convertkit lowering"
    assert all(o.max_abs < 1e-4 for o in report.parity.outputs)
    if fixture != "rnn":
        assert _tfjs_conv_transposes(out) == []
        return
    import torch

    from converter.formats.tfjs.runner import TfjsRunner

    model = getattr(__import__("fixtures.torch_models", fromlist=["rnn"]), fixture)()
    with TfjsRunner(converter.load(str(out))) as runner:
        for batch, steps in ((1, 3), (2, 11)):
            x = _rand(steps, batch, steps, 8)
            got = list(runner.infer({"x": x}).values())[0]
            with torch.no_grad():
                want = model(torch.from_numpy(x)).numpy()
            np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("kind", ["resize", "volumetric"])
def test_torch_module_verifies_in_tfjs_through_the_lowering(tmp_path, kind):
    """ONNX -> TF (our lowering) -> TF.js for what TF.js needs other kernels for: Resize by gathers on
    run-time sizes (bicubic), 3-D max pooling and 3-D ConvTranspose (TF.js's wasm MaxPool3D is wrong,
    and it has no Conv3DBackpropInputV2)."""
    need("torch", "onnx", "onnxruntime")
    from tests.e2e.test_to_tfjs import need_tfjs

    need_tfjs()
    import converter

    shape, dynamic, _ = TORCH[kind]
    _export(_torch_module(kind), [_rand(0, *shape)], tmp_path / "m.onnx", {"x": dynamic})
    report = converter.export(tmp_path / "m.onnx", to="tfjs", out_dir=tmp_path / "out", onnx_to_tf="own")
    assert report.verdict == "PASSED", report.parity.summary()
    assert report.stages[0].notes["converter"] == "convertkit lowering"
    assert all(o.max_abs < 1e-4 for o in report.parity.outputs)


# -- real architectures: ONNX's "light" models (weights replaced by ConstantOfShape) ---------------------
def _light_with_random_weights(path: Path, seed: int = 0):
    """A light model with seeded random weights in place of its constant ones (constant weights make
    every class equally likely, which would hide errors): He-scaled conv/fc weights, BN scales and
    variances in [0.5, 1.5], small biases and means."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    rng = np.random.default_rng(seed)
    shapes = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    use = {i: (n.op_type, k) for n in reversed(graph.node) for k, i in enumerate(n.input)}
    kept = []
    for node in graph.node:
        if node.op_type != "ConstantOfShape" or node.input[0] not in shapes:
            kept.append(node)
            continue
        shape = [int(v) for v in shapes[node.input[0]]]
        op, k = use.get(node.output[0], ("", 0))
        if op == "BatchNormalization" and k in (1, 4):
            arr = rng.uniform(0.5, 1.5, shape)
        elif len(shape) > 1:
            arr = rng.standard_normal(shape) * np.sqrt(2.0 / max(int(np.prod(shape[1:])), 1))
        else:
            arr = rng.standard_normal(shape) * 0.1
        graph.initializer.append(numpy_helper.from_array(arr.astype(np.float32), node.output[0]))
    del graph.node[:]
    graph.node.extend(kept)
    return model


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
