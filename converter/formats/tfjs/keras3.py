"""Rebuild a Keras 3 model as a Keras 2 (tf_keras) model, for tensorflowjs's layers-format writer,
which reads Keras 2 models only (a Keras 3 config written as is does not load in tfjs-layers).

The Keras 3 config is translated to the Keras 2 schema (dtype policies -> dtype names,
``batch_shape`` -> ``batch_input_shape``, ``{"args", "kwargs"}`` call records -> Keras 2 inbound
node lists, Keras 3-only keys dropped), tf_keras builds the model from it, each layer takes the
Keras 3 layer's weights, and both models run on the same sample inputs: unless they agree, the
rebuild is refused (:class:`NotRebuildable`) with the reason. Dropped keys are reported.
"""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from ...errors import first_line

#: keyword arguments every tf_keras layer takes through ``**kwargs``
_BASE_KWARGS = {"input_dim", "input_shape", "batch_input_shape", "batch_size", "weights", "activity_regularizer",
                "autocast", "implementation", "trainable", "name", "dtype", "dynamic"}
_NO_FILTER = {"Functional", "Model", "Sequential", "InputLayer"}
_DROP_EVERYWHERE = ("module", "registered_name", "build_config", "compile_config", "shared_object_id")
#: agreement required between the Keras 3 model and its tf_keras rebuild
ATOL = RTOL = 1e-5


class NotRebuildable(Exception):
    """The Keras 3 model cannot be rebuilt faithfully in tf_keras; the message says why."""


def rebuild(model: Any, feeds: Sequence[Mapping[str, Any]], input_names: Sequence[str], tf: Any
            ) -> tuple[Any, dict[str, Any]]:
    """(tf_keras model computing what ``model`` does, notes). Raises NotRebuildable."""
    from ...deps import require

    tf_keras = require("tf_keras")
    dropped: dict[str, list[str]] = {}
    config = translate(json.loads(model.to_json()), tf_keras, dropped)
    try:
        rebuilt = tf_keras.models.model_from_json(json.dumps(config))
    except Exception as exc:
        raise NotRebuildable(f"tf_keras cannot build its config ({first_line(exc, with_type=True, limit=240)})") from exc
    _copy_weights(model, rebuilt)
    worst = _compare(model, rebuilt, feeds, input_names, tf)
    notes: dict[str, Any] = {"rebuilt_in": f"tf_keras {tf_keras.__version__} (from Keras 3)",
                             "rebuild_max_abs_diff": float(f"{worst:.3g}")}
    if dropped:
        notes["dropped_keras3_keys"] = {k: sorted(set(v)) for k, v in sorted(dropped.items())}
    return rebuilt, notes


def translate(obj: Any, tf_keras: Any, dropped: dict[str, list[str]]) -> Any:
    """A Keras 3 (de)serialization config -> the Keras 2 schema tf_keras reads."""
    if isinstance(obj, list):
        return [translate(x, tf_keras, dropped) for x in obj]
    if not isinstance(obj, dict):
        return obj
    if obj.get("class_name") in ("DTypePolicy", "FloatDTypePolicy") and isinstance(obj.get("config"), dict):
        return obj["config"].get("name", "float32")
    if obj.get("class_name") == "__keras_tensor__":
        raise NotRebuildable("a Keras tensor outside a call record")
    out = {k: translate(v, tf_keras, dropped) for k, v in obj.items()
           if k not in _DROP_EVERYWHERE and k != "inbound_nodes"}
    if "inbound_nodes" in obj:
        out["inbound_nodes"] = [_node(n, obj.get("class_name"), tf_keras) for n in obj["inbound_nodes"]]
    cls = obj.get("class_name")
    cfg = out.get("config")
    if isinstance(cls, str) and isinstance(cfg, dict):
        if cls == "Bidirectional":
            _mirrored_backward_layer(cfg)
        if cls == "InputLayer":
            if "batch_shape" in cfg:
                cfg["batch_input_shape"] = cfg.pop("batch_shape")
            if cfg.pop("optional", False):
                raise NotRebuildable(f"input '{cfg.get('name')}' is optional (Keras 3 only)")
        elif cls not in _NO_FILTER:
            allowed = _accepted_kwargs(tf_keras, cls, layer="inbound_nodes" in obj or "trainable" in cfg)
            if allowed is not None:
                for key in [k for k in cfg if k not in allowed]:
                    if cfg.pop(key) not in (None, False, 0, {}, []):  # a default: nothing lost
                        dropped.setdefault(cls, []).append(key)
    for key in ("input_layers", "output_layers"):
        if isinstance(out.get(key), dict):
            raise NotRebuildable(f"the model's {key.split('_')[0]}s are a dict (Keras 3 only)")
        if isinstance(out.get(key), list) and out[key] and isinstance(out[key][0], str):
            out[key] = [out[key]]  # Keras 3 writes a single input/output flat
    return out


