"""PyTorch and ONNX -> TF.js in one command (torch -> onnx -> tf -> tfjs, onnx -> tf -> tfjs): every
PyTorch fixture converts through onnx2tf and runs in real TF.js on Node with parity against the
ORIGINAL model; inputs keep their names, dtypes (int64 -> int32, reported) and layout (NCHW stays
NCHW unless --tfjs-layout nhwc); a fixed shape is stated, never silent; onnx2tf's attention
mis-conversion is fixed, and such a model exits 3 naming the hop and the node it gets wrong; onnx2tf
stays offline and never touches its input; what it cannot convert exits 3 naming the hop and the op."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from fixtures.catalog import CATALOG
from tests.conftest import ROOT, convertkit, need
from tests.e2e.test_to_tfjs import need_tfjs

#: fixtures onnx2tf converts only at fixed sizes: input -> dims of the TF / TF.js model
FIXED = {"rnn": {"x": ["batch", 4, 8]}, "transformer": {"x": ["batch", 4, 32]}}
ROUTE = ["torch->onnx", "onnx->tf", "tf->tfjs"]


def need_chain() -> None:
    need("torch", "onnx", "onnxruntime", "onnx2tf")
    need_tfjs()


def _export(source, out: Path, **options):
    import converter

    options.setdefault("onnx_to_tf", "onnx2tf")  # this file tests the onnx2tf route (tests/e2e/test_lower_route.py: the own)
    return converter.export(source, to="tfjs", out_dir=out, **options)


def _model_json(out: Path) -> dict:
    return json.loads((out / "model.json").read_text())


def _tfjs_outputs(out: Path, feeds: dict) -> dict:
    """Run the written TF.js model in Node (the runner convertkit validates with) on ``feeds``."""
    import converter
    from converter.formats.tfjs.runner import TfjsRunner

    with TfjsRunner(converter.load(str(out))) as runner:
        return runner.infer(feeds)


def _torch_outputs(builder: str, feeds: dict) -> list[np.ndarray]:
    import importlib

    import torch

    mod, fn = builder.split(":")
    model = getattr(importlib.import_module(mod), fn)()
    with torch.no_grad():
        out = model(*(torch.from_numpy(v) for v in feeds.values()))
    return [o.numpy() for o in (out if isinstance(out, tuple) else (out,))]


@pytest.mark.parametrize("name", list(CATALOG))
def test_every_torch_fixture_runs_in_tfjs_with_parity(tmp_path, name):
    need_chain()
    fx = CATALOG[name]
    out = tmp_path / "out"
    report = _export(fx.builder, out, inputs=list(fx.inputs))

    assert report.verdict == "PASSED", report.parity.summary()
    assert [s.stage for s in report.stages] == ROUTE
    # the ONNX model is an intermediate: TorchScript first (fast); dynamo where TorchScript fixes a dynamic dim
    assert report.stages[0].config["intermediate"] and report.stages[0].notes["exporter"] in ("torchscript", "dynamo")
    if report.stages[0].notes["exporter"] == "dynamo":
        assert "made dynamic dim(s) static" in report.stages[0].notes["fallback_reason"]
    assert all(o.max_abs < 1e-4 and o.cosine > 0.99999 for o in report.parity.outputs)
    assert len(report.parity.outputs) == fx.outputs and report.parity.samples == 3
    # TF.js addresses inputs and outputs by the source's names, in the source's order
    sig = _model_json(out)["signature"]
    assert list(sig["inputs"]) == [s.split(":")[0] for s in fx.inputs]
    assert list(sig["outputs"]) == [o.name for o in report.parity.outputs]
    assert all(o.candidate_name == o.name for o in report.parity.outputs)
    tf_notes, tfjs_notes = report.stages[1].notes, report.stages[2].notes
    assert tf_notes["kind"] == "frozen_graph" and "renamed" not in tfjs_notes
    assert tf_notes["onnx2tf_check"].startswith("parity PASSED")
    assert not list(out.glob("*.tflite")) and sorted(p.suffix for p in out.iterdir()) == [".bin", ".js", ".json", ".json", ".ts"]
    if name == "tokens":
        assert tfjs_notes["dtype_changes"] == ["ids: int64 -> int32 (TF.js has no int64)"]
    if name in FIXED:  # stated in the stage notes and in the parity notes, never silent
        assert tf_notes["fixed_shape"] == tfjs_notes["fixed_shape"] == FIXED[name]
        assert "fixed shapes" in tf_notes["shape_note"]
        assert any("fixed shapes" in n for n in report.parity.notes)
    else:
        assert "fixed_shape" not in tf_notes and tf_notes["shapes"] == "as the model declares them"
    # the dynamic batch is kept either way
    assert all(i["tensorShape"]["dim"][0]["size"] == "-1" for i in sig["inputs"].values())


def test_nchw_is_kept_and_the_same_array_feeds_torch_and_tfjs(tmp_path):
    """The layout check the user cares about: one NCHW array, fed unchanged to torch and to TF.js."""
    need_chain()
    fx = CATALOG["dwcnn"]
    out = tmp_path / "out"
    assert _export(fx.builder, out, inputs=list(fx.inputs)).verdict == "PASSED"
    x = np.random.default_rng(5).standard_normal((4, 3, 32, 32)).astype(np.float32)
    got = _tfjs_outputs(out, {"x": x})["output"]
    np.testing.assert_allclose(got, _torch_outputs(fx.builder, {"x": x})[0], atol=1e-4, rtol=1e-3)
    dims = [int(d["size"]) for d in _model_json(out)["signature"]["inputs"]["x"]["tensorShape"]["dim"]]
    assert dims == [-1, 3, 32, 32]


def test_nhwc_on_request_and_4d_outputs_keep_the_source_layout(tmp_path):
    """--tfjs-layout nhwc: 4-D inputs channels-last (stated); a 4-D output stays NCHW either way."""
    need_chain()
    import torch

    import converter

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU()).eval()
    x = np.random.default_rng(1).standard_normal((2, 3, 8, 6)).astype(np.float32)
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    for layout, feed in (("source", x), ("nhwc", x.transpose(0, 2, 3, 1))):
        out = tmp_path / layout
        report = converter.export(model, to="tfjs", out_dir=out, inputs=["x:batch,3,8,6"], tfjs_layout=layout,
                                    onnx_to_tf="onnx2tf")
        assert report.verdict == "PASSED", report.parity.summary()
        got = _tfjs_outputs(out, {"x": feed})["output"]
        np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-3)
        notes = report.stages[1].notes
        if layout == "nhwc":
            assert notes["input_layout"] == {"x": {"layout": "NHWC", "source_layout": "NCHW", "perm": [0, 2, 3, 1]}}
            assert report.stages[2].notes["input_layout"] == notes["input_layout"]
            assert any("x NCHW->NHWC" in n for n in report.parity.notes)
            # the TF.js directory itself says so: a later `validate` against the source feeds it rightly
            assert _model_json(out)["userDefinedMetadata"]["convertkit"]["input_layout"] == notes["input_layout"]
            later = converter.validate(model, out, inputs=["x:2,3,8,6"])
            assert later.verdict == "PASSED" and any("x NCHW->NHWC" in n for n in later.parity.notes)
        else:
            assert "input_layout" not in notes
    # the NHWC model as the reference: its passes take what it takes (no transpose), the NCHW model its inverse
    opt = converter.optimize(tmp_path / "nhwc", ["fp16"], tmp_path / "nhwc16")
    assert opt.verdict == "PASSED" and not any("transposed" in n for n in opt.parity.notes), opt.parity.summary()
    assert opt.stages[0].latency_ms_in is not None and opt.stages[0].latency_ms_out is not None
    back = converter.validate(tmp_path / "nhwc", tmp_path / "source")
    assert back.verdict == "PASSED" and any("x NHWC->NCHW" in n for n in back.parity.notes), back.parity.summary()
    with pytest.raises(converter.UsageError, match="unknown layout 'nchw_please'"):
        converter.export(model, to="tfjs", out_dir=tmp_path / "bad", inputs=["x:1,3,8,6"], tfjs_layout="nchw_please")


def test_attention_converts_correctly_and_a_misconversion_exits_3_naming_the_node(tmp_path, monkeypatch):
    """torch.nn.MultiheadAttention: onnx2tf guesses the axes of transposes that move axis 0 and of
    ambiguous reshapes; convertkit pins them, and the TF.js model matches, with a dynamic batch (the
    view targets computed from x.shape are made constants, -1 for the batch). With those fixes off,
    onnx2tf's model is wrong (silently, by its own account): exit 3, nothing written, and the error
    names the hop and the first ONNX node onnx2tf gets wrong, in the source's terms (the torch
    module and op), found by converting cuts of the graph."""
    need_chain()
    import converter
    from converter.formats.tf import onnx_prep

    fx = CATALOG["transformer"]
    report = _export(fx.builder, tmp_path / "fixed", inputs=list(fx.inputs))
    assert report.verdict == "PASSED" and max(o.max_abs for o in report.parity.outputs) < 1e-5
    notes = report.stages[1].notes
    assert len(notes["rewrites"]) == 2 and notes["shapes"] == "dynamic batch, other dims fixed"
    assert notes["fixed_shape"] == {"x": ["batch", 4, 32]}
    assert [d["size"] for d in _model_json(tmp_path / "fixed")["signature"]["inputs"]["x"]["tensorShape"]["dim"]] \
        == ["-1", "4", "32"]
    rng = np.random.default_rng(11)
    feeds = [{"x": rng.standard_normal((n, 4, 32)).astype(np.float32)} for n in (1, 3)]
    from converter.formats.tfjs.runner import TfjsRunner

    with TfjsRunner(converter.load(str(tmp_path / "fixed"))) as runner:  # other batch sizes than the example's 2
        for f in feeds:
            got = runner.infer(f)["output"]
            assert got.shape == (len(f["x"]), 4, 32)
            np.testing.assert_allclose(got, _torch_outputs(fx.builder, f)[0], atol=1e-4, rtol=1e-3)
    assert "_source_map" not in report.stages[0].notes  # in memory only: the report stays small
    shipped = json.loads((tmp_path / "fixed" / "report.json").read_text())
    assert "_source_map" not in json.dumps(shipped)

    monkeypatch.setattr(onnx_prep, "pin_axis0_transposes", lambda onnx, model: 0)
    monkeypatch.setattr(onnx_prep, "sample_data", lambda *a, **k: None)
    with pytest.raises(converter.StageError) as caught:
        _export(fx.builder, tmp_path / "raw", inputs=list(fx.inputs))
    err = caught.value
    assert err.exit_code == 3 and err.stage == "onnx->tf" and err.before == ("torch->onnx",)
    assert "does not compute what its onnx input does (max abs" in err.message
    # the axis-0 Transpose that onnx2tf rebuilds from sizes, named as the torch code wrote it
    assert "first diverging node 'node_permute' (Transpose) in attn (torch.nn.MultiheadAttention), aten.permute" \
        in err.message, err.message
    assert not (tmp_path / "raw").exists()
    # without validation the stage's own finding still stops the run; a search cut short (here at once,
    # to keep the test fast) says so and still names the hop
    from converter.formats.tf import localise

    monkeypatch.setattr(localise, "MAX_CONVERSIONS", 0)
    with pytest.raises(converter.StageError, match=r"stage 'onnx->tf' .*its own check: parity FAILED.*"
                                                    r"the search stopped after 0 conversions"):
        _export(fx.builder, tmp_path / "unchecked", inputs=list(fx.inputs), check=False)
    assert not (tmp_path / "unchecked").exists()


def test_a_misconversion_the_stage_misses_fails_validation_exit_1_naming_the_node(tmp_path, monkeypatch):
    """The last line of defence: onnx2tf's wrong attention (fixes off) with the stage's own check blind
    to it, as onnx2tf's per-op check was. The final check in TF.js fails (exit 1, the model written
    for inspection), and the report says which hop first drifts and the first ONNX node it gets
    wrong, in source terms, found by measuring cuts of the graph on the validation samples."""
    need_chain()
    from converter.formats.tf import from_onnx, onnx_prep

    class Blind:  # a self-check that sees nothing wrong
        def __bool__(self) -> bool:
            return True

        def summary(self) -> str:
            return "not checked (blinded by the test)"

    monkeypatch.setattr(onnx_prep, "pin_axis0_transposes", lambda onnx, model: 0)
    monkeypatch.setattr(onnx_prep, "sample_data", lambda *a, **k: None)
    monkeypatch.setattr(from_onnx, "self_check", lambda *a, **k: Blind())
    fx = CATALOG["transformer"]
    report = _export(fx.builder, tmp_path / "o", inputs=list(fx.inputs))
    assert report.verdict == "FAILED" and report.exit_code == 1
    assert max(o.max_abs for o in report.parity.outputs) > 0.1
    note = next(n for n in report.notes if "first fails after" in n)
    assert "parity against the source first fails after stage 'onnx->tf' (onnx -> tf)" in note, note
    assert "first diverging node '" in note and "(Transpose) in attn (torch.nn.MultiheadAttention)" in note, note
    shipped = json.loads((tmp_path / "o" / "report.json").read_text())
    found = shipped["stages"][1]["notes"]["first_diverging_node"]
    assert found["op"] == "Transpose" and found["max_abs"] > 0.1
    assert shipped["stages"][0]["parity"]["passed"]  # the ONNX hop was checked on the way, and is right


def test_cli_pt2_to_tfjs_validates_each_hop(tmp_path):
    """`convertkit export model.pt2 --to tfjs --validate each`: every intermediate is compared with
    the original, so report.json shows which hop drifts."""
    need_chain()
    from fixtures.build import build

    pt2 = build(tmp_path / "fx", ["cnn"])["cnn"]["pt2"]
    out = tmp_path / "out"
    r = convertkit("export", pt2, "--to", "tfjs", "--onnx-to-tf", "onnx2tf", "--validate", "each", "-o", out)
    assert r.returncode == 0, r.stderr
    report = json.loads((out / "report.json").read_text())
    assert [s["stage"] for s in report["stages"]] == ROUTE
    for stage in report["stages"][:2]:  # the last stage's result is the final parity
        assert stage["parity"]["passed"] and stage["parity"]["outputs"][0]["max_abs"] < 1e-4
    assert report["verdict"] == "PASSED"
    assert sorted(p.name for p in out.iterdir()) == ["group1-shard1of1.bin", "model.d.ts", "model.js", "model.json",
                                                     "report.json"]


def test_cli_onnx_source_to_tfjs_offline_and_input_untouched(tmp_path):
    """`convertkit export model.onnx --to tfjs`, with a static batch of 3-channel images and NHWC
    requested (where onnx2tf downloads a calibration file): no network (a dead proxy would fail any
    request), nothing written beside the input or in the working directory, the input unchanged."""
    need_chain()
    import converter

    fx = CATALOG["cnn"]
    onnx_dir = tmp_path / "onnx"
    converter.export(fx.builder, to="onnx", out_dir=onnx_dir, inputs=["x:1,3,32,32"])
    model = onnx_dir / "model.onnx"
    before = hashlib.sha256(model.read_bytes()).hexdigest()
    work = tmp_path / "cwd"
    work.mkdir()
    dead = {"HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9",
            "http_proxy": "http://127.0.0.1:9", "NO_PROXY": "", "no_proxy": ""}
    r = convertkit("export", model, "--to", "tfjs", "--onnx-to-tf", "onnx2tf", "--tfjs-layout", "nhwc",
                   "-o", tmp_path / "out", cwd=work, env={
        **dead, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0, r.stderr
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert [s["stage"] for s in report["stages"]] == ["onnx->tf", "tf->tfjs"] and report["verdict"] == "PASSED"
    assert report["stages"][0]["notes"]["input_layout"]["x"]["layout"] == "NHWC"
    assert hashlib.sha256(model.read_bytes()).hexdigest() == before
    assert sorted(p.name for p in onnx_dir.iterdir()) == ["model.d.ts", "model.js", "model.onnx", "report.json"]
    assert not any(work.iterdir())  # no calibration_image_sample_data_*.npy, no saved_model/


def test_cli_onnx2tf_failure_exits_3_naming_the_hop_and_op(tmp_path):
    need_chain()
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])
    two = helper.make_tensor("two", TensorProto.DOUBLE, [], [2.0])
    graph = helper.make_graph([helper.make_node("CastLike", ["two", "x"], ["two_f"], name="scale_like_x"),
                               helper.make_node("Mul", ["x", "two_f"], ["y"], name="mul")], "g", [x], [y], [two])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9)
    onnx.save(model, str(tmp_path / "castlike.onnx"))
    r = convertkit("export", tmp_path / "castlike.onnx", "--to", "tfjs", "--onnx-to-tf", "onnx2tf", "-o", tmp_path / "out")
    assert r.returncode == 3, r.stderr
    assert "stage 'onnx->tf' failed" in r.stderr and "CastLike (node 'scale_like_x')" in r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "out").exists()


@pytest.mark.slow
def test_legacy_exporter_attention_and_byte_identical_output(tmp_path):
    """The TorchScript exporter's attention graph (the one onnx2tf got wrong in the notes; it
    exports static shapes only) converts too, at sizes where batch, heads and sequence coincide;
    the same command twice writes the same bytes."""
    need_chain()
    fx = CATALOG["transformer"]
    outs = []
    for i in range(2):
        out = tmp_path / f"out{i}"
        r = convertkit("export", fx.builder, "-i", "x:4,4,32", "--exporter", "torchscript", "--to", "tfjs",
                       "--onnx-to-tf", "onnx2tf", "-o", out)
        assert r.returncode == 0, r.stderr
        outs.append(out)
    report = json.loads((outs[0] / "report.json").read_text())
    assert report["stages"][0]["notes"]["exporter"] == "torchscript" and report["verdict"] == "PASSED"
    for name in ("model.json", "group1-shard1of1.bin"):
        assert (outs[0] / name).read_bytes() == (outs[1] / name).read_bytes()


@pytest.mark.slow
def test_tiny_bert_to_tfjs_with_a_dynamic_batch(tmp_path):
    """A Hugging Face BERT (two int64 inputs, an attention mask): onnx2tf fails or is wrong with a dynamic
    sequence, so the TF.js model takes the example's sequence length, stated, and keeps the dynamic batch
    (with the view targets computed from the input's shape, onnx2tf put the attention softmax on the wrong
    axis). The mask's sample range (0..2) reaches onnx2tf's own check: with 0..10 the mask overflows and
    its model is NaN; with 1..2 (all ones) the mask adds zeros, every layout matches, and onnx2tf applies
    it along the query axis, which padded inputs (checked below) would show."""
    need_chain()
    need("transformers")
    import converter
    from converter.formats.tfjs.runner import TfjsRunner

    builder = "fixtures.hf_models:tiny_bert"
    report = _export(builder, tmp_path / "bert",
                     inputs=["input_ids:batch,seq:int64:0..100", "attention_mask:batch,seq:int64:0..2"])
    assert report.verdict == "PASSED", report.parity.summary()
    notes = report.stages[1].notes
    assert notes["fixed_shape"] == {"input_ids": ["batch", 4], "attention_mask": ["batch", 4]}
    assert notes["shapes"] == "dynamic batch, other dims fixed"
    assert report.stages[2].notes["dtype_changes"] == ["input_ids: int64 -> int32 (TF.js has no int64)",
                                                        "attention_mask: int64 -> int32 (TF.js has no int64)"]
    sig = _model_json(tmp_path / "bert")["signature"]["inputs"]
    assert all([d["size"] for d in i["tensorShape"]["dim"]] == ["-1", "4"] for i in sig.values())
    rng = np.random.default_rng(12)
    with TfjsRunner(converter.load(str(tmp_path / "bert"))) as runner:
        for n in (1, 3):  # padded: some mask entries 0
            feeds = {"input_ids": rng.integers(0, 100, (n, 4)), "attention_mask": np.tril(np.ones((n, 4), np.int64), 1)}
            want = _torch_outputs(builder, feeds)[0]
            got = runner.infer({k: v.astype(np.int32) for k, v in feeds.items()})["output"]
            np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-3)


def test_onnx2tf_graph_is_written_to_tfjs_as_it_is(tmp_path):
    """tf->tfjs writes onnx->tf's frozen graph (placeholders, named outputs, no functions) without
    tracing it again: the same ops, weights and TF.js outputs as the traced path it skips."""
    need_chain()
    import collections

    import converter
    from converter.deps import require
    from converter.formats.tf.from_onnx import OnnxToTf
    from converter.formats.tf.runner import tf_callable
    from converter.formats.tfjs.from_tf import TfToTfjs, as_written
    from converter.formats.tfjs.graph import write_from_callable
    from converter.parity.inputs import make_feeds

    fx = CATALOG["cnn"]
    converter.export(fx.builder, to="onnx", out_dir=tmp_path / "onnx", inputs=list(fx.inputs), check=False)
    tf_model = OnnxToTf(onnx_to_tf="onnx2tf").run(converter.load(str(tmp_path / "onnx" / "model.onnx")), _mkdir(tmp_path / "tf"))
    tf = require("tensorflow")
    assert as_written(tf_model, tf) is not None
    direct = TfToTfjs().run(tf_model, _mkdir(tmp_path / "direct"))
    call = tf_callable(tf_model, tf)
    write_from_callable(call.fn, call.input_names, tf_model.inputs, call.output_names, _mkdir(tmp_path / "traced"),
                        stage="test")

    def ops(d: Path) -> collections.Counter:
        return collections.Counter(n["op"] for n in _model_json(d)["modelTopology"]["node"])

    assert ops(tmp_path / "direct") == ops(tmp_path / "traced")
    shards = sorted(p.name for p in (tmp_path / "direct").glob("*.bin"))
    assert shards and all((tmp_path / "direct" / n).read_bytes() == (tmp_path / "traced" / n).read_bytes()
                          for n in shards)
    feed = make_feeds(list(direct.inputs), samples=1, seed=3)[0]
    got, want = _tfjs_outputs(tmp_path / "direct", feed), _tfjs_outputs(tmp_path / "traced", feed)
    assert list(got) == list(want) and all(np.array_equal(got[k], want[k]) for k in got)


def _mkdir(p: Path) -> Path:
    p.mkdir(parents=True)
    return p
