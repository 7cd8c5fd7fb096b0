"""The walk: ONNX graph -> one ``tf.function`` over ``tf.TensorSpec`` inputs (dynamic dims None) ->
a frozen GraphDef. Each node goes to the handler registered for its op type and opset; a node whose
inputs are all known at conversion time is run eagerly and becomes a constant (shape arithmetic
folds this way, with the handlers' own code)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ....core import TensorSpec
from ....deps import require
from .context import Ctx, LoweringError
from .registry import lookup
from .values import V, channels_last

#: ops never folded into constants: random draws, and control flow (its bodies run as graphs)
NO_FOLD = frozenset({"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial",
                     "Bernoulli", "If", "Loop", "Scan"})
FOLD_GROWTH = 65536  # a folded constant may exceed its inputs' total size by this many elements (Expand, Tile)
_LAYOUT_NAMES = {4: "NHWC", 5: "NDHWC"}


@dataclass
class Lowered:
    """A lowered model: the frozen graph and how to call it."""

    graph_def: Any
    inputs: tuple[TensorSpec, ...]  # TF node names (safe), dims in the layout the graph takes them
    outputs: tuple[TensorSpec, ...]  # TF node names (safe), ONNX order
    fn: Any  # the frozen concrete function: fn(*tf tensors) -> list of outputs
    notes: dict[str, Any] = field(default_factory=dict)
    input_perms: dict[str, tuple[int, ...]] = field(default_factory=dict)  # input name -> perm of its layout
    value_names: tuple[str, ...] = ()  # the ONNX value behind each output (mark_all: every value)


def opsets(model: Any) -> dict[str, int]:
    """Domain ("" for the default) -> opset the model imports."""
    out = {("" if o.domain in ("", "ai.onnx") else o.domain): int(o.version) for o in model.opset_import}
    out.setdefault("", 1)
    return out


def _nodes(graph: Any) -> Any:
    """Every node, those of subgraphs (If/Loop/Scan bodies) too."""
    for node in graph.node:
        yield node
        for a in node.attribute:
            if a.g is not None and a.g.node:
                yield from _nodes(a.g)
            for g in a.graphs:
                yield from _nodes(g)


def missing_ops(model: Any) -> list[tuple[str, int]]:
    """(op_type, opset) the lowering has no handler for, each once, in graph order."""
    sets = opsets(model)
    out: list[tuple[str, int]] = []
    for node in _nodes(model.graph):
        domain = "" if node.domain in ("", "ai.onnx") else node.domain
        opset = sets.get(domain, 1)
        if lookup(node.op_type, opset, domain) is None:
            key = (f"{domain}.{node.op_type}" if domain else node.op_type, opset)
            if key not in out:
                out.append(key)
    return out


def run_node(cx: Ctx, node: Any, values: dict[str, V | None]) -> None:
    """Lower one node into ``values`` (its outputs by name)."""
    domain = "" if node.domain in ("", "ai.onnx") else node.domain
    handler = lookup(node.op_type, cx.opsets.get(domain, 1), domain)
    if handler is None:
        cx.fail(node, "the lowering has no handler for this op at this opset")
    ins: list[V | None] = []
    for name in node.input:
        if name and name not in values:
            cx.fail(node, f"input '{name}' is not computed before the node (graph not in topological order?)")
        ins.append(values[name] if name else None)
    outs = _folded(cx, node, handler, ins)
    if outs is None:
        try:
            outs = list(handler(cx, node, ins))
        except LoweringError:
            raise
        except Exception as exc:  # TensorFlow's own complaint, tied to the node
            cx.fail(node, f"{type(exc).__name__}: {_line(exc)}")
    if len(outs) > len(node.output):
        cx.fail(node, f"the handler returned {len(outs)} outputs for {len(node.output)}")
    for name, v in zip(node.output, [*outs, *[None] * (len(node.output) - len(outs))]):
        if name:
            values[name] = v


def run_graph(cx: Ctx, graph: Any, values: dict[str, V | None]) -> None:
    """Every node of ``graph`` in order (control-flow handlers call it for their bodies)."""
    for init in graph.initializer:
        from onnx import numpy_helper

        values[init.name] = cx.const(numpy_helper.to_array(init))
    for node in graph.node:
        run_node(cx, node, values)


def _folded(cx: Ctx, node: Any, handler: Any, ins: Sequence[V | None]) -> list[V | None] | None:
    """The node's outputs as constants when all its inputs are known (run eagerly), else None."""
    live = [v for v in ins if v is not None]
    if not live or node.op_type in NO_FOLD:
        return None
    arrays = [cx.static(v) for v in live]
    if any(a is None for a in arrays):
        return None
    tf = cx.tf
    try:
        with tf.init_scope():
            eager = [None if v is None else cx.const(cx.static(v)) for v in ins]
            outs = list(handler(cx, node, eager))
            results = [None if o is None else cx.static(o) for o in outs]
    except LoweringError:
        raise
    except Exception:  # let the graph-mode run raise it, with its message
        return None
    if any(r is None and o is not None for r, o in zip(results, outs)):
        return None
    budget = sum(int(a.size) for a in arrays) * 4 + FOLD_GROWTH
    if sum(int(r.size) for r in results if r is not None) > budget:
        return None  # a big constant (Expand, ConstantOfShape): computed at run time instead
    return [None if r is None else cx.const(r) for r in results]


