"""docs/examples/ works as docs/ci.md says: the Makefile's `models` target runs `convertkit run` on
the example pipeline (real models, real runtimes) and is up to date afterwards, `check-models`
writes the three reports, and the CI files are valid YAML that run `make check-models`, upload the
reports whatever the result and keep CONVERTKIT_CACHE between runs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.conftest import ROOT, need, need_node

EXAMPLES = ROOT / "docs" / "examples"
CI_MD = ROOT / "docs" / "ci.md"


def _yaml(name: str) -> dict:
    need("yaml")
    import yaml

    return yaml.safe_load((EXAMPLES / name).read_text())


def test_github_workflow_uploads_reports_and_keeps_the_cache():
    doc = _yaml("github-workflow.yml")
    assert doc.get("on", doc.get(True))  # YAML 1.1 reads a bare `on:` key as True; GitHub reads it as "on"
    [job] = doc["jobs"].values()
    steps = job["steps"]
    runs = " ".join(s.get("run", "") for s in steps)
    assert "make check-models" in runs and "make -C .convertkit install" in runs
    assert "$GITHUB_STEP_SUMMARY" in runs and "build/reports/summary.md" in runs
    uses = {s.get("uses", "").split("@")[0]: s for s in steps}
    upload = uses["actions/upload-artifact"]
    assert upload["if"] == "always()"
    for report in ("junit.xml", "summary.md", "report.html"):
        assert f"build/reports/{report}" in upload["with"]["path"]
    cache_dir = job["env"]["CONVERTKIT_CACHE"]
    assert cache_dir.endswith("/.convertkit-cache")
    restore, save = uses["actions/cache/restore"], uses["actions/cache/save"]
    assert restore["with"]["path"] == save["with"]["path"] == ".convertkit-cache"
    assert save["if"] == "always()" and restore["with"]["key"] == save["with"]["key"]
    assert save["with"]["key"].startswith(restore["with"]["restore-keys"])
    assert steps.index(restore) < next(i for i, s in enumerate(steps) if "check-models" in s.get("run", "")) \
        < steps.index(save)
    assert uses["mikepenz/action-junit-report"]["with"]["report_paths"] == "build/reports/junit.xml"


def test_gitlab_job_uploads_reports_and_keeps_the_cache():
    job = _yaml("gitlab-ci.yml")["check-models"]
    assert "make check-models CONVERTKIT=.convertkit/.venv/bin/convertkit" in job["script"]
    assert job["variables"]["CONVERTKIT_CACHE"] == "$CI_PROJECT_DIR/.convertkit-cache"
    [artifact_cache] = [c for c in job["cache"] if ".convertkit-cache/" in c["paths"]]
    assert artifact_cache["when"] == "always"
    art = job["artifacts"]
    assert art["when"] == "always" and art["paths"] == ["build/reports/"]
    assert art["reports"]["junit"] == "build/reports/junit.xml"


def test_ci_md_includes_every_example_verbatim():
    text = CI_MD.read_text()
    for name in ("Makefile", "pipeline.toml", "github-workflow.yml", "gitlab-ci.yml"):
        body = (EXAMPLES / name).read_text().rstrip("\n")
        assert body in text, f"docs/ci.md does not include docs/examples/{name} as it is"


def _make(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "--no-print-directory", "-f", str(EXAMPLES / "Makefile"), *args], cwd=env["HOME_DIR"],
                          capture_output=True, text=True, timeout=900, env=env)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, torch_fixtures: dict) -> Path:
    """A user's project as docs/ci.md lays it out: pipeline.toml (the example's, as it is) beside
    models/ with the files it names, copied from the session's fixtures."""
    need("torch", "onnx", "onnxruntime", "tensorflow", "tensorflowjs")
    need_node()
    if shutil.which("make") is None:
        pytest.skip("make not installed")
    root = tmp_path_factory.mktemp("project")
    built = torch_fixtures
    models = root / "models"
    models.mkdir()
    shutil.copyfile(built["cnn"]["pt2"], models / "classifier.pt2")
    shutil.copyfile(built["mlp"]["pt2"], models / "ranker.pt2")
    shutil.copyfile(built["mlp"]["inputs"], models / "ranker-sample.npz")
    shutil.copyfile(EXAMPLES / "pipeline.toml", root / "pipeline.toml")
    return root


def test_makefile_models_then_check_models(project: Path):
    env = {**os.environ, "HOME_DIR": str(project), "CI": "true", "CONVERTKIT_CACHE": str(project / "cache"),
           "CONVERTKIT": f"{sys.executable} -m converter.cli", "PYTHONPATH": str(ROOT)}
    r = _make("models", env=env)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "-m converter.cli run pipeline.toml -o build/models" in r.stdout
    rows = json.loads((project / "build/models/summary.json").read_text())["rows"]
    assert sorted((row["model"], row["target"], row["verdict"]) for row in rows) == [
        ("classifier", "onnx", "PASSED"), ("classifier", "tfjs", "PASSED"), ("ranker", "onnx", "PASSED")]
    assert (project / "build/models/classifier/onnx/model.onnx").is_file()
    assert (project / "build/models/classifier/tfjs/model.json").is_file()

    assert _make("-q", "models", env=env).returncode == 0  # up to date: nothing runs again
    (project / "models/ranker.pt2").touch()
    assert _make("-q", "models", env=env).returncode == 1  # a changed source makes it run again

    r = _make("check-models", env=env)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "doctor" in r.stdout
    reports = project / "build/reports"
    cases = ET.parse(reports / "junit.xml").getroot().iter("testcase")
    assert sorted(c.get("classname") for c in cases) == ["classifier", "classifier", "ranker"]
    md = (reports / "summary.md").read_text()
    assert "classifier" in md and "ranker" in md
    assert "<html" in (reports / "report.html").read_text()[:2000].lower()
    assert _make("-q", "models", env=env).returncode == 0  # check-models leaves `models` up to date


def _anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens (outside code blocks)."""
    import re

    found, fenced = set(), False
    for line in markdown.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and (m := re.match(r"^#{1,6} (.+)$", line)):
            found.add(re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-"))
    return found


def test_links_between_readme_and_docs_resolve():
    """Every relative link of README.md and docs/*.md names a file that exists, and its #anchor a heading there."""
    import re

    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    broken = []
    for page in pages:
        text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue
            path, _, anchor = target.partition("#")
            dest = (page.parent / path).resolve() if path else page
            if not dest.exists():
                broken.append(f"{page.name}: {target} (no such file)")
            elif anchor and dest.is_file() and anchor not in _anchors(dest.read_text()):
                broken.append(f"{page.name}: {target} (no such heading)")
    assert not broken, broken
    assert len(pages) >= 11
