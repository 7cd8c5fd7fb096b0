"""The CLI contract: exit codes, report.json, one-line errors, atomic output, untouched input."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from fixtures.catalog import CATALOG
from tests.conftest import convertkit, need


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_export_pt2_writes_model_and_report(torch_fixtures, tmp_path):
    need("torch", "onnxruntime", "onnxscript")
    import onnx

    src = torch_fixtures["cnn"]["pt2"]
    before = _sha(src)
    r = convertkit("export", src, "--to", "onnx", "-o", tmp_path / "out", "--json")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert json.loads((tmp_path / "out" / "report.json").read_text()) == report | {"environment": report["environment"]}
    assert report["schema"] == "convertkit.report/1" and report["verdict"] == "PASSED" and report["exit_code"] == 0
    assert report["source"]["kind"] == "pt2" and report["target"] == "onnx"
    stage = report["stages"][0]
    assert stage["stage"] == "torch->onnx" and stage["notes"]["exporter"] == "dynamo"
    written = onnx.load(str(tmp_path / "out" / "model.onnx"))
    del written.metadata_props[:]  # the model card, written after validation: the sizes are the model's
    assert stage["bytes_out"] == written.ByteSize() and stage["ops_out"]["Conv"] == 2
    (out,) = report["parity"]["outputs"]
    assert out["status"] == "ok" and out["top1"] == 1.0 and out["max_abs"] < 1e-4
    assert {"max_abs", "max_rel", "mean_abs", "p99_abs", "cosine", "atol_needed", "rtol_needed"} <= out.keys()
    assert {"python", "torch", "onnx", "onnxruntime"} <= report["environment"].keys()
    assert "PASSED" in r.stderr  # the table goes to stderr, the JSON to stdout
    assert _sha(src) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temp dirs left beside it


def test_export_is_byte_identical_when_repeated(torch_fixtures, tmp_path):
    need("torch", "onnxruntime", "onnxscript")
    src = torch_fixtures["mlp"]["pt2"]
    for out in ("a", "b"):
        assert convertkit("export", src, "-o", tmp_path / out).returncode == 0
    assert _sha(tmp_path / "a" / "model.onnx") == _sha(tmp_path / "b" / "model.onnx")


def test_callable_with_state_dict_and_feeds_npz(torch_fixtures, tmp_path):
    need("torch", "onnxruntime", "onnxscript")
    p = torch_fixtures["tokens"]
    r = convertkit("export", CATALOG["tokens"].builder, "--weights", p["state"], "-i", "ids:batch,seq:int64",
                   "--inputs", p["inputs"], "-o", tmp_path / "o")
    assert r.returncode == 0, r.stderr
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    assert report["inputs"][0]["int_range"] == [0, 100]  # from the model's nn.Embedding
    assert any("sample 0 is the given data" in n for n in report["notes"])


def test_perturbed_onnx_fails_validation_with_exit_1(torch_fixtures, tmp_path):
    need("torch", "onnx", "onnxruntime", "onnxscript")
    import onnx
    from onnx import numpy_helper

    src = torch_fixtures["cnn"]["pt2"]
    assert convertkit("export", src, "-o", tmp_path / "good").returncode == 0
    model = onnx.load(tmp_path / "good" / "model.onnx")
    init = max(model.graph.initializer, key=lambda t: int(np.prod(t.dims)))
    w = numpy_helper.to_array(init).copy()
    w.flat[: w.size // 10] += 0.05  # a small, plausible corruption
    init.CopyFrom(numpy_helper.from_array(w, init.name))
    onnx.save(model, tmp_path / "bad.onnx")

    ok = convertkit("validate", src, tmp_path / "good" / "model.onnx")
    assert ok.returncode == 0, ok.stderr
    bad = convertkit("validate", src, tmp_path / "bad.onnx", "--json")
    assert bad.returncode == 1, bad.stderr
    report = json.loads(bad.stdout)
    assert report["verdict"] == "FAILED" and report["parity"]["outputs"][0]["status"] == "tolerance"
    assert "would pass with atol" in report["parity"]["outputs"][0]["message"]
    assert "FAILED" in bad.stderr


def test_no_check_says_unchecked(torch_fixtures, tmp_path):
    need("torch", "onnxscript")
    r = convertkit("export", torch_fixtures["mlp"]["pt2"], "-o", tmp_path / "o", "--no-check")
    assert r.returncode == 0
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    assert report["verdict"] == "UNCHECKED" and report["parity"] == {"skipped": True}
    assert any("validation skipped" in n for n in report["notes"])


def test_pickled_module_refused_unless_trusted(torch_fixtures, tmp_path):
    need("torch", "onnxscript")
    src = torch_fixtures["mlp"]["pickle"]
    r = convertkit("export", src, "-i", "x:batch,16", "-o", tmp_path / "o")
    assert r.returncode == 2 and "arbitrary code" in r.stderr and "--trust-code" in r.stderr
    assert not (tmp_path / "o").exists()
    r = convertkit("export", src, "-i", "x:batch,16", "-o", tmp_path / "o", "--trust-code")
    assert r.returncode == 0, r.stderr


def test_unsupported_op_exits_3_and_names_it(torch_fixtures, tmp_path):
    """The traced transformer fixture records MultiheadAttention's fused fast path, which no ONNX
    exporter supports: exit 3, the op named, nothing written."""
    need("torch", "onnxscript")
    src = torch_fixtures["transformer"]["torchscript"]
    r = convertkit("export", src, "-i", "x:batch,seq,32", "-o", tmp_path / "o")
    assert r.returncode == 3, r.stderr
    assert "aten::_native_multi_head_attention" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


BAD = {
    "missing file": (["nope.pt2"], "no such file"),
    "truncated pt2": (["{trunc}"], "not a PyTorch archive"),
    "wrong extension": (["{txt}"], "not a model convertkit can read"),
    "unparsable --input": (["fixtures.torch_models:mlp", "-i", "x:batch,,16"], "neither a positive integer nor a name"),
    "no inputs": (["fixtures.torch_models:mlp"], "needs to know the model's inputs"),
    "import path does not resolve": (["fixtures.nothing_here:mlp", "-i", "x:1,16"], "cannot import module"),
    "callable not a module": (["fixtures.catalog:_fx", "-i", "x:1,16"], "calling fixtures.catalog:_fx() failed"),
    "not an nn.Module": (["fixtures.catalog:CATALOG", "-i", "x:1,16"], "neither an nn.Module nor callable"),
    "weights do not fit": (["fixtures.torch_models:cnn", "--weights", "{mlp_state}", "-i", "x:1,3,32,32"],
                           "do not fit the module"),
    "state dict as model": (["{mlp_state}", "-i", "x:1,16"], "is a state dict"),
    "feeds do not match": (["{mlp_pt2}", "--inputs", "{cnn_npz}"], "has rank 4, the model expects"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_one_line_exit_2_nothing_written(torch_fixtures, tmp_path, case):
    need("torch")
    (tmp_path / "model.txt").write_text("hello")
    good = torch_fixtures["mlp"]["pt2"].read_bytes()
    (tmp_path / "trunc.pt2").write_bytes(good[: len(good) // 2])
    subst = {"trunc": tmp_path / "trunc.pt2", "txt": tmp_path / "model.txt",
             "mlp_state": torch_fixtures["mlp"]["state"], "mlp_pt2": torch_fixtures["mlp"]["pt2"],
             "cnn_npz": torch_fixtures["cnn"]["inputs"]}
    args, expected = BAD[case]
    r = convertkit("export", *[a.format(**subst) for a in args], "-o", tmp_path / "out")
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("convertkit: error:"), r.stderr
    assert expected in lines[0]
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.*"))


def test_output_dir_rules(torch_fixtures, tmp_path):
    need("torch", "onnxscript")
    src = torch_fixtures["mlp"]["pt2"]
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("mine")
    r = convertkit("export", src, "-o", foreign)
    assert r.returncode == 2 and "--force" in r.stderr and (foreign / "keep.txt").exists()
    r = convertkit("export", src, "-o", src.parent)
    assert r.returncode == 2 and "contains the source" in r.stderr
    # a previous convertkit output is replaced whole
    out = tmp_path / "o"
    assert convertkit("export", src, "-o", out, "--no-check").returncode == 0
    (out / "stale.txt").write_text("old")
    assert convertkit("export", src, "-o", out, "--no-check").returncode == 0
    assert not (out / "stale.txt").exists() and (out / "model.onnx").exists()


def test_inspect_onnx_and_pt2(torch_fixtures, tmp_path):
    need("torch", "onnx", "onnxscript")
    assert convertkit("export", torch_fixtures["two_io"]["pt2"], "-o", tmp_path / "o", "--no-check").returncode == 0
    r = convertkit("inspect", tmp_path / "o" / "model.onnx", "--json")
    info = json.loads(r.stdout)
    assert [i["name"] for i in info["inputs"]] == ["a", "b"] and len(info["outputs"]) == 2
    assert info["opset"][""] if "" in info["opset"] else info["opset"]["ai.onnx"] == 18
    assert info["parameters"] > 0 and info["ops"] and info["producer"].startswith("pytorch")
    r = convertkit("inspect", torch_fixtures["two_io"]["pt2"])
    assert r.returncode == 0 and "parameters" in r.stdout and "batch" in r.stdout
