"""Frozen TensorFlow graphs (``GraphDef``): their inputs and outputs, and rewrites that make a graph
convertible. Used by the frozen-``.pb`` source, the TF runner and the exports that read TF graphs.

Stdlib at import time; functions take the ``tensorflow`` module where they need it.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

#: ops that are never a model's output
_NOT_OUTPUTS = {"Const", "NoOp", "Placeholder", "PlaceholderWithDefault", "Assert", "VarHandleOp"}


def placeholders(graph_def: Any) -> list[Any]:
    """The graph's inputs: Placeholder nodes, in graph order."""
    return [n for n in graph_def.node if n.op == "Placeholder"]


def unconsumed(graph_def: Any) -> list[str]:
    """Node names no other node reads (control inputs count): the graph's outputs, as TF.js takes them."""
    consumed = {i.lstrip("^").split(":")[0] for n in graph_def.node for i in n.input}
    return [n.name for n in graph_def.node if n.name not in consumed and n.op not in _NOT_OUTPUTS]


def op_counts(graph_def: Any) -> dict[str, int]:
    counts = Counter(n.op for n in graph_def.node)
    for fn in graph_def.library.function:
        counts.update(n.op for n in fn.node_def)
    return dict(sorted(counts.items()))


def rewrite_erfc(graph_def: Any, tf: Any) -> int:
    """Replace every ``Erfc(x)`` with ``1 - Erf(x)``, in place; returns how many were rewritten.

    Exact GELU (Keras 3 ``gelu``, ``tf.nn.gelu(approximate=False)``) lowers to ``Erfc``, which
    neither tf2onnx nor TF.js converts; ``Erf`` and ``Sub`` they both do. The node keeps its name
    (it becomes the ``Sub``), so its consumers need no change."""
    count = _rewrite_nodes(graph_def.node, graph_def.node.add, tf, in_function=False)
    for fn in graph_def.library.function:
        count += _rewrite_nodes(fn.node_def, fn.node_def.add, tf, in_function=True)
    return count


def _rewrite_nodes(nodes: Any, add: Any, tf: Any, *, in_function: bool) -> int:
    import numpy as np

    targets = [n for n in nodes if n.op == "Erfc"]
    for node in targets:
        data = [i for i in node.input if not i.startswith("^")]
        control = [i for i in node.input if i.startswith("^")]
        dtype = tf.as_dtype(node.attr["T"].type)
        erf = add()
        erf.name, erf.op = f"{node.name}/erf", "Erf"
        erf.input.extend(data[:1])
        erf.attr["T"].CopyFrom(node.attr["T"])
        if node.device:
            erf.device = node.device
        one = add()
        one.name, one.op = f"{node.name}/one", "Const"
        one.attr["dtype"].type = node.attr["T"].type
        one.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(np.array(1, dtype=dtype.as_numpy_dtype)))
        node.op = "Sub"
        del node.input[:]
        # inside a FunctionDef an input names an output argument: node:arg:index
        node.input.extend([f"{one.name}:output:0", f"{erf.name}:y:0"] if in_function else [one.name, erf.name])
        node.input.extend(control)
    return len(targets)
