"""One conformance case through the whole ONNX -> TF -> TF.js route: the lowering's frozen graph,
written as a TF.js graph model by the tf->tfjs stage's writer, run in TF.js on Node (wasm or cpu
backend) on the case's inputs, compared with the case's expected outputs.

TF.js has no int64 or float64: it narrows them to int32 / float32 (the runner records it), so an
expected int64/float64 output is compared after the same narrowing, float64 at float32's tolerance.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.formats.conformance import Case, mismatch

_NARROW = {"int64": "int32", "float64": "float32", "float16": "float32", "uint64": "int32", "uint32": "int32",
           "uint16": "int32", "int16": "int32", "uint8": "int32", "int8": "int32"}


@dataclass(frozen=True)
class Written:
    """A case's TF.js model on disk, its ONNX-order feeds and expected outputs."""

    model_dir: Path
    feeds: dict[str, Any]
    expected: list[Any]
    output_names: tuple[str, ...]


def write_case(case: Case, out_dir: Path) -> Written:
    """Lower the case and write it as a TF.js graph model in ``out_dir``."""
    from converter.formats.tf.lower.build import feeds_for
    from converter.formats.tf.lower.harness import load_case, lower_model
    from converter.formats.tfjs.graph import write_graph_def

    model, inputs, expected = load_case(case.path)
    lowered = lower_model(model)
    inits = {i.name for i in model.graph.initializer}
    names = [i.name for i in model.graph.input if i.name not in inits]
    args = feeds_for(lowered, dict(zip(names, inputs)), names)  # laid out as the graph takes them
    feeds = {s.name: a.numpy() for s, a in zip(lowered.inputs, args)}
    out_dir.mkdir(parents=True, exist_ok=True)
    write_graph_def(lowered.graph_def, [(s.name, f"{s.name}:0") for s in lowered.inputs],
                    [(o.name, f"{o.name}:0") for o in lowered.outputs], out_dir)
    return Written(out_dir, feeds, expected, tuple(o.name for o in lowered.outputs))


def run_written(written: Written, backend: str) -> str | None:
    """None when TF.js on ``backend`` gives the expected outputs, else what differs."""
    from converter.core import Artifact
    from converter.formats.tfjs import FORMAT
    from converter.formats.tfjs.runner import TfjsRunner

    with TfjsRunner(Artifact(FORMAT, written.model_dir), backend=backend) as runner:
        got = runner.infer(written.feeds)
    missing = [n for n in written.output_names if n not in got]
    if missing:
        return f"TF.js returned no {missing} (got {sorted(got)})"
    return mismatch(narrowed(written.expected), [got[n] for n in written.output_names])


def narrowed(arrays: Sequence[Any]) -> list[Any]:
    """Expected outputs as TF.js can hold them (int64 -> int32, float64 -> float32)."""
    import numpy as np

    return [np.asarray(a).astype(_NARROW[np.asarray(a).dtype.name]) if np.asarray(a).dtype.name in _NARROW
            else np.asarray(a) for a in arrays]
