"""Validation inside a real headless Chromium (#16 part 2): `--browser chromium` serves the artifact from
127.0.0.1 and runs it in TF.js (webgl on SwiftShader, wasm, cpu) or onnxruntime-web (wasm) in the page;
the parity numbers come back from the browser. Everything runs for real: Debian's chromium driven by
playwright-core, the pinned npm packages, PyTorch for the reference."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import convertkit, need_chromium, need_node, need_ort_web


def _report(out: Path) -> dict:
    return json.loads((out / "report.json").read_text())


def _error_line(r) -> str:
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr[-2000:]
    return lines[0]


def _browser_note(report: dict) -> str:
    notes = [n for n in report["parity"]["notes"] if n.startswith("ran in headless Chromium")]
    assert len(notes) == 1, report["parity"]["notes"]
    return notes[0]


@pytest.fixture(scope="module")
def cnn_webgl(torch_fixtures: dict, tmp_path_factory: pytest.TempPathFactory):
    """The CNN exported to TF.js and validated in Chromium on webgl, once for this module."""
    need_node()
    exe = need_chromium()
    out = tmp_path_factory.mktemp("browser") / "cnn"
    r = convertkit("export", torch_fixtures["cnn"]["pt2"], "--to", "tfjs", "-o", out, "--browser", "chromium",
                   "--tfjs-backend", "webgl", env={"CONVERTKIT_CHROMIUM": exe})
    return out, r


def test_cnn_validates_in_chromium_on_webgl(cnn_webgl) -> None:
    out, r = cnn_webgl
    assert r.returncode == 0, r.stderr[-2000:]
    report = _report(out)
    assert report["parity"]["passed"]
    note = _browser_note(report)
    assert "TF.js 4.22.0, webgl backend" in note and "WebGL 2" in note, note
    # SwiftShader renders float32 here: the tolerance stays fp32's; at 16 bits it would be widened
    assert "float32 render targets" in note and note.endswith(": 32-bit)"), note
    assert report["parity"]["tolerance"]["atol"] == 1e-4
    worst = max(o["max_abs"] for o in report["parity"]["outputs"])
    assert 0 <= worst < 1e-4


def test_cnn_validates_in_chromium_on_wasm_and_a_wrong_model_fails(torch_fixtures: dict, cnn_webgl,
                                                                     tmp_path: Path) -> None:
    """`validate` runs the same artifact on wasm in the page; weights scaled by 1.5 fail (exit 1), so the
    numbers compared really come from the browser."""
    out, r = cnn_webgl
    assert r.returncode == 0, r.stderr[-2000:]
    src = torch_fixtures["cnn"]["pt2"]
    ok = convertkit("validate", src, out, "--browser", "chromium", "--tfjs-backend", "wasm", "--json")
    assert ok.returncode == 0, ok.stderr[-2000:]
    note = _browser_note(json.loads(ok.stdout))
    assert "wasm backend; wasm: 32-bit float" in note, note
    wrong = tmp_path / "wrong"
    shutil.copytree(out, wrong)
    for shard in wrong.glob("*.bin"):
        shard.write_bytes((np.frombuffer(shard.read_bytes(), np.float32) * 1.5).astype(np.float32).tobytes())
    bad = convertkit("validate", src, wrong, "--browser", "chromium", "--tfjs-backend", "cpu", "--json")
    assert bad.returncode == 1, bad.stderr[-2000:]
    parity = json.loads(bad.stdout)["parity"]
    assert not parity["passed"] and "cpu backend" in _browser_note({"parity": parity})


@pytest.mark.slow
def test_int64_ids_validate_in_chromium_on_webgl(torch_fixtures: dict, tmp_path: Path) -> None:
    """Token ids (int64, dynamic batch and sequence) narrowed to int32 for TF.js, gathered on webgl, on the
    samples of several sizes. (slow: test_js_module feeds int64 ids to a generated module on webgl by default)"""
    need_node()
    exe = need_chromium()
    out = tmp_path / "tokens"
    r = convertkit("export", torch_fixtures["tokens"]["pt2"], "--to", "tfjs", "-o", out, "--browser", "chromium",
                   "--tfjs-backend", "webgl", env={"CONVERTKIT_CHROMIUM": exe})
    assert r.returncode == 0, r.stderr[-2000:]
    report = _report(out)
    assert report["parity"]["passed"] and report["inputs"][0]["dtype"] == "int64"
    assert "webgl backend" in _browser_note(report)


def test_webgl_at_16_bits_widens_the_tolerance(torch_fixtures: dict, cnn_webgl) -> None:
    """CONVERTKIT_WEBGL_F16=1: TF.js's WebGL in float16 textures, as on devices that render at 16 bits. The page
    reports it, the tolerance becomes fp16-class, and the error really is fp16's (fp32 webgl: < 1e-7)."""
    out, r = cnn_webgl
    assert r.returncode == 0, r.stderr[-2000:]
    v = convertkit("validate", torch_fixtures["cnn"]["pt2"], out, "--browser", "chromium", "--tfjs-backend", "webgl",
                   "--json", env={"CONVERTKIT_WEBGL_F16": "1"})
    assert v.returncode == 0, v.stderr[-2000:]
    parity = json.loads(v.stdout)["parity"]
    note = _browser_note({"parity": parity})
    assert "float16 render targets" in note and "F16 textures forced: 16-bit" in note, note
    assert note.endswith("tolerance widened to atol 0.01, rtol 0.01 for 16-bit float"), note
    assert parity["tolerance"]["atol"] == 0.01 and parity["tolerance"]["min_cosine"] == 0.999
    assert 1e-5 < max(o["max_abs"] for o in parity["outputs"]) < 1e-2


