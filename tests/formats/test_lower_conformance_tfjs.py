"""A fixed, spread-out sample of ONNX's conformance cases (conformance_data.TFJS_SAMPLE) through the
whole route: our lowering -> frozen TF graph -> TF.js graph model (the tf->tfjs stage's writer) ->
TF.js in Node on both the wasm and the cpu backend, compared with each case's expected outputs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import need, need_node
from tests.formats.conformance import cases
from tests.formats.conformance_data import TFJS_SAMPLE


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Every sampled case lowered and written as a TF.js model, once."""
    os.environ.setdefault("TFDF_DISABLE_WELCOME_MESSAGE", "1")  # see test_tfjs_runner.py
    need("onnx", "tensorflow", "tensorflowjs")
    need_node()
    from tests.formats.conformance_tfjs import write_case

    root: Path = tmp_path_factory.mktemp("conformance-tfjs")
    found = {c.name: c for c in cases(TFJS_SAMPLE) if c.name in TFJS_SAMPLE}
    assert sorted(found) == sorted(TFJS_SAMPLE), f"not in onnx's data: {sorted(set(TFJS_SAMPLE) - set(found))}"
    return {name: write_case(case, root / name) for name, case in found.items()}


def test_sample_is_spread_out():
    assert len(TFJS_SAMPLE) >= 60 and len(set(TFJS_SAMPLE)) == len(TFJS_SAMPLE)
    ops = {op for c in cases(TFJS_SAMPLE) if c.name in TFJS_SAMPLE for op in c.ops}
    assert len(ops) >= 60, sorted(ops)


@pytest.mark.parametrize("backend", ["wasm", "cpu"])
@pytest.mark.parametrize("name", TFJS_SAMPLE)
def test_case_matches_in_tfjs(written, name, backend):
    from tests.formats.conformance_tfjs import run_written

    problem = run_written(written[name], backend)
    assert problem is None, f"{name} on TF.js {backend}: {problem}"
