"""Rewrites of what tensorflowjs writes for a layers model (model.json topology, weights manifest)
so that tfjs-layers loads it. Pinned and checked against @tensorflow/tfjs-layers 4.22.0 and
tensorflowjs 4.22.0 (Python), the versions convertkit installs; each rewrite says which behaviour
of theirs needs it. Parity and one training step in real TF.js are the proof (tests/e2e/test_legacy_h5.py).

1. **SeparableConv2D config keys.** tf_keras's SeparableConv2D inherits ``kernel_initializer``,
   ``kernel_regularizer`` and ``kernel_constraint`` from its Conv base and writes them in its config,
   though a separable conv has no ``kernel`` (its weights are ``depthwise_kernel`` and
   ``pointwise_kernel``, with their own initializers, regularizers and constraints; see
   tf_keras/src/layers/convolutional/base_separable_conv.py). tfjs-layers' SeparableConv constructor
   throws when any of the three is non-null ("Fields kernelInitializer, kernelRegularizer and
   kernelConstraint are invalid for SeparableConv2D ...", tfjs-layers src/layers/convolutional.ts;
   tensorflow/tfjs#4479). tensorflowjs copies the config verbatim, so every tf_keras model with a
   SeparableConv2D failed to load. Dropping the three keys loses nothing Keras uses.

2. **Weight names that are not ``<layer name>/<weight>``.** tensorflowjs's HDF5 reader
   (tensorflowjs/converters/keras_h5_conversion.py, ``_convert_h5_group``) names each manifest entry
   by the variable name stored in the HDF5 file (``weight_names``, minus ``:0``). tfjs-layers'
   ``Container.loadWeights`` (src/engine/container.ts) matches those names against the names it
   builds itself, ``<layer name>/<weight name>``, tolerating only an extra RNN-cell component, and
   throws "Provided weight data has no target variable: ..." for any other. The stored variable
   name differs from the layer's name when Keras 2 / TF1 graph mode built the model a second time
   in one graph (variables become ``block1_bn_1/gamma`` while the layer is ``block1_bn``;
   tensorflow/tfjs#755 shows ``batch_normalization_1_2/gamma``), when a layer was renamed after it
   was built, or when it was built under an outer name scope. The HDF5 file groups the weights by
   the layer that owns them (``model_weights/<layer name>``), so for each layer whose stored names
   do not start with ``<layer name>/``, their common scope prefix is replaced by ``<layer name>/``.
   Nested models (their weights belong to inner layers) are left as they are.

Stdlib at import time.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

#: container classes tfjs-layers deserializes itself (not registered like layers)
CONTAINERS = frozenset({"Functional", "Model", "Sequential"})
#: config fields tf_keras's SeparableConv2D writes that tfjs-layers refuses (see 1. above)
_SEPARABLE_UNUSED = ("kernel_initializer", "kernel_regularizer", "kernel_constraint")


@dataclass
class LayersFixes:
    """What was rewritten, one line per layer, for the stage's notes."""

    dropped_keys: list[str] = field(default_factory=list)
    renamed_weights: list[str] = field(default_factory=list)

    def notes(self) -> dict[str, list[str]]:
        return {k: v for k, v in (("config_keys_dropped", self.dropped_keys),
                                  ("weights_renamed", self.renamed_weights)) if v}


def layers_of(config: Any) -> Iterator[dict[str, Any]]:
    """Every layer entry of a (nested) Keras model config."""
    inner = config.get("config") if isinstance(config, dict) else None
    layers = inner if isinstance(inner, list) else inner.get("layers") if isinstance(inner, dict) else None
    for layer in layers or ():
        if isinstance(layer, dict):
            yield layer
            yield from layers_of(layer)


