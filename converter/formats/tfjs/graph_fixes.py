"""Adjust a frozen, optimized TensorFlow graph to what TF.js executes (graph.py runs these).

TF.js runs TensorFlow graphs with its own executor, which differs from TensorFlow's in ways that
matter for graphs tensorflowjs writes: it treats a control edge ``^x`` as a data dependency on
``x:0`` and never schedules Const nodes (weights); its wasm backend fuses only some activations and
only rank-1 biases into MatMul/Conv2D. Each function here is one such difference, in place, and
returns what it changed for the report's ``rewrites``. Parity in real TF.js is the proof.

Stdlib at import time.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from .graph import supported_ops


@contextlib.contextmanager
def bias_add_only_for_vectors(conv: Any) -> Iterator[None]:
    """tensorflowjs turns every ``Add(MatMul|Conv2D, y)`` into ``BiasAdd`` to fuse it, whatever
    ``y`` is; when ``y`` is not a 1-D constant (an LSTM cell's ``x@W + h@U``) the fused op has a
    matrix "bias", which TF.js's wasm backend rejects ("_FusedMatMul only supports rank-1 bias").
    While its optimizer runs, undo that rewrite wherever ``y`` is not a 1-D Const."""
    module = conv.normalize_bias_add
    original = module.normalize_bias_add_op

    def safe(graph_def: Any) -> Any:
        before = {n.name: n.op for n in graph_def.node if n.op in ("Add", "AddV2")}
        consts = {n.name: n for n in graph_def.node if n.op == "Const"}
        result = original(graph_def)
        for node in result.node:
            if node.name in before and node.op == "BiasAdd" and not _is_vector_const(consts, node.input[1]):
                node.op = before[node.name]
                del node.attr["data_format"]
        return result

    module.normalize_bias_add_op = safe
    try:
        yield
    finally:
        module.normalize_bias_add_op = original


def _is_vector_const(consts: dict[str, Any], name: str) -> bool:
    node = consts.get(name.split(":")[0])
    return node is not None and len(node.attr["value"].tensor.tensor_shape.dim) == 1


#: activations TF.js's wasm backend runs fused into Conv2D/MatMul (tfjs-backend-wasm FusableActivation)
WASM_FUSABLE = {b"Relu", b"Relu6", b"Prelu", b"LeakyRelu", b"Sigmoid", b"Elu"}
_FUSED = ("_FusedMatMul", "_FusedConv2D", "FusedDepthwiseConv2dNative")


def unfuse_activations(graph_def: Any) -> int:
    """Split activations TF.js's wasm backend cannot run fused (``Tanh``; with TensorFlow's oneDNN
    rewrites on, grappler fuses more than TF.js knows) out of fused ops, in place: the fused op
    keeps its name's consumers through a new activation node of that name. Returns how many."""
    count = 0
    for node in list(graph_def.node):
        if node.op not in _FUSED:
            continue
        fused = list(node.attr["fused_ops"].list.s)
        if len(fused) != 2 or fused[1] in WASM_FUSABLE or fused[1].decode() not in supported_ops():
            continue
        act = graph_def.node.add()
        act.name, act.op = node.name, fused[1].decode()
        act.attr["T"].CopyFrom(node.attr["T"])
        node.name = f"{node.name}/{fused[0].decode().lower()}"
        act.input.append(node.name)
        del node.attr["fused_ops"].list.s[1:]
        count += 1
    return count


def untranspose_fused_matmul(graph_def: Any) -> int:
    """TF.js's wasm kernel for ``_FusedMatMul`` computes ``transpose_b`` wrongly (tfjs 4.22: max abs
    1.0 on a 16x8 Gemm with a bias; its cpu kernel is right), and grappler folds a Transpose before a
    MatMul into that flag. Transpose the operand beforehand instead, in place: a constant as a new
    transposed Const, anything else through a Transpose node; the flags are cleared. Returns how many."""
    from ...deps import require

    tf = require("tensorflow")
    nodes = {n.name: n for n in graph_def.node}
    count = 0
    for node in list(graph_def.node):
        if node.op != "_FusedMatMul":
            continue
        for i, flag in ((0, "transpose_a"), (1, "transpose_b")):
            if not node.attr[flag].b:
                continue
            src = nodes.get(node.input[i].split(":")[0])
            new = graph_def.node.add()
            new.name = f"{node.name}/{flag}"
            if src is not None and src.op == "Const" and node.input[i].split(":")[1:] in ([], ["0"]):
                value = tf.make_ndarray(src.attr["value"].tensor).T.copy()
                new.op = "Const"
                new.attr["dtype"].CopyFrom(src.attr["dtype"])
                new.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(value))
            else:
                perm = graph_def.node.add()
                perm.name, perm.op = f"{new.name}/perm", "Const"
                perm.attr["dtype"].type = tf.int32.as_datatype_enum
                perm.attr["value"].tensor.CopyFrom(tf.make_tensor_proto([1, 0], tf.int32))
                new.op = "Transpose"
                new.input.extend([node.input[i], perm.name])
                new.attr["T"].CopyFrom(node.attr["T"])
                new.attr["Tperm"].type = tf.int32.as_datatype_enum
            node.input[i] = new.name
            node.attr[flag].b = False
            count += 1
    return count


