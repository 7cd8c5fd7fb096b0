"""Fold the shape arithmetic onnx2tf loses track of into constants, where measuring shows what it is.

With dynamic dims onnx2tf loses track of ``view``s whose target is computed from the input's shape
(``Shape -> Mul/Concat -> Reshape``) and of values computed from shapes (attention's
``sqrt(head size)``): :func:`fold_shape_arithmetic` makes those constants (``-1`` for a dynamic
batch in a target), so that every other dim is known again. Split out of onnx_prep.py, which
prepares the rest of the graph for onnx2tf.

Stdlib at import time; functions take the ``onnx`` module and import numpy where they need it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ...core import Dim, TensorSpec
from .onnx_prep import _unique, _with_subgraphs, all_nodes

#: ops whose output shape can depend on input values, whatever reads them
_VALUE_SHAPED = {"NonZero", "Unique", "Compress", "NonMaxSuppression", "Loop", "Scan", "If", "StringSplit",
                 "SplitToSequence", "SequenceAt", "ConcatFromSequence"}
#: ops whose output shape is read from input tensors: those inputs, by position (Reduce*: axes, 1)
_SHAPE_ARGS = {"Reshape": (1,), "Expand": (1,), "Tile": (1,), "ConstantOfShape": (0,), "Range": (0, 1, 2),
               "Slice": (1, 2, 3, 4), "Pad": (1, 3), "Resize": (1, 2, 3), "Upsample": (1,), "TopK": (1,),
               "OneHot": (1,), "Split": (1,), "Squeeze": (1,), "Unsqueeze": (1,), "CenterCropPad": (1, 2),
               "Col2Im": (1, 2), "MaxUnpool": (2,), "STFT": (1, 3), "DFT": (1, 2), "AffineGrid": (1,),
               "HannWindow": (0,), "HammingWindow": (0,), "BlackmanWindow": (0,), "MelWeightMatrix": (0, 1, 2)}
_RANDOM = {"Bernoulli", "Multinomial"}  # and Random*

#: folded values larger than this stay computed (a constant that size would grow the model)
FOLD_MAX_ELEMENTS = 4096
RESHAPE_FOLD = "Reshape target computed from shapes -> constant, -1 for the dynamic dim"
VALUE_FOLD = "value computed from shapes, the same at every size (e.g. attention's sqrt(head size)) -> constant"


def fold_shape_arithmetic(onnx: Any, model: Any, specs: Sequence[TensorSpec],
                          shapes: Mapping[str, tuple[Dim, ...]]) -> dict[str, int]:
    """Replace shape arithmetic onnx2tf gets wrong by constants, in place, where measuring shows
    what they are; then drop the arithmetic nothing reads any more and infer the inner shapes
    again. Returns how many of each kind (``RESHAPE_FOLD``, ``VALUE_FOLD``), for the notes.

    - A value computed from tensor shapes alone that is the same at every size of the dynamic
      dims becomes a constant: BERT's attention scale ``1/sqrt(head size)`` (Shape -> Slice ->
      Cast -> Sqrt), which onnx2tf computed on a channels-last shape (a [4] where the model has
      a scalar 8: it failed with a dynamic sequence, and was 0.9 off with a dynamic batch).
    - With one dynamic dim left (a dynamic batch, the other dims fixed), every Reshape whose target
      is computed from shapes (``Shape -> Gather/Mul/Concat -> Reshape``: how both torch.onnx
      exporters write ``view``) gets a constant target, ``-1`` where it follows the dynamic dim.

    onnx2tf loses track there: ONNX shape inference cannot see through a computed target, so every
    later tensor has unknown dims and onnx2tf's layout guesses go wrong (BERT's attention Softmax on
    the wrong axis), and it converts ``Shape(start, end)`` of a 3-D+ tensor by turning ``end`` into a
    channels-last axis (``x.shape[0:1]`` becomes ``x.shape[0:2]``). Each candidate is measured with
    onnxruntime with each dynamic dim at three sizes, the others held (so that no two dims move
    together), and again on other data; a value that stays the same is measured once more with every
    dim but a batch at a larger size (15, 17, ...: a floor division or a clip by a small number would
    show) and is folded only if it still does, and has at most 4096 elements. A Reshape target is folded only
    when every position but one stays the same (that one becomes ``-1``, which Reshape infers from
    the element count). Nothing is folded where a shape could depend on input values, or where a
    graph input would no longer be read."""
    names = sorted({d for dims in shapes.values() for d in dims if not isinstance(d, int)})
    graph = model.graph
    consts = {i.name for i in graph.initializer}
    shape_only = _shape_only(graph, consts) if names else None
    if shape_only is None:
        return {}
    targets = [n for n in graph.node if n.op_type == "Reshape" and n.domain in ("", "ai.onnx")
               and len(n.input) > 1 and n.input[1] not in consts] if len(names) == 1 else []
    target_names = {n.input[1] for n in targets}
    # where shape arithmetic meets the model's values: read by a node that computes from values too
    values = list(dict.fromkeys(i for n in graph.node if not all(o in shape_only for o in n.output)
                                for i in n.input if i in shape_only and i not in consts and i not in target_names))
    if not targets and not values:
        return {}
    base = {n: 2 + k for k, n in enumerate(names)}
    configs = [(base, 3)] + [({**base, n: size}, 3) for n in names for size in (base[n] + 1, 1)] + [(base, 4)]
    measured = _measure(onnx, model, specs, shapes, configs, [n.output[0] for n in targets] + values)
    if measured is None:
        return {}
    steady = _steady(onnx, model, specs, shapes, names, base, dict(zip(values, measured[len(targets):])))
    edit = _Edit(graph, consts, was_read=({i.name for i in graph.input} - consts) & {
        i for n in all_nodes(graph) for i in n.input})
    for node, runs in zip(targets, measured):
        edit.fold_target(onnx, node, runs)
    for tensor, first in steady.items():
        edit.fold_value(onnx, tensor, first, shape_only)
    return edit.finish(onnx, model)


def _shape_only(graph: Any, consts: set[str]) -> set[str] | None:
    """The tensors computed from constants and tensor shapes alone; None where a shape is read from
    values (measuring at a few sizes would not tell) or an op's shape depends on values."""
    shape_only = set(consts)
    for node in graph.node:
        if node.op_type in _VALUE_SHAPED or node.domain not in ("", "ai.onnx"):
            return None
        args = [node.input[i] for i in _SHAPE_ARGS.get(node.op_type, (1,) if node.op_type.startswith("Reduce") else ())
                if i < len(node.input) and node.input[i]]
        if any(a not in shape_only for a in args):
            return None
        random = node.op_type.startswith("Random") or node.op_type in _RANDOM
        if node.op_type in ("Shape", "Size", "Constant") or (
                node.input and all(i in shape_only for i in node.input if i) and not random):
            shape_only.update(node.output)
    return shape_only


