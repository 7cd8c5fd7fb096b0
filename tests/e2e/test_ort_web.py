"""onnxruntime-web as a validation runtime (#16 part 1): `--onnx-runtime web|both` runs the ONNX result in
onnxruntime-web's wasm execution provider under Node, after a kernel preflight that names every op it
lacks (exit 3); -p quantize load-tests its candidates there. Everything runs for real: Node, the
pinned onnxruntime-web, onnxruntime in Python."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import convertkit, need, need_ort_web


def _report(out: Path) -> dict:
    return json.loads((out / "report.json").read_text())


def _error_line(r) -> str:
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr[-2000:]
    return lines[0]


@pytest.fixture(scope="module")
def cnn_web(torch_fixtures: dict, tmp_path_factory: pytest.TempPathFactory):
    """The CNN exported to ONNX and validated in onnxruntime-web, once for this module."""
    need_ort_web()
    need("onnx", "onnxruntime")
    out = tmp_path_factory.mktemp("ort-web") / "cnn"
    return out, convertkit("export", torch_fixtures["cnn"]["pt2"], "--to", "onnx", "-o", out, "--onnx-runtime", "web")


def test_cnn_validates_in_onnxruntime_web(cnn_web) -> None:
    out, r = cnn_web
    assert r.returncode == 0, r.stderr[-2000:]
    report = _report(out)
    assert report["parity"]["passed"]
    assert any(n.startswith("validated in onnxruntime-web 1.") and "wasm" in n for n in report["parity"]["notes"])
    assert "validated in onnxruntime-web" in r.stdout + r.stderr  # the rendered report names it too
    assert any(n.startswith("kernel preflight: all ") and "have a kernel in onnxruntime-web" in n
               for n in report["parity"]["notes"]), report["parity"]["notes"]


def test_transformer_validates_in_both_runtimes(torch_fixtures: dict, tmp_path: Path) -> None:
    need_ort_web()
    out = tmp_path / "o"
    r = convertkit("export", torch_fixtures["transformer"]["pt2"], "--to", "onnx", "-o", out, "--onnx-runtime", "both")
    assert r.returncode == 0, r.stderr[-2000:]
    parity = _report(out)["parity"]
    names = sorted(o["name"] for o in parity["outputs"])
    assert names == ["output @ onnxruntime", "output @ onnxruntime-web"], names
    assert all(o["status"] == "ok" for o in parity["outputs"])
    assert any(n.startswith("validated in onnxruntime 1.") for n in parity["notes"])
    assert any(n.startswith("validated in onnxruntime-web 1.") for n in parity["notes"])


def test_tiny_bert_with_int64_ids_validates_in_onnxruntime_web(tmp_path: Path) -> None:
    need_ort_web()
    need("torch", "transformers", "optimum", "onnx", "onnxruntime")
    from fixtures.hf_models import save_tiny_bert

    src = save_tiny_bert(tmp_path / "tiny-bert")
    out = tmp_path / "o"
    r = convertkit("export", src, "--to", "onnx", "-o", out, "--onnx-runtime", "web")
    assert r.returncode == 0, r.stderr[-2000:]
    report = _report(out)
    assert report["parity"]["passed"]
    assert {i["dtype"] for i in report["inputs"]} == {"int64"}  # ids cross the wire as BigInt64Array
    assert any(n.startswith("validated in onnxruntime-web") for n in report["parity"]["notes"])


def _uint16_models(tmp_path: Path) -> tuple[Path, Path]:
    """A reference onnxruntime runs (x * 2 as float) and a candidate that computes the same through two
    ops the wasm build has no uint16 kernel for (BitShift, Max): the preflight must name both, in one
    line. (onnxruntime's Python CPU build lacks them too; ops that only the web build lacks were not
    found among the ONNX conformance ops in onnxruntime-web 1.31.1, see the report of #16.)"""
    need("onnx")
    import onnx
    from onnx import TensorProto as T
    from onnx import helper as h
    from onnx import numpy_helper as nh

    x = h.make_tensor_value_info("x", T.UINT8, [1, 8])
    y = h.make_tensor_value_info("y", T.FLOAT, [1, 8])
    two = nh.from_array(np.array(2, np.float32), "two")
    ref = h.make_graph([h.make_node("Cast", ["x"], ["xf"], to=T.FLOAT), h.make_node("Mul", ["xf", "two"], ["y"])],
                       "ref", [x], [y], [two])
    one, zero = nh.from_array(np.array(1, np.uint16), "one"), nh.from_array(np.array(0, np.uint16), "zero")
    cand = h.make_graph([h.make_node("Cast", ["x"], ["x16"], to=T.UINT16),
                         h.make_node("BitShift", ["x16", "one"], ["s"], direction="LEFT"),
                         h.make_node("Max", ["s", "zero"], ["m"]), h.make_node("Cast", ["m"], ["y"], to=T.FLOAT)],
                        "cand", [x], [y], [one, zero])
    paths = []
    for name, graph in (("ref", ref), ("cand", cand)):
        model = h.make_model(graph, opset_imports=[h.make_opsetid("", 17)])
        model.ir_version = 8
        paths.append(tmp_path / f"{name}.onnx")
        onnx.save(model, paths[-1])
    return paths[0], paths[1]


def test_preflight_names_every_op_onnxruntime_web_lacks(tmp_path: Path) -> None:
    need_ort_web()
    need("onnxruntime")
    ref, cand = _uint16_models(tmp_path)
    r = convertkit("validate", ref, cand, "--onnx-runtime", "web", "-i", "x:1,8:uint8:0..100",
                   env={"CONVERTKIT_CACHE": str(tmp_path / "cache")})
    assert r.returncode == 3, r.stderr[-2000:]
    line = _error_line(r)
    assert "onnxruntime-web (wasm) does not support op(s): BitShift(uint16, uint16), Max(uint16, uint16)" in line, line
    cached = json.loads(next((tmp_path / "cache" / "ort-web-kernels").glob("onnxruntime-web-*.json")).read_text())
    assert [k for k, ok in cached.items() if not ok] == ["ai.onnx|BitShift|17|(4, 4)|(4,)", "ai.onnx|Max|17|(4, 4)|(4,)"]


def test_quantize_for_onnxruntime_web_keeps_what_it_runs(cnn_web, tmp_path: Path) -> None:
    """-p quantize with --onnx-runtime web: every candidate is load-tested in onnxruntime-web, the
    kept one runs there and passes parity there, and the report says which runtime decided."""
    src, r = cnn_web
    assert r.returncode == 0, r.stderr[-2000:]
    out = tmp_path / "q"
    r = convertkit("optimize", src / "model.onnx", "-p", "quantize", "-o", out, "--onnx-runtime", "web")
    assert r.returncode == 0, r.stderr[-2000:]
    report = _report(out)
    notes = report["stages"][-1]["notes"]
    assert notes["runtime"]["runtime"] == "web" and "onnxruntime-web" in notes["runtime"]["why"]
    assert any(n.startswith("validated in onnxruntime-web") for n in report["parity"]["notes"])
    import onnx

    ops = {n.op_type for n in onnx.load(str(out / "model.onnx")).graph.node}
    assert ops & {"ConvInteger", "MatMulInteger", "QLinearConv", "DequantizeLinear"}, ops


@pytest.mark.slow
def test_quantize_for_both_runtimes_loads_in_python_onnxruntime_too(cnn_web, tmp_path: Path) -> None:
    src, _ = cnn_web
    out = tmp_path / "q"
    r = convertkit("optimize", src / "model.onnx", "-p", "quantize", "-o", out, "--onnx-runtime", "both")
    assert r.returncode == 0, r.stderr[-2000:]
    assert _report(out)["stages"][-1]["notes"]["runtime"]["runtime"] == "both"
    import onnxruntime as ort

    ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])  # raises if it cannot load