def fix_layers_model(topology: dict[str, Any], groups: list[list[dict[str, Any]]], h5file: Any) -> LayersFixes:
    """Apply both rewrites in place to what ``h5_merged_saved_model_to_tfjs_format(h5file)`` returned."""
    fixes = LayersFixes()
    model_config = topology.get("model_config", {})
    fixes.dropped_keys = drop_separable_kernel_keys(model_config)
    fixes.renamed_weights = rename_weights(groups, weight_renames(h5file, model_config))
    return fixes


def drop_separable_kernel_keys(model_config: dict[str, Any]) -> list[str]:
    """Remove the unused ``kernel_*`` fields of every SeparableConv2D config (1. above), in place."""
    changed = []
    for layer in layers_of(model_config):
        cfg = layer.get("config")
        if layer.get("class_name") != "SeparableConv2D" or not isinstance(cfg, dict):
            continue
        dropped = [k for k in _SEPARABLE_UNUSED if k in cfg]
        for k in dropped:
            del cfg[k]
        if dropped:
            changed.append(f"{cfg.get('name')}: {', '.join(dropped)} (SeparableConv2D)")
    return changed


@dataclass(frozen=True)
class _Rename:
    layer: str
    old: str  # manifest name as tensorflowjs writes it
    new: str


def weight_renames(h5file: Any, model_config: dict[str, Any]) -> list[_Rename | None]:
    """For every weight tensorflowjs reads from ``h5file`` (in its order: layer groups as h5py lists
    them, then ``weight_names`` order), the rename it needs (2. above), or None."""
    from tensorflowjs.converters.keras_h5_conversion import normalize_weight_name

    classes = {layer.get("config", {}).get("name") or layer.get("name"): layer.get("class_name")
               for layer in layers_of(model_config)}
    out: list[_Rename | None] = []
    weights = h5file["model_weights"]
    for layer in weights:
        names = [normalize_weight_name(n) for n in _weight_names(weights[layer])]
        if classes.get(layer) in CONTAINERS:
            out.extend([None] * len(names))
            continue
        out.extend(_layer_renames(str(layer), names))
    return out


def _weight_names(group: Any) -> list[Any]:
    """The stored weight names of one layer group, in the order tensorflowjs reads them."""
    if "weight_names" in group.attrs:
        return list(group.attrs["weight_names"])
    return [n for key in group.keys() if hasattr(group[key], "keys") for n in _weight_names(group[key])]


def _layer_renames(layer: str, names: list[str]) -> list[_Rename | None]:
    stray = [n for n in names if not n.startswith(f"{layer}/")]
    if not stray:
        return [None] * len(names)
    scopes = [n.split("/")[:-1] for n in stray]
    prefix: list[str] = []
    for parts in zip(*scopes):  # the longest scope all stray names share (a single name: its own scope)
        if len(set(parts)) != 1:
            break
        prefix.append(parts[0])
    cut = len("/".join(prefix)) + 1 if prefix else 0
    return [_Rename(layer, n, f"{layer}/{n[cut:]}") if n in stray else None for n in names]


def rename_weights(groups: list[list[dict[str, Any]]], renames: list[_Rename | None]) -> list[str]:
    """Rename manifest entries in place (``renames`` pairs with the entries in order); one note per layer."""
    entries = [entry for group in groups for entry in group]
    if len(entries) != len(renames) or any(r is not None and r.old != e["name"] for e, r in zip(entries, renames)):
        raise ValueError("the weights tensorflowjs read do not pair with the HDF5 file's weight names")
    by_layer: dict[str, list[_Rename]] = {}
    for entry, rename in zip(entries, renames):
        if rename is not None:
            entry["name"] = rename.new
            by_layer.setdefault(rename.layer, []).append(rename)
    return [_layer_note(layer, done) for layer, done in by_layer.items()]


def _layer_note(layer: str, done: list[_Rename]) -> str:
    first = done[0]
    old_scope, new_scope = first.old.rsplit("/", 1)[0] if "/" in first.old else "", first.new.rsplit("/", 1)[0]
    return f"{layer}: {old_scope or '(no scope)'}/* -> {new_scope}/* ({len(done)} weights)"
