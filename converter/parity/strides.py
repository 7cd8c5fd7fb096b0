"""The total stride of a model: the largest product of convolution and pooling strides along any
path from its inputs (32 for a 5-stage backbone). Spatial sizes that are multiples of it are the
ones such a model takes (a U-Net's skip connections, a detector's feature pyramid).

Per format: ONNX (Conv/pool node ``strides``), Keras (the layers' configs, inbound connections
from ``get_config()``), TF.js (a layers model's topology; a graph model's Conv2D/pool node
``strides`` attributes). Other formats: 1 (unknown). Nothing here fails a run.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

ONNX_STRIDED = frozenset({"Conv", "ConvInteger", "QLinearConv", "MaxPool", "AveragePool", "LpPool"})
TF_STRIDED = frozenset({"Conv2D", "DepthwiseConv2dNative", "MaxPool", "AvgPool", "Conv3D", "MaxPool3D", "AvgPool3D",
                        "_FusedConv2D", "FusedDepthwiseConv2dNative"})
#: Keras layer classes whose ``strides`` (or, for pooling without strides, ``pool_size``) divide the size
KERAS_STRIDED = ("Conv1D", "Conv2D", "Conv3D", "SeparableConv1D", "SeparableConv2D", "DepthwiseConv2D",
                 "MaxPooling1D", "MaxPooling2D", "MaxPooling3D", "AveragePooling1D", "AveragePooling2D",
                 "AveragePooling3D")


def onnx_stride(model: Any) -> int:
    """Nodes are in topological order in a valid ONNX graph."""
    stride: dict[str, int] = {}
    best = 1
    for node in model.graph.node:
        s = max((stride.get(i, 1) for i in node.input if i), default=1)
        if node.op_type in ONNX_STRIDED:
            s *= max(next((list(a.ints) for a in node.attribute if a.name == "strides"), []), default=1)
        for o in node.output:
            stride[o] = s
        best = max(best, s)
    return best


def keras_stride(config: Mapping[str, Any]) -> int:
    """From a Keras model config (``model.get_config()`` or a TF.js layers model's ``model_config``)."""
    inner = config.get("config", config) if "class_name" in config else config
    layers = inner if isinstance(inner, list) else inner.get("layers", [])
    if isinstance(inner, list) or not any(layer.get("inbound_nodes") for layer in layers):
        return _chain(layers)  # a Sequential: one chain
    graph = {layer.get("config", {}).get("name", layer.get("name")):
             ([src for inbound in layer.get("inbound_nodes", []) for src in inbound_layers(inbound)], _own(layer))
             for layer in layers}
    return longest(graph)


def longest(graph: Mapping[str, tuple[Sequence[str], int]]) -> int:
    """The largest product of own strides along any path of ``graph`` (name -> (inputs, own stride)),
    in any node order (an explicit stack: deep graphs do not hit the recursion limit)."""
    memo: dict[str, int] = {}
    for root in graph:
        stack = [root]
        while stack:
            name = stack[-1]
            if name in memo:
                stack.pop()
                continue
            inputs, own = graph.get(name, ((), 1))
            todo = [i for i in inputs if i in graph and i not in memo and i not in stack]
            if todo:
                stack.extend(todo)
                continue
            memo[name] = max((memo.get(i, 1) for i in inputs), default=1) * own
            stack.pop()
    return max(memo.values(), default=1)


def _chain(layers: Sequence[Mapping[str, Any]]) -> int:
    out = 1
    for layer in layers:
        out *= _own(layer)
    return out


def _own(layer: Mapping[str, Any]) -> int:
    if layer.get("class_name") not in KERAS_STRIDED:
        return 1
    cfg = layer.get("config", {})
    strides = cfg.get("strides") or cfg.get("pool_size") or 1
    return max(_ints(strides), default=1)


def _ints(v: Any) -> list[int]:
    return [int(x) for x in v] if isinstance(v, (list, tuple)) else [int(v)]


def tfjs_graph_stride(nodes: Iterable[Mapping[str, Any]]) -> int:
    """A TF.js graph model's nodes (in whatever order tensorflowjs wrote them)."""
    graph = {}
    for node in nodes:
        own = 1
        if node.get("op") in TF_STRIDED:
            values = node.get("attr", {}).get("strides", {}).get("list", {}).get("i", [])
            own = max((int(x) for x in values), default=1)
        graph[node["name"]] = ([i.lstrip("^").split(":")[0] for i in node.get("input", [])], own)
    return longest(graph)


def inbound_layers(inbound: Any) -> list[str]:
    """Layer names an inbound node reads: Keras 2 lists ``[[name, node, tensor, kwargs], ...]``,
    Keras 3 records ``{"args": [{"config": {"keras_history": [name, ...]}}, ...]}``."""
    if isinstance(inbound, Mapping):
        return [h["config"]["keras_history"][0] for h in _histories(inbound.get("args", []))]
    return [e[0] for e in inbound if isinstance(e, (list, tuple)) and e and isinstance(e[0], str)]


def _histories(x: Any) -> list[Mapping[str, Any]]:
    if isinstance(x, Mapping):
        return [x] if "keras_history" in x.get("config", {}) else []
    if isinstance(x, (list, tuple)):  # tuples in a live get_config(), lists once written as JSON
        return [h for item in x for h in _histories(item)]
    return []
