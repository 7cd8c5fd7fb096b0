"""Every PyTorch fixture, in every source form, through the real exporter and onnxruntime."""

from __future__ import annotations

import pytest

from fixtures.catalog import CATALOG
from tests.conftest import need

FORMS = ("pt2", "torchscript", "callable")
#: documented refusals. A traced transformer holds MultiheadAttention's fused fast-path op, which
#: neither ONNX exporter supports (and dynamo does not accept a ScriptModule at all).
REFUSED = {("transformer", "torchscript"): "aten::_native_multi_head_attention"}


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("name", list(CATALOG))
def test_fixture_exports_and_passes_parity(torch_fixtures, tmp_path, name, form):
    need("torch", "onnx", "onnxruntime", "onnxscript")
    import onnx

    import converter

    fx, paths = CATALOG[name], torch_fixtures[name]
    source = {"pt2": paths["pt2"], "torchscript": paths["torchscript"], "callable": fx.builder}[form]
    kw = {} if form == "pt2" else {"inputs": fx.inputs}
    if form == "callable":
        kw["weights"] = str(paths["safetensors"])
    if (name, form) in REFUSED:
        with pytest.raises(converter.UnsupportedOpError, match=REFUSED[name, form]):
            converter.export(source, to="onnx", out_dir=tmp_path / "out", **kw)
        assert not (tmp_path / "out").exists()
        return
    report = converter.export(source, to="onnx", out_dir=tmp_path / "out", **kw)

    assert report.verdict == "PASSED", report.parity.summary()
    assert report.parity.samples == 3 and len(report.parity.outputs) == fx.outputs
    assert all(o.max_abs < 1e-4 and o.cosine > 0.99999 for o in report.parity.outputs)
    model = onnx.load(tmp_path / "out" / "model.onnx")
    want = [spec.split(":")[0] for spec in fx.inputs]
    assert [i.name for i in model.graph.input] == want  # the given input names are kept
    assert not any(n.metadata_props for n in model.graph.node)  # no exporter stack traces shipped
    # the batch dimension stays dynamic, under the name the user gave it
    first = model.graph.input[0].type.tensor_type.shape.dim[0]
    assert first.dim_param == "batch" and not first.HasField("dim_value")
    out_first = model.graph.output[0].type.tensor_type.shape.dim[0]
    assert out_first.dim_param == "batch"  # outputs too, not the exporter's symbol (s77)
    # dynamic inputs were validated at several sizes
    sizes = {tuple(o.got_shape) for o in report.parity.outputs}
    assert sizes
    assert (tmp_path / "out" / "report.json").is_file()
    stage = report.stages[0]
    assert stage.notes["exporter"] in ("dynamo", "torchscript") and stage.ops_out


def test_specialized_dynamic_dim_falls_back_and_says_why(torch_fixtures, tmp_path):
    """dynamo fixes the GRU/LSTM fixture's 'seq' dim to the example size; convertkit notices and
    uses the TorchScript exporter, which keeps it dynamic."""
    need("torch", "onnxruntime", "onnxscript")
    import converter

    fx = CATALOG["rnn"]
    report = converter.export(fx.builder, to="onnx", out_dir=tmp_path / "o", inputs=fx.inputs,
                              weights=str(torch_fixtures["rnn"]["state"]))
    notes = report.stages[0].notes
    assert report.verdict == "PASSED"
    assert notes["exporter"] == "torchscript" and "'seq'" in notes["fallback_reason"]


def test_in_memory_module_with_example_inputs(tmp_path):
    need("torch", "onnxruntime", "onnxscript")
    import torch

    import converter
    from fixtures.torch_models import two_io

    report = converter.export(two_io(), to="onnx", out_dir=tmp_path / "o",
                              example_inputs=(torch.randn(3, 8), torch.randn(3, 4)), output_names=("p", "q"))
    assert report.verdict == "PASSED"
    assert [s["name"] for s in report.inputs] == ["a", "b"]  # from forward()'s signature
    assert [o.name for o in report.parity.outputs] == ["p", "q"]
