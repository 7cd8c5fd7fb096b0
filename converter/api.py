"""The Python API. The CLI is a thin layer over these functions.

    import converter
    report = converter.export("model.pt2", to="onnx", out_dir="out/")
    report = converter.export(my_module, to="onnx", out_dir="out/", example_inputs=(torch.randn(1, 3, 32, 32),))
    parity = converter.validate("model.pt2", "out/model.onnx")
"""

from __future__ import annotations

import inspect as _inspect
import logging
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from . import registry
from .core import FP32, Artifact, Format, Pipeline, StageRecord, TensorSpec, Tolerance, now
from .errors import ConvertkitError, StageError, UnsupportedOpError, UsageError
from .fsutil import atomic_dir, check_destination
from .parity import inputs as feeds_mod
from .parity.validate import run as run_outputs
from .parity.validate import validate as _validate
from .plan import plan
from .report import RunReport

log = logging.getLogger(__name__)
InputsArg = Sequence[str | TensorSpec] | None


def load(source: Any, *, weights: str | None = None, trust_code: bool = False) -> Artifact:
    """Open a model (path, import path, or in-memory torch.nn.Module) as an Artifact."""
    if isinstance(source, Artifact):
        return source
    if isinstance(source, (str, Path)):
        return registry.open_source(str(source), weights=weights, trust_code=trust_code)
    if hasattr(source, "forward") and hasattr(source, "parameters"):
        fmt = registry.get_format("torch")
        return Artifact(fmt, None, meta={"kind": "module", "source": type(source).__name__}, obj=source.eval())
    raise UsageError(f"cannot use a {type(source).__name__} as a model",
                     hint="give a file path, package.module:callable, or a torch.nn.Module")


def prepare_inputs(src: Artifact, inputs: InputsArg = None, feeds: str | Path | Mapping | None = None, *,
                   example_inputs: Any = None, samples: int = 3, seed: int = 0
                   ) -> tuple[Artifact, list[dict[str, Any]], list[str]]:
    """Decide the input specs and the feeds for validation. Returns (source with specs, feeds, notes)."""
    notes: list[str] = []
    specs = parse_inputs(inputs)
    user_feeds = _example_feeds(src, example_inputs, specs) if example_inputs is not None else None
    if feeds is not None:
        user_feeds = dict(feeds) if isinstance(feeds, Mapping) else feeds_mod.load_feeds(feeds)
    if not specs:
        specs = src.inputs or (feeds_mod.specs_from_feeds(user_feeds) if user_feeds else ())
    if not specs:
        raise UsageError(f"{src.label}: convertkit needs to know the model's inputs",
                         hint="give --input NAME:DIMS[:DTYPE] (repeatable) or --inputs FEEDS.npz")
    if src.inputs and {s.name for s in specs} != {s.name for s in src.inputs}:
        raise UsageError(f"--input names {', '.join(s.name for s in specs)} do not match the model's inputs "
                         f"{', '.join(s.name for s in src.inputs)}", hint="use the model's input names")
    specs = tuple(_with_int_range(s, src) for s in specs)
    if user_feeds is not None:
        feeds_mod.check_feeds(user_feeds, specs, str(feeds) if feeds is not None else "example_inputs")
        generated = feeds_mod.make_feeds(specs, samples=max(samples, 1), seed=seed)[1:]
        feed_list = [user_feeds, *generated]
        if generated:
            notes.append(f"sample 0 is the given data; samples 1-{len(generated)} are seeded random")
    else:
        feed_list = feeds_mod.make_feeds(specs, samples=max(samples, 1), seed=seed)
    meta = {**src.meta, "example": feed_list[0]}
    return src.with_(inputs=specs, meta=meta), feed_list, notes


def parse_inputs(inputs: InputsArg) -> tuple[TensorSpec, ...]:
    return tuple(feeds_mod.parse_input_spec(s) if isinstance(s, str) else s for s in (inputs or ()))


def _with_int_range(spec: TensorSpec, src: Artifact) -> TensorSpec:
    if spec.int_range or not spec.dtype.startswith(("int", "uint")):
        return spec
    rng = None
    if src.format.name == "torch" and src.obj is not None:
        from .formats.torch.source import default_int_range

        rng = default_int_range(src.obj)
    return TensorSpec(spec.name, spec.shape, spec.dtype, spec.layout, rng or feeds_mod.DEFAULT_INT_RANGE)


def _example_feeds(src: Artifact, example_inputs: Any, specs: tuple[TensorSpec, ...]) -> dict[str, Any]:
    """Tensors given to the API (a tensor, tuple, or dict) -> named numpy feeds."""
    if isinstance(example_inputs, Mapping):
        return {k: _np(v) for k, v in example_inputs.items()}
    items = example_inputs if isinstance(example_inputs, (tuple, list)) else (example_inputs,)
    names = [s.name for s in specs]
    if not names:
        try:
            params = list(_inspect.signature(src.obj.forward).parameters)
        except (TypeError, ValueError, AttributeError):
            params = []
        names = params[: len(items)] if len(params) >= len(items) else [f"input_{i}" for i in range(len(items))]
    return {n: _np(v) for n, v in zip(names, items)}


def _np(v: Any) -> Any:
    import numpy as np

    return v.detach().cpu().numpy() if hasattr(v, "detach") else np.asarray(v)


def tolerance(pipeline: Pipeline | None, atol: float | None, rtol: float | None) -> Tolerance:
    """fp32 defaults, loosened by what the stages declare, then the user's explicit overrides."""
    tol = pipeline.tolerance_added if pipeline is not None else FP32
    return Tolerance(tol.atol if atol is None else atol, tol.rtol if rtol is None else rtol,
                     tol.min_cosine, tol.min_top1)


