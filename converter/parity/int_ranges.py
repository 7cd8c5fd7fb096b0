"""Integer sample ranges a model accepts, read from its graph.

An input that reaches a Gather, an Embedding or a one_hot on a table of N rows (possibly through
Cast, Reshape, Unsqueeze and the like) takes 0..N: random ids from 0..10 into a table of 2 rows
("indices element out of range") say nothing about the conversion. That holds for float inputs
that are cast to indices too: they get whole numbers in 0..N. The smallest table an input reaches
bounds it. ``--input NAME:DIMS:DTYPE:LOW..HIGH`` still wins over what is inferred here.

Per source format: ONNX, a walk over the graph (Gather, OneHot, com.microsoft
EmbedLayerNormalization); Keras, the Embedding layers an Input reaches through shape-only
layers; TensorFlow (SavedModel signature or frozen graph), a walk over the graph (GatherV2,
ResourceGather, OneHot; a SavedModel's integer inputs only, as its signature is frozen for the walk);
PyTorch, the smallest ``nn.Embedding`` for integer inputs (the module has
no graph before export); TF.js, from model.json (int_ranges_tfjs.py). Hugging Face: ranges from its
config, not here. Inference never fails a run: a model it cannot read gets no inferred range.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..core import Artifact, TensorSpec

log = logging.getLogger(__name__)

#: ops that carry an index tensor on to another without changing its values (their input 0)
ONNX_PASS = frozenset({"Cast", "Reshape", "Unsqueeze", "Squeeze", "Flatten", "Identity", "Expand", "Transpose",
                       "Slice", "Tile", "Floor", "Round", "Ceil"})
TF_PASS = frozenset({"Cast", "Reshape", "ExpandDims", "Squeeze", "Identity", "Transpose", "Floor", "Round",
                     "StridedSlice", "Tile", "BroadcastTo"})
#: ops that pick their output from input 1 or 2 (Keras 3's Embedding wraps negative ids with
#: ``where(ids < 0, ids + N, ids)``: the ids reach the gather through its input 2)
TF_SELECT = frozenset({"Select", "SelectV2"})
KERAS_PASS = frozenset({"Reshape", "Flatten", "Permute", "RepeatVector", "Cropping1D", "InputLayer"})


def tf_passes(op: str, idx: int) -> bool:
    """Whether a TF op carries the index values of its input ``idx`` on to its output."""
    return (op in TF_PASS and idx == 0) or (op in TF_SELECT and idx in (1, 2))


@dataclass(frozen=True)
class IntRange:
    """Samples for ``input`` in [low, high), because of ``why`` (the op and its table)."""

    input: str
    low: int
    high: int
    why: str

    def note(self) -> str:
        return f"input '{self.input}' sampled in {self.low}..{self.high} (inferred: {self.why})"


def inferred(src: Artifact, specs: Sequence[TensorSpec]) -> dict[str, IntRange]:
    """The ranges found in ``src``'s graph for the inputs ``specs``, by input name (empty when the
    format says nothing)."""
    finder = _FINDERS.get(src.format.name)
    if finder is None or not specs:
        return {}
    try:
        return finder(src, specs)
    except Exception as exc:  # a graph this cannot read: no inferred range, the defaults apply
        log.debug("integer ranges not inferred for %s: %s", src.label, exc)
        return {}


def _smallest(found: Iterable[IntRange]) -> dict[str, IntRange]:
    out: dict[str, IntRange] = {}
    for r in found:
        if r.high > 0 and (r.input not in out or r.high < out[r.input].high):
            out[r.input] = r
    return out


def _reach(start: str, consumers: Mapping[str, list[tuple[Any, int]]], passes: Callable[[Any, int], str | None]
           ) -> Iterable[tuple[Any, int]]:
    """Every (node, input index) that reads ``start`` or a value carried on from it by ``passes``
    (which returns the name of the value a node carries the index on to, or None)."""
    seen, stack = {start}, [start]
    while stack:
        name = stack.pop()
        for node, idx in consumers.get(name, ()):
            yield node, idx
            nxt = passes(node, idx)
            if nxt is not None and nxt not in seen:
                seen.add(nxt)
                stack.append(nxt)


# -- ONNX ----------------------------------------------------------------------------------------------


def _onnx(src: Artifact, specs: Sequence[TensorSpec]) -> dict[str, IntRange]:
    from ..formats.onnx import load_proto, model_path

    model = load_proto(model_path(src.path), weights=False)
    return onnx_ranges(model, [s.name for s in specs])


def onnx_ranges(model: Any, inputs: Iterable[str]) -> dict[str, IntRange]:
    graph = model.graph
    dims = {t.name: list(t.dims) for t in graph.initializer}
    values: dict[str, Any] = {}
    for n in graph.node:
        if n.op_type == "Constant":
            for a in n.attribute:
                if a.name == "value":
                    dims[n.output[0]] = list(a.t.dims)
                    values[n.output[0]] = a.t
    for t in graph.initializer:
        values.setdefault(t.name, t)
    for v in graph.value_info:
        shape = [d.dim_value if d.HasField("dim_value") else 0 for d in v.type.tensor_type.shape.dim]
        if shape and all(shape):
            dims.setdefault(v.name, shape)
    consumers: dict[str, list[tuple[Any, int]]] = defaultdict(list)
    for n in graph.node:
        for i, name in enumerate(n.input):
            consumers[name].append((n, i))

    def passes(node: Any, idx: int) -> str | None:
        return node.output[0] if node.op_type in ONNX_PASS and idx == 0 and node.output else None

    found = []
    for name in inputs:
        for node, idx in _reach(name, consumers, passes):
            rows = _onnx_table_rows(node, idx, dims, values)
            if rows:
                found.append(IntRange(name, 0, rows, f"{node.op_type} '{node.name or node.output[0]}' on a table "
                                                     f"of {rows} rows"))
    return _smallest(found)


def _onnx_table_rows(node: Any, idx: int, dims: Mapping[str, list[int]], values: Mapping[str, Any]) -> int | None:
    op = node.op_type
    if op == "Gather" and idx == 1:
        axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
        shape = dims.get(node.input[0])
        return int(shape[axis]) if shape and -len(shape) <= axis < len(shape) else None
    if op == "OneHot" and idx == 0 and len(node.input) > 1 and node.input[1] in values:
        from onnx import numpy_helper

        depth = numpy_helper.to_array(values[node.input[1]])
        return int(depth.reshape(-1)[0]) if depth.size == 1 else None
    if op == "EmbedLayerNormalization" and idx in (0, 1):  # onnxruntime's fused BERT embeddings
        table = node.input[2 if idx == 0 else 4] if len(node.input) > (2 if idx == 0 else 4) else ""
        shape = dims.get(table)
        return int(shape[0]) if shape else None
    return None


# -- Keras ---------------------------------------------------------------------------------------------


def _keras(src: Artifact, specs: Sequence[TensorSpec]) -> dict[str, IntRange]:
    from ..formats.keras.source import input_names

    model = src.obj
    if model is None:
        return {}
    layers = list(_all_layers(model))
    consumers: dict[int, list[tuple[Any, Any]]] = defaultdict(list)  # id(tensor) -> [(layer, node)]
    for layer in layers:
        for node in getattr(layer, "_inbound_nodes", None) or []:
            for t in _flat(getattr(node, "input_tensors", None)):
                consumers[id(t)].append((layer, node))
    found = []
    for name, tensor in zip(input_names(model), list(model.inputs or [])):
        seen, stack = {id(tensor)}, [tensor]
        while stack:
            for layer, node in consumers.get(id(stack.pop()), ()):
                kind = type(layer).__name__
                if kind == "Embedding" and hasattr(layer, "input_dim"):
                    rows = int(layer.input_dim)
                    found.append(IntRange(name, 0, rows, f"Embedding '{layer.name}' of {rows} rows"))
                elif kind in KERAS_PASS:
                    outs = getattr(node, "output_tensors", None)
                    for out in _flat(outs if outs is not None else getattr(node, "outputs", None)):
                        if id(out) not in seen:
                            seen.add(id(out))
                            stack.append(out)
    return _smallest(found)


def _all_layers(model: Any) -> Iterable[Any]:
    stack, seen = [model], set()
    while stack:
        layer = stack.pop()
        if id(layer) in seen:
            continue
        seen.add(id(layer))
        yield layer
        stack.extend(getattr(layer, "layers", None) or [])


def _flat(x: Any) -> list[Any]:
    if x is None:
        return []
    if isinstance(x, (list, tuple)):
        return [t for item in x for t in _flat(item)]
    if isinstance(x, dict):
        return [t for item in x.values() for t in _flat(item)]
    return [x]


# -- TensorFlow ----------------------------------------------------------------------------------------


def _tf(src: Artifact, specs: Sequence[TensorSpec]) -> dict[str, IntRange]:
    from ..deps import require

    tf = require("tensorflow")
    obj = src.obj
    if hasattr(obj, "node"):  # a frozen GraphDef
        graph = tf.Graph()
        with graph.as_default():
            tf.compat.v1.import_graph_def(obj, name="")
    else:  # a signature calls the model's functions: frozen, they are inlined, variables become constants
        from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

        if not any(s.dtype.startswith(("int", "uint")) for s in specs):
            return {}  # freezing costs a copy of the weights: only for models that take integers

        fn = obj.signatures[src.meta.get("signature") or "serving_default"]
        graph = convert_variables_to_constants_v2(fn).graph
    return tf_ranges(graph, [s.name for s in specs])


def tf_ranges(graph: Any, inputs: Iterable[str]) -> dict[str, IntRange]:
    consumers: dict[str, list[tuple[Any, int]]] = defaultdict(list)
    for op in graph.get_operations():
        for i, t in enumerate(op.inputs):
            consumers[t.name].append((op, i))
    placeholders = {op.name: op for op in graph.get_operations() if op.type == "Placeholder"}

    def passes(op: Any, idx: int) -> str | None:
        return op.outputs[0].name if tf_passes(op.type, idx) and op.outputs else None

    found = []
    for name in inputs:
        op = placeholders.get(name.split(":")[0])
        if op is None:
            continue
        for node, idx in _reach(op.outputs[0].name, consumers, passes):
            rows = _tf_table_rows(node, idx)
            if rows:
                found.append(IntRange(name, 0, rows, f"{node.type} '{node.name}' on a table of {rows} rows"))
    return _smallest(found)


def _tf_table_rows(op: Any, idx: int) -> int | None:
    kind = op.type
    if kind in ("GatherV2", "ResourceGather", "Gather") and idx == 1:
        table = op.inputs[0]
        if kind == "ResourceGather":  # the variable's shape: from the op that reads it, if any
            shape = _handle_shape(table)
        else:
            shape = table.shape.as_list() if table.shape.rank else None
        axis = 0
        if kind == "GatherV2" and len(op.inputs) > 2:
            axis = _const_int(op.inputs[2]) or 0
        return int(shape[axis]) if shape and shape[axis] else None
    if kind == "OneHot" and idx == 0 and len(op.inputs) > 1:
        return _const_int(op.inputs[1])
    return None


def _handle_shape(handle: Any) -> list[int] | None:
    for consumer in handle.consumers():
        if consumer.type == "ReadVariableOp" and consumer.outputs[0].shape.rank:
            return consumer.outputs[0].shape.as_list()
    try:  # a captured variable: its shape rides on the resource handle (TF's own helper reads it)
        from tensorflow.python.ops import handle_data_util

        data = handle_data_util.get_resource_handle_data(handle)
        dims = [int(d.size) for d in data.shape_and_type[0].shape.dim]
    except Exception:
        return None
    return dims if dims and all(d > 0 for d in dims) else None


def _const_int(t: Any) -> int | None:
    try:
        from ..deps import require

        value = require("tensorflow").get_static_value(t)
    except Exception:
        return None
    return int(value.reshape(-1)[0]) if value is not None and value.size == 1 else None


# -- PyTorch -------------------------------------------------------------------------------------------


def _torch(src: Artifact, specs: Sequence[TensorSpec]) -> dict[str, IntRange]:
    """The module has no graph before export: the smallest nn.Embedding bounds every integer input."""
    from ..deps import require

    if src.obj is None:
        return {}
    torch = require("torch")
    obj = src.obj.module() if hasattr(src.obj, "graph_signature") else src.obj
    tables = [(n, m.num_embeddings) for n, m in obj.named_modules() if isinstance(m, torch.nn.Embedding)]
    if not tables:
        return {}
    where, rows = min(tables, key=lambda t: t[1])
    return {s.name: IntRange(s.name, 0, rows, f"nn.Embedding '{where}' of {rows} rows, the smallest in the model")
            for s in specs if s.dtype.startswith(("int", "uint"))}


def _tfjs(src: Artifact, specs: Sequence[TensorSpec]) -> dict[str, IntRange]:
    from .int_ranges_tfjs import tfjs_ranges

    return tfjs_ranges(src, specs)


_FINDERS: dict[str, Callable[[Artifact, Sequence[TensorSpec]], dict[str, IntRange]]] = {
    "onnx": _onnx, "keras": _keras, "tf": _tf, "torch": _torch, "tfjs": _tfjs}
