"""PyTorch -> ONNX through ``torch.onnx.export``: the dynamo exporter first, the TorchScript
exporter as a fallback when it fails; the report says which one produced the model and why.

When the ONNX model is only an intermediate (the route goes on to TensorFlow / TF.js through
onnx2tf), TorchScript goes first and dynamo is the fallback: it exports a small model in ~0.1 s
where dynamo takes ~3 s (torch.export tracing, onnxscript's registry), its graphs are what onnx2tf
is written against, and the model that ships is validated against torch either way."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from ...core import SOURCE_MAP, Artifact, Export, Format
from ...deps import require
from ...errors import StageError, UnsupportedOpError, first_line
from ...quiet import quiet
from .. import torch as torch_fmt
from . import FILENAME, FORMAT, io_specs
from .scopes import source_map

#: above this many parameter bytes the weights go to model.onnx.data (protobuf's limit is 2 GiB)
EXTERNAL_DATA_BYTES = 1_800_000_000
EXPORTERS = ("auto", "dynamo", "torchscript")


@dataclass(frozen=True)
class TorchToOnnx(Export):
    name: ClassVar[str] = "torch->onnx"
    accepts: ClassVar[Format] = torch_fmt.FORMAT
    produces: ClassVar[Format] = FORMAT

    opset: int = 18
    exporter: str = "auto"  # auto: dynamo, then torchscript if dynamo fails (the other way round if intermediate)
    intermediate: bool = False  # set by the planner: the route goes on past ONNX

    def run(self, src: Artifact, out_dir: Path) -> Artifact:
        torch = require("torch")
        from ..torch.runner import callable_of, output_leaves, output_names

        example = src.meta.get("example")
        if not example:
            raise StageError(self.name, "no example inputs", hint="give --input NAME:DIMS or --inputs FEEDS.npz")
        specs = src.inputs
        args = tuple(torch.from_numpy(example[s.name].copy()) for s in specs)
        with torch.no_grad():
            n_out = len(output_leaves(callable_of(src.obj)(*args)))
        onames = output_names(n_out, tuple(o.name for o in src.outputs))
        path = out_dir / FILENAME
        big = _param_bytes(src.obj) > EXTERNAL_DATA_BYTES
        common = dict(input_names=[s.name for s in specs], output_names=list(onames),
                      opset_version=self.opset, external_data=big)
        notes: dict[str, Any] = {}
        errors: list[str] = []
        unsupported: set[str] = set()
        order = (self.exporter,) if self.exporter != "auto" else \
            ("torchscript", "dynamo") if self.intermediate else ("dynamo", "torchscript")
        for which in order:
            try:
                with quiet("torch.onnx", "torch.export", "torch._dynamo"):
                    if which == "dynamo":
                        torch.onnx.export(src.obj, args, str(path), dynamo=True, verbose=False,
                                          dynamic_shapes=_dynamic_shapes(src, torch), **common)
                    else:
                        torch.onnx.export(callable_of(src.obj), args, str(path), dynamo=False,
                                          dynamic_axes=_dynamic_axes(specs), **common)
                lost = _specialized(path, specs)
                if lost:  # a model that only works at the example's size is not what was asked for
                    raise _Specialized(f"made dynamic dim(s) static: {lost}")
                notes["exporter"] = which
                break
            except Exception as exc:  # the exporters raise a zoo of types; all mean "did not export"
                errors.append(f"{which} exporter: {first_line(exc, join_lines=True, with_type=True, strip_ansi=True, limit=400)}")
                unsupported.update(_unsupported_ops(exc))
                for leftover in out_dir.iterdir():
                    leftover.unlink()
        else:
            hint = "see the op or module named above; try --opset, or rewrite that part of the model"
            if unsupported:
                raise UnsupportedOpError("ONNX (torch.onnx.export)", sorted(unsupported),
                                         hint="; ".join(errors)[:600] + "; " + hint)
            raise StageError(self.name, "; ".join(errors), hint=hint)
        if errors:
            notes["fallback_reason"] = errors[0]
        inputs, outputs, notes[SOURCE_MAP] = _finish(path, specs, module_classes(src.obj))
        ranges = {s.name: s.int_range for s in specs if s.int_range}  # the sample range stays with the input
        inputs = tuple(dataclasses.replace(i, int_range=ranges[i.name]) if i.name in ranges else i for i in inputs)
        return Artifact(FORMAT, path, inputs, outputs, meta=notes)


class _Specialized(Exception):
    pass


def _specialized(path: Path, specs: tuple) -> str:
    """Input dims the user declared dynamic that the exporter fixed to the example's size: either
    in the graph's input shapes, or inside the graph (a Reshape baked with the example's size,
    seen from dynamo on GRU/LSTM), which a run at another size exposes."""
    lost = _static_inputs(path, specs)
    if lost or not any(s.is_dynamic for s in specs):
        return lost
    from ...parity.inputs import dynamic_names, make_feeds
    from .runner import OrtRunner

    other = make_feeds(specs, samples=2, seed=1)[1]  # sample 1 has other sizes than the example
    try:
        with quiet(), OrtRunner(Artifact(FORMAT, path, specs)) as r:
            r.infer(other)
    except Exception as exc:
        names = ", ".join(f"'{n}'" for n in dynamic_names(specs))
        shapes = ", ".join(f"{k}{list(v.shape)}" for k, v in other.items())
        why = first_line(exc, join_lines=True, with_type=True, strip_ansi=True, limit=400)[:160]
        return f"the graph only runs at the example's size of {names} (fails at {shapes}: {why})"
    return ""


def _static_inputs(path: Path, specs: tuple) -> str:
    onnx = require("onnx")
    model = onnx.load(str(path), load_external_data=False)
    by_name = {s.name: s for s in specs}
    lost = []
    for inp in model.graph.input:
        spec = by_name.get(inp.name)
        for i, (dim, want) in enumerate(zip(inp.type.tensor_type.shape.dim, (spec.shape or ()) if spec else ())):
            if isinstance(want, str) and dim.HasField("dim_value"):
                lost.append(f"{inp.name}[{i}] '{want}' -> {dim.dim_value}")
    return ", ".join(lost)


_OP_PATTERNS = (re.compile(r"operator '([\w:.]+)'"), re.compile(r"\b(aten[.:]{1,2}\w+(?:\.\w+)?)"))


def _unsupported_ops(exc: BaseException) -> set[str]:
    text = str(exc)
    if type(exc).__name__ != "UnsupportedOperatorError" and "not supported" not in text and "Unsupported" not in text:
        return set()
    found = set()
    for pat in _OP_PATTERNS:
        found.update(pat.findall(text))
    return found


def _finish(path: Path, specs: tuple, modules: dict[str, str]) -> tuple[tuple, tuple, dict[str, str]]:
    """Name dynamic dims as the user named them (the exporters use symbols like s77, in the
    outputs too), check the model, and read its I/O back, with where each node comes from in the
    source (read before the exporter's annotations are stripped; see scopes.py)."""
    onnx = require("onnx")
    model = onnx.load(str(path), load_external_data=False)
    by_name = {s.name: s for s in specs}
    renamed: dict[str, str] = {}
    for inp in model.graph.input:
        spec = by_name.get(inp.name)
        if spec is None or spec.shape is None:
            continue
        for dim, want in zip(inp.type.tensor_type.shape.dim, spec.shape):
            if isinstance(want, str):
                if dim.dim_param and dim.dim_param != want:
                    renamed.setdefault(dim.dim_param, want)
                dim.dim_param = want
    for value in [*model.graph.output, *model.graph.value_info]:
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param in renamed:
                dim.dim_param = renamed[dim.dim_param]
    terms = source_map(model, modules)
    _strip_exporter_metadata(model)
    onnx.save(model, str(path))
    onnx.checker.check_model(str(path))
    return (*io_specs(model), terms)


def module_classes(obj: Any) -> dict[str, str]:
    """Module path -> class, for the TorchScript exporter's scoped node names (dynamo's annotations
    carry the classes themselves)."""
    from ..torch.runner import callable_of

    def cls(m: Any) -> str:  # a TorchScript module knows its Python class by name only
        scripted = type(m).__name__ == "RecursiveScriptModule"
        return str(getattr(m, "original_name", "")) if scripted else f"{type(m).__module__}.{type(m).__qualname__}"

    try:
        return {name: cls(m) for name, m in callable_of(obj).named_modules()}
    except Exception:  # not an nn.Module (a bare callable): scoped names still give the paths
        return {}


def _strip_exporter_metadata(model: Any) -> None:
    """The dynamo exporter annotates every node and value with stack traces (absolute paths of the
    machine that exported it), FX node dumps and class hierarchies: 65% of a tiny BERT's file,
    and nothing a runtime reads. A shipped model carries none of it."""
    graph = model.graph
    for item in [*graph.node, *graph.input, *graph.output, *graph.value_info, *graph.initializer, graph]:
        if hasattr(item, "metadata_props"):
            del item.metadata_props[:]
    for fn in model.functions:
        for node in fn.node:
            del node.metadata_props[:]


def _dynamic_shapes(src: Artifact, torch: Any) -> Any:
    if hasattr(src.obj, "graph_signature"):
        return None  # an ExportedProgram carries its own dynamic shapes
    dims: dict[str, Any] = {}
    shapes = []
    for s in src.inputs:
        spec = {}
        for i, d in enumerate(s.shape or ()):
            if isinstance(d, str):
                if d not in dims:
                    dims[d] = torch.export.Dim(re.sub(r"\W", "_", d), min=1)
                spec[i] = dims[d]
        shapes.append(spec or None)
    return tuple(shapes) if dims else None


def _dynamic_axes(specs: tuple) -> dict[str, dict[int, str]]:
    return {s.name: {i: d for i, d in enumerate(s.shape or ()) if isinstance(d, str)}
            for s in specs if s.shape and any(isinstance(d, str) for d in s.shape)}


def _param_bytes(obj: Any) -> int:
    from ..torch.runner import callable_of

    mod = callable_of(obj)
    try:
        return sum(p.numel() * p.element_size() for p in mod.parameters())
    except Exception:
        return 0


