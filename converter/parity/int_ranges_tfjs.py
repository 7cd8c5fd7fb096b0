"""Integer sample ranges of a TF.js model, read from its model.json (see int_ranges.py).

A graph model: a walk from the input's Placeholder through index-carrying ops (Cast, Reshape, ...)
to a GatherV2 (its table's shape is in the weights manifest; a non-zero axis is read from the
shards) or a OneHot (its depth, from the shards). A layers model: the Keras topology, from each
input layer through shape-only layers to an Embedding (its ``input_dim``). Stdlib + numpy; no
TensorFlow needed, the model.json says it all.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..core import Artifact, TensorSpec
from .int_ranges import KERAS_PASS, IntRange, _reach, _smallest, tf_passes
from .strides import inbound_layers

_ITEMSIZE = {"float32": 4, "int32": 4, "bool": 1, "uint8": 1, "uint16": 2, "float16": 2, "complex64": 8}


def tfjs_ranges(src: Artifact, specs: Sequence[TensorSpec]) -> dict[str, IntRange]:
    from ..formats.tfjs import model_dir, read_model_json

    folder = model_dir(src.path)
    model_json = read_model_json(folder)
    names = [s.name for s in specs]
    topology = model_json.get("modelTopology") or {}
    if "node" in topology:
        return graph_ranges(model_json, folder, names)
    return layers_ranges(topology, names)


# -- graph models --------------------------------------------------------------------------------------


def graph_ranges(model_json: Mapping[str, Any], folder: Path, inputs: Iterable[str]) -> dict[str, IntRange]:
    nodes = {n["name"]: n for n in model_json["modelTopology"]["node"]}
    weights = _Manifest(model_json.get("weightsManifest", []), folder)
    consumers: dict[str, list[tuple[Any, int]]] = defaultdict(list)
    for n in nodes.values():
        for i, name in enumerate(n.get("input", [])):
            if not name.startswith("^"):
                consumers[_node(name)].append((n, i))
    signature = model_json.get("signature", {}).get("inputs", {})

    def passes(node: Mapping[str, Any], idx: int) -> str | None:
        return node["name"] if tf_passes(node.get("op", ""), idx) else None

    found = []
    for name in inputs:
        start = _node(signature.get(name, {}).get("name", name))
        for node, idx in _reach(start, consumers, passes):
            rows = _table_rows(node, idx, weights)
            if rows:
                found.append(IntRange(name, 0, rows, f"{node['op']} '{node['name']}' on a table of {rows} rows"))
    return _smallest(found)


def _node(tensor: str) -> str:
    return tensor.lstrip("^").split(":")[0]


def _table_rows(node: Mapping[str, Any], idx: int, weights: _Manifest) -> int | None:
    inputs = [_node(i) for i in node.get("input", []) if not i.startswith("^")]
    if node.get("op") in ("GatherV2", "Gather", "ResourceGather") and idx == 1:
        shape = weights.shape(inputs[0])
        axis = weights.scalar(inputs[2]) if node["op"] == "GatherV2" and len(inputs) > 2 else 0
        if shape is None or axis is None or not -len(shape) <= axis < len(shape):
            return None
        return int(shape[axis]) or None
    if node.get("op") == "OneHot" and idx == 0 and len(inputs) > 1:
        return weights.scalar(inputs[1])
    return None


class _Manifest:
    """Shapes of the weights, and the value of a small integer one (read from its shard bytes:
    the manifest lays weights out back to back in each group's concatenated shards)."""

    def __init__(self, manifest: Sequence[Mapping[str, Any]], folder: Path) -> None:
        self.entries: dict[str, tuple[Mapping[str, Any], Mapping[str, Any], int]] = {}
        for group in manifest:
            offset = 0
            for w in group.get("weights", []):
                self.entries[w["name"]] = (group, w, offset)
                dtype = w.get("quantization", {}).get("dtype", w.get("dtype", "float32"))
                offset += _size(w.get("shape", [])) * _ITEMSIZE.get(dtype, 0)
        self.folder = folder

    def shape(self, name: str) -> list[int] | None:
        entry = self.entries.get(name)
        return list(entry[1].get("shape", [])) if entry else None

    def scalar(self, name: str) -> int | None:
        import numpy as np

        entry = self.entries.get(name)
        if entry is None or entry[1].get("dtype") != "int32" or "quantization" in entry[1]:
            return None
        group, w, offset = entry
        if _size(w.get("shape", [])) != 1:
            return None
        data = b"".join((self.folder / p).read_bytes() for p in group.get("paths", []))
        return int(np.frombuffer(data[offset:offset + 4], dtype="<i4")[0]) if len(data) >= offset + 4 else None


def _size(shape: Sequence[int]) -> int:
    out = 1
    for d in shape:
        out *= int(d)
    return out


# -- layers models -------------------------------------------------------------------------------------


def layers_ranges(topology: Mapping[str, Any], inputs: Sequence[str]) -> dict[str, IntRange]:
    model = topology.get("model_config", topology)
    config = model.get("config", {})
    layers = config if isinstance(config, list) else config.get("layers", [])
    if model.get("class_name") == "Sequential":
        return _sequential(layers, inputs)
    consumers: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for layer in layers:
        for inbound in layer.get("inbound_nodes", []):
            for src in inbound_layers(inbound):
                consumers[src].append(layer)
    found = []
    for name in inputs:
        seen, stack = {name}, [name]
        while stack:
            for layer in consumers.get(stack.pop(), ()):
                found.extend(_embedding(name, layer))
                lname = layer.get("config", {}).get("name", layer.get("name"))
                if layer.get("class_name") in KERAS_PASS and lname not in seen:
                    seen.add(lname)
                    stack.append(lname)
    return _smallest(found)


def _sequential(layers: Sequence[Mapping[str, Any]], inputs: Sequence[str]) -> dict[str, IntRange]:
    if len(inputs) != 1:
        return {}
    for layer in layers:
        found = _embedding(inputs[0], layer)
        if found:
            return _smallest(found)
        if layer.get("class_name") not in KERAS_PASS:
            return {}
    return {}


def _embedding(input_name: str, layer: Mapping[str, Any]) -> list[IntRange]:
    rows = layer.get("config", {}).get("input_dim")
    if layer.get("class_name") != "Embedding" or not isinstance(rows, int) or rows <= 0:
        return []
    name = layer.get("config", {}).get("name", layer.get("name"))
    return [IntRange(input_name, 0, rows, f"Embedding '{name}' of {rows} rows")]