def run_pipeline(pipeline: Pipeline, src: Artifact, out_dir: Path, work_dir: Path) -> tuple[Artifact, list[StageRecord]]:
    records: list[StageRecord] = []
    current = src
    for i, stage in enumerate(pipeline.stages):
        last = i == len(pipeline.stages) - 1
        target = out_dir if last else work_dir / f"{i:02d}-{stage.name.replace('->', '-to-')}"
        target.mkdir(parents=True, exist_ok=True)
        t0 = now()
        try:
            result = stage.run(current, target)
        except (StageError, UnsupportedOpError):
            raise
        except ConvertkitError as exc:
            raise StageError(stage.name, exc.message, before=[s.name for s in pipeline.stages[:i]], hint=exc.hint) from exc
        except Exception as exc:  # a converter's own error: name the stage, keep the first line
            msg = " ".join(str(exc).split())[:400] or type(exc).__name__
            raise StageError(stage.name, f"{type(exc).__name__}: {msg}", before=[s.name for s in pipeline.stages[:i]]) from exc
        records.append(StageRecord(stage.name, stage.config(), round(now() - t0, 3), current.size_bytes(),
                                   result.size_bytes(), registry.op_counts(current), registry.op_counts(result),
                                   dict(result.meta), _rel(result.path, out_dir)))
        current = result
    return current, records


def _rel(path: Path | None, root: Path) -> str | None:
    if path is None:
        return None
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


def export(source: Any, to: str | Format = "onnx", out_dir: str | Path = "convertkit-out", *,
           inputs: InputsArg = None, feeds: str | Path | Mapping | None = None, example_inputs: Any = None,
           output_names: Sequence[str] = (), weights: str | None = None, trust_code: bool = False,
           check: bool = True, atol: float | None = None, rtol: float | None = None, samples: int = 3,
           seed: int = 0, opset: int | None = None, exporter: str | None = None,
           keep_intermediates: bool = False, force: bool = False) -> RunReport:
    """Convert ``source`` to ``to`` in ``out_dir`` and validate it against the source.

    Raises a ConvertkitError subclass for bad input (exit 2) or a failed conversion (exit 3); a
    parity failure is not raised: the model is written for inspection and ``report.verdict`` is
    FAILED (exit 1)."""
    target = to if isinstance(to, Format) else registry.get_format(to)
    inputs = parse_inputs(inputs)  # bad specs fail before any framework loads
    src = load(source, weights=weights, trust_code=trust_code)
    sources = (src.path,) if src.path is not None else ()
    dest = check_destination(Path(out_dir), sources=sources, force=force)
    src, feed_list, notes = prepare_inputs(src, inputs, feeds, example_inputs=example_inputs, samples=samples, seed=seed)
    if output_names:
        src = src.with_(outputs=tuple(TensorSpec(n, None, "float32") for n in output_names))
    pipeline = plan(src.format, target, {"opset": opset, "exporter": exporter})
    report = RunReport("export", {"location": src.meta.get("source"), "format": src.format.name,
                                  "kind": src.meta.get("kind")}, target.name,
                       inputs=[s.to_json() for s in src.inputs], notes=notes)
    with atomic_dir(dest) as tmp:
        work = tmp / "intermediates"
        final, report.stages = run_pipeline(pipeline, src, tmp, work)
        report.outputs = [s.to_json() for s in final.outputs]
        report.artifact = str(dest / final.path.relative_to(tmp)) if final.path else None
        if check:
            tol = tolerance(pipeline, atol, rtol)
            report.parity = _validate(src, final, feed_list, tol)
        else:
            report.notes.append("validation skipped (--no-check): nothing proves this model computes the same")
        if work.exists() and not keep_intermediates:
            shutil.rmtree(work)
        report.write(tmp / "report.json")
    return report


def validate(reference: Any, candidate: Any, *, inputs: InputsArg = None, feeds: str | Path | Mapping | None = None,
             example_inputs: Any = None, weights: str | None = None, trust_code: bool = False,
             atol: float | None = None, rtol: float | None = None, samples: int = 3, seed: int = 0) -> RunReport:
    """Compare any two models convertkit can run, on the same (given or seeded) inputs."""
    inputs = parse_inputs(inputs)
    ref = load(reference, weights=weights, trust_code=trust_code)
    cand = load(candidate, trust_code=trust_code)
    if not ref.inputs and cand.inputs and not inputs and feeds is None and example_inputs is None:
        ref = ref.with_(inputs=cand.inputs)  # e.g. TorchScript vs ONNX: take the ONNX model's specs
    ref, feed_list, notes = prepare_inputs(ref, inputs, feeds, example_inputs=example_inputs, samples=samples, seed=seed)
    report = RunReport("validate", {"location": ref.meta.get("source"), "format": ref.format.name,
                                    "kind": ref.meta.get("kind")}, cand.format.name,
                       inputs=[s.to_json() for s in ref.inputs], artifact=cand.label, notes=notes)
    report.parity = _validate(ref, cand, feed_list, tolerance(None, atol, rtol))
    return report


def inspect(model: Any, *, weights: str | None = None, trust_code: bool = False) -> dict[str, Any]:
    art = load(model, weights=weights, trust_code=trust_code)
    info = {"format": art.format.name, "path": art.label, "bytes": art.size_bytes(),
            "inputs": [s.to_json() for s in art.inputs], "outputs": [s.to_json() for s in art.outputs]}
    info.update(registry.describe(art))
    return info


def outputs(model: Any, feeds: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Run a model on feeds in its own runtime (handy in notebooks)."""
    return run_outputs(load(model), feeds)
