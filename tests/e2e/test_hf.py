"""Hugging Face model directories: a tiny seeded BERT saved with save_pretrained (nothing is
downloaded), through optimum's real exporter and onnxruntime, validated against transformers in torch."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import convertkit, need

INPUTS = ["input_ids", "attention_mask", "token_type_ids"]  # what optimum's BertOnnxConfig declares


@pytest.fixture(scope="session")
def bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    need("torch", "transformers")
    from fixtures.hf_models import save_tiny_bert

    return save_tiny_bert(tmp_path_factory.mktemp("hf") / "tiny-bert")


@pytest.fixture(scope="session")
def bert_onnx(bert_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    """`convertkit export DIR --to onnx`, once per session."""
    need("torch", "transformers", "optimum", "onnx", "onnxruntime")
    out = tmp_path_factory.mktemp("hf-onnx") / "out"
    return out, convertkit("export", bert_dir, "--to", "onnx", "-o", out)


def _one_line_error(r: object) -> str:
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]  # type: ignore[attr-defined]
    assert len(lines) == 1 and lines[0].startswith("convertkit: error: "), r.stderr  # type: ignore[attr-defined]
    return lines[0]


def test_export_to_onnx_passes_parity_with_the_models_own_inputs(bert_onnx):
    import onnx

    from fixtures.hf_models import LABELS, VOCAB

    out, r = bert_onnx
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in out.iterdir()) == ["model.d.ts", "model.js", "model.onnx", "report.json"]  # no optimum files
    report = json.loads((out / "report.json").read_text())
    assert report["verdict"] == "PASSED"
    inputs = {s["name"]: s for s in report["inputs"]}
    assert list(inputs) == INPUTS
    assert all(s["shape"] == ["batch", "sequence"] and s["dtype"] == "int64" for s in inputs.values())
    assert inputs["input_ids"]["int_range"] == [0, VOCAB]  # token ids stay inside the vocabulary
    assert inputs["attention_mask"]["int_range"] == [0, 2]  # padding too: an all-ones mask hides mask bugs
    assert inputs["token_type_ids"]["int_range"] == [0, 2]
    (stage,) = report["stages"]
    assert stage["stage"] == "hf->onnx" and stage["notes"]["exporter"] == "optimum"
    assert stage["notes"]["task"] == "text-classification"
    assert [o["name"] for o in report["parity"]["outputs"]] == ["logits"]
    assert all(o["max_abs"] < 1e-4 for o in report["parity"]["outputs"])

    model = onnx.load(str(out / "model.onnx"))
    assert [i.name for i in model.graph.input] == INPUTS
    for inp in model.graph.input:
        dims = inp.type.tensor_type.shape.dim
        assert [d.dim_param for d in dims] == ["batch", "sequence"] and not any(d.HasField("dim_value") for d in dims)
    assert [o.name for o in model.graph.output] == ["logits"]
    assert model.graph.output[0].type.tensor_type.shape.dim[1].dim_value == LABELS
    assert {o.domain or "ai.onnx": o.version for o in model.opset_import}["ai.onnx"] == 18


def test_validate_runs_the_original_against_the_export(bert_dir, bert_onnx):
    out, r = bert_onnx
    assert r.returncode == 0, r.stderr
    v = convertkit("validate", bert_dir, out / "model.onnx", "--samples", "2", "--json")
    assert v.returncode == 0, v.stderr
    assert json.loads(v.stdout)["verdict"] == "PASSED"


def test_inspect(bert_dir):
    need("torch", "transformers", "optimum")
    import converter

    info = converter.inspect(str(bert_dir))
    assert info["format"] == "hf" and info["kind"] == "transformers"
    assert info["task"] == "text-classification" and info["architecture"] == "BertForSequenceClassification"
    assert [s["name"] for s in info["inputs"]] == INPUTS
    assert info["outputs"] == [{"name": "logits", "shape": ["batch", 4], "dtype": "float32"}]
    assert info["parameters"] > 0 and info["config"]["vocab_size"] == 100
    table = convertkit("inspect", bert_dir)
    assert table.returncode == 0, table.stderr
    assert "BertForSequenceClassification" in table.stdout and "input_ids" in table.stdout


def test_task_override(bert_dir, tmp_path):
    need("torch", "transformers", "optimum", "onnxruntime")
    import converter

    report = converter.export(str(bert_dir), to="onnx", out_dir=tmp_path / "o", task="feature-extraction", opset=17)
    assert report.verdict == "PASSED", report.parity.summary()
    assert [o.name for o in report.parity.outputs] == ["last_hidden_state"]
    notes = report.stages[0].notes
    assert notes["task"] == "feature-extraction" and notes["architecture"] == "BertModel"
    import onnx

    model = onnx.load(str(tmp_path / "o" / "model.onnx"))
    assert {o.domain or "ai.onnx": o.version for o in model.opset_import}["ai.onnx"] == 17  # --opset reaches it


def test_task_override_on_the_cli(bert_dir):
    need("torch", "transformers", "optimum")
    r = convertkit("inspect", bert_dir, "--task", "token-classification", "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["task"] == "token-classification" and info["outputs"][0]["shape"] == ["batch", "sequence", 4]


def test_bad_task_is_a_one_line_usage_error(bert_dir, tmp_path):
    need("torch", "transformers", "optimum")
    r = convertkit("export", bert_dir, "--task", "no-such-task", "-o", tmp_path / "o")
    assert r.returncode == 2
    line = _one_line_error(r)
    assert "no-such-task" in line and "text-classification" in line  # says what would do
    assert not (tmp_path / "o").exists()


def test_task_on_a_model_that_is_not_hugging_face(bert_onnx):
    out, r = bert_onnx
    assert r.returncode == 0, r.stderr
    bad = convertkit("inspect", out / "model.onnx", "--task", "text-classification")
    assert bad.returncode == 2 and "Hugging Face" in _one_line_error(bad)


def test_config_without_weights_is_a_one_line_input_error(bert_dir, tmp_path):
    src = tmp_path / "no-weights"
    src.mkdir()
    shutil.copy(bert_dir / "config.json", src / "config.json")
    r = convertkit("export", src, "--to", "onnx", "-o", tmp_path / "o")
    assert r.returncode == 2
    assert "no weights" in _one_line_error(r)


def test_remote_code_needs_trust(bert_dir, tmp_path):
    src = tmp_path / "remote"
    shutil.copytree(bert_dir, src)
    cfg = json.loads((src / "config.json").read_text())
    cfg["auto_map"] = {"AutoModelForSequenceClassification": "modeling_x.XForSequenceClassification"}
    (src / "config.json").write_text(json.dumps(cfg))
    r = convertkit("inspect", src)
    assert r.returncode == 2 and "--trust-code" in _one_line_error(r)


def test_probe_leaves_other_formats_directories_alone(tmp_path):
    from converter.formats import hf

    for extra in ("saved_model.pb", "model.json", "model.onnx"):
        d = tmp_path / extra.replace(".", "_")
        d.mkdir()
        (d / "config.json").write_text('{"model_type": "bert"}')
        (d / "model.safetensors").write_bytes(b"")
        (d / extra).write_bytes(b"")
        assert not hf.probe(str(d)), extra
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "config.json").write_text('{"name": "not a transformers config"}')
    assert not hf.probe(str(tmp_path / "plain"))


def test_static_sizes_given_with_input_are_static_in_the_onnx_model(bert_dir, tmp_path):
    need("torch", "transformers", "optimum", "onnxruntime")
    import onnx

    import converter

    specs = [f"{n}:1,8:int64:{r}" for n, r in zip(INPUTS, ("0..100", "0..2", "0..2"))]
    report = converter.export(str(bert_dir), to="onnx", out_dir=tmp_path / "o", inputs=specs)
    assert report.verdict == "PASSED", report.parity.summary()
    model = onnx.load(str(tmp_path / "o" / "model.onnx"))
    for inp in model.graph.input:
        assert [d.dim_value for d in inp.type.tensor_type.shape.dim] == [1, 8]
    assert [d.dim_value for d in model.graph.output[0].type.tensor_type.shape.dim] == [1, 4]


def test_torch_onnx_path_when_asked(bert_dir, tmp_path):
    """--exporter torchscript/dynamo skips optimum: the project's torch.onnx path exports the loaded
    model under the same input and output names."""
    need("torch", "transformers", "optimum", "onnxruntime")
    import converter

    report = converter.export(str(bert_dir), to="onnx", out_dir=tmp_path / "o", exporter="torchscript")
    assert report.verdict == "PASSED", report.parity.summary()
    notes = report.stages[0].notes
    assert notes["exporter"] == "torch.onnx (torchscript)" and "torchscript" in notes["fallback_reason"]
    assert [s["name"] for s in report.inputs] == INPUTS and [o.name for o in report.parity.outputs] == ["logits"]


def test_model_type_optimum_cannot_export_falls_back_to_torch_onnx(tmp_path):
    """optimum has no ONNX config for ERNIE: the loaded model goes through the project's torch.onnx
    path, under the same input/output names, and the stage says why."""
    need("torch", "transformers", "optimum", "onnxruntime", "onnxscript")
    import torch
    import transformers

    import converter

    torch.manual_seed(3)
    cfg = transformers.ErnieConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                   intermediate_size=32, max_position_embeddings=32, num_labels=3)
    transformers.ErnieForSequenceClassification(cfg).eval().save_pretrained(str(tmp_path / "ernie"))
    report = converter.export(str(tmp_path / "ernie"), to="onnx", out_dir=tmp_path / "o")
    assert report.verdict == "PASSED", report.parity.summary()
    notes = report.stages[0].notes
    assert notes["exporter"].startswith("torch.onnx") and "no ONNX config for ernie" in notes["fallback_reason"]
    assert [s["name"] for s in report.inputs] == INPUTS and report.inputs[0]["int_range"] == [0, 50]
    assert [o.name for o in report.parity.outputs] == ["logits"]


def test_export_to_tfjs_passes_parity_in_the_tfjs_runtime(bert_dir, tmp_path):
    """hf -> onnx -> tf -> tfjs from the CLI (the PyTorch half in its child process), validated by
    running the TF.js model in Node against transformers. optimum's BERT declares batch and sequence
    dynamic; onnx2tf cannot keep the sequence dynamic, so it is fixed (stated), and keeps the batch
    since its shape arithmetic is folded (attention's 1/sqrt(head size) from the query's shape: onnx2tf
    computed it channels-last, 0.9 off, and only fully static sizes converted)."""
    need("torch", "transformers", "optimum", "onnxruntime", "tensorflow", "tensorflowjs", "onnx2tf")
    from converter.formats.tf.onnx_fold import VALUE_FOLD

    r = convertkit("export", bert_dir, "--to", "tfjs", "--onnx-to-tf", "onnx2tf", "-o", tmp_path / "web")
    assert r.returncode == 0, r.stderr
    report = json.loads((tmp_path / "web" / "report.json").read_text())
    assert report["verdict"] == "PASSED"
    assert [s["stage"] for s in report["stages"]] == ["hf->onnx", "onnx->tf", "tf->tfjs"]
    notes = report["stages"][1]["notes"]
    assert notes["shapes"] == "dynamic batch, other dims fixed" and notes["rewrites"][VALUE_FOLD] >= 1
    assert notes["fixed_shape"] == {name: ["batch", 4] for name in INPUTS}
    assert len(report["parity"]["outputs"]) == 1 and report["parity"]["outputs"][0]["max_abs"] < 1e-4  # logits


def test_ids_the_source_cannot_embed_exit_2_before_any_export(bert_dir, tmp_path):
    """Token ids past the vocabulary fail in the source model itself: the user's data is wrong, not the
    conversion (exit 2, one line naming what was given), and nothing is written."""
    need("torch", "transformers", "optimum")
    import numpy as np

    from fixtures.hf_models import VOCAB

    feeds = tmp_path / "ids.npz"
    np.savez(feeds, input_ids=np.full((1, 5), VOCAB + 1000, np.int64),
             attention_mask=np.ones((1, 5), np.int64), token_type_ids=np.zeros((1, 5), np.int64))
    r = convertkit("export", bert_dir, "--inputs", feeds, "-o", tmp_path / "o")
    assert r.returncode == 2, r.stderr
    line = _one_line_error(r)
    assert line.startswith("convertkit: error: the source model does not run on these inputs: "), line
    assert "input_ids[1,5] int64" in line and "check --input / --inputs" in line, line
    assert not (tmp_path / "o").exists()
