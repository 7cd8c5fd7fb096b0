"""Freeze a traced TensorFlow function for TF.js: variables become constants.

``convert_variables_to_constants_v2`` is the freeze. It refuses a function that writes a
variable: the write's resource input becomes a constant ("Input 0 of node .../AssignVariableOp
was passed int64 ... incompatible with expected resource"). Keras 3 RNN layers with dropout make
such writes on every call, in inference too: they draw their dropout masks from a seed-state
variable (``SeedGenerator.next``) and never use them with ``training=False``. Keras models are
traced without them (keras/runner.py calls the model in ``keras.StatelessScope``), but a
SavedModel that Keras 3 exported (``model.export``) has them baked in.

A write only matters to a frozen inference graph when an output reads what it wrote. So, when
the plain freeze fails on a function that writes variables, the writes whose variables no output
depends on (through data edges) are dropped before the variables are replaced, and the freeze is
repeated; a write to a variable an output reads is refused with its name (the model keeps state,
which a TF.js graph model cannot). The fallback uses TensorFlow's freeze in its steps
(``_FunctionConverterDataInEager`` inlines, ``_replace_variables_by_constants`` replaces,
``_construct_concrete_function`` prunes to the outputs): private names of tensorflow 2.19, pinned in
requirements/lock.txt, because the public function offers no hook between inlining and replacing.

Stdlib at import time.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

#: ops that write a resource variable (its handle is input 0)
WRITES = frozenset({"AssignVariableOp", "AssignAddVariableOp", "AssignSubVariableOp"})
#: ops that pass a resource handle on unchanged (inlined function inputs)
_PASS = frozenset({"Identity", "IdentityN"})


class StatefulModel(Exception):
    """An output reads a variable that the traced function writes; the message names the variable."""


@dataclass(frozen=True)
class Frozen:
    function: Any  # the frozen ConcreteFunction
    dropped_writes: int  # variable writes no output depends on, left out


def freeze(concrete: Any) -> Frozen:
    """Freeze ``concrete`` (control flow lowered, functions inlined). Raises what TensorFlow's freeze
    raises when dropping unread writes does not help, or :class:`StatefulModel`."""
    from tensorflow.python.framework import convert_to_constants as c2c

    try:
        return Frozen(c2c.convert_variables_to_constants_v2(concrete, lower_control_flow=True,
                                                           aggressive_inlining=True), 0)
    except ValueError:
        data = c2c._FunctionConverterDataInEager(func=concrete, lower_control_flow=True, aggressive_inlining=True)
        dropped = drop_unread_writes(data.graph_def, [t.name for t in concrete.outputs])
        if not dropped:
            raise
    graph_def, converted = c2c._replace_variables_by_constants(converter_data=data)
    return Frozen(c2c._construct_concrete_function(concrete, graph_def, converted), dropped)


def drop_unread_writes(graph_def: Any, outputs: Iterable[str]) -> int:
    """Remove, in place, the top-level variable writes of ``graph_def`` whose variable no output
    reads (through data edges), and the control edges to them. Returns how many."""
    nodes = {n.name: n for n in graph_def.node}
    writes = [n for n in graph_def.node if n.op in WRITES]
    if not writes:
        return 0
    needed = _data_fan_in(nodes, (o.split(":")[0] for o in outputs))
    for write in writes:
        variable = _handle_source(nodes, write.input[0])
        if variable in needed:
            raise StatefulModel(f"the model writes variable '{variable}' ({write.op} '{write.name}') and its "
                                "outputs read it: it keeps state between calls, which a TF.js graph model cannot")
    gone = {w.name for w in writes}
    keep = [n for n in graph_def.node if n.name not in gone]
    for node in keep:
        inputs = [i for i in node.input if not (i.startswith("^") and i[1:] in gone)]
        if len(inputs) != len(node.input):
            del node.input[:]
            node.input.extend(inputs)
    del graph_def.node[:]
    graph_def.node.extend(keep)
    return len(gone)


def _data_fan_in(nodes: dict[str, Any], start: Iterable[str]) -> set[str]:
    """Names of the nodes the ``start`` nodes depend on through data (not control) edges, themselves included."""
    seen: set[str] = set()
    todo = [n for n in start if n in nodes]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo.extend(i.split(":")[0] for i in nodes[name].input if not i.startswith("^") and i.split(":")[0] in nodes)
    return seen


def _handle_source(nodes: dict[str, Any], tensor: str) -> str:
    """The node a resource handle comes from (a captured placeholder), through Identity nodes."""
    name = tensor.split(":")[0]
    while name in nodes and nodes[name].op in _PASS and nodes[name].input:
        name = nodes[name].input[0].split(":")[0]
    return name
