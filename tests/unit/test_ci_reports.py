"""The reports CI systems show (#15): JUnit XML valid against the common schema, a Markdown summary
within its line budget, a self-contained HTML page. Summaries come from real reports (a tiny ONNX
MLP through the real int8 / fp16 passes and a real failing validation; see _ci_reports.py)."""

from __future__ import annotations

import os
import re
import stat
import threading
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from converter.ci import html, junit, markdown, views
from converter.ci.summary import ERROR, FAILED, PASSED, UNCHECKED, Row, Summary
from converter.errors import UsageError
from tests.conftest import ROOT, need
from tests.unit import _ci_reports

XSD = ROOT / "tests" / "data" / "junit.xsd"


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> _ci_reports.RealReports:
    need("onnx", "onnxruntime")
    return _ci_reports.build(tmp_path_factory.mktemp("ci_reports"))


@pytest.fixture(scope="module")
def summary(real: _ci_reports.RealReports) -> Summary:
    return _ci_reports.twenty(real)


def _xsd():
    need("lxml")
    from lxml import etree

    return etree, etree.XMLSchema(etree.parse(str(XSD)))


def test_the_xsd_rejects_what_the_common_junit_schema_rejects() -> None:
    """The check is not vacuous: properties inside a testcase, a missing `tests`, an exponent time."""
    etree, schema = _xsd()
    ok = b'<testsuites><testsuite name="p" tests="1" failures="0" errors="0" time="1.5"><testcase name="a"/>' \
         b"</testsuite></testsuites>"
    assert schema.validate(etree.fromstring(ok))
    for bad in (ok.replace(b'<testcase name="a"/>', b'<testcase name="a"><properties/></testcase>'),
                ok.replace(b' tests="1"', b""), ok.replace(b'time="1.5"', b'time="1e-3"'),
                ok.replace(b"<testsuites>", b'<testsuites skipped="0">')):
        assert not schema.validate(etree.fromstring(bad)), bad


def test_junit_is_valid_and_says_what_each_row_did(summary: Summary, tmp_path: Path) -> None:
    etree, schema = _xsd()
    path = tmp_path / "reports" / "junit.xml"
    junit.write(summary, path)
    assert schema.validate(etree.parse(str(path))), schema.error_log
    root = ET.parse(path).getroot()
    suite = root.find("testsuite")
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("20", "3", "2")
    assert (suite.get("name"), suite.get("skipped")) == ("models/pipeline.toml", "1")
    cases = suite.findall("testcase")
    assert [(c.get("classname"), c.get("name")) for c in cases] == \
        [(r.model, "+".join([r.target, *r.passes])) for r in summary.rows]
    props = {p.get("name"): p.get("value") for p in suite.find("properties")}
    for r, case in zip(summary.rows, cases):
        key = f"{r.model}/{case.get('name')}"
        assert props[f"{key}:cached"] == str(r.cached).lower()
        assert float(case.get("time")) == pytest.approx(r.seconds, abs=1e-3)
        if r.verdict == FAILED:
            (fail,) = case.findall("failure")
            assert fail.get("message") == r.parity and "\n" not in fail.get("message")
            header = fail.text.splitlines()[0].split("  ")
            assert [h.strip() for h in header if h.strip()][:3] == ["output", "status", "max abs"], fail.text
            assert re.search(r"^y\s+tolerance\s", fail.text, re.M), fail.text  # the per-output table
        elif r.verdict == ERROR:
            (err,) = case.findall("error")
            assert err.get("message") == r.error and err.get("type") == "usage or bad input (exit 2)"
        elif r.verdict == UNCHECKED:
            assert case.find("skipped") is not None
        else:
            assert case.find("failure") is None and case.find("error") is None
            assert float(props[f"{key}:bytes"]) == r.bytes
            assert float(props[f"{key}:cosine"]) == pytest.approx(r.worst_cosine, abs=1e-6)
            assert f"bytes={r.bytes} " in case.find("system-out").text


def test_junit_text_is_xml_even_with_ansi_and_control_characters(real, tmp_path: Path) -> None:
    etree, schema = _xsd()
    msg = "\x1b[31mstage onnx->tf failed\x1b[0m: op <Foo> & \x00\x07bar"
    s = Summary("p.toml", [Row("m", "tf", [], ERROR, 3, 0.2, False, error=msg)], 3, 0.2)
    junit.write(s, tmp_path / "j.xml")
    assert schema.validate(etree.parse(str(tmp_path / "j.xml")))
    err = ET.parse(tmp_path / "j.xml").getroot().find("testsuite/testcase/error")
    assert err.get("message") == "stage onnx->tf failed: op <Foo> & bar"
    assert err.get("type") == "conversion failed (exit 3)"


