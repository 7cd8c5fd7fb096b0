"""Write a Keras model as a TF.js layers model (topology + weights; loadable and trainable with
``tf.loadLayersModel``), in-process with tensorflowjs's Keras HDF5 writer.

tensorflowjs reads Keras 2 (tf_keras) models only: a Keras 3 model is rebuilt in tf_keras first
(keras3.py) or refused with the reason. Before writing, every layer class is checked against the
classes the installed tfjs-layers registers (all missing ones named at once); integer inputs
declared int64 become int32 (TF.js has no int64 tensors, and tfjs-layers cannot feed an int64 input).
What tensorflowjs writes that tfjs-layers would refuse to load (SeparableConv2D's unused kernel_*
config keys, weight names that are not ``<layer>/<weight>``) is rewritten by layers_fixes.py, and the
stage's notes list each rewrite (``config_keys_dropped``, ``weights_renamed``).

Stdlib at import time.
"""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

from ...core import Artifact
from ...deps import require
from ...errors import StageError, UnsupportedOpError, first_line
from ...quiet import quiet
from . import SHARD_BYTES
from .graph import NARROWED
from .layers_fixes import CONTAINERS, fix_layers_model, layers_of

_LOGGERS = ("tensorflow", "absl", "tf_keras", "keras", "tensorflowjs", "h5py")
_CLASS_RE = re.compile(r"^\s*(?:\w+\.)?className = '(\w+)'", re.M)


def write_layers_model(src: Artifact, out_dir: Path, *, stage: str) -> dict[str, Any]:
    tf = require("tensorflow")
    from ..keras.runner import model_of
    from ..keras.source import input_names
    from .from_keras import is_tf_keras

    model = model_of(src)
    notes: dict[str, Any] = {}
    try:
        config = json.loads(model.to_json())
    except Exception as exc:  # a subclassed model has no config: nothing to write as layers
        raise StageError(stage, f"the Keras model has no layer config to write as a TF.js layers model "
                         f"({first_line(exc, with_type=True, limit=240)})", hint="use --tfjs-format graph") from exc
    check_layer_classes({"model_config": config})
    check_layer_configs(config)
    if not is_tf_keras(model):
        from .keras3 import NotRebuildable, rebuild

        try:
            model, extra = rebuild(model, _sample_feeds(src), input_names(model), tf)
        except NotRebuildable as exc:
            raise StageError(stage, f"this Keras 3 model cannot be written as a TF.js layers model: {exc}",
                             hint="tensorflowjs writes layers models from Keras 2 (tf_keras) models only, and "
                                  "convertkit's tf_keras rebuild of this model was refused; use --tfjs-format graph "
                                  "(every Keras model converts to a graph model), or save the model with tf_keras"
                             ) from exc
        notes.update(extra)
    with quiet(*_LOGGERS):  # its import warns (tensorflow_hub: pkg_resources is deprecated)
        h5conv = require("tensorflowjs.converters.keras_h5_conversion")
    h5py = require("h5py")
    with tempfile.TemporaryDirectory(prefix="convertkit-h5-") as tmp:
        if model is model_of(src) and _is_tf_keras_h5(src):
            h5 = Path(src.path)  # what tf_keras loaded is this file: read it as it is (read-only)
        else:
            h5 = Path(tmp) / "model.h5"
            try:
                with quiet(*_LOGGERS):
                    model.save(str(h5), save_format="h5")
            except Exception as exc:
                why = first_line(exc, with_type=True, limit=240)
                raise StageError(stage, f"tf_keras could not save the model as HDF5 ({why})",
                                 hint="use --tfjs-format graph") from exc
        with h5py.File(h5, "r") as f, quiet(*_LOGGERS):
            topology, groups = h5conv.h5_merged_saved_model_to_tfjs_format(f)
            fixes = fix_layers_model(topology, groups, f)  # what tfjs-layers would refuse (layers_fixes.py)
    notes.update(fixes.notes())
    changes = narrow_input_dtypes(topology.get("model_config", {}))
    if changes:
        notes["dtype_changes"] = changes
    with quiet(*_LOGGERS):
        h5conv.write_artifacts(topology, groups, str(out_dir), weight_shard_size_bytes=SHARD_BYTES)
    return notes


def _is_tf_keras_h5(src: Artifact) -> bool:
    """A legacy HDF5 full model that tf_keras wrote and loaded (keras/source.py's classification)."""
    return (src.meta.get("kind") == "h5" and str(src.meta.get("library", "")).startswith("tf_keras")
            and src.path is not None and Path(src.path).is_file())


def _sample_feeds(src: Artifact) -> list[dict[str, Any]]:
    from ...parity.inputs import make_feeds

    example = src.meta.get("example")
    feeds = make_feeds(src.inputs, samples=2, seed=0)
    return [example, *feeds[1:]] if example else feeds


