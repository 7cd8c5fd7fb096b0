"""The reports of ``convertkit run`` as CI shows them (#15): the HTML page opened in a real headless
Chromium (Debian's `chromium`, driven by playwright-core: tests/e2e/html_browser.mjs), and a real
`convertkit run --junit --markdown --html` whose three reports are checked the way CI reads them."""

from __future__ import annotations

import json
import os
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path


from converter.ci import html
from converter.ci.summary import PASSED
from tests.conftest import ROOT, convertkit, need, need_chromium, need_node
from tests.unit import _ci_reports

DRIVER = Path(__file__).with_name("html_browser.mjs")
XSD = ROOT / "tests" / "data" / "junit.xsd"
PNG = b"\x89PNG\r\n\x1a\n"


def open_in_chromium(page: Path, shot: Path) -> dict:
    """What a reader of ``page`` sees in headless Chromium (see html_browser.mjs), and a screenshot."""
    exe = need_chromium()
    need_node()
    run = subprocess.run(["node", str(DRIVER), str(page), str(shot)], capture_output=True, text=True, timeout=180,
                         env={**os.environ, "CONVERTKIT_CHROMIUM": exe})
    assert run.returncode == 0, run.stdout + run.stderr[-2000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


def _clean_page(seen: dict) -> None:
    assert seen["consoleErrors"] == [] and seen["pageErrors"] == [], seen
    assert seen["requests"] == [], "the page asked for something beyond its own file"


def test_the_html_report_renders_in_chromium_with_every_model(tmp_path: Path) -> None:
    need("onnx", "onnxruntime")
    summary = _ci_reports.twenty(_ci_reports.build(tmp_path / "models"))
    page = tmp_path / "report.html"
    html.write(summary, page)
    seen = open_in_chromium(page, tmp_path / "report.png")
    _clean_page(seen)
    assert seen["title"] == "convertkit: pipeline.toml"
    sections = {s["id"]: s for s in seen["sections"]}
    assert list(sections) == [html.anchor(r) for r in summary.rows]
    for r in summary.rows:
        s = sections[html.anchor(r)]
        assert s["visible"] and s["heading"].split("\n")[0] == r.model and s["verdict"] == r.verdict
        if r.report is not None and "outputs" in r.report["parity"]:
            charts = 1 + (2 if r.report["stages"] else 0)  # a histogram; bytes and latency when passes ran
            assert s["svgs"] == charts and s["tables"] >= 1, s  # and the parity table
    assert seen["hiddenWhenFiltered"] == [html.anchor(r) for r in summary.rows if r.verdict == PASSED]
    assert (tmp_path / "report.png").read_bytes().startswith(PNG)
    assert seen["width"] <= 1200, "nothing wider than the window"


def test_run_writes_junit_markdown_and_html_that_ci_can_read(tmp_path: Path) -> None:
    need("onnx", "onnxruntime", "lxml")
    from lxml import etree

    from tests.unit._onnx_models import mlp

    mlp(tmp_path / "mlp.onnx")
    (tmp_path / "corrupt.onnx").write_bytes(b"not an onnx model")
    (tmp_path / "models.toml").write_text(
        '[defaults]\nsamples = 2\n\n'
        '[[model]]\nname = "int8"\nsource = "mlp.onnx"\n[model.passes]\nonnx = ["quantize"]\n\n'
        '[[model]]\nname = "half"\nsource = "mlp.onnx"\n[model.passes]\nonnx = ["fp16:block=relu"]\n\n'
        '[[model]]\nname = "corrupt"\nsource = "corrupt.onnx"\n[model.passes]\nonnx = ["simplify"]\n')
    rep = tmp_path / "reports"
    res = convertkit("run", tmp_path / "models.toml", "-o", tmp_path / "out", "-q", "--junit", rep / "junit.xml",
                     "--markdown", rep / "summary.md", "--html", rep / "report.html",
                     env={"CONVERTKIT_CACHE": str(tmp_path / "cache")})
    assert res.returncode == 2, res.stdout + res.stderr  # a model with bad input, the others passed
    assert sorted(p.name for p in rep.iterdir()) == ["junit.xml", "report.html", "summary.md"]

    schema = etree.XMLSchema(etree.parse(str(XSD)))
    assert schema.validate(etree.parse(str(rep / "junit.xml"))), schema.error_log
    suite = ET.parse(rep / "junit.xml").getroot().find("testsuite")
    cases = {(c.get("classname"), c.get("name")): c for c in suite.findall("testcase")}
    assert sorted(cases) == [("corrupt", "onnx+simplify"), ("half", "onnx+fp16:block=relu"), ("int8", "onnx+quantize")]
    err = cases[("corrupt", "onnx+simplify")].find("error")
    assert err.get("type") == "usage or bad input (exit 2)" and "is not a readable ONNX model" in err.get("message")
    props = {p.get("name") for p in suite.find("properties")}
    assert {"int8/onnx+quantize:bytes", "int8/onnx+quantize:cosine", "half/onnx+fp16:block=relu:latency_ms"} <= props

    md = (rep / "summary.md").read_text().splitlines()
    assert md[0].startswith("### convertkit FAIL: 2 passed, 1 error of 3 (exit 2")
    assert [ln.split("|")[1].strip() for ln in md[4:7]] == ["int8", "half", "corrupt"]

    seen = open_in_chromium(rep / "report.html", tmp_path / "run.png")
    _clean_page(seen)
    assert [s["heading"].split("\n")[0] for s in seen["sections"]] == ["int8", "half", "corrupt"]
    assert [s["svgs"] for s in seen["sections"]] == [3, 3, 0]
    assert "<code>relu</code></td><td>Relu</td>" in (rep / "report.html").read_text()  # kept in float32 by fp16