def _line(exc: BaseException) -> str:
    from ..messages import _first_line

    return _first_line(exc)


def _signature(tf: Any, inputs: Sequence[TensorSpec], layout: str, taken: set[str]
               ) -> tuple[list[Any], list[TensorSpec], dict[str, tuple[int, ...]]]:
    sig, specs, perms = [], [], {}
    for s in inputs:
        name = _safe(s.name, taken)
        dims = tuple(d if isinstance(d, int) and d > 0 else None for d in (s.shape or ()))
        perm = channels_last(len(dims)) if layout == "nhwc" and len(dims) in _LAYOUT_NAMES else None
        phys = tuple(dims[p] for p in perm) if perm else dims
        try:
            dtype = tf.as_dtype(s.dtype)
        except TypeError:
            raise LoweringError(f"input '{s.name}' has dtype {s.dtype}, which TensorFlow has no dtype for") from None
        if dtype == tf.string:
            raise LoweringError(f"input '{s.name}' holds strings, which the lowering does not take (TF.js has none)")
        sig.append(tf.TensorSpec(list(phys) if s.shape is not None else None, dtype, name=name))
        shown = tuple((s.shape or ())[p] for p in perm) if perm else s.shape
        specs.append(TensorSpec(name, shown, s.dtype, _LAYOUT_NAMES.get(len(dims)) if perm else s.layout,
                                s.int_range))
        if perm:
            perms[name] = perm
    return sig, specs, perms


def _safe(name: str, taken: set[str]) -> str:
    from ...tfjs.graph import safe_name

    return safe_name(name, taken)


def lower(model: Any, inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec], *, layout: str = "source",
          mark_all: bool = False) -> Lowered:
    """The ONNX model as a frozen TensorFlow graph; see the module docstring. ``mark_all``: every value
    (node outputs, in graph order) is an output too, for finding the first diverging node."""
    import numpy as np

    tf = require("tensorflow")
    missing = missing_ops(model)
    if missing:
        raise LoweringError("the lowering has no handler for " + ", ".join(f"{o} (opset {v})" for o, v in missing))
    sets = opsets(model)
    taken: set[str] = set()
    sig, in_specs, perms = _signature(tf, inputs, layout, taken)
    wanted = [o.name for o in outputs]
    if mark_all:
        wanted += [n for node in model.graph.node for n in node.output if n and n not in wanted]
    produced: list[str] = []
    stats: dict[str, int] = {}

    def fn(*args: Any) -> list[Any]:
        cx = Ctx(tf, np, sets[""], sets)
        values: dict[str, V | None] = {}
        for s, spec, arg in zip(inputs, in_specs, args):
            values[s.name] = V(arg, perms.get(spec.name))
        run_graph(cx, model.graph, values)
        res = []
        for name in wanted:
            v = values.get(name)
            if v is None:
                if name in {o.name for o in outputs}:
                    raise LoweringError(f"graph output '{name}' is not computed")
                continue
            produced.append(name)
            res.append(tf.identity(cx.onnx(v)))
        stats["transposes"] = cx.transposes
        return res

    graph_def, frozen, out_tensors = _freeze(tf, fn, sig, [s.name for s in in_specs])
    by_name = {o.name: o for o in outputs}
    out_specs = []
    for name, t in zip(produced, frozen.outputs):
        o = by_name.get(name)
        out_specs.append(TensorSpec(_safe(name, taken), o.shape if o else _dims(t), o.dtype if o else t.dtype.name))
    from ..naming import rename_outputs

    rename_outputs(graph_def, out_tensors, [s.name for s in out_specs])
    notes = {"converter": "convertkit lowering", "transposes_added": stats.get("transposes", 0)}
    return Lowered(graph_def, tuple(in_specs), tuple(out_specs), frozen, notes, perms, tuple(produced))


def _dims(t: Any) -> tuple[Any, ...] | None:
    if t.shape.rank is None:
        return None
    return tuple(d if d is not None else f"d{i}" for i, d in enumerate(t.shape.as_list()))


def _freeze(tf: Any, fn: Any, sig: Sequence[Any], in_names: Sequence[str]) -> tuple[Any, Any, list[str]]:
    """Trace ``fn`` once and freeze it (as from_onnx.py freezes onnx2tf's model)."""
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    concrete = tf.function(fn, input_signature=list(sig), autograph=False).get_concrete_function()
    frozen = convert_variables_to_constants_v2(concrete, lower_control_flow=False, aggressive_inlining=True)
    graph_def = frozen.graph.as_graph_def()
    got = [t.name.split(":")[0] for t in frozen.inputs if t.dtype != tf.resource]
    if got != list(in_names):
        raise LoweringError(f"the frozen graph's inputs are {got}, expected {list(in_names)}")
    return graph_def, frozen, [t.name for t in frozen.outputs]


def feeds_for(lowered: Lowered, feeds: Mapping[str, Any], names: Sequence[str]) -> list[Any]:
    """ONNX-order arrays (by ONNX input name, ``names`` in input order) -> the frozen fn's arguments."""
    import numpy as np

    tf = require("tensorflow")
    out = []
    for spec, name in zip(lowered.inputs, names):
        perm = lowered.input_perms.get(spec.name)
        arr = np.asarray(feeds[name])
        out.append(tf.constant(np.transpose(arr, perm) if perm else arr))
    return out
