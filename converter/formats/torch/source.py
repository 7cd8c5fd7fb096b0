"""Open a PyTorch model as a source artifact, classifying it by content, never by running it.

Kinds: ``pt2`` (torch.export archive), ``torchscript`` (torch.jit archive), ``callable``
(``package.module:callable`` [+ weights]), ``pickle`` (a full ``torch.save``d module: loading it
runs code from the file, so it is refused unless trusted), ``module`` (in-memory, Python API).
"""

from __future__ import annotations

import importlib
import re
import sys
import zipfile
from pathlib import Path
from typing import Any

from ...core import Artifact, TensorSpec
from ...deps import require
from ...errors import InputError, UsageError, first_line
from . import FORMAT

IMPORT_PATH = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
TORCH_SUFFIXES = (".pt2", ".pt", ".pth", ".ts", ".jit")
TRUST_FLAG = "--trust-code"


def _zip_kind(path: Path) -> str | None:
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except (zipfile.BadZipFile, OSError):
        return None
    if any(n.endswith(("/archive_format", "serialized_exported_program.json")) for n in names):
        return "pt2"
    if any("/code/" in n for n in names) and any(n.endswith("constants.pkl") for n in names):
        return "torchscript"
    if any(n.endswith("/data.pkl") or n == "data.pkl" for n in names):
        return "pickle"
    return "zip"


def probe(location: str) -> bool:
    p = Path(location)
    if p.is_file():
        return p.suffix.lower() in TORCH_SUFFIXES or _zip_kind(p) in ("pt2", "torchscript", "pickle")
    return not p.exists() and bool(IMPORT_PATH.match(location))


def open_source(location: str, *, weights: str | None = None, trust_code: bool = False,
                **_: Any) -> Artifact:
    """Classify and load ``location``. Raises InputError with what to do for anything unusable."""
    p = Path(location)
    if not p.exists():
        if IMPORT_PATH.match(location):
            module = _load_callable(location, weights)
            return Artifact(FORMAT, None, meta={"kind": "callable", "source": location, "weights": weights},
                            obj=module)
        raise InputError(f"{location}: no such file, and not an import path like package.module:callable")
    if weights:
        raise UsageError("--weights only applies to an import path source (package.module:callable)",
                         hint=f"{location} already holds its weights")
    if p.is_dir():
        raise InputError(f"{p} is a directory, not a PyTorch model file")
    kind = _zip_kind(p)
    if kind is None:
        with p.open("rb") as fh:
            head = fh.read(2)
        if head[:1] == b"\x80":  # legacy (non-zip) torch.save pickle
            kind = "pickle"
        else:
            raise InputError(f"{p} is not a PyTorch archive (truncated, corrupt, or another format)",
                             hint="give a torch.export .pt2, a TorchScript file, or package.module:callable")
    if kind == "zip":
        raise InputError(f"{p} is a zip archive but not one PyTorch wrote",
                         hint="give a torch.export .pt2, a TorchScript file, or package.module:callable")
    torch = require("torch")
    if kind == "pt2":
        try:
            ep = torch.export.load(str(p))
        except Exception as exc:
            raise InputError(f"{p} could not be loaded as a torch.export program ({first_line(exc, keep_trailing_space=True)})",
                             hint="re-save it with torch.export.save from the same torch version") from exc
        return Artifact(FORMAT, p, inputs=_pt2_inputs(ep), meta={"kind": "pt2", "source": str(p)}, obj=ep)
    if kind == "torchscript":
        try:
            module = torch.jit.load(str(p), map_location="cpu")
        except Exception as exc:
            raise InputError(f"{p} could not be loaded as TorchScript ({first_line(exc, keep_trailing_space=True)})",
                             hint="check the file is complete; re-save it with torch.jit.save") from exc
        return Artifact(FORMAT, p, meta={"kind": "torchscript", "source": str(p)}, obj=module.eval())
    return _open_pickle(p, trust_code, torch)


def _open_pickle(p: Path, trust: bool, torch: Any) -> Artifact:
    try:
        obj = torch.load(str(p), map_location="cpu", weights_only=True)
    except Exception as exc:  # not a plain state dict: a pickled object that needs code to load
        if not trust:
            raise InputError(
                f"{p} is a pickled Python object (a full torch.save'd model); loading it runs arbitrary "
                f"code from the file, so convertkit refuses it by default",
                hint=f"re-save the model with torch.export.save or torch.jit.save, or pass {TRUST_FLAG} "
                     f"if you trust where the file came from") from exc
        try:
            obj = torch.load(str(p), map_location="cpu", weights_only=False)
        except Exception as exc2:
            raise InputError(f"{p} could not be unpickled ({first_line(exc2, keep_trailing_space=True)})",
                             hint="the classes it needs must be importable from the current directory") from exc2
    if isinstance(obj, torch.nn.Module):
        return Artifact(FORMAT, p, meta={"kind": "pickle", "source": str(p)}, obj=obj.eval())
    if isinstance(obj, dict):
        raise InputError(f"{p} is a state dict (weights only), not a model",
                         hint="give the model as package.module:callable and this file as --weights")
    raise InputError(f"{p} holds a {type(obj).__name__}, not a torch.nn.Module")


