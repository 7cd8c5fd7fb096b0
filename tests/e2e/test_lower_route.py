"""ONNX / PyTorch / Hugging Face -> TF.js through convertkit's own lowering (issue 13): dynamic
batch AND sequence kept and checked in TF.js at two sizes of each; a conv net runs channels-last
with no Transpose between its convs; ``--onnx-to-tf own`` names every op the lowering lacks (exit
3); ``auto`` falls back to onnx2tf and says why."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fixtures.catalog import CATALOG
from tests.conftest import convertkit, need
from tests.e2e.test_to_tfjs import need_tfjs

LOWERING = "convertkit lowering"


def _tfjs(out: Path, feeds: dict, backend: str = "wasm") -> dict:
    import converter
    from converter.formats.tfjs.runner import TfjsRunner

    with TfjsRunner(converter.load(str(out)), backend=backend) as runner:
        return runner.infer(feeds)


def _onnx_to_tf_notes(report) -> dict:
    return next(s for s in report.stages if s.stage == "onnx->tf").notes


def test_transformer_block_keeps_batch_and_sequence_dynamic_in_tfjs(tmp_path):
    """torch.nn.MultiheadAttention with no attention workaround: one TF.js model for every batch and
    sequence length, checked against PyTorch at two sizes of each."""
    need("torch", "onnx", "onnxruntime")
    need_tfjs()
    import torch

    import converter
    from fixtures.build import load_model

    fx = CATALOG["transformer"]
    report = converter.export(fx.builder, to="tfjs", out_dir=tmp_path / "web", inputs=list(fx.inputs),
                              onnx_to_tf="own")
    assert report.verdict == "PASSED", report.parity.summary()
    notes = _onnx_to_tf_notes(report)
    assert notes["converter"] == LOWERING and "fixed_shape" not in notes and "rewrites" not in notes
    assert notes["lowering_check"].startswith("parity PASSED")
    model = load_model(fx)
    rng = np.random.default_rng(3)
    for batch, seq in ((1, 3), (3, 7)):  # two sizes of each dynamic dim, neither the samples' own
        x = rng.standard_normal((batch, seq, 32)).astype(np.float32)
        with torch.no_grad():
            want = model(torch.from_numpy(x)).numpy()
        got = _tfjs(tmp_path / "web", {"x": x})
        np.testing.assert_allclose(next(iter(got.values())), want, atol=1e-4, rtol=1e-3)


def test_tiny_bert_directory_keeps_batch_and_sequence_dynamic_in_tfjs(tmp_path):
    """The Hugging Face directory with no --input: the TF.js model takes any batch and any sequence
    length (the onnx2tf route fixes both, see test_hf.py), checked in TF.js against transformers (the logits of its
    sequence-classification head)."""
    need("torch", "transformers", "optimum", "onnxruntime", "tensorflow")
    need_tfjs()
    import torch
    from transformers import AutoModelForSequenceClassification

    from fixtures.hf_models import save_tiny_bert

    bert = save_tiny_bert(tmp_path / "tiny-bert")
    r = convertkit("export", bert, "--to", "tfjs", "--onnx-to-tf", "own", "-o", tmp_path / "web")
    assert r.returncode == 0, r.stderr[-3000:]
    report = json.loads((tmp_path / "web" / "report.json").read_text())
    notes = report["stages"][1]["notes"]
    assert report["stages"][1]["stage"] == "onnx->tf" and notes["converter"] == LOWERING
    assert "fixed_shape" not in notes and report["verdict"] == "PASSED"
    model = AutoModelForSequenceClassification.from_pretrained(str(bert)).eval()
    rng = np.random.default_rng(5)
    for batch, seq in ((1, 5), (3, 11)):
        ids = rng.integers(0, 100, (batch, seq))
        mask = np.ones((batch, seq), np.int64)
        mask[-1, seq // 2:] = 0  # a padded row: the attention mask matters
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        with torch.no_grad():
            want = model(**{k: torch.from_numpy(v) for k, v in feeds.items()}).logits.numpy()
        got = _tfjs(tmp_path / "web", {k: v.astype(np.int32) for k, v in feeds.items()})
        assert len(got) == 1
        np.testing.assert_allclose(next(iter(got.values())), want, atol=1e-4, rtol=1e-3)


def _ops_between(nodes: list[dict], first: str, last: str) -> list[str]:
    """The ops on the paths from node ``first`` to node ``last`` of a TF.js graph (``last`` excluded)."""
    by_name = {n["name"]: n for n in nodes}
    seen, stack, ops = set(), [last], []
    while stack:
        for inp in by_name[stack.pop()].get("input", []):
            name = inp.lstrip("^").split(":")[0]
            if name in seen or name == first or name not in by_name:
                continue
            seen.add(name)
            if by_name[name]["op"] not in ("Const", "Placeholder"):
                ops.append(by_name[name]["op"])
                stack.append(name)
    return ops


@pytest.mark.parametrize("name", ["cnn", "dwcnn"])
def test_conv_net_runs_channels_last_with_no_transpose_between_convs(tmp_path, name):
    need("torch", "onnx", "onnxruntime")
    need_tfjs()
    import converter

    fx = CATALOG[name]
    report = converter.export(fx.builder, to="tfjs", out_dir=tmp_path / "web", inputs=list(fx.inputs),
                              onnx_to_tf="own")
    assert report.verdict == "PASSED", report.parity.summary()
    assert _onnx_to_tf_notes(report)["converter"] == LOWERING
    nodes = json.loads((tmp_path / "web" / "model.json").read_text())["modelTopology"]["node"]
    convs = [n["name"] for n in nodes if "Conv2D" in n["op"] or "Depthwise" in n["op"]]
    assert len(convs) >= 2
    between = _ops_between(nodes, convs[0], convs[-1])
    assert "Transpose" not in between, between
    assert sum(n["op"] == "Transpose" for n in nodes) <= 2  # NCHW in at the edge, ONNX order out


def test_conv_net_with_nhwc_inputs_has_no_transpose_at_all(tmp_path):
    """--tfjs-layout nhwc: the input is already channels-last, so the lowering adds no Transpose
    anywhere (the global pool's [N,1,1,C] -> [N,C,1,1] is a reshape), and the layout is stated."""
    need("torch", "onnx", "onnxruntime")
    need_tfjs()
    import converter

    fx = CATALOG["cnn"]
    report = converter.export(fx.builder, to="tfjs", out_dir=tmp_path / "web", inputs=list(fx.inputs),
                              tfjs_layout="nhwc", onnx_to_tf="own")
    assert report.verdict == "PASSED", report.parity.summary()  # TF.js fed NHWC samples, against torch's NCHW
    notes = _onnx_to_tf_notes(report)
    assert notes["input_layout"] == {"x": {"layout": "NHWC", "source_layout": "NCHW", "perm": [0, 2, 3, 1]}}
    model = json.loads((tmp_path / "web" / "model.json").read_text())
    assert not [n for n in model["modelTopology"]["node"] if n["op"] == "Transpose"]
    assert model["userDefinedMetadata"]["convertkit"]["input_layout"] == notes["input_layout"]


def _onnx_with(tmp_path: Path, *ops: str) -> Path:
    """x[batch,3,3] -> Relu -> each op in turn (ops onnxruntime has and the lowering may not)."""
    from onnx import TensorProto, helper, save

    nodes, last = [helper.make_node("Relu", ["x"], ["r"])], "r"
    for i, op in enumerate(ops):
        nodes.append(helper.make_node(op, [last], [f"v{i}"]))
        last = f"v{i}"
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 3])
    y = helper.make_tensor_value_info(last, TensorProto.FLOAT, None)
    model = helper.make_model(helper.make_graph(nodes, "g", [x], [y]), opset_imports=[helper.make_opsetid("", 17)],
                              ir_version=8)
    path = tmp_path / "model.onnx"
    save(model, str(path))
    return path


