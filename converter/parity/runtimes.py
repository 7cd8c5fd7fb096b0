"""Where an ONNX result is validated (``--onnx-runtime python|web|both``) and what the report says
about it. Stdlib at import time.

- ``python`` (default): onnxruntime in this process (CPU execution provider).
- ``web``: onnxruntime-web's wasm execution provider under Node (formats/onnx/web_runner.py), after
  a kernel preflight that names every op it cannot run (exit 3).
- ``both``: the final check runs in each runtime; the parity table has one row per output and
  runtime (``logits @ onnxruntime-web``) and passes only when both do. Passes check their
  candidates in onnxruntime-web, the runtime that runs fewer kernels.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from ..core import Artifact, Tolerance

RUNTIMES = ("python", "web", "both")
LABELS = {"python": "onnxruntime", "web": "onnxruntime-web"}


def choice(runner_options: Mapping[str, Any]) -> str:
    return str(runner_options.get("onnx_runtime") or "python")


def describe(runtime: str, browser: str | None = None) -> str:
    """One phrase naming the runtime and its version, for the report."""
    if runtime == "web":
        from ..formats.onnx.web_runner import version

        where = "in headless Chromium" if browser else "under Node"
        return f"onnxruntime-web {version()} (wasm execution provider, {where})"
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        v = dist_version("onnxruntime")
    except PackageNotFoundError:
        v = "?"
    return f"onnxruntime {v} (Python, CPU execution provider)"


def final_parity(checker: Any, artifact: Artifact, tol: Tolerance) -> Any:
    """``checker(artifact, tol)`` in the runtime(s) ``--onnx-runtime`` names, with a note saying which.
    Artifacts of other formats: the checker as it is."""
    runtime = choice(checker.runner_options)
    if artifact.format.name != "onnx":
        return checker(artifact, tol)
    if runtime != "both":
        report = checker(artifact, tol)
        report.notes.insert(0, f"validated in {describe(runtime, checker.runner_options.get('browser'))}")
        return report
    reports = {rt: dataclasses.replace(checker, runner_options={**checker.runner_options, "onnx_runtime": rt})
               .with_reference_outputs(checker.reference_outputs)(artifact, tol) for rt in ("python", "web")}
    return merged(reports, checker.runner_options.get("browser"))


def merged(reports: Mapping[str, Any], browser: str | None = None) -> Any:
    """One ParityReport from one per runtime: each output once per runtime, named ``out @ runtime``."""
    from .compare import ParityReport

    first = next(iter(reports.values()))
    outputs = [dataclasses.replace(o, name=f"{o.name} @ {LABELS[rt]}") for rt, r in reports.items() for o in r.outputs]
    notes = [f"validated in {describe(rt, browser)}: {'PASSED' if r else 'FAILED'}" for rt, r in reports.items()]
    notes += [f"{LABELS[rt]}: {n}" for rt, r in reports.items() for n in r.notes]
    return ParityReport(outputs, first.tolerance, first.samples, _unique(notes))


def _unique(notes: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(notes))