def test_runner_round_trips_every_wire_dtype(tmp_path: Path) -> None:
    """int64 (BigInt64Array), float16 (its bits), float64, int8, uint8 and bool travel unchanged."""
    need_ort_web()
    need("onnx")
    import onnx
    from onnx import helper as h

    from converter.formats.onnx import open_source
    from converter.formats.onnx.web_runner import OrtWebRunner

    dtypes = ["int64", "float16", "float64", "int8", "uint8", "bool", "int32", "float32"]
    elem = {d: onnx.helper.np_dtype_to_tensor_dtype(np.dtype(d)) for d in dtypes}
    graph = h.make_graph([h.make_node("Identity", [f"x_{d}"], [f"y_{d}"]) for d in dtypes], "ids",
                         [h.make_tensor_value_info(f"x_{d}", elem[d], ["n"]) for d in dtypes],
                         [h.make_tensor_value_info(f"y_{d}", elem[d], ["n"]) for d in dtypes])
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, tmp_path / "ids.onnx")
    rng = np.random.default_rng(0)
    feeds = {f"x_{d}": (rng.integers(-2**40, 2**40, 5) if d == "int64" else rng.random(5) > 0.5 if d == "bool"
                        else rng.integers(0, 100, 5) if d in ("int8", "uint8", "int32") else rng.standard_normal(5)
                        ).astype(d) for d in dtypes}
    with OrtWebRunner(open_source(str(tmp_path / "ids.onnx"))) as runner:
        got = runner.infer(feeds)
    for d in dtypes:
        assert got[f"y_{d}"].dtype == np.dtype(d)
        np.testing.assert_array_equal(got[f"y_{d}"], feeds[f"x_{d}"])