def test_own_exits_3_naming_every_op_the_lowering_lacks(tmp_path):
    need("onnx", "onnxruntime", "tensorflow")
    import onnx

    from converter.formats.tf.lower import missing_ops

    # random ops: TF.js runs none of them, so the lowering lacks them on purpose (two, to see both named)
    path = _onnx_with(tmp_path, "Sign", "RandomNormalLike", "RandomUniformLike")
    missing = missing_ops(onnx.load(str(path)))
    assert missing == [("RandomNormalLike", 17), ("RandomUniformLike", 17)]
    r = convertkit("export", path, "--to", "tf", "--onnx-to-tf", "own", "-o", tmp_path / "out")
    assert r.returncode == 3, r.stderr[-2000:]
    line = r.stderr.strip().splitlines()[-1]
    assert "onnx->tf" in r.stderr and all(f"{op} (opset {v})" in r.stderr for op, v in missing), line
    assert not (tmp_path / "out").exists()


def test_auto_falls_back_to_onnx2tf_and_says_why(tmp_path, monkeypatch):
    """A lowering without Det (its handler taken out of the registry for this test only; onnx2tf and
    TensorFlow have Det): the stage notes name onnx2tf and the reason, and the model passes."""
    need("onnx", "onnxruntime", "onnx2tf", "tensorflow")
    import converter
    from converter.formats.tf.lower import registry

    registry.discover()
    monkeypatch.delitem(registry._TABLE, ("", "Det"))

    report = converter.export(str(_onnx_with(tmp_path, "Det")), to="tf", out_dir=tmp_path / "out")
    assert report.verdict == "PASSED", report.parity.summary()
    notes = report.stages[0].notes
    assert notes["converter"].startswith("onnx2tf ") and "(fallback: lowering has no handler for Det" in notes["converter"]
    assert notes["lowering_fallback_reason"] == "lowering has no handler for Det (opset 17)"


