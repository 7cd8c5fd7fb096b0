"""The lowering's conv, pooling, normalization, resize and RNN handlers (issue 13).

ONNX's own conformance cases for these ops with every dim of their data input made dynamic (the
suite-wide test runs them as written), lowered and run in TensorFlow on the case's inputs; and
tiny seeded PyTorch modules (the cnn / dwcnn / rnn fixtures, ConvTranspose with output_padding,
Resize, grouped and 1-D convs, pools, bidirectional RNNs) exported with torch.onnx, lowered, and
compared with onnxruntime on the same ONNX file at two sizes of each dynamic dim. A conv net's
lowered graph runs channels-last with no Transpose between two convs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.conftest import need
from tests.formats.lower_check import check as _check
from tests.formats.lower_check import conv_ops as _conv_ops
from tests.formats.lower_check import export_torch as _export
from tests.formats.lower_check import node_dir as _node_dir
from tests.formats.lower_check import rand as _rand
from tests.formats.lower_check import transposes_between_convs as _transposes_between_convs

#: conformance cases of the ops these handlers own (case-name prefixes)
PREFIXES = ("test_conv", "test_basic_conv", "test_qlinearconv", "test_convtranspose", "test_maxpool", "test_averagepool",
            "test_globalaveragepool", "test_globalmaxpool", "test_lppool", "test_batchnorm", "test_instancenorm",
            "test_lrn", "test_group_normalization", "test_mvn", "test_resize", "test_upsample", "test_depthtospace",
            "test_spacetodepth", "test_lstm", "test_gru", "test_rnn", "test_simple_rnn")


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
