"""int8 quantization, fp16 and pruning on ONNX, end to end through the CLI and the real tools.

Every result must load in onnxruntime with its default graph optimizations, run without NaN, and
pass its pass's tolerance against the original model (the torch module for ``export``, the fp32
ONNX file for ``optimize``); a quantization pushed past its tolerance exits 1 with the model kept.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import convertkit, need

CNN = ("fixtures.torch_models:cnn", "-i", "x:batch,3,32,32")
TRANSFORMER = ("fixtures.torch_models:transformer", "-i", "x:batch,seq,32")
OVERFLOW = ("fixtures.pass_models:fp16_overflow", "-i", "x:batch,16")
HOSTILE = ("fixtures.pass_models:quant_hostile", "-i", "x:batch,16")
BERT_INPUTS = ("input_ids:batch,seq:int64:0..100", "attention_mask:batch,seq:int64:0..2")


def _run(*args: object) -> tuple[int, dict, str]:
    r = convertkit(*args, "--json")
    report = json.loads(r.stdout) if r.stdout.strip().startswith("{") else {}
    return r.returncode, report, r.stderr


def _stage(report: dict, name: str) -> dict:
    (stage,) = [s for s in report["stages"] if s["stage"] == name]
    return stage


def _loads_and_runs(path: Path, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Independently of the pass: default session options, every output finite."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    outs = sess.run(None, feeds)
    assert all(np.all(np.isfinite(o)) for o in outs)
    return outs


@pytest.fixture(scope="module")
def onnx_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """fp32 ONNX exports of the fixtures, validated against torch, for the `optimize` tests."""
    need("torch", "onnx", "onnxruntime", "onnxscript")
    from converter import api

    root = tmp_path_factory.mktemp("onnx_models")
    out = {}
    for name, src, inputs in (("cnn", CNN[0], [CNN[2]]), ("transformer", TRANSFORMER[0], [TRANSFORMER[2]])):
        report = api.export(src, to="onnx", out_dir=root / name, inputs=inputs)
        assert report.verdict == "PASSED"
        out[name] = root / name / "model.onnx"
    return out


@pytest.fixture(scope="module")
def bert_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    need("torch", "onnx", "onnxruntime", "onnxscript", "transformers")
    from converter import api

    out = tmp_path_factory.mktemp("bert") / "onnx"
    report = api.export("fixtures.hf_models:tiny_bert", to="onnx", out_dir=out, inputs=list(BERT_INPUTS))
    assert report.verdict == "PASSED", report.parity.summary()
    return out / "model.onnx"


# -- quantize --------------------------------------------------------------------------------------


def test_dynamic_int8_on_cnn_picks_weights_that_load(tmp_path):
    need("torch", "onnx", "onnxruntime", "onnxscript")
    rc, report, err = _run("export", *CNN, "-p", "quantize", "-o", tmp_path / "q")
    assert rc == 0, err
    q = _stage(report, "quantize")
    assert report["verdict"] == "PASSED" and q["config"]["mode"] == "dynamic"
    # int8 weights on a Conv make ConvInteger(int8), which this CPU build cannot load: the pass saw it and fell back
    assert q["notes"]["weight_type"] == "QUInt8"
    assert any("ConvInteger" in f for f in q["notes"]["fallbacks"])
    assert q["ops_out"].get("ConvInteger") and q["ops_out"].get("MatMulInteger")
    # a 1.6k-parameter CNN: graph structure is a large share of its file, so less than the 4x of the weights
    assert q["bytes_out"] < 0.75 * q["bytes_in"] and q["latency_ms_out"] > 0
    assert q["parity"] is None or q["parity"]["passed"]
    assert report["parity"]["tolerance"]["min_cosine"] == 0.99
    _loads_and_runs(tmp_path / "q" / "model.onnx", {"x": np.ones((2, 3, 32, 32), np.float32)})


def test_static_int8_qdq_on_transformer(tmp_path):
    need("torch", "onnx", "onnxruntime", "onnxscript")
    rc, report, err = _run("export", *TRANSFORMER, "-p", "quantize:mode=static", "-o", tmp_path / "q")
    assert rc == 0, err
    q = _stage(report, "quantize")
    assert q["ops_out"].get("QuantizeLinear") and q["ops_out"].get("DequantizeLinear")
    calib = q["notes"]["calibration"]
    assert calib["data"] == "the validation feeds" and "real inputs" in calib["warning"]
    assert report["parity"]["outputs"][0]["cosine"] >= 0.99
    _loads_and_runs(tmp_path / "q" / "model.onnx", {"x": np.ones((2, 5, 32), np.float32)})


def test_static_calibration_file_entropy_per_channel(tmp_path, onnx_models):
    need("onnx", "onnxruntime")
    rng = np.random.default_rng(3)
    np.savez(tmp_path / "calib.npz", x=rng.standard_normal((8, 3, 32, 32)).astype(np.float32))
    spec = f"quantize:mode=static,calibration={tmp_path / 'calib.npz'},method=entropy,per_channel=true"
    rc, report, err = _run("optimize", onnx_models["cnn"], "-p", spec, "-o", tmp_path / "q")
    assert rc == 0, err
    notes = _stage(report, "quantize")["notes"]
    assert notes["calibration"]["samples"] == 8 and "warning" not in notes["calibration"]  # 8 rows -> 8 samples
    assert notes["per_channel"] is True and report["verdict"] == "PASSED"


def test_remedies_rescue_a_quantization_hostile_model(tmp_path):
    """One outlier channel wrecks per-tensor int8; per-channel weights plus the second layer kept
    in fp32 (found by per-node error) pass, and the meta says so."""
    need("torch", "onnx", "onnxruntime", "onnxscript")
    rc, report, err = _run("export", *HOSTILE, "-p", "quantize", "-o", tmp_path / "q")
    assert rc == 0, err
    notes = _stage(report, "quantize")["notes"]
    results = [a["result"] for a in notes["attempts"]]
    assert results[0].startswith("parity FAILED") and results[-1] == "passed"
    assert notes["per_channel"] is True
    # portable by default: 7-bit int8 weights, so an AVX2-only CPU computes what this one did
    assert notes["int8"]["target"] == "portable" and notes["int8"]["saturation_free"] is True
    (kept,) = notes["kept_fp32"]
    assert kept["op"] == "Gemm" and "relative error" in kept["why"]


def test_dynamic_int8_keeps_every_layer_of_a_gelu_mlp_int8(tmp_path):
    """Portable int8 needs no fp32 layer to make up for CPU saturation: the file is ~0.25x on any CPU."""
    need("torch", "onnx", "onnxruntime", "onnxscript")
    rc, report, err = _run("export", "fixtures.pass_models:gelu_mlp", "-i", "x:batch,256", "-p", "quantize",
                           "-o", tmp_path / "q")
    assert rc == 0, err
    q = _stage(report, "quantize")
    assert q["notes"]["kept_fp32"] == [] and q["notes"]["int8"]["saturation_free"] is True
    assert q["notes"]["int8"]["int8_weight_tensors"] == 3 and q["bytes_out"] < 0.27 * q["bytes_in"]
    assert report["parity"]["outputs"][0]["cosine"] >= 0.999


def test_quantization_past_its_tolerance_exits_1_and_keeps_the_model(tmp_path, onnx_models):
    need("onnx", "onnxruntime")
    rc, report, _ = _run("optimize", onnx_models["cnn"], "-p", "quantize", "--atol", "1e-6", "--rtol", "1e-6",
                         "-o", tmp_path / "q")
    assert rc == 1 and report["verdict"] == "FAILED"
    notes = _stage(report, "quantize")["notes"]
    assert "no variant met the tolerance" in notes["verdict"]
    assert [a["variant"] for a in notes["attempts"]][:2] == ["per-tensor", "per-channel"]
    assert len(notes["attempts"]) >= 3  # ... and keeping the most sensitive node in fp32
    _loads_and_runs(tmp_path / "q" / "model.onnx", {"x": np.ones((1, 3, 32, 32), np.float32)})


def test_static_int8_on_hostile_model_fails_parity(tmp_path):
    need("torch", "onnx", "onnxruntime", "onnxscript")
    rc, report, _ = _run("export", *HOSTILE, "-p", "quantize:mode=static", "-o", tmp_path / "q")
    assert rc == 1 and report["verdict"] == "FAILED"
    assert (tmp_path / "q" / "model.onnx").is_file() and report["artifact"].endswith("model.onnx")
    assert "cosine" in report["parity"]["outputs"][0]["message"]


# -- fp16 ------------------------------------------------------------------------------------------


def test_fp16_keeps_overflowing_nodes_in_fp32(tmp_path):
    need("torch", "onnx", "onnxruntime", "onnxscript", "onnxconverter_common")
    rc, report, err = _run("export", *OVERFLOW, "-p", "fp16", "-o", tmp_path / "h")
    assert rc == 0, err
    notes = _stage(report, "fp16")["notes"]
    kept = {k["op"]: k["why"] for k in notes["kept_fp32"]}
    assert set(kept) == {"Gemm", "LayerNormalization"}  # fc2 (|x| ~ 1e5..1e6) and the norm that reads it
    assert all("reaches |x|" in why for why in kept.values())
    assert notes["converter"] == "onnxconverter_common.float16"  # the one that honours block lists here
    import onnx

    model = onnx.load(str(tmp_path / "h" / "model.onnx"))
    assert {i.type.tensor_type.elem_type for i in model.graph.input} == {onnx.TensorProto.FLOAT}
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer)
    x = np.random.default_rng(0).standard_normal((4, 16)).astype(np.float32)
    _loads_and_runs(tmp_path / "h" / "model.onnx", {"x": x})


def test_the_overflow_fixture_breaks_a_naive_fp16_conversion(tmp_path):
    """Control: without the block list the same model overflows to NaN/Inf."""
    need("torch", "onnx", "onnxruntime", "onnxscript")
    import onnx
    import onnxruntime as ort
    from onnxruntime.transformers.float16 import convert_float_to_float16

    from converter import api

    assert api.export(OVERFLOW[0], to="onnx", out_dir=tmp_path / "f32", inputs=[OVERFLOW[2]]).verdict == "PASSED"
    naive = convert_float_to_float16(onnx.load(str(tmp_path / "f32" / "model.onnx")), keep_io_types=True)
    onnx.save(naive, str(tmp_path / "naive.onnx"))
    x = np.random.default_rng(0).standard_normal((4, 16)).astype(np.float32)
    (y,) = ort.InferenceSession(str(tmp_path / "naive.onnx"), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    assert not np.all(np.isfinite(y))


def test_fp16_transformer_loads_with_default_optimizations(tmp_path, onnx_models):
    need("onnx", "onnxruntime")
    rc, report, err = _run("optimize", onnx_models["transformer"], "-p", "fp16", "-o", tmp_path / "h")
    assert rc == 0, err
    fp16 = _stage(report, "fp16")
    assert report["verdict"] == "PASSED" and fp16["bytes_out"] < 0.9 * fp16["bytes_in"]
    assert report["parity"]["tolerance"] == {"atol": 1e-2, "rtol": 1e-2, "min_cosine": 0.999, "min_top1": None,
                                             "dtype_changes": []}
    _loads_and_runs(tmp_path / "h" / "model.onnx", {"x": np.ones((3, 7, 32), np.float32)})


# -- prune -----------------------------------------------------------------------------------------


def test_prune_hits_the_requested_sparsity(tmp_path):
    need("torch", "onnx", "onnxruntime", "onnxscript")
    rc, report, err = _run("export", *CNN, "-p", "prune:sparsity=0.5", "-o", tmp_path / "p")
    assert rc == 0, err
    p = _stage(report, "prune")
    sp = p["notes"]["sparsity"]
    assert abs(sp["achieved"] - 0.5) <= 0.01 and sp["requested"] == 0.5
    assert set(sp["per_tensor"]) == {"features.0.weight", "features.4.weight", "head.weight"}  # no biases
    assert p["gzip_bytes_out"] < 0.8 * p["gzip_bytes_in"]
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(tmp_path / "p" / "model.onnx"))
    w = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    zeros = sum(int((w[n] == 0).sum()) for n in sp["per_tensor"])
    assert abs(zeros / sum(w[n].size for n in sp["per_tensor"]) - 0.5) <= 0.01


def test_structured_prune_shrinks_the_file_and_still_runs(tmp_path):
    need("torch", "onnx", "onnxruntime", "onnxscript")
    rc, report, err = _run("export", *CNN, "-p", "prune:sparsity=0.3,structured=true", "-o", tmp_path / "p")
    assert rc == 0, err
    p = _stage(report, "prune")
    assert p["bytes_out"] < 0.85 * p["bytes_in"]
    removed = {r["layer"]: r for r in p["notes"]["removed"]}
    assert len(removed) == 2 and all(r["op"] == "Conv" for r in removed.values())
    assert p["notes"]["untouched"][0]["why"].endswith("is a graph output")  # the classifier head
    assert p["notes"]["params"]["after"] < p["notes"]["params"]["before"]
    (y,) = _loads_and_runs(tmp_path / "p" / "model.onnx", {"x": np.ones((2, 3, 32, 32), np.float32)})
    assert y.shape == (2, 10)


@pytest.mark.slow
def test_structured_prune_on_transformer_reports_what_it_left_alone(tmp_path, onnx_models):
    need("onnx", "onnxruntime")
    rc, report, err = _run("optimize", onnx_models["transformer"], "-p", "prune:sparsity=0.5,structured=true",
                           "-o", tmp_path / "p")
    assert rc == 0, err
    notes = _stage(report, "prune")["notes"]
    assert [r["op"] for r in notes["removed"]] == ["MatMul"]  # the feed-forward's first layer
    assert any("Reshape" in u["why"] for u in notes["untouched"])  # attention projections


# -- tiny BERT ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", ["quantize", "quantize:mode=static", "fp16"])
def test_tiny_bert(tmp_path, bert_onnx, spec):
    rc, report, err = _run("optimize", bert_onnx, "-p", spec, "-i", BERT_INPUTS[0], "-i", BERT_INPUTS[1],
                           "-o", tmp_path / "o")
    assert rc == 0, err
    stage = _stage(report, spec.split(":")[0])
    assert report["verdict"] == "PASSED" and stage["bytes_out"] < stage["bytes_in"]
    if spec == "fp16":  # the attention mask's finfo.min constant does not fit fp16: its Mul stays fp32
        assert any(k["op"] == "Mul" and "fp16 max" in k["why"] for k in stage["notes"]["kept_fp32"])
    if spec == "quantize:mode=static":  # the additive mask (-3.4e38 where padded) stays out of int8
        assert any("sentinel" in k["why"] for k in stage["notes"]["kept_fp32"])
    if spec.startswith("quantize"):
        assert stage["notes"]["int8"]["saturation_free"] is True
    ids = np.array([[1, 5, 7, 9]], np.int64)
    _loads_and_runs(tmp_path / "o" / "model.onnx", {"input_ids": ids, "attention_mask": np.array([[1, 1, 1, 0]])})


def test_tiny_bert_saves_offline_and_reloads(tmp_path):
    need("torch", "transformers")
    import torch
    from transformers import BertForSequenceClassification

    from fixtures.hf_models import save_tiny_bert, tiny_bert

    path = save_tiny_bert(tmp_path / "bert")
    assert (path / "config.json").is_file()
    reloaded = BertForSequenceClassification.from_pretrained(str(path), local_files_only=True).eval()
    ids = torch.tensor([[1, 2, 3, 4]])
    mask = torch.ones_like(ids)
    with torch.no_grad():
        torch.testing.assert_close(reloaded(input_ids=ids, attention_mask=mask).logits, tiny_bert()(ids, mask))


def test_fp16_without_io_casts_gives_float16_outputs_and_passes(torch_fixtures, tmp_path):
    need("torch", "onnx", "onnxruntime", "onnxconverter_common", "onnxscript")
    assert convertkit("export", torch_fixtures["cnn"]["pt2"], "-o", tmp_path / "f32", "--no-check").returncode == 0
    r = convertkit("optimize", tmp_path / "f32" / "model.onnx", "-p", "fp16:keep_io_types=false",
                   "-o", tmp_path / "f16", "--json")
    assert r.returncode == 0, r.stderr
    (out,) = json.loads(r.stdout)["parity"]["outputs"]
    assert (out["ref_dtype"], out["got_dtype"], out["status"]) == ("float32", "float16", "ok")


def test_calibration_flag_feeds_static_quantization(tmp_path, onnx_models):
    need("onnx", "onnxruntime")
    np.savez(tmp_path / "calib.npz", x=np.random.default_rng(5).standard_normal((6, 3, 32, 32)).astype(np.float32))
    rc, report, err = _run("optimize", onnx_models["cnn"], "-p", "quantize:mode=static",
                           "--calibration", tmp_path / "calib.npz", "-o", tmp_path / "q")
    assert rc == 0, err
    calib = _stage(report, "quantize")["notes"]["calibration"]
    assert calib["samples"] == 6 and calib["data"] == str(tmp_path / "calib.npz") and "warning" not in calib
    r = convertkit("optimize", onnx_models["cnn"], "-p", "quantize", "--calibration", tmp_path / "calib.npz",
                   "-o", tmp_path / "d")
    assert r.returncode == 2 and "applies to static quantization" in r.stderr and not (tmp_path / "d").exists()