def _steady(onnx: Any, model: Any, specs: Sequence[TensorSpec], shapes: Mapping[str, tuple[Dim, ...]],
            names: Sequence[str], base: Mapping[str, int], runs_of: Mapping[str, list[Any]]) -> dict[str, Any]:
    """The values that are the same in every run, and again at larger sizes (floor divisions,
    clipping), but a batch (a dim only ever at axis 0) a little larger only: a batch of 15 images
    can take GBs."""
    import numpy as np

    steady = {t: runs[0] for t, runs in runs_of.items()
              if runs[0].size <= FOLD_MAX_ELEMENTS and all(r.shape == runs[0].shape and np.array_equal(r, runs[0])
                                                           for r in runs)}
    if not steady:
        return {}
    batch_like = {n for n in names if all(d != n for dims in shapes.values() for d in dims[1:])}
    larger = {n: base[n] + 2 if n in batch_like else 15 + 2 * k for k, n in enumerate(names)}
    large = _measure(onnx, model, specs, shapes, [(larger, 5)], list(steady))
    return {t: v for (t, v), runs in zip(steady.items(), large or [])
            if runs[0].shape == v.shape and np.array_equal(runs[0], v)}


@dataclass
class _Edit:
    """The folds made to ``graph``, undone all together when a graph input would no longer be read."""

    graph: Any
    consts: set[str]
    was_read: set[str]
    changed: list[tuple[Any, int, str]] = field(default_factory=list)  # (node, input index, what it read)
    added: int = 0
    counts: dict[str, int] = field(default_factory=lambda: {RESHAPE_FOLD: 0, VALUE_FOLD: 0})
    taken: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.taken = {n for node in self.graph.node for n in (*node.input, *node.output)} | self.consts

    def _constant(self, onnx: Any, value: Any, base: str) -> str:
        name = _unique(self.taken, base)
        self.graph.initializer.append(onnx.numpy_helper.from_array(value, name))
        self.added += 1
        return name

    def fold_target(self, onnx: Any, node: Any, runs: list[Any]) -> None:
        """A Reshape target: constant where every position but one stays the same (that one: -1)."""
        import numpy as np

        dims = [r.shape for r in runs]  # the first and the last run: the same sizes, other data
        if len({len(d) for d in dims}) != 1 or any(0 in d for d in dims) or dims[-1] != dims[0]:
            return
        varying = [i for i, col in enumerate(zip(*dims)) if len(set(col)) > 1]
        if len(varying) > 1:
            return
        target = np.array([-1 if i in varying else d for i, d in enumerate(dims[0])], np.int64)
        name = self._constant(onnx, target, f"{node.name or node.output[0]}/ck_shape")
        self.changed.append((node, 1, node.input[1]))
        node.input[1] = name
        self.counts[RESHAPE_FOLD] += 1

    def fold_value(self, onnx: Any, tensor: str, first: Any, shape_only: set[str]) -> None:
        import numpy as np

        name = self._constant(onnx, np.asarray(first), f"{tensor}/ck_const")
        for node in self.graph.node:
            if not all(o in shape_only for o in node.output):
                for j, i in enumerate(node.input):
                    if i == tensor:
                        self.changed.append((node, j, i))
                        node.input[j] = name
        self.counts[VALUE_FOLD] += 1

    def finish(self, onnx: Any, model: Any) -> dict[str, int]:
        """Drop what nothing reads any more and infer inner shapes again; or undo every fold when a
        graph input read before would no longer be read (it was read for its shape)."""
        graph = self.graph
        if not self.changed:
            return {}
        live = _live_nodes(graph)
        if not self.was_read <= {i for m in live for n in _with_subgraphs(m) for i in n.input}:
            for node, j, old in reversed(self.changed):
                node.input[j] = old
            del graph.initializer[len(graph.initializer) - self.added:]
            return {}
        del graph.node[:]
        graph.node.extend(live)
        read = {i for n in all_nodes(graph) for i in n.input} | {i.name for i in graph.input}
        inits = [i for i in graph.initializer if i.name in read]
        del graph.initializer[:]
        graph.initializer.extend(inits)
        del graph.value_info[:]
        with contextlib.suppress(Exception):  # onnx2tf infers what it can itself
            graph.value_info.extend(onnx.shape_inference.infer_shapes(model).graph.value_info)
        return {k: v for k, v in self.counts.items() if v}


