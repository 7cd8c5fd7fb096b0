"""Passes on ONNX through the real tools and onnxruntime, validated against the original."""

from __future__ import annotations

import json

from tests.conftest import convertkit, need


def test_simplify_keeps_outputs_and_reports_what_it_did(torch_fixtures, tmp_path):
    need("torch", "onnx", "onnxruntime", "onnxsim", "onnxscript")
    src = torch_fixtures["cnn"]["pt2"]
    r = convertkit("export", src, "--to", "onnx", "-p", "simplify", "-o", tmp_path / "o", "--json",
                   "--validate", "each")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    export, simplify = report["stages"]
    assert (export["stage"], simplify["stage"]) == ("torch->onnx", "simplify")
    assert simplify["gzip_bytes_out"] and simplify["latency_ms_out"] > 0 and simplify["ops_out"]
    assert export["parity"]["passed"]  # --validate each: the intermediate was checked against the source too
    assert report["verdict"] == "PASSED" and report["parity"]["tolerance"]["atol"] == 1e-4
    # optimize on the ONNX file: validated against that file
    r = convertkit("optimize", tmp_path / "o" / "model.onnx", "-p", "simplify", "-o", tmp_path / "s", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["command"] == "optimize"


def test_optimize_needs_a_pass_and_a_known_one(tmp_path, torch_fixtures):
    need("torch", "onnx", "onnxscript")
    assert convertkit("export", torch_fixtures["mlp"]["pt2"], "-o", tmp_path / "o", "--no-check").returncode == 0
    r = convertkit("optimize", tmp_path / "o" / "model.onnx", "-o", tmp_path / "x")
    assert r.returncode == 2 and "needs at least one pass" in r.stderr
    r = convertkit("optimize", tmp_path / "o" / "model.onnx", "-p", "shrink", "-o", tmp_path / "x")
    assert r.returncode == 2 and "unknown pass 'shrink'" in r.stderr and not (tmp_path / "x").exists()


def test_keep_intermediates_and_sizes_exclude_them(torch_fixtures, tmp_path):
    need("torch", "onnx", "onnxruntime", "onnxsim", "onnxscript")
    out = tmp_path / "o"
    r = convertkit("export", torch_fixtures["mlp"]["pt2"], "-p", "simplify", "-o", out, "--keep-intermediates")
    assert r.returncode == 0, r.stderr
    report = json.loads((out / "report.json").read_text())
    first, last = report["stages"]
    assert first["path"] == "intermediates/00-torch-to-onnx" and (out / first["path"] / "model.onnx").is_file()
    assert last["path"] == "model.onnx" and last["bytes_out"] == _validated_size(out / "model.onnx")
    assert not list(tmp_path.glob(".o.*"))  # no work or temp dirs left beside OUTDIR
    r = convertkit("export", torch_fixtures["mlp"]["pt2"], "-p", "simplify", "-o", tmp_path / "p")
    assert r.returncode == 0 and not (tmp_path / "p" / "intermediates").exists()


def _validated_size(path) -> int:
    """The ONNX model's size as validated: the model card (metadata_props) is written after validation."""
    import onnx

    model = onnx.load(str(path))
    kept = [p for p in model.metadata_props if p.key not in ("convertkit.card", "license")]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    return model.ByteSize()
