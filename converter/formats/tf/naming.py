"""Node names in a frozen GraphDef: the graph outputs get the ONNX output names (made safe for
TensorFlow), whichever converter (onnx2tf or the own lowering) made the graph."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def rename_outputs(graph_def: Any, tensors: Sequence[str], names: Sequence[str]) -> None:
    """Give the output nodes (Identity, read by nothing) the ONNX output names, in place."""
    by_name = {n.name: n for n in graph_def.node}
    for tensor, name in zip(tensors, names):
        node_name = tensor.split(":")[0]
        if node_name == name:
            continue
        clash = by_name.get(name)
        if clash is not None:  # an inner node has the name: it moves aside (inputs that read it follow)
            rename_node(graph_def, clash.name, f"{name}/inner")
            by_name[f"{name}/inner"] = by_name.pop(name)
        rename_node(graph_def, node_name, name)
        by_name[name] = by_name.pop(node_name)


def rename_node(graph_def: Any, old: str, new: str) -> None:
    for node in graph_def.node:
        if node.name == old:
            node.name = new
        for i, inp in enumerate(node.input):
            ctrl, base = ("^", inp[1:]) if inp.startswith("^") else ("", inp)
            head, sep, port = base.partition(":")
            if head == old:
                node.input[i] = f"{ctrl}{new}{sep}{port}"
