"""Run a model through the lowering in-process: ONNX-order numpy feeds in, numpy outputs out. For
tests and the conformance data (``onnx/backend/test/data/node/<case>``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .build import Lowered, feeds_for, lower


def lower_model(model: Any, *, layout: str = "source", mark_all: bool = False) -> Lowered:
    """Lower with the model's own input/output specs (dynamic dims stay dynamic)."""
    from ...onnx import io_specs

    inputs, outputs = io_specs(model)
    return lower(model, inputs, outputs, layout=layout, mark_all=mark_all)


def run(lowered: Lowered, model: Any, feeds: Mapping[str, Any] | Sequence[Any]) -> list[Any]:
    """The lowered graph on ``feeds`` (by ONNX input name, or a list in input order) -> numpy outputs."""
    import numpy as np

    inits = {i.name for i in model.graph.initializer}
    names = [i.name for i in model.graph.input if i.name not in inits]
    if not isinstance(feeds, Mapping):
        feeds = dict(zip(names, feeds))
    return [np.asarray(o) for o in lowered.fn(*feeds_for(lowered, feeds, names))]


def load_case(case: Path) -> tuple[Any, list[Any], list[Any]]:
    """A conformance case directory -> (model, inputs, expected outputs) of test_data_set_0."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(case / "model.onnx"))
    data = case / "test_data_set_0"

    def read(prefix: str) -> list[Any]:
        files = sorted(data.glob(f"{prefix}_*.pb"), key=lambda p: int(p.stem.split("_")[1]))
        return [numpy_helper.to_array(onnx.load_tensor(str(p))) for p in files]

    return model, read("input"), read("output")