@pytest.fixture(scope="module")
def cnn_onnx_web(torch_fixtures: dict, tmp_path_factory: pytest.TempPathFactory):
    """The CNN exported to ONNX and validated in onnxruntime-web in Chromium, once for this module."""
    need_ort_web()
    exe = need_chromium()
    out = tmp_path_factory.mktemp("browser-onnx") / "cnn"
    r = convertkit("export", torch_fixtures["cnn"]["pt2"], "--to", "onnx", "-o", out, "--onnx-runtime", "web",
                   "--browser", "chromium", env={"CONVERTKIT_CHROMIUM": exe})
    return out, r


def test_onnx_validates_in_onnxruntime_web_in_chromium(cnn_onnx_web) -> None:
    out, r = cnn_onnx_web
    assert r.returncode == 0, r.stderr[-2000:]
    report = _report(out)
    assert report["parity"]["passed"]
    notes = report["parity"]["notes"]
    assert any(n.startswith("validated in onnxruntime-web 1.") and "in headless Chromium" in n for n in notes), notes
    assert "onnxruntime-web 1.31.1, wasm backend" in _browser_note(report)


def test_no_chromium_is_exit_2_before_any_work(torch_fixtures: dict, tmp_path: Path) -> None:
    out = tmp_path / "o"
    r = convertkit("export", torch_fixtures["cnn"]["pt2"], "--to", "tfjs", "-o", out, "--browser", "chromium",
                   env={"CONVERTKIT_CHROMIUM": str(tmp_path / "no-such-chromium")})
    assert r.returncode == 2
    line = _error_line(r)
    assert line.startswith("convertkit: error: --browser chromium: no Chromium found"), line
    assert "make install-browser" in line and "apt-get install chromium" in line, line
    assert not out.exists()


def test_webgl_without_a_browser_is_exit_2(torch_fixtures: dict, tmp_path: Path) -> None:
    r = convertkit("export", torch_fixtures["cnn"]["pt2"], "--to", "tfjs", "-o", tmp_path / "o",
                   "--tfjs-backend", "webgl")
    assert r.returncode == 2
    assert _error_line(r) == "convertkit: error: --tfjs-backend webgl runs in a browser (add --browser chromium)"


# -- the example web page (docs/examples/web): a converted model through its generated model.js ------------

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "web"
OPEN_PAGE = Path(__file__).resolve().parent / "js_module_browser.mjs"  # opens a URL, waits for window.result


