"""Open a Hugging Face transformers model directory as a source artifact, offline.

The task (which head: text-classification, feature-extraction, ...) comes from ``task`` or from
``config.json``'s ``architectures``; the inputs and outputs are the ones optimum's ONNX config for
that model type and task declares (``input_ids``, ``attention_mask``, ``token_type_ids`` ->
``logits``), with dynamic ``batch`` / ``sequence`` dims and integer ranges inside the vocabulary.
Nothing is downloaded: HF_HUB_OFFLINE is set and every load is ``local_files_only``.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
from pathlib import Path
from typing import Any

from ...core import Artifact, TensorSpec
from ...deps import require, torch_side_env
from ...errors import InputError, UsageError, first_line
from ...quiet import quiet
from . import FORMAT

CONFIG = "config.json"
WEIGHTS = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json", "pytorch_model.bin.index.json")
OTHER_WEIGHTS = {"tf_model.h5": "TensorFlow", "flax_model.msgpack": "Flax"}
#: files that make a directory another format's (SavedModel, TF.js, an exported ONNX directory)
NOT_HF = ("saved_model.pb", "saved_model.pbtxt", "model.json", "model.onnx")
#: optimum's dynamic axis names -> ours; its other axes (image height/width, channels, audio
#: frames) take the size of optimum's dummy input and are static here
DYNAMIC = {"batch_size": "batch", "sequence_length": "sequence", "num_choices": "choices"}
TRUST_FLAG = "--trust-code"
log = logging.getLogger(__name__)


def probe(location: str) -> bool:
    """A directory with a transformers config.json (and, normally, PyTorch weights), that is not
    a SavedModel, TF.js or ONNX directory. A config without weights is claimed too, so that
    open_source can say what is missing."""
    p = Path(location)
    if not p.is_dir() or not (p / CONFIG).is_file() or any((p / n).exists() for n in NOT_HF):
        return False
    if any((p / n).is_file() for n in WEIGHTS):
        return True
    cfg = _read_config(p, strict=False)
    return bool(cfg) and ("model_type" in cfg or "architectures" in cfg)


def offline_env() -> None:
    """Never reach the Hub: set before huggingface_hub / transformers read their environment."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    torch_side_env()


def open_source(location: str, *, task: str | None = None, trust_code: bool = False, weights: str | None = None,
                **_: Any) -> Artifact:
    p = Path(location)
    if weights:
        raise UsageError("--weights only applies to an import path source (package.module:callable)",
                         hint=f"{p} already holds its weights")
    cfg = _read_config(p, strict=True)
    _check_weights(p)
    model_type = cfg.get("model_type")
    archs = list(cfg.get("architectures") or [])
    if "auto_map" in cfg and not trust_code:
        raise InputError(f"{p} needs custom modelling code from the directory (config.json auto_map); loading it "
                         f"runs that code, so convertkit refuses it by default",
                         hint=f"pass {TRUST_FLAG} if you trust where the model came from")
    offline_env()
    require("torch")
    transformers = require("transformers")
    tm = tasks_manager()
    resolved, inferred = resolve_task(tm, transformers, task, archs, model_type, cfg)
    cls = _model_class(tm, transformers, resolved, archs, model_type, inferred, cfg)
    try:
        with quiet("transformers", "transformers.modeling_utils"):
            model, info = cls.from_pretrained(str(p), local_files_only=True, trust_remote_code=trust_code,
                                              output_loading_info=True)
    except Exception as exc:  # transformers raises OSError, ValueError, RuntimeError, ... for a bad directory
        raise InputError(f"{p} could not be loaded for task '{resolved}' as {cls.__name__} ({first_line(exc, join_lines=True)})",
                         hint=f"the checkpoint may hold another head than --task {task} needs; try another task"
                         if task else "check config.json and the weights belong together; re-save with save_pretrained"
                         ) from exc
    model.eval()
    inputs, outputs, optimum_cfg = io_specs(tm, model, resolved)
    meta: dict[str, Any] = {"kind": "transformers", "task": resolved, "architecture": type(model).__name__,
                            "model_type": model_type, "source": str(p),
                            "task_source": "inferred from config.json architectures" if inferred else "given",
                            "onnx_config": optimum_cfg}
    missing = list(info.get("missing_keys") or [])
    if trust_code:
        meta["trust_code"] = True  # the exporter reloads the model the same way
    if missing:  # a --task whose head the checkpoint does not hold: that head is random
        meta["newly_initialized"] = missing
        log.warning("%s: %d weight(s) of %s are not in the checkpoint and were initialized randomly: %s",
                    p, len(missing), type(model).__name__, ", ".join(missing[:6]))
    return Artifact(FORMAT, p, inputs, outputs, meta=meta, obj=model)


def tasks_manager() -> Any:
    """optimum's TasksManager, with the ONNX configs registered (optimum-onnx registers them on import)."""
    tm = require("optimum.exporters.tasks").TasksManager
    try:
        require("optimum.exporters.onnx.model_configs")
    except Exception:  # optimum without optimum-onnx: no ONNX configs; generic I/O is used
        pass
    return tm


