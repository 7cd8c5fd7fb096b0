"""What the generated module knows of the model: the source's input and output specs (what
``predict`` takes and gives, by the source's names, in its order and layout) and, for each, the
artifact's tensor it feeds or reads (name, dtype, and the transpose into the artifact's layout).
Built from the same specs the report holds (stdlib only)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..core import Artifact, Dim, TensorSpec
from ..parity.compare import match_names


@dataclass(frozen=True)
class JsInput:
    name: str  # the source's name: the key predict() takes
    shape: tuple[Dim, ...] | None  # in the source's layout; str: a named dynamic dim
    dtype: str  # the source's dtype (int64 ids stay int64 here; TF.js gets them as int32)
    layout: str | None
    model_name: str  # the artifact's input it feeds
    model_dtype: str
    perm: tuple[int, ...] | None  # the artifact takes feed.transpose(perm)


@dataclass(frozen=True)
class JsOutput:
    name: str  # the source's name: the key predict() returns
    shape: tuple[Dim, ...] | None
    dtype: str  # what predict() returns: the runtime's dtype (TF.js gives int32 for int64)
    source_dtype: str | None
    model_name: str


@dataclass(frozen=True)
class ModuleSpec:
    runtime: str  # "tfjs" or "onnx"
    kind: str  # graph-model, layers-model, onnx
    model_file: str  # model.json or model.onnx
    inputs: tuple[JsInput, ...]
    outputs: tuple[JsOutput, ...]
    external_data: str | None = None  # model.onnx.data beside an ONNX model past 2 GiB

    def constants(self) -> dict[str, Any]:
        """INPUTS and OUTPUTS as the module exports them."""
        def spec_json(s: JsInput | JsOutput) -> dict[str, Any]:
            out: dict[str, Any] = {"name": s.name, "shape": None if s.shape is None else list(s.shape), "dtype": s.dtype}
            if isinstance(s, JsInput) and s.layout:
                out["layout"] = s.layout
            if isinstance(s, JsOutput) and s.source_dtype and s.source_dtype != s.dtype:
                out["sourceDtype"] = s.source_dtype
            return out

        return {"INPUTS": [spec_json(s) for s in self.inputs], "OUTPUTS": [spec_json(s) for s in self.outputs]}

    def plan(self) -> dict[str, Any]:
        """The module's private PLAN: which artifact tensor each spec maps to."""
        return {"kind": self.kind,
                "inputs": [{"name": s.model_name, "dtype": s.model_dtype, "perm": list(s.perm) if s.perm else None}
                           for s in self.inputs],
                "outputs": [{"name": s.model_name} for s in self.outputs],
                "externalData": self.external_data}


def _fixed(shape: tuple[Dim, ...] | None, fixed: Any) -> tuple[Dim, ...] | None:
    """The source's dims where the artifact takes only fixed sizes (``fixed_shape``; str dims stay dynamic)."""
    if not fixed or shape is None or len(fixed) != len(shape):
        return shape if not fixed else tuple(fixed)
    return tuple(f if isinstance(f, int) else d for d, f in zip(shape, fixed))


def _unpermuted(shape: tuple[Dim, ...] | None, perm: Any) -> tuple[Dim, ...] | None:
    """A source that is itself a converted model taking ``feed.transpose(perm)`` (e.g. a TF.js model
    in NHWC optimized again): its specs are in its own layout; the module keeps the original's."""
    if not perm or shape is None or len(perm) != len(shape):
        return shape
    out: list[Dim] = [None] * len(shape)
    for i, p in enumerate(perm):
        out[p] = shape[i]
    return tuple(out)


def module_spec(src: Artifact, final: Artifact, parity: Any, kind: str, model_file: str,
                external_data: str | None = None) -> ModuleSpec:
    runtime = "tfjs" if final.format.name == "tfjs" else "onnx"
    src_inputs = src.inputs or final.inputs
    by_model = {s.name: s for s in final.inputs}
    to_model, _ = match_names([s.name for s in src_inputs], [s.name for s in final.inputs])
    layouts: Mapping[str, Any] = final.meta.get("input_layout") or {}
    fixed: Mapping[str, Any] = final.meta.get("fixed_shape") or {}
    src_layouts: Mapping[str, Any] = src.meta.get("input_layout") or {}
    inputs = []
    for s in src_inputs:
        model_name = to_model.get(s.name, s.name)
        model_spec = by_model.get(model_name, s)
        lay = layouts.get(model_name) or {}
        shape = _unpermuted(s.shape, (src_layouts.get(s.name) or {}).get("perm"))
        inputs.append(JsInput(s.name, _fixed(shape, fixed.get(model_name)), s.dtype,
                              s.layout or lay.get("source_layout"), model_name,
                              _model_dtype(runtime, model_spec.dtype), tuple(lay["perm"]) if lay.get("perm") else None))
    return ModuleSpec(runtime, kind, model_file, tuple(inputs), _outputs(src, final, parity, runtime), external_data)


def _model_dtype(runtime: str, dtype: str) -> str:
    return "int32" if runtime == "tfjs" and dtype == "int64" else dtype


def _returned(runtime: str, dtype: str, source_dtype: str | None) -> str:
    """What predict() returns for an output the runtime gives as ``dtype``: TF.js's int32 for int64;
    float32 for a float16 output of a float32 source (the ONNX module widens it, templates/onnx.js)."""
    if runtime == "onnx" and dtype == "float16" and source_dtype == "float32":
        return "float32"
    return _model_dtype(runtime, dtype)


def _outputs(src: Artifact, final: Artifact, parity: Any, runtime: str) -> tuple[JsOutput, ...]:
    """In the source's order under its names: the parity's (the reference's outputs, paired with the
    artifact's by the comparison), else the source's declared specs, else the artifact's."""
    by_model = {s.name: s for s in final.outputs}
    by_src: dict[str, TensorSpec] = {s.name: s for s in src.outputs}
    out = []
    if parity is not None and parity.outputs and all(o.candidate_name for o in parity.outputs):
        for o in parity.outputs:
            model_spec = by_model.get(o.candidate_name)
            s = by_src.get(o.name) or model_spec
            dtype = o.got_dtype or (model_spec.dtype if model_spec else "float32")
            out.append(JsOutput(o.name, s.shape if s else None, _returned(runtime, dtype, o.ref_dtype), o.ref_dtype,
                                o.candidate_name))
        return tuple(out)
    names = [s.name for s in src.outputs] or [s.name for s in final.outputs]
    to_model, _ = match_names(names, [s.name for s in final.outputs])
    for name in names:
        model_name = to_model.get(name, name)
        s = by_src.get(name) or by_model.get(model_name)
        model_spec = by_model.get(model_name) or s
        dtype = model_spec.dtype if model_spec else "float32"
        source_dtype = s.dtype if s else None  # the source's, else what the artifact declares
        out.append(JsOutput(name, s.shape if s else None, _returned(runtime, dtype, source_dtype), source_dtype, model_name))
    return tuple(out)
