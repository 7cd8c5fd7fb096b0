"""Hugging Face -> ONNX through optimum's exporter (``optimum.exporters.onnx.onnx_export_from_model``,
from optimum-onnx), in-process, on a freshly loaded copy of the model. Where optimum cannot (no
ONNX config for the model type or task, or its export fails), the project's torch -> ONNX path
exports the loaded model instead, and the stage's notes say so and why."""

from __future__ import annotations

import copy
import dataclasses
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from ...core import SOURCE_MAP, Artifact, Export, Format
from ...deps import require, version
from ...errors import StageError, UnsupportedOpError, first_line
from ...quiet import quiet
from ..hf import FORMAT
from ..hf.source import DYNAMIC, call_options
from . import FILENAME, io_specs
from . import FORMAT as ONNX

#: above this many bytes of initializers the weights go to model.onnx.data (protobuf's limit is 2 GiB)
EXTERNAL_DATA_BYTES = 1_800_000_000
DATA_FILE = FILENAME + ".data"
OPTIMUM_API = "optimum.exporters.onnx.onnx_export_from_model"


@dataclass(frozen=True)
class HfToOnnx(Export):
    name: ClassVar[str] = "hf->onnx"
    accepts: ClassVar[Format] = FORMAT
    produces: ClassVar[Format] = ONNX

    opset: int = 18
    exporter: str = "auto"  # auto: optimum, then torch.onnx; dynamo / torchscript: torch.onnx only

    def run(self, src: Artifact, out_dir: Path) -> Artifact:
        task = src.meta.get("task")
        model = _fresh_model(src)
        notes: dict[str, Any] = {"task": task, "architecture": src.meta.get("architecture")}
        if src.meta.get("newly_initialized"):
            notes["random_weights"] = src.meta["newly_initialized"]  # not in the checkpoint: say so
        reasons: list[str] = []
        if self.exporter != "auto":
            reasons.append(f"--exporter {self.exporter} asks for torch.onnx")
        elif not src.meta.get("onnx_config"):
            reasons.append(f"optimum has no ONNX config for {src.meta.get('model_type')} / {task}")
        else:
            try:
                self._optimum(model, task, out_dir, src.inputs)
                notes.update(exporter="optimum", optimum_api=OPTIMUM_API, torch_exporter="torchscript",
                             onnx_config=src.meta.get("onnx_config"), optimum=version("optimum"),
                             optimum_onnx=version("optimum-onnx"))
                inputs, outputs, notes[SOURCE_MAP] = _finish(out_dir / FILENAME, model)
                return Artifact(ONNX, out_dir / FILENAME, _with_ranges(inputs, src.inputs), outputs, meta=notes)
            except Exception as exc:  # optimum raises ValueError/KeyError/RuntimeError/...: all mean "fall back"
                reasons.append(f"optimum: {first_line(exc, join_lines=True, with_type=True, strip_ansi=True)}")
                _clear(out_dir)
        result = self._torch(model, src, out_dir, reasons)
        notes.update(exporter=f"torch.onnx ({result.meta.get('exporter')})", fallback_reason="; ".join(reasons))
        if result.meta.get("fallback_reason"):
            notes["torch_fallback_reason"] = result.meta["fallback_reason"]
        notes[SOURCE_MAP] = result.meta.get(SOURCE_MAP)  # where each node comes from, for error messages
        return result.with_(inputs=_with_ranges(result.inputs, src.inputs), meta=notes)

    def _optimum(self, model: Any, task: str, out_dir: Path, src_specs: tuple) -> None:
        export = require("optimum.exporters.onnx").onnx_export_from_model
        work = out_dir / ".optimum"
        with quiet("optimum", "transformers", "torch.onnx"):
            export(model, str(work), opset=self.opset, task=task, monolith=True, do_validation=False,
                   device="cpu")
        written = work / FILENAME
        if not written.is_file():
            made = ", ".join(sorted(p.name for p in work.glob("*.onnx"))) or "no .onnx file"
            raise RuntimeError(f"optimum wrote {made}, not one {FILENAME}")
        _single_file(written, out_dir / FILENAME, src_specs)
        shutil.rmtree(work)

    def _torch(self, model: Any, src: Artifact, out_dir: Path, reasons: list[str]) -> Artifact:
        """The project's torch -> ONNX export of the loaded model, called with the same names."""
        from .from_torch import TorchToOnnx
        from ..torch import FORMAT as TORCH

        if not src.meta.get("example"):
            raise StageError(self.name, "no example inputs for the torch.onnx fallback; " + "; ".join(reasons))
        wrapper = _positional(model, [s.name for s in src.inputs], [o.name for o in src.outputs])
        art = Artifact(TORCH, None, src.inputs, src.outputs, meta={"example": src.meta["example"]}, obj=wrapper)
        stage = TorchToOnnx(opset=self.opset, exporter="auto" if self.exporter == "auto" else self.exporter)
        try:
            return stage.run(art, out_dir)
        except UnsupportedOpError as exc:
            raise UnsupportedOpError(exc.target, exc.ops, hint="; ".join([*reasons, exc.hint or ""])[:800]) from exc
        except StageError as exc:
            raise StageError(self.name, "; ".join([*reasons, exc.message])[:800], hint=exc.hint) from exc