def onnx_tasks(tm: Any, model_type: str | None) -> list[str]:
    """Tasks optimum's ONNX exporter supports for this model type (without -with-past variants)."""
    if not model_type:
        return []
    try:
        tasks = tm.get_supported_tasks_for_model_type(model_type, "onnx", library_name="transformers")
    except (KeyError, ValueError):
        return []
    return sorted(t for t in tasks if not t.endswith("-with-past"))


def resolve_task(tm: Any, transformers: Any, task: str | None, archs: list[str], model_type: str | None,
                 cfg: dict[str, Any]) -> tuple[str, bool]:
    """(task, inferred?) for the model; a task that does not fit is a one-line UsageError."""
    supported = onnx_tasks(tm, model_type)
    known = supported or sorted(t for t in tm._TRANSFORMERS_TASKS_TO_MODEL_LOADERS)
    if task:
        std = tm.map_from_synonym(task.strip())
        if std not in known:
            what = f"a {model_type} model" if model_type else "this model"
            raise UsageError(f"--task '{task}' does not apply to {what}", hint=f"one of: {', '.join(known)}")
        return std, False
    for name in [*archs, *(k for k in (cfg.get("auto_map") or {}) if k.startswith("AutoModel"))]:
        cls = getattr(transformers, name, None)
        if cls is None:
            continue
        try:
            return tm.map_from_synonym(tm.infer_task_from_model(cls)), True
        except (ValueError, KeyError):
            continue
    if not archs and "feature-extraction" in known:
        return "feature-extraction", True  # a bare base model saved without architectures
    raise UsageError(f"cannot tell the task from config.json (architectures: {', '.join(archs) or 'none'})",
                     hint=f"give --task, one of: {', '.join(known)}")


def _model_class(tm: Any, transformers: Any, task: str, archs: list[str], model_type: str | None, inferred: bool,
                 cfg: dict[str, Any]) -> Any:
    """The saved architecture's own class when it fits the task; else the task's Auto class."""
    for name in archs:
        cls = getattr(transformers, name, None)
        if cls is None:
            continue
        try:
            if tm.map_from_synonym(tm.infer_task_from_model(cls)) == task:
                return cls
        except (ValueError, KeyError):
            continue
    try:
        return tm.get_model_class_for_task(task, model_type=model_type, library="transformers")
    except (KeyError, ValueError) as exc:
        why = first_line(exc, keep_trailing_space=True)
        raise UsageError(f"transformers has no model class for task '{task}' ({why})") from exc


def io_specs(tm: Any, model: Any, task: str) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...], str | None]:
    """Inputs and outputs as optimum's ONNX config names them; a generic text signature when
    optimum has no config for this model type and task. Returns (inputs, outputs, config class)."""
    try:
        ctor = tm.get_exporter_config_constructor("onnx", model=model, task=task, library_name="transformers")
        oc = ctor(model.config, int_dtype="int64", float_dtype="fp32")
        dummy_shapes = require("optimum.utils").DEFAULT_DUMMY_SHAPES
        with quiet("optimum"):
            dummy = oc.generate_dummy_inputs(framework="pt", **dummy_shapes)
        in_axes, out_axes = dict(oc.inputs), dict(oc.outputs)
    except Exception:  # no config for this model type / task: the exporter falls back to torch.onnx
        return _generic_io(model)
    ranges = int_ranges(model.config)
    inputs = []
    for name, axes in in_axes.items():
        t = dummy.get(name)
        if t is None or not hasattr(t, "shape"):
            return _generic_io(model)  # nested inputs (past key values): not a plain signature
        shape = tuple(DYNAMIC[axes[i]] if axes.get(i) in DYNAMIC else int(n) for i, n in enumerate(t.shape))
        dtype = str(t.dtype).replace("torch.", "")
        inputs.append(TensorSpec(name, shape, dtype, int_range=ranges.get(name) if _is_int(dtype) else None))
    got = _dummy_outputs(model, {s.name: dummy[s.name] for s in inputs})
    outputs = tuple(_out_spec(name, axes, got.get(name)) for name, axes in out_axes.items())
    return tuple(inputs), outputs, type(oc).__name__


def _dummy_outputs(model: Any, feeds: dict[str, Any]) -> dict[str, Any]:
    """One run on optimum's dummy inputs: the outputs' ranks, static sizes and dtypes."""
    torch = require("torch")
    try:
        with torch.no_grad(), quiet("transformers"):
            out = model(**feeds, **call_options(model))
    except Exception:  # the runner reports a model that does not run; here only shapes are sought
        return {}
    return {k: v for k, v in out.items() if isinstance(v, torch.Tensor)} if hasattr(out, "items") else {}