def _measure(onnx: Any, model: Any, specs: Sequence[TensorSpec], shapes: Mapping[str, tuple[Dim, ...]],
             configs: Sequence[tuple[Mapping[str, int], int]], tensors: Sequence[str]) -> list[list[Any]] | None:
    """Each of ``tensors`` (its value) in onnxruntime, on one seeded sample per ``(sizes of the
    dynamic dims, seed)`` of ``configs``. None if onnxruntime cannot run the model."""
    import numpy as np

    from ...parity.inputs import concrete_shape, make_feeds

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    outs = {o.name for o in probe.graph.output}
    probe.graph.output.extend(onnx.helper.make_empty_tensor_value_info(t) for t in tensors if t not in outs)
    def feed(at: Mapping[str, int], seed: int) -> dict[str, Any]:
        fixed = [TensorSpec(s.name, concrete_shape(TensorSpec(s.name, tuple(shapes.get(s.name, s.shape or ())), s.dtype),
                                                   dict(at)), s.dtype, int_range=s.int_range) for s in specs]
        return make_feeds(fixed, samples=1, seed=seed)[0]

    feeds = [feed(at, seed) for at, seed in configs]
    try:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        session = ort.InferenceSession(probe.SerializeToString(), opts, providers=["CPUExecutionProvider"])
        wanted = {i.name for i in session.get_inputs()}
        runs = [session.run(list(tensors), {k: v for k, v in f.items() if k in wanted}) for f in feeds]
    except Exception:  # too big to serialize, an op onnxruntime lacks, ...: nothing is folded
        return None
    return [[np.asarray(run[i]) for run in runs] for i in range(len(tensors))]


def _live_nodes(graph: Any) -> list[Any]:
    """The nodes of ``graph`` that the outputs need (each read by the graph's outputs, or by a live node)."""
    read = {o.name for o in graph.output}
    live = []
    for node in reversed(graph.node):  # topological order: readers come after what they read
        if any(o in read for o in node.output):
            live.append(node)
            read.update(i for n in _with_subgraphs(node) for i in n.input)
    return live[::-1]
