"""Shared test helpers. Frameworks may be missing on a user's machine (the test skips), never in
CI: with CI=true a missing framework fails the run, so a broken install cannot pass green."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def need(*modules: str) -> None:
    """Skip (locally) or fail (CI=true) when a framework cannot be imported. Imports go through
    convertkit's own deps.require, so the environment it sets (TF_ENABLE_ONEDNN_OPTS=0, ...) is
    in place before a test imports a framework, as in the CLI."""
    from converter.deps import require
    from converter.errors import MissingDependencyError

    for name in modules:
        try:
            require(name)
        except MissingDependencyError as exc:
            if os.environ.get("CI", "").lower() == "true":
                pytest.fail(f"{name} is required in CI but does not import: {exc}")
            pytest.skip(f"{name} not installed")


def need_node() -> None:
    """Skip (locally) or fail (CI=true) without Node.js and the pinned npm packages (TF.js runtime)."""
    import shutil

    from converter.formats.tfjs.runner import NODE_DIR

    modules = Path(os.environ.get("CONVERTKIT_NODE_MODULES") or NODE_DIR / "node_modules")
    missing = ("node" if shutil.which("node") is None else
               None if (modules / "@tensorflow" / "tfjs-backend-wasm").is_dir() else f"npm packages in {modules}")
    if missing:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{missing} required in CI (run `make install`)")
        pytest.skip(f"{missing} not installed")


def need_ort_web() -> None:
    """Skip (locally) or fail (CI=true) without Node.js and the pinned onnxruntime-web npm package."""
    need_node()
    from converter.formats.onnx.web_runner import PACKAGE, modules_dir

    if not (modules_dir() / PACKAGE / "package.json").is_file():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"npm package {PACKAGE} required in CI (run `make install`)")
        pytest.skip(f"npm package {PACKAGE} not installed")


def convertkit(*args: str, cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the real CLI in a subprocess, as a user would."""
    return subprocess.run([sys.executable, "-m", "converter.cli", *map(str, args)], cwd=cwd or ROOT,
                          capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=600)


@pytest.fixture(scope="session")
def torch_fixtures(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Every fixture model, saved once per test session in every PyTorch source form."""
    need("torch")
    from fixtures.build import build

    return build(tmp_path_factory.mktemp("fixtures"))


@pytest.fixture(scope="session")
def tf_fixtures(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Every TensorFlow / Keras fixture, saved once per test session in its source forms."""
    need("tensorflow", "tf_keras", "keras")
    from fixtures.build_tf import build

    return build(tmp_path_factory.mktemp("tf_fixtures"))


def need_chromium() -> str:
    """The headless Chromium the HTML report is checked in (Debian's `chromium`; CONVERTKIT_CHROMIUM
    overrides): its path. Skip locally, fail with CI=true (`make install-browser` installs it)."""
    import shutil

    exe = os.environ.get("CONVERTKIT_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not os.access(exe, os.X_OK):
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"chromium ({exe}) is required in CI (run `make install-browser`)")
        pytest.skip(f"chromium not installed ({exe}; `make install-browser`)")
    return exe


#: report.json / summary.json files already checked against their JSON Schema in this session
_SCHEMA_CHECKED: set[Path] = set()


def _schema_problems(root: Path) -> list[str]:
    """Each convertkit document under ``root`` (a report.json or summary.json holding a ``schema`` key)
    checked against converter/schemas: one line per violation. Files without that key are not
    convertkit's (a test's stub, a deliberately corrupted cache entry) and are left alone."""
    import json

    from converter import schemas

    found = []
    for path in sorted(p for name in ("report.json", "summary.json") for p in root.rglob(name)):
        if path in _SCHEMA_CHECKED or not path.is_file():
            continue
        _SCHEMA_CHECKED.add(path)
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(doc, dict) and "schema" in doc:
            found += [f"{path}: {p}" for p in schemas.problems(doc)]
    return found


def _schema_checks_on() -> bool:
    """jsonschema is a test dependency (requirements/lock.txt): without it the check is skipped
    locally and fails in CI."""
    try:
        import jsonschema  # noqa: F401
    except ImportError:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("jsonschema is required in CI to check every report against converter/schemas (make install)")
        return False
    return True


@pytest.fixture(autouse=True)
def _reports_follow_their_schema(request: pytest.FixtureRequest):
    """After each test that has a tmp_path: every report.json / summary.json in it validates against
    converter/schemas (#15: "tests validate every report they produce")."""
    tmp = request.getfixturevalue("tmp_path") if "tmp_path" in request.fixturenames else None
    yield
    if tmp is not None and _schema_checks_on():
        problems = _schema_problems(tmp)
        if problems:
            pytest.fail("reports that break their JSON Schema (converter/schemas):\n" + "\n".join(problems[:20]))


@pytest.fixture(scope="session", autouse=True)
def _session_reports_follow_their_schema(tmp_path_factory: pytest.TempPathFactory):
    """At the end of the session, the same check over every test directory (module and session
    fixtures' tmp_path_factory folders too)."""
    yield
    if _schema_checks_on():
        problems = _schema_problems(tmp_path_factory.getbasetemp())
        if problems:
            pytest.fail("reports that break their JSON Schema (converter/schemas):\n" + "\n".join(problems[:20]))