def _mirrored_backward_layer(cfg: dict[str, Any]) -> None:
    """Drop a Bidirectional's ``backward_layer`` when it mirrors ``layer``, in place. Keras 3 always
    writes both; tfjs-layers reads ``layer`` only and builds the backward layer from it, named
    ``backward_`` + the forward layer's name, and tf_keras does the same when there is no
    ``backward_layer``. Given one, tf_keras names it ``backward_`` + its own name, and TF.js finds
    no variable for those weights ("Provided weight data has no target variable:
    bilstm/backward_backward_lstm/lstm_cell/kernel")."""
    forward, backward = cfg.get("layer"), cfg.pop("backward_layer", None)
    if backward is None:
        return

    def core(layer: Any, flip: bool) -> Any:
        if not isinstance(layer, dict) or not isinstance(layer.get("config"), dict):
            return layer
        config = {k: v for k, v in layer["config"].items() if k != "name"}
        config["go_backwards"] = bool(config.get("go_backwards")) != flip
        return {"class_name": layer.get("class_name"), "config": config}

    if core(forward, False) != core(backward, True):
        raise NotRebuildable(f"Bidirectional '{cfg.get('name')}' has a backward layer of its own; TF.js layers "
                             "builds the backward layer from the forward one")


def _node(node: Any, class_name: Any, tf_keras: Any) -> list[Any]:
    """A Keras 3 call record ``{"args": [...], "kwargs": {...}}`` -> a Keras 2 inbound node:
    ``[[layer, node_index, tensor_index, kwargs], ...]`` (kwargs tensors as [layer, node, index])."""
    if isinstance(node, list):
        return node  # already Keras 2
    args, kwargs = list(node.get("args", [])), dict(node.get("kwargs", {}))
    if not args:
        raise NotRebuildable(f"a {class_name} call with no positional input")
    extra = args[1:]
    if extra:
        params = _call_params(tf_keras, class_name)
        if len(params) < 1 + len(extra):
            raise NotRebuildable(f"{class_name} is called with {len(args)} positional inputs")
        kwargs.update(zip(params[1:], extra))
    kw = {k: _history(v) for k, v in kwargs.items()}
    first = args[0]
    tensors = first if isinstance(first, list) else [first]
    entries = []
    for t in tensors:
        if not (isinstance(t, dict) and t.get("class_name") == "__keras_tensor__"):
            raise NotRebuildable(f"{class_name} is called on a constant")
        entries.append([*t["config"]["keras_history"], kw])
    return entries


def _history(v: Any) -> Any:
    if isinstance(v, dict) and v.get("class_name") == "__keras_tensor__":
        return list(v["config"]["keras_history"])
    if isinstance(v, list):
        return [_history(x) for x in v]
    return v


def _layer_class(tf_keras: Any, class_name: str) -> Any:
    return getattr(tf_keras.layers, class_name, None)


def _tf_keras_class(tf_keras: Any, class_name: str) -> Any:
    for space in (tf_keras.layers, tf_keras.initializers, tf_keras.regularizers, tf_keras.constraints):
        found = getattr(space, class_name, None)
        if isinstance(found, type):
            return found
    return None