def fix_control_edges(graph_def: Any) -> dict[str, int]:
    """Make a frozen graph's control edges mean to TF.js what they mean to TensorFlow; in place.
    Returns what changed, for the report's ``rewrites``.

    TF.js treats a control edge ``^x`` as a data dependency on ``x:0``, and never schedules Const
    nodes (they are weights, alive everywhere). With lowered control flow that stalls or misleads:

    - a NoOp inside a while loop waits on constants, never fires, and the loop's NextIteration
      nodes and the model's outputs wait forever ("Cannot compute the outputs [Identity]": Keras
      LSTMs). In a frozen inference graph NoOps only order side effects that freezing removed
      (variable reads): edges from NoOps are dropped;
    - an edge from an Enter (a loop invariant) is seen in the loop's first iteration only, and an
      edge from an input-less Const orders nothing: both are dropped;
    - a Const that a ``tf.cond`` branch guards with control edges (grappler folds constant branch
      outputs into such Consts) would be alive in both branches, and the Merge after the cond
      would pick either: it becomes ``Identity(Const)`` with those edges, which TF.js honours.
    """
    notes: dict[str, int] = {}
    by_name = {n.name: n for n in graph_def.node}

    def droppable(edge: str) -> bool:
        src = by_name.get(edge[1:].split(":")[0])
        if src is None:
            return False
        return src.op in ("NoOp", "Enter") or (src.op == "Const" and not src.input)

    drops = {n.name: [i for i in n.input if i.startswith("^") and droppable(i)] for n in graph_def.node}
    dropped = 0
    for node in graph_def.node:
        if drops[node.name]:
            keep = [i for i in node.input if i not in drops[node.name]]
            dropped += len(node.input) - len(keep)
            del node.input[:]
            node.input.extend(keep)
    if dropped:
        notes["control edges from NoOp/Enter/Const dropped"] = dropped
    consumed = {i.lstrip("^").split(":")[0] for n in graph_def.node for i in n.input}
    idle = [n for n in graph_def.node if n.op == "NoOp" and n.name not in consumed]
    if idle:  # nothing waits on them any more
        keep = [n for n in graph_def.node if n.op != "NoOp" or n.name in consumed]
        del graph_def.node[:]
        graph_def.node.extend(keep)
    guarded = [n for n in graph_def.node if n.op == "Const" and n.input]
    for node in guarded:
        value = graph_def.node.add()
        value.CopyFrom(node)
        value.name = f"{node.name}/guarded_value"
        del value.input[:]
        dtype = node.attr["dtype"].type
        node.op = "Identity"
        node.attr.clear()
        node.attr["T"].type = dtype
        control = [i for i in node.input if i.startswith("^")]
        del node.input[:]
        node.input.extend([value.name, *control])
    if guarded:
        notes["Const with control inputs -> Identity(Const)"] = len(guarded)
    return notes


def reverse_bool_as_int32(graph_def: Any) -> int:
    """TF.js's wasm kernel for ``Reverse`` copies 4-byte elements whatever the dtype: on a bool tensor
    (1 byte an element) it reads past the buffer and aborts the runtime ("Aborted()", tfjs 4.22; its
    cpu kernel is right). Keras 3's masked RNNs that run backwards (``Bidirectional``, ``go_backwards``)
    reverse their bool mask. Reverse bool tensors as int32 between two Casts instead, in place: the
    Cast back to bool keeps the node's name for its consumers. Returns how many."""
    from ...deps import require

    tf = require("tensorflow")
    bool_, int32 = tf.bool.as_datatype_enum, tf.int32.as_datatype_enum
    count = 0
    for node in list(graph_def.node):
        if node.op != "ReverseV2" or node.attr["T"].type != bool_:
            continue
        name = node.name
        to_int = graph_def.node.add()
        to_int.name, to_int.op = f"{name}/to_int32", "Cast"
        to_int.input.append(node.input[0])
        to_int.attr["SrcT"].type, to_int.attr["DstT"].type = bool_, int32
        node.name = f"{name}/int32"
        node.input[0] = to_int.name
        node.attr["T"].type = int32
        back = graph_def.node.add()
        back.name, back.op = name, "Cast"
        back.input.append(node.name)
        back.attr["SrcT"].type, back.attr["DstT"].type = int32, bool_
        count += 1
    return count