def _fresh_model(src: Artifact) -> Any:
    """The exporter patches and re-configures the model it is given (and moves generation settings
    out of its config); the source's own model stays the untouched reference, so export a copy.
    A copy, not a reload: a head that --task added is randomly initialized, and must be the same."""
    try:
        return copy.deepcopy(src.obj)
    except Exception:  # a model that cannot be copied is exported as it is
        return src.obj


def _positional(model: Any, inputs: list[str], outputs: list[str]) -> Any:
    """An nn.Module whose forward takes the inputs by name, in order, and returns the named outputs
    as a tuple: what torch.onnx needs, with the exporter seeing the real argument names."""
    torch = require("torch")
    if not all(n.isidentifier() for n in inputs):
        raise StageError("hf->onnx", f"input names {inputs} are not Python identifiers")
    args = ", ".join(inputs)
    code = (f"def forward(self, {args}):\n"
            f"    out = self.model({', '.join(f'{n}={n}' for n in inputs)}, **self.options)\n"
            f"    return tuple(out[k] for k in self.names) if self.names else out.to_tuple()\n")
    scope: dict[str, Any] = {}
    exec(code, scope)  # noqa: S102 - generated from validated identifiers only

    class Positional(torch.nn.Module):
        forward = scope["forward"]

        def __init__(self) -> None:
            super().__init__()
            self.model = model
            self.names = tuple(outputs)
            self.options = call_options(model)

    return Positional().eval()


def _single_file(written: Path, path: Path, specs: tuple) -> None:
    """optimum's model (with its external data, if any) as one model.onnx; external data in
    model.onnx.data only past protobuf's limit. Its dynamic axes get convertkit's names, and the
    sizes the user fixed (``--input input_ids:1,128``) are fixed in the graph's inputs too."""
    onnx = require("onnx")
    model = onnx.load(str(written), load_external_data=True)
    _rename_dims(model)
    _fix_dims(model, specs)
    size = sum(len(t.raw_data) or 0 for t in model.graph.initializer)
    if size > EXTERNAL_DATA_BYTES:
        onnx.save(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True, location=DATA_FILE)
    else:
        onnx.save(model, str(path))


def _rename_dims(model: Any) -> None:
    for value in [*model.graph.input, *model.graph.output, *model.graph.value_info]:
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param in DYNAMIC:
                dim.dim_param = DYNAMIC[dim.dim_param]


def _with_ranges(specs: tuple, known: tuple) -> tuple:
    """The ONNX inputs, carrying the value ranges the source knows (token ids inside the vocabulary,
    token types inside type_vocab_size): later stages make sample data from them."""
    ranges = {s.name: s.int_range for s in known if s.int_range}
    return tuple(dataclasses.replace(s, int_range=ranges[s.name]) if s.name in ranges and not s.int_range else s
                 for s in specs)


def _fix_dims(model: Any, specs: tuple) -> None:
    """Declare static the input dims the specs give a size (optimum exports them all dynamic); a
    dim name fixed this way is fixed wherever else it appears (outputs, value_info)."""
    by_name = {s.name: s for s in specs if s.shape is not None}
    fixed: dict[str, int] = {}
    for inp in model.graph.input:
        spec = by_name.get(inp.name)
        dims = inp.type.tensor_type.shape.dim
        if spec is None or len(spec.shape) != len(dims):
            continue
        for dim, want in zip(dims, spec.shape):
            if isinstance(want, int) and not dim.HasField("dim_value"):
                if dim.dim_param:
                    fixed[dim.dim_param] = want
                dim.dim_value = want
    for value in [*model.graph.output, *model.graph.value_info]:
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param in fixed:
                dim.dim_value = fixed[dim.dim_param]


def _finish(path: Path, model: Any) -> tuple[tuple, tuple, dict[str, str]]:
    """I/O specs, and where each node comes from (optimum's node names are module scopes of ``model``)."""
    from .from_torch import module_classes
    from .scopes import source_map

    onnx = require("onnx")
    onnx.checker.check_model(str(path))
    proto = onnx.load(str(path), load_external_data=False)
    return (*io_specs(proto), source_map(proto, module_classes(model)))


def _clear(out_dir: Path) -> None:
    for p in out_dir.iterdir():
        shutil.rmtree(p) if p.is_dir() else p.unlink()