def _open_example(site: Path, query: str, tmp_path: Path, exe: str) -> dict:
    import subprocess

    from converter.browser.server import PageServer
    from converter.browser.session import modules_dir

    server = PageServer({"/node_modules/": modules_dir(), "/": site})  # a static server, as `python -m http.server`
    try:
        r = subprocess.run(["node", str(OPEN_PAGE), f"{server.origin}/index.html?{query}", str(tmp_path / "result.json")],
                           capture_output=True, text=True, timeout=300, env={**__import__("os").environ,
                                                                             "CONVERTKIT_CHROMIUM": exe})
    finally:
        server.close()
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads((tmp_path / "result.json").read_text())


@pytest.mark.parametrize("backend", ["webgl", "wasm"])
def test_example_page_classifies_like_python(torch_fixtures: dict, cnn_webgl, tmp_path: Path, backend: str) -> None:
    """docs/examples/web as a user runs it: the page and its script, the converted CNN (with its model.js)
    in ./model/; the page classifies a sample through model.js (TF.js on webgl, its default, and on wasm,
    whose .wasm files app.js points at), as PyTorch does in Python."""
    _example(torch_fixtures, cnn_webgl, tmp_path, backend, "" if backend == "webgl" else "&backend=wasm")


def test_example_page_with_an_onnx_model(torch_fixtures: dict, cnn_onnx_web, tmp_path: Path) -> None:
    """The same page, unchanged, with the CNN as ONNX: its model.js runs onnxruntime-web (wasm)."""
    _example(torch_fixtures, cnn_onnx_web, tmp_path, "wasm")


def _example(torch_fixtures: dict, converted: tuple, tmp_path: Path, backend: str, query: str = "") -> None:
    from converter.api import outputs

    exe = need_chromium()
    out, r = converted
    assert r.returncode == 0, r.stderr[-2000:]
    site = tmp_path / "site"
    site.mkdir()
    for name in ("index.html", "app.js"):
        shutil.copy(EXAMPLE / name, site / name)
    shutil.copytree(out, site / "model")
    x = np.random.default_rng(7).standard_normal((1, 3, 32, 32)).astype(np.float32)
    (site / "input.bin").write_bytes(x.tobytes())
    (site / "model" / "labels.json").write_text(json.dumps([f"label-{i}" for i in range(10)]))
    res = _open_example(site, "input=input.bin" + query, tmp_path, exe)
    assert not res.get("pageErrors") and "error" not in res, res
    ref = np.asarray(list(outputs(str(torch_fixtures["cnn"]["pt2"]), [{"x": x}])[0].values())[0])[0]
    assert res["backend"] == backend
    np.testing.assert_allclose(res["logits"], ref, atol=1e-4, rtol=1e-3)
    assert res["index"] == int(ref.argmax()) and res["label"] == f"label-{int(ref.argmax())}"
    assert abs(sum(res["probabilities"]) - 1) < 1e-5


def test_missing_playwright_is_exit_2_before_any_work(torch_fixtures: dict, tmp_path: Path) -> None:
    exe = need_chromium()
    (tmp_path / "node_modules").mkdir()
    out = tmp_path / "o"
    r = convertkit("export", torch_fixtures["cnn"]["pt2"], "--to", "tfjs", "-o", out, "--browser", "chromium",
                   env={"CONVERTKIT_CHROMIUM": exe, "CONVERTKIT_NODE_MODULES": str(tmp_path / "node_modules")})
    assert r.returncode == 2
    assert _error_line(r) == (f"convertkit: error: npm package(s) playwright-core not found in {tmp_path / 'node_modules'} "
                              "(run `make install` (npm ci --prefix converter/formats/tfjs/node))")
    assert not out.exists()


def test_a_chromium_that_does_not_start_is_exit_2(torch_fixtures: dict, cnn_webgl) -> None:
    out, r = cnn_webgl
    assert r.returncode == 0, r.stderr[-2000:]
    false = shutil.which("false")
    v = convertkit("validate", torch_fixtures["cnn"]["pt2"], out, "--browser", "chromium",
                   env={"CONVERTKIT_CHROMIUM": false})
    assert v.returncode == 2
    line = _error_line(v)
    assert line.startswith(f"convertkit: error: Chromium ({false}) did not open convertkit's page: driver error: "), line
    assert line.endswith("or point CONVERTKIT_CHROMIUM at a Chromium executable)"), line