def _out_spec(name: str, axes: dict[int, str], tensor: Any) -> TensorSpec:
    if tensor is None:
        return TensorSpec(name, None, "float32")
    shape = tuple(DYNAMIC.get(axes[i], axes[i]) if i in axes else int(n) for i, n in enumerate(tensor.shape))
    return TensorSpec(name, shape, str(tensor.dtype).replace("torch.", ""))


def _generic_io(model: Any) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...], None]:
    """Token inputs the forward() takes, outputs from one run on a tiny batch."""
    torch = require("torch")
    params = inspect.signature(model.forward).parameters
    names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in params]
    if "input_ids" not in names:
        raise InputError(f"convertkit cannot tell the inputs of {type(model).__name__} (optimum has no ONNX config "
                         f"for it, and its forward() takes no input_ids)",
                         hint="export it as package.module:callable with --input specs instead")
    ranges = int_ranges(model.config)
    inputs = tuple(TensorSpec(n, ("batch", "sequence"), "int64", int_range=ranges.get(n)) for n in names)
    feeds = {s.name: torch.full((1, 4), max(s.int_range[0], 1) if s.int_range else 1, dtype=torch.int64)
             for s in inputs}
    with torch.no_grad():
        out = model(**feeds, **call_options(model))
    outputs = tuple(TensorSpec(k, None, "float32") for k, v in out.items() if isinstance(v, torch.Tensor))
    return inputs, outputs, None


def call_options(model: Any) -> dict[str, Any]:
    """Keyword arguments every call gets: a ModelOutput, and no key/value cache (not an output)."""
    params = inspect.signature(model.forward).parameters
    opts: dict[str, Any] = {"return_dict": True} if "return_dict" in params else {}
    if "use_cache" in params:
        opts["use_cache"] = False
    return opts


def int_ranges(config: Any) -> dict[str, tuple[int, int]]:
    """Sample-data ranges that a real model accepts: ids inside the vocabulary, a 0/1 mask. The mask
    must have zeros: an all-ones mask adds nothing to the attention scores, so a conversion that
    applies it along the wrong axis (onnx2tf did, on BERT) would pass every check."""
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    out: dict[str, tuple[int, int]] = {"attention_mask": (0, 2)}
    vocab = getattr(text, "vocab_size", None)
    if vocab:
        out["input_ids"] = (0, int(vocab))
    types = getattr(text, "type_vocab_size", None)
    out["token_type_ids"] = (0, int(types) if types else 1)
    positions = getattr(text, "max_position_embeddings", None)
    if positions:
        out["position_ids"] = (0, int(positions))
    return out


def _is_int(dtype: str) -> bool:
    return dtype.startswith(("int", "uint"))


def _read_config(p: Path, *, strict: bool) -> dict[str, Any]:
    path = p / CONFIG
    if not path.is_file():
        if strict:
            raise InputError(f"{p}: no config.json there", hint="give a directory written by save_pretrained")
        return {}
    try:
        cfg = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        if strict:
            raise InputError(f"{path} is not readable JSON ({first_line(exc, keep_trailing_space=True)})",
                             hint="re-save the model with save_pretrained") from exc
        return {}
    if not isinstance(cfg, dict):
        if strict:
            raise InputError(f"{path} is not a transformers config (a JSON {type(cfg).__name__})")
        return {}
    return cfg


def _check_weights(p: Path) -> None:
    if any((p / n).is_file() for n in WEIGHTS):
        return
    other = [fw for n, fw in OTHER_WEIGHTS.items() if (p / n).is_file()]
    if other:
        raise InputError(f"{p} holds only {'/'.join(other)} weights; convertkit loads the PyTorch weights of a "
                         f"Hugging Face model", hint="re-save it from PyTorch with save_pretrained (model.safetensors)")
    raise InputError(f"{p} has a config.json but no weights (model.safetensors or pytorch_model.bin)",
                     hint="save the model with save_pretrained(DIR), or copy its weight files there")


def op_counts(artifact: Artifact) -> dict[str, int]:
    """Leaf module types (what a user would recognise: Linear, LayerNorm, Embedding, ...)."""
    from collections import Counter

    obj = artifact.obj
    if not hasattr(obj, "modules"):
        return {}
    counts = Counter(type(m).__name__ for m in obj.modules() if not list(m.children()))
    return dict(sorted(counts.items()))


SUMMARY_KEYS = ("model_type", "vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                "intermediate_size", "max_position_embeddings", "type_vocab_size", "num_labels", "dtype")


def describe(artifact: Artifact) -> dict[str, Any]:
    model = artifact.obj
    params = sum(int(p.numel()) for p in model.parameters()) if hasattr(model, "parameters") else None
    config = getattr(model, "config", None)
    summary = {}
    for key in SUMMARY_KEYS:
        val = getattr(config, key, None) if config is not None else None
        if val is not None:
            summary[key] = val if isinstance(val, (int, float, str, bool)) else str(val)
    return {"kind": artifact.meta.get("kind"), "task": artifact.meta.get("task"),
            "architecture": artifact.meta.get("architecture"), "parameters": params, "config": summary,
            "ops": op_counts(artifact)}


