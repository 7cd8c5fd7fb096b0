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