def test_markdown_fits_60_lines_with_every_column(summary: Summary, tmp_path: Path) -> None:
    path = tmp_path / "summary.md"
    markdown.write(summary, path)
    text = path.read_text()
    lines = text.splitlines()
    assert len(lines) < 60
    assert lines[0].startswith("### convertkit FAIL: 14 passed, 3 failed, 2 errors, 1 not validated of 20")
    assert lines[2] == "| model | target | verdict | size | vs fp32 | latency | worst cosine | failing outputs |"
    rows = lines[4:24]
    assert all(ln.startswith("| model") for ln in rows) and lines[24] == ""
    for r, ln in zip(summary.rows, rows):
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", ln)[1:-1]]
        assert len(cells) == 8, ln
        assert cells[:2] == [r.model, "+".join([r.target, *r.passes])]
        marker = {PASSED: "PASS", FAILED: "**FAIL**", ERROR: "ERROR", UNCHECKED: "UNCHECKED"}[r.verdict]
        assert cells[2] == marker + (" (cached)" if r.cached else "")
        if r.verdict == PASSED:
            assert cells[4] == f"{r.bytes / r.source_bytes:.2f}x"
            assert cells[6] == f"{r.worst_cosine:.5f}" and cells[5].endswith(" ms")
        if r.verdict == FAILED:
            assert cells[7] == "y"
    assert all(ord(ch) < 0x2000 or ch == "…" for ch in text), "no emoji"
    assert sum(ln.startswith("- `") for ln in lines) == 6  # one line per row that did not pass


def test_markdown_stays_in_budget_when_everything_fails(real) -> None:
    rows = [_ci_reports.row(f"m{i}", "onnx", [], real.failed, real.source_bytes) for i in range(40)]
    rows[0].failing_outputs = ["a|b"]  # a pipe in a cell must not add a column
    text = markdown.render(Summary("p.toml", rows, 1, 3.0))
    lines = text.splitlines()
    assert len(lines) <= markdown.MAX_LINES
    assert lines[-1].startswith("- ... and ") and lines[-1].endswith("more: see summary.json or the HTML report")
    assert "| a\\|b |" in lines[4]


def test_html_is_self_contained_and_shows_every_artifact(summary: Summary, real, tmp_path: Path) -> None:
    evil = Row('<img src="https://example.invalid/x.png" onerror="alert(1)">', "onnx", [], ERROR, 3, 1.0, False,
               error="<script>alert(1)</script>")
    s = Summary(summary.pipeline, [*summary.rows, evil], 3, summary.seconds)
    path = tmp_path / "report.html"
    html.write(s, path)
    page = path.read_text()
    refs = re.findall(r"""\b(?:src|href|action|xlink:href)\s*=\s*["']?([^"'\s>]+)""", page, re.I)
    assert all(not re.match(r"(https?:)?//", r) for r in refs), refs
    assert not re.search(r"<(link|iframe|img|object|embed)\b", page, re.I)
    assert "<script>alert(1)" not in page and "&lt;script&gt;alert(1)" in page
    assert "Content-Security-Policy" in page and "default-src 'none'" in page
    for r in s.rows:
        assert f'id="{html.anchor(r)}"' in page and f'href="#{html.anchor(r)}"' in page
    assert page.count('<svg class="hist"') == 17  # one per validated artifact's output (20 - 2 errors - 1 skipped)
    assert page.count('<svg class="bars"') >= 16
    assert '<code>relu</code></td><td>Relu</td><td>asked for (block=)' in page  # fp16 kept it in float32


def test_writers_leave_nothing_when_the_destination_cannot_be_written(summary: Summary, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    (tmp_path / "dir.xml").mkdir()
    for writer, dest in ((junit.write, blocker / "j.xml"), (markdown.write, blocker / "s.md"),
                         (html.write, tmp_path / "dir.xml")):
        with pytest.raises(UsageError) as exc:
            writer(summary, dest)
        assert str(dest) in exc.value.one_line() and "\n" not in exc.value.one_line()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir.xml", "file"]
    assert not any((tmp_path / "dir.xml").iterdir())


def test_a_pipe_or_device_is_written_through_not_replaced(summary: Summary, tmp_path: Path) -> None:
    """``--markdown /dev/stdout`` (a pipe here): the text goes through it; nothing is renamed over it."""
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    markdown.write(summary, fifo)
    reader.join(timeout=30)
    assert got == [markdown.render(summary).encode()] and stat.S_ISFIFO(fifo.lstat().st_mode)
    link = tmp_path / "link.md"
    link.symlink_to(tmp_path / "target.md")
    (tmp_path / "target.md").write_text("old")
    markdown.write(summary, link)
    assert link.is_symlink() and (tmp_path / "target.md").read_text() == markdown.render(summary)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.md", "pipe", "target.md"]


def test_views_read_a_row_without_a_report() -> None:
    r = Row("m", "tfjs", ["quantize:dtype=uint8"], FAILED, 1, 2.0, False, bytes=300, source_bytes=1200,
            parity="parity FAILED: y: cosine 0.9 < 0.99", failing_outputs=["y"])
    assert views.case_name(r) == "tfjs+quantize:dtype=uint8"
    assert views.size_ratio(r) == 0.25 and views.parity_table(r) == r.parity
    assert views.outputs(r) == [] and views.kept(r) == [] and views.latency_ms(r) is None
    assert [views.size(n) for n in (812, 1740, 24_500_000, None)] == ["812 B", "1.7 KiB", "23.4 MiB", "-"]