def test_missing_onnxruntime_web_package_is_a_one_line_exit_2(torch_fixtures: dict, tmp_path: Path) -> None:
    need_ort_web()
    empty = tmp_path / "node_modules"
    empty.mkdir()
    out = tmp_path / "o"
    r = convertkit("export", torch_fixtures["mlp"]["pt2"], "--to", "onnx", "-o", out, "--onnx-runtime", "web",
                   env={"CONVERTKIT_NODE_MODULES": str(empty)})
    assert r.returncode == 2, r.stderr[-2000:]
    assert "npm package onnxruntime-web not found" in _error_line(r)
    assert not out.exists()


def test_the_js_runner_core_runs_unchanged_in_headless_chromium(cnn_web, tmp_path: Path) -> None:
    """ort_web_core.mjs, which the Node runner uses, run as-is in a page (the browser validation of
    #16 section 2 builds on it): same outputs as onnxruntime in Python."""
    import subprocess

    from tests.conftest import ROOT, need_chromium

    chromium = need_chromium()
    need("onnxruntime")
    import onnxruntime as ort

    src, r = cnn_web
    assert r.returncode == 0, r.stderr[-2000:]
    x = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)
    x.tofile(tmp_path / "feed.f32")
    p = subprocess.run(["node", str(ROOT / "tests" / "e2e" / "ort_web_browser.mjs"), str(src / "model.onnx"), "x",
                        "1,3,32,32", str(tmp_path / "feed.f32")], capture_output=True, text=True, timeout=180,
                       env={**os.environ, "CONVERTKIT_CHROMIUM": chromium})
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    (out,) = json.loads(p.stdout)["outputs"]
    want = ort.InferenceSession(str(src / "model.onnx"), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    assert out["shape"] == list(want.shape) and out["dtype"] == "float32"
    np.testing.assert_allclose(np.array(out["data"], np.float32).reshape(want.shape), want, atol=1e-5, rtol=1e-4)


def test_preflight_cache_is_reused_and_a_damaged_one_is_rebuilt(tmp_path: Path, monkeypatch) -> None:
    need_ort_web()
    import onnx

    from converter.formats.onnx.web_kernels import cache_file, preflight
    from converter.formats.onnx.web_runner import start_node, version

    monkeypatch.setenv("CONVERTKIT_CACHE", str(tmp_path / "cache"))
    _, cand = _uint16_models(tmp_path)
    model = onnx.load(str(cand))
    node = start_node()
    try:
        first = preflight(model, node, version())
        again = preflight(model, node, version())
        cache_file(version()).write_text("{not json")
        rebuilt = preflight(model, node, version())
    finally:
        node.stop()
    assert (first.checked, first.probed) == (4, 4) and again.probed == 0 and rebuilt.probed == 4  # 2 Casts too
    assert first.missing == again.missing == rebuilt.missing == ("BitShift(uint16, uint16)", "Max(uint16, uint16)")


@pytest.mark.parametrize(("requested", "validating", "want"), [
    (None, "python", "python"), (None, "web", "web"), (None, "both", "both"), ("web", "web", "web"),
    ("web", "python", "both"), ("python", "web", "both"), ("both", "python", "both"), ("web", None, "web"),
])
def test_quantize_runtime_covers_the_check_and_the_request(requested, validating, want) -> None:
    """-p quantize:runtime=web while onnxruntime (Python) validates: the kept model must load in both."""
    from types import SimpleNamespace

    from converter.passes.int8_target import runtime_of

    check = None if validating is None else SimpleNamespace(checker=SimpleNamespace(
        runner_options={"onnx_runtime": validating}))
    assert runtime_of(check, requested) == want