@pytest.mark.parametrize("weights", ["constant", "input"])
def test_gemm_with_transposed_weights_is_right_in_tfjs_wasm(tmp_path, weights):
    """Gemm(transB=1) + bias: TF.js fuses it into _FusedMatMul, whose wasm kernel gets transpose_b
    wrong; the weights reach it transposed beforehand (a constant by the lowering, a run-time input
    by the TF.js stage's graph fix)."""
    need("onnx", "onnxruntime", "tensorflow")
    need_tfjs()
    from onnx import TensorProto, helper, numpy_helper, save

    import converter

    rng = np.random.default_rng(0)
    w, c = rng.standard_normal((8, 16)).astype(np.float32), rng.standard_normal(8).astype(np.float32)
    inputs = [helper.make_tensor_value_info("a", TensorProto.FLOAT, ["batch", 16])]
    inits = [numpy_helper.from_array(c, "c")]
    if weights == "input":
        inputs.append(helper.make_tensor_value_info("w", TensorProto.FLOAT, [8, 16]))
    else:
        inits.append(numpy_helper.from_array(w, "w"))
    nodes = [helper.make_node("Gemm", ["a", "w", "c"], ["g"], transB=1), helper.make_node("Relu", ["g"], ["y"])]
    graph = helper.make_graph(nodes, "g", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 8])],
                              inits)
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(tmp_path / "m.onnx"))
    report = converter.export(str(tmp_path / "m.onnx"), to="tfjs", out_dir=tmp_path / "web", onnx_to_tf="own")
    assert report.verdict == "PASSED", report.parity.summary()  # validated in TF.js wasm against onnxruntime
    a = rng.standard_normal((5, 16)).astype(np.float32)
    feeds = {"a": a, "w": w} if weights == "input" else {"a": a}
    got = _tfjs(tmp_path / "web", feeds)["y"]
    np.testing.assert_allclose(got, np.maximum(a @ w.T + c, 0), atol=1e-4, rtol=1e-3)


def test_the_lowered_graph_is_what_tfjs_writes_as_it_is(tmp_path):
    """The lowering's frozen graph (placeholders with None for dynamic dims, outputs named as in ONNX)
    is what tf->tfjs converts, without tracing it again."""
    need("torch", "onnx", "onnxruntime", "tensorflow")
    import converter
    from converter.deps import require
    from converter.formats.tf.from_onnx import OnnxToTf
    from converter.formats.tfjs.from_tf import as_written

    fx = CATALOG["tokens"]
    converter.export(fx.builder, to="onnx", out_dir=tmp_path / "onnx", inputs=list(fx.inputs), check=False)
    (tmp_path / "tf").mkdir()
    art = OnnxToTf(onnx_to_tf="own").run(converter.load(str(tmp_path / "onnx" / "model.onnx")), tmp_path / "tf")
    assert art.meta["converter"] == LOWERING and art.inputs[0].shape == ("batch", "seq")
    graph_def = as_written(art, require("tensorflow"))
    assert graph_def is not None and not graph_def.library.function
