"""ONNX models: open, inspect, run in onnxruntime, and the exports that produce ONNX."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...core import Artifact, Format, Runner, TensorSpec
from ...deps import require
from ...errors import InputError

FORMAT = Format("onnx", "ONNX model (.onnx), run in onnxruntime")
FILENAME = "model.onnx"


def probe(location: str) -> bool:
    p = Path(location)
    return (p.is_file() and p.suffix.lower() == ".onnx") or (p.is_dir() and (p / FILENAME).is_file())


def model_path(path: Path) -> Path:
    return path / FILENAME if path.is_dir() else path


def load_proto(path: Path, *, weights: bool = True) -> Any:
    onnx = require("onnx")
    try:
        model = onnx.load(str(path), load_external_data=weights)
    except Exception as exc:
        raise InputError(f"{path} is not a readable ONNX model ({str(exc).splitlines()[0][:200]})",
                         hint="check the file is complete; re-export it") from exc
    clear_unknown_dims(model)
    return model


_ELEM = {1: "float32", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32", 7: "int64", 9: "bool",
         10: "float16", 11: "float64", 12: "uint32", 13: "uint64", 16: "bfloat16"}


def _dim(d: Any, axis: int) -> int | str | None:
    """One ONNX dim as a Dim. Paddle2ONNX and older exporters write an unknown dim as -1 or 0: it is
    dynamic, named by its axis (``unk_0``) so that the same axis of several inputs (a batch, a
    sequence) gets the same sample size."""
    if d.HasField("dim_value"):
        return d.dim_value if d.dim_value > 0 else f"unk_{axis}"
    return d.dim_param or None


def _specs(values: Any, skip: set[str] = frozenset()) -> tuple[TensorSpec, ...]:
    out = []
    for v in values:
        if v.name in skip:
            continue
        t = v.type.tensor_type
        shape = None
        if t.HasField("shape"):
            shape = tuple(_dim(d, i) for i, d in enumerate(t.shape.dim))
        out.append(TensorSpec(v.name, shape, _ELEM.get(t.elem_type, f"onnx:{t.elem_type}")))
    return tuple(out)


def clear_unknown_dims(model: Any) -> int:
    """Dims written as -1 or 0 (Paddle2ONNX, older exporters) in the graph's inputs, outputs and
    value_info become dynamic dims named by their axis, in place, as ``_dim`` reads them: every
    reader then sees a dynamic dim (onnxruntime takes a -1 as dynamic but a 0 as a fixed 0; onnx2tf
    fails on a -1). Returns how many were rewritten."""
    inits = {i.name for i in model.graph.initializer}
    cleared = 0
    for v in (*model.graph.input, *model.graph.output, *model.graph.value_info):
        for axis, d in enumerate(v.type.tensor_type.shape.dim if v.name not in inits else ()):
            if d.HasField("dim_value") and d.dim_value <= 0:
                d.dim_param = _dim(d, axis)
                cleared += 1
    return cleared


def io_specs(model: Any) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
    inits = {i.name for i in model.graph.initializer}
    return _specs(model.graph.input, inits), _specs(model.graph.output)


def open_source(location: str, **_: Any) -> Artifact:
    path = model_path(Path(location))
    if not path.is_file():
        raise InputError(f"{location}: no model.onnx there")
    model = load_proto(path, weights=False)
    inputs, outputs = io_specs(model)
    return Artifact(FORMAT, path, inputs, outputs, meta={"kind": "onnx", "source": str(path)})


def op_counts(artifact: Artifact) -> dict[str, int]:
    from collections import Counter

    model = load_proto(model_path(artifact.path), weights=False)
    counts = Counter(n.op_type for n in model.graph.node)
    return dict(sorted(counts.items()))


def describe(artifact: Artifact) -> dict[str, Any]:
    import numpy as np

    path = model_path(artifact.path)
    model = load_proto(path, weights=True)
    params = sum(int(np.prod(t.dims)) for t in model.graph.initializer)
    return {"opset": {(o.domain or "ai.onnx"): o.version for o in model.opset_import},
            "producer": f"{model.producer_name} {model.producer_version}".strip(),
            "ir_version": model.ir_version, "parameters": params,
            "nodes": len(model.graph.node), "ops": op_counts(artifact)}


def latency_ms(artifact: Artifact, feeds: Any, runs: int = 10, reference: Artifact | None = None) -> float:
    """Median onnxruntime latency (ms) on the first sample, after one warm-up run."""
    import statistics
    import time

    from .runner import OrtRunner

    with OrtRunner(artifact) as r:
        r.infer(feeds[0])
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            r.infer(feeds[0])
            times.append((time.perf_counter() - t0) * 1000)
    return round(statistics.median(times), 4)


#: where ONNX models are validated (``--onnx-runtime``): onnxruntime in Python, onnxruntime-web (wasm,
#: under Node), or both (the final check runs in each; passes check in onnxruntime-web, the stricter)
RUNTIMES = ("python", "web", "both")


def make_runner(artifact: Artifact, onnx_runtime: str = "python", browser: str | None = None,
                **options: Any) -> Runner:
    if onnx_runtime not in RUNTIMES:
        raise InputError(f"unknown ONNX runtime '{onnx_runtime}'", hint=f"use one of: {', '.join(RUNTIMES)}")
    if onnx_runtime in ("web", "both") and browser is not None:  # --browser chromium: in headless Chromium
        from ...browser.runner import ChromiumOrtRunner

        return ChromiumOrtRunner(artifact)
    if onnx_runtime in ("web", "both"):
        from .web_runner import OrtWebRunner

        return OrtWebRunner(artifact)
    from .runner import OrtRunner

    return OrtRunner(artifact)


def prewarm(onnx_runtime: str = "python", browser: str | None = None, **_: Any) -> None:
    """With onnxruntime-web: start Node and compile its wasm module while the model is converted
    (not with --browser: onnxruntime-web then runs in the browser)."""
    if onnx_runtime in ("web", "both") and browser is None:
        from .web_runner import prestart

        prestart()


def _stages() -> tuple[type, ...]:
    from .from_hf import HfToOnnx
    from .from_tf import KerasToOnnx, TfToOnnx
    from .from_torch import TorchToOnnx

    return (TorchToOnnx, HfToOnnx, KerasToOnnx, TfToOnnx)


STAGES = _stages
