"""The JSON Schemas of report.json (convertkit.report/1) and summary.json (convertkit.summary/1):
valid schemas, shipped with the package, met by real reports, and not vacuous (each kind of drift
is named with its JSON path). The autouse fixture in tests/conftest.py applies them to every report
the suite writes."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from importlib import resources
from pathlib import Path

import pytest

from converter import schemas
from converter.ci.summary import ERROR, Row, Summary
from tests.conftest import ROOT, _schema_problems, need
from tests.unit import _ci_reports


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> _ci_reports.RealReports:
    need("onnx", "onnxruntime", "jsonschema")
    return _ci_reports.build(tmp_path_factory.mktemp("schema_reports"))


def test_schemas_are_valid_and_ship_with_the_package() -> None:
    need("jsonschema")
    from jsonschema import Draft202012Validator

    for name, file in schemas.FILES.items():
        text = (resources.files("converter.schemas") / file).read_text()
        schema = json.loads(text)
        Draft202012Validator.check_schema(schema)
        assert schema["properties"]["schema"] == {"const": name}
        assert "http://" not in text.replace("https://json-schema.org/draft/2020-12/schema", "")


def test_real_reports_and_summaries_validate(real: _ci_reports.RealReports) -> None:
    for doc in (real.int8, real.fp16, real.failed, _ci_reports.unchecked(real.int8)):
        assert schemas.problems(doc) == []
    summary = _ci_reports.twenty(real)
    for doc in (summary.to_json(), summary.to_json(with_reports=True)):
        assert schemas.problems(json.loads(json.dumps(doc))) == []


def _broken(doc: dict, edit) -> list[str]:
    doc = copy.deepcopy(doc)
    edit(doc)
    return schemas.problems(doc)


REPORT_DRIFT = {
    "$: 'environment' is a required property": lambda d: d.pop("environment"),
    "$.verdict: 'OK' is not one of": lambda d: d.update(verdict="OK"),
    "$: Additional properties are not allowed ('extra' was unexpected)": lambda d: d.update(extra=1),
    "$.stages[0].seconds: -1 is less than the minimum of 0": lambda d: d["stages"][0].update(seconds=-1),
    "$.stages[0].notes.kept_fp32[0]: 'why' is a required property":
        lambda d: d["stages"][0]["notes"]["kept_fp32"][0].pop("why"),
    "$.parity.outputs[0].abs_error_hist.counts[0]: -1 is less than the minimum of 0":
        lambda d: d["parity"]["outputs"][0]["abs_error_hist"]["counts"].__setitem__(0, -1),
    "$.parity.outputs[0].status: 'close' is not one of": lambda d: d["parity"]["outputs"][0].update(status="close"),
    "$.parity.skipped: True was expected": lambda d: d.update(parity={"skipped": False}),
    "$.inputs[0].shape[0]: 1.5 is not of type 'integer', 'string', 'null'":
        lambda d: d["inputs"][0]["shape"].__setitem__(0, 1.5),
}


@pytest.mark.parametrize("expected", sorted(REPORT_DRIFT))
def test_report_drift_is_named_with_its_path(real: _ci_reports.RealReports, expected: str) -> None:
    problems = _broken(real.fp16, REPORT_DRIFT[expected])
    assert any(p.startswith(expected) for p in problems), problems


def test_summary_drift_is_named_with_its_path(real: _ci_reports.RealReports) -> None:
    good = _ci_reports.twenty(real).to_json(with_reports=True)
    good = json.loads(json.dumps(good))
    assert schemas.problems(good) == []
    assert _broken(good, lambda d: d["rows"][5].update(exit_code=0)) == ["$.rows[5].exit_code: 0 is not one of [2, 3, 4]"]
    assert _broken(good, lambda d: d["rows"][0]["report"].pop("stages")) == \
        ["$.rows[0].report: 'stages' is a required property"]
    assert _broken(good, lambda d: d.update(schema="convertkit.summary/2")) == \
        ["$.schema: 'convertkit.summary/2' is not one of ['convertkit.report/1', 'convertkit.summary/1']"]


def test_the_suite_check_finds_a_broken_report_and_leaves_stubs_alone(
        real: _ci_reports.RealReports, tmp_path_factory: pytest.TempPathFactory) -> None:
    need("jsonschema")
    root = tmp_path_factory.mktemp("schema_check")  # outside tmp_path: this test's own check must pass
    (root / "a").mkdir()
    (root / "a" / "report.json").write_text(json.dumps({**real.int8, "verdict": "MAYBE"}))
    (root / "b").mkdir()
    (root / "b" / "report.json").write_text(json.dumps({"verdict": "PASSED"}))  # a test's stub: no schema key
    (root / "summary.json").write_text("{")  # a deliberately corrupted file: not convertkit's to judge
    s = Summary("p.toml", [Row("m", "onnx", [], ERROR, 0, 1.0, False, error="x")], 0, 1.0)
    (root / "c").mkdir()
    (root / "c" / "summary.json").write_text(json.dumps(s.to_json()))
    assert _schema_problems(root) == [
        f"{root / 'a' / 'report.json'}: $.verdict: 'MAYBE' is not one of ['PASSED', 'FAILED', 'UNCHECKED']",
        f"{root / 'c' / 'summary.json'}: $.rows[0].exit_code: 0 is not one of [2, 3, 4]"]
    assert _schema_problems(root) == []  # each file once per session


def test_a_test_that_writes_a_broken_report_fails(real: _ci_reports.RealReports, tmp_path: Path) -> None:
    """The autouse fixture at work: a real pytest run (tests/conftest.py loaded as a plugin) of one
    test that writes a report breaking the schema fails in its teardown, naming the file and key."""
    need("jsonschema")
    (tmp_path / "good.json").write_text(json.dumps(real.int8))
    test = tmp_path / "test_writes_report.py"
    test.write_text(
        "import json\n"
        f"GOOD = json.loads(open({str(tmp_path / 'good.json')!r}).read())\n"
        "def test_ok(tmp_path):\n"
        "    (tmp_path / 'out').mkdir()\n"
        "    (tmp_path / 'out' / 'report.json').write_text(json.dumps(GOOD))\n"
        "def test_drift(tmp_path):\n"
        "    (tmp_path / 'report.json').write_text(json.dumps({**GOOD, 'exit_code': 7}))\n")
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "tests.conftest",
                          "-c", os.devnull, "--rootdir", str(tmp_path), str(test)],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 1, run.stdout + run.stderr
    assert "2 passed, 1 error" in run.stdout, run.stdout  # test_drift itself passed; its teardown did not
    assert "ERROR at teardown of test_drift" in run.stdout
    assert "report.json: $.exit_code: 7 is not one of [0, 1]" in run.stdout