def narrow_input_dtypes(model_config: dict[str, Any]) -> list[str]:
    """InputLayers declared with a dtype TF.js lacks (int64, float64) -> the dtype TF.js uses, in place."""
    changes = []
    for layer in layers_of(model_config):
        cfg = layer.get("config", {})
        dtype = cfg.get("dtype")
        if layer.get("class_name") == "InputLayer" and dtype in NARROWED:
            cfg["dtype"] = NARROWED[dtype]
            changes.append(f"{cfg.get('name')}: {dtype} -> {NARROWED[dtype]} (TF.js has no {dtype})")
    return changes


@cache
def tfjs_layer_classes() -> frozenset[str] | None:
    """Class names the installed tfjs-layers registers (None when the npm packages are missing).
    Scanning its sources takes ~60 ms, so the list is cached beside them, keyed by the package's
    version and mtime (no cache when that directory is read-only)."""
    import os

    from .runner import NODE_DIR

    root = Path(os.environ.get("CONVERTKIT_NODE_MODULES") or NODE_DIR / "node_modules")
    package = root / "@tensorflow" / "tfjs-layers"
    dist = package / "dist"
    if not dist.is_dir():
        return None
    cache_file = package / ".convertkit-layer-classes.json"
    try:
        meta = package / "package.json"
        key: str | None = f"{json.loads(meta.read_text()).get('version')}@{meta.stat().st_mtime_ns}"
    except (OSError, ValueError, AttributeError):
        key = None
    try:
        cached = json.loads(cache_file.read_text())
        if key and cached["key"] == key:
            return frozenset(cached["classes"])
    except (OSError, ValueError, TypeError, KeyError):
        pass  # no cache yet, or a damaged one: scan
    names: set[str] = set()
    for f in dist.rglob("*.js"):
        if ".min." in f.name or f.name.startswith("tf-layers") or "miniprogram" in f.parts:
            continue  # bundles repeat the per-module files
        names.update(_CLASS_RE.findall(f.read_text(errors="replace")))
    if key:
        try:
            cache_file.write_text(json.dumps({"key": key, "classes": sorted(names)}))
        except OSError:
            pass  # read-only install: scan each time
    return frozenset(names)


def check_layer_classes(topology: dict[str, Any]) -> None:
    known = tfjs_layer_classes()
    if known is None:
        return  # validation in Node says it instead
    used = {layer.get("class_name") for layer in layers_of(topology.get("model_config", {}))}
    missing = sorted(c for c in used if isinstance(c, str) and c not in known and c not in CONTAINERS)
    if missing:
        raise UnsupportedOpError("TF.js layers", missing,
                                 hint="tfjs-layers has no such layer classes; use --tfjs-format graph")


#: layer settings tfjs-layers 4.22 refuses when it builds the model (its own error, in parentheses);
#: refused here first, all at once, before anything is written
_REFUSED_SETTINGS = (
    ("GRU", "reset_after", True, "GRUCell does not support reset_after parameter set to true"),
    ("GRUCell", "reset_after", True, "GRUCell does not support reset_after parameter set to true"),
    ("SeparableConv1D", None, None, "1D separable convolution is not implemented yet"),
)


def check_layer_configs(model_config: dict[str, Any]) -> None:
    """Layers whose class tfjs-layers has but whose settings it refuses at load time (exit 3 naming
    each, instead of a model that is written and then fails to load in TF.js)."""
    found = []
    for layer in _with_wrapped(layers_of(model_config)):
        cfg = layer.get("config", {})
        for cls, key, value, why in _REFUSED_SETTINGS:
            if layer.get("class_name") == cls and (key is None or cfg.get(key) == value):
                setting = f" {key}={str(value).lower()}" if key else ""
                found.append(f"{cls} '{cfg.get('name', '?')}'{setting} ({why})")
    if found:
        raise UnsupportedOpError("TF.js layers", found,
                                 hint="use --tfjs-format graph (it converts these layers), or change the setting "
                                      "(e.g. GRU(reset_after=False)) and retrain")


def _with_wrapped(layers: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Each layer and the layers it wraps (Bidirectional's layer, an RNN's cell, TimeDistributed's layer)."""
    for layer in layers:
        yield layer
        cfg = layer.get("config", {}) if isinstance(layer.get("config"), dict) else {}
        inner = [cfg.get(k) for k in ("layer", "cell", "forward_layer", "backward_layer")]
        inner += list(cfg.get("cells") or []) if isinstance(cfg.get("cells"), list) else []
        yield from _with_wrapped(iter(i for i in inner if isinstance(i, dict)))