def _accepted_kwargs(tf_keras: Any, class_name: str, *, layer: bool) -> set[str] | None:
    """Constructor arguments tf_keras's class takes (None: unknown, leave the config alone)."""
    cls = _tf_keras_class(tf_keras, class_name)
    if cls is None:
        if layer:
            raise NotRebuildable(f"tf_keras has no layer '{class_name}'")
        return None
    names: set[str] = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None or klass is object:
            continue
        try:
            params = inspect.signature(init).parameters.values()
        except (TypeError, ValueError):
            return None
        names.update(p.name for p in params if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL))
    return names | _BASE_KWARGS if layer or issubclass(cls, tf_keras.layers.Layer) else names


def _call_params(tf_keras: Any, class_name: Any) -> list[str]:
    cls = _layer_class(tf_keras, str(class_name))
    try:
        params = list(inspect.signature(cls.call).parameters.values())[1:]  # without self
    except (TypeError, ValueError, AttributeError):
        return []
    return [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]


def _copy_weights(model: Any, rebuilt: Any) -> None:
    for layer in rebuilt.layers:
        try:
            source = model.get_layer(layer.name)
        except ValueError as exc:
            raise NotRebuildable(f"layer '{layer.name}' has no Keras 3 counterpart") from exc
        weights = source.get_weights()
        if len(weights) != len(layer.weights):
            raise NotRebuildable(f"layer '{layer.name}' ({type(source).__name__}) has {len(weights)} weights in "
                                 f"Keras 3 and {len(layer.weights)} in tf_keras")
        try:
            layer.set_weights(weights)
        except ValueError as exc:
            raise NotRebuildable(f"layer '{layer.name}': {first_line(exc, with_type=True, limit=240)}") from exc


def _compare(model: Any, rebuilt: Any, feeds: Sequence[Mapping[str, Any]], names: Sequence[str], tf: Any) -> float:
    import numpy as np

    worst = 0.0
    for feed in feeds:
        xs = [feed[n] for n in names]
        arg = xs[0] if len(xs) == 1 else xs
        want = tf.nest.flatten(model(arg, training=False))
        try:
            got = tf.nest.flatten(rebuilt(arg, training=False))
        except Exception as exc:  # the Keras 3 model ran these samples: the rebuild differs
            raise NotRebuildable(_run_failure(exc)) from exc
        if len(want) != len(got):
            raise NotRebuildable(f"the rebuilt model has {len(got)} outputs, the Keras 3 model {len(want)}")
        for w, g in zip(want, got):
            w, g = np.asarray(w), np.asarray(g)
            if w.shape != g.shape:
                raise NotRebuildable(f"the rebuilt model's output shape {g.shape} is not {w.shape}")
            diff = np.abs(w.astype("float64") - g.astype("float64"))
            worst = max(worst, float(diff.max()) if diff.size else 0.0)
            if not np.all(diff <= ATOL + RTOL * np.abs(w)):
                raise NotRebuildable(f"the tf_keras rebuild computes something else (max abs diff {worst:.3g}): "
                                     "a layer behaves differently in Keras 2")
    return worst


def _run_failure(exc: Exception) -> str:
    """Why the rebuild could not run samples the Keras 3 model ran, on one line."""
    text = str(exc)
    bad_id = re.search(r"indices\[[\d,]*\] = (-?\d+) is not in \[0, (\d+)\)", text)
    if bad_id and "Embedding" in text:  # ops.take wraps negative ids; tf.nn.embedding_lookup and TF.js do not
        rows = bad_id.group(2)
        return (f"an Embedding of {rows} rows gets id {bad_id.group(1)}: Keras 3 wraps negative ids, tf_keras and "
                f"TF.js layers models do not (give ids in 0..{rows})")
    return f"the tf_keras rebuild cannot run the samples ({first_line(exc, with_type=True, limit=240)})"