def _load_callable(target: str, weights: str | None) -> Any:
    torch = require("torch")
    mod_name, attr = target.split(":", 1)
    if "" not in sys.path and str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))  # the current directory is importable, as with `python -m`
    try:
        obj: Any = importlib.import_module(mod_name)
    except ImportError as exc:
        raise InputError(f"cannot import module '{mod_name}' for {target} ({exc})",
                         hint="run from the directory that contains the package, or install it") from exc
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise InputError(f"module '{mod_name}' has no attribute '{attr}' (import path {target})")
        obj = getattr(obj, part)
    model = obj
    if not isinstance(model, torch.nn.Module):
        if not callable(model):
            raise InputError(f"{target} is a {type(model).__name__}, neither an nn.Module nor callable")
        try:
            model = model()
        except TypeError as exc:
            raise InputError(f"calling {target}() failed ({exc})",
                             hint="the callable must build the model with no arguments") from exc
    if not isinstance(model, torch.nn.Module):
        raise InputError(f"{target}() returned a {type(model).__name__}, not a torch.nn.Module",
                         hint="point at a function or class that returns an nn.Module")
    if weights:
        _load_weights(model, Path(weights), torch)
    return model.eval()


def _load_weights(model: Any, path: Path, torch: Any) -> None:
    if not path.is_file():
        raise InputError(f"weights file {path} does not exist")
    try:
        if path.suffix == ".safetensors":
            state = require("safetensors.torch").load_file(str(path), device="cpu")
        else:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise InputError(f"weights file {path} could not be read as a state dict ({first_line(exc, keep_trailing_space=True)})",
                         hint="save weights with torch.save(model.state_dict(), path) or safetensors") from exc
    if not isinstance(state, dict):
        raise InputError(f"weights file {path} holds a {type(state).__name__}, not a state dict")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        detail = " ".join(str(exc).split())
        raise InputError(f"weights {path} do not fit the module: {detail[:300]}",
                         hint="check the weights were saved from the same architecture") from exc


def _pt2_inputs(ep: Any) -> tuple[TensorSpec, ...]:
    by_name = {n.name: n for n in ep.graph.nodes if n.op == "placeholder"}
    specs = []
    for name in ep.graph_signature.user_inputs:
        val = by_name[name].meta.get("val") if name in by_name else None
        if val is None or not hasattr(val, "shape"):
            continue
        shape = tuple(int(d) if str(d).lstrip("-").isdigit() else str(d) for d in val.shape)
        specs.append(TensorSpec(name, shape, str(val.dtype).replace("torch.", "")))
    # torch.export keeps symbols (s77), not the Dim names it was given: a symbol that is axis 0 of
    # every input is the batch, and is called so
    firsts = {s.shape[0] for s in specs if s.shape}
    if len(firsts) == 1 and isinstance(sym := next(iter(firsts)), str):
        specs = [TensorSpec(s.name, tuple("batch" if d == sym else d for d in s.shape), s.dtype) for s in specs]
    return tuple(specs)


def default_int_range(module: Any) -> tuple[int, int] | None:
    """Token ids must stay inside the vocabulary: the smallest nn.Embedding bounds them."""
    try:
        torch = require("torch")
        sizes = [m.num_embeddings for m in module.modules() if isinstance(m, torch.nn.Embedding)]
    except Exception:
        return None
    return (0, min(sizes)) if sizes else None


def op_counts(artifact: Artifact) -> dict[str, int]:
    """An ExportedProgram's aten ops; otherwise the leaf module types (what a user would recognise)."""
    from collections import Counter

    obj = artifact.obj
    if hasattr(obj, "graph_signature"):
        counts = Counter(str(n.target).replace("aten.", "").split(".")[0] for n in obj.graph.nodes
                         if n.op == "call_function")
    elif hasattr(obj, "modules"):
        counts = Counter(type(m).__name__ for m in obj.modules() if not list(m.children()))
    else:
        return {}
    return dict(sorted(counts.items()))


def describe(artifact: Artifact) -> dict[str, Any]:
    obj = artifact.obj
    module = obj.module() if hasattr(obj, "graph_signature") else obj
    params = sum(int(p.numel()) for p in module.parameters()) if hasattr(module, "parameters") else None
    return {"kind": artifact.meta.get("kind"), "parameters": params, "ops": op_counts(artifact)}


