"""Prepare an ONNX graph (and onnx2tf's surroundings) for onnx2tf, which guesses where its shape
bookkeeping loses track.

onnx2tf converts NCHW graphs to channels-last TensorFlow and follows each tensor's layout with
heuristics; two of them go silently wrong on attention blocks (``torch.nn.MultiheadAttention``
from either torch.onnx exporter), off by ~1 max abs while its own per-op check says "Matches":

- a ``Transpose`` whose ``perm`` moves axis 0 (``[2, 0, 1, 3]``: heads back to sequence-first) is
  not applied as written: onnx2tf rebuilds the permutation by matching dimension SIZES between its
  input and the ONNX output shape, which picks the wrong axes whenever two dims are equal (batch 2,
  heads 4, sequence 4). :func:`pin_axis0_transposes` wraps each in ``Unsqueeze(0)`` ->
  ``Transpose([0, p+1...])`` -> ``Squeeze(0)``: with axis 0 fixed onnx2tf applies the perm itself;
- where a Reshape's layout is ambiguous, onnx2tf picks the input permutation that best matches
  onnxruntime on a dummy sample, which is all ones unless it is given data: every permutation
  matches then, and the first wins. :func:`sample_data` writes seeded random inputs for it
  (``custom_input_op_name_np_data_path``).

With dynamic dims it also loses track of shape arithmetic: ``view``s whose target is computed from
the input's shape (``Shape -> Mul/Concat -> Reshape``) and values computed from shapes (attention's
``sqrt(head size)``): :func:`fold_shape_arithmetic` makes those constants where measuring shows
them (``-1`` for a dynamic batch in a target), so that every other dim is known again.

Also: ops onnx2tf has no converter for are named at once (:func:`check_ops`); its calibration
download is replaced by local data (:func:`offline`); inputs are renamed to plain identifiers
(onnx2tf rewrites ``:`` and ``/`` in names, and its custom-data option looks inputs up by name);
the caller maps them back by position.

Stdlib at import time; functions take the ``onnx`` module and numpy where they need them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from ...core import Dim, TensorSpec
from ...errors import StageError

INPUT_PREFIX = "ck_input_"
#: onnx2tf matches the time-major transposes around these itself: they stay as they are
RNN_OPS = {"RNN", "GRU", "LSTM"}


def fix_dims(onnx: Any, model: Any, shapes: Mapping[str, tuple[Dim, ...]]) -> Any:
    """A copy of ``model`` whose graph inputs have ``shapes`` (ints fixed; inner shapes re-inferred)."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    changed = False
    for inp in copy.graph.input:
        want = shapes.get(inp.name)
        if want is None:
            continue
        for dim, d in zip(inp.type.tensor_type.shape.dim, want):
            if isinstance(d, int) and not dim.HasField("dim_value"):
                dim.dim_value = d
                changed = True
    if changed:
        del copy.graph.value_info[:]
        for out in copy.graph.output:
            for dim in out.type.tensor_type.shape.dim:
                if dim.HasField("dim_param"):
                    dim.Clear()
    return copy


def simplify(onnx: Any, model: Any) -> tuple[Any, dict[str, int] | None]:
    """onnxsim in-process, once (onnx2tf runs its CLI three times in subprocesses, which also need
    it on PATH, and rewrites its input file with the result). Optional: without onnxsim, or when it
    fails, the model goes on as it is."""
    try:
        import onnxsim
    except ImportError:
        return model, None
    from ...quiet import quiet

    try:
        with quiet():
            simplified, ok = onnxsim.simplify(model, check_n=0)
    except Exception:  # a simplifier failure is not a conversion failure
        return model, None
    if not ok:
        return model, None
    return simplified, {"nodes_before": len(model.graph.node), "nodes_after": len(simplified.graph.node)}


def pin_axis0_transposes(onnx: Any, model: Any) -> int:
    """Rewrite, in place, every Transpose (rank 3-5) whose perm moves axis 0 as
    ``Unsqueeze(0) -> Transpose([0] + [p + 1 ...]) -> Squeeze(0)``, except next to an RNN op (onnx2tf
    handles the time-major transposes there by pattern). Returns how many."""
    import numpy as np

    graph = model.graph
    nodes, count = [], 0
    axes = None
    producers = {o: n.op_type for n in graph.node for o in n.output}
    consumers: dict[str, set[str]] = {}
    for n in graph.node:
        for i in n.input:
            consumers.setdefault(i, set()).add(n.op_type)
    taken = {n for node in graph.node for n in (*node.input, *node.output)} | {i.name for i in graph.initializer}
    for node in graph.node:
        perm = next((list(a.ints) for a in node.attribute if a.name == "perm"), None)
        if node.op_type != "Transpose" or node.domain not in ("", "ai.onnx") or not perm or perm[0] == 0 \
                or not 3 <= len(perm) <= 5 or producers.get(node.input[0]) in RNN_OPS \
                or consumers.get(node.output[0], set()) & RNN_OPS:
            nodes.append(node)
            continue
        if axes is None:
            axes = _unique(taken, "ck_axis0")
            graph.initializer.append(onnx.numpy_helper.from_array(np.array([0], np.int64), axes))
        base = node.name or node.output[0]
        lead, moved = _unique(taken, f"{base}/ck_lead"), _unique(taken, f"{base}/ck_moved")
        nodes += [onnx.helper.make_node("Unsqueeze", [node.input[0], axes], [lead], name=f"{base}/ck_unsqueeze"),
                  onnx.helper.make_node("Transpose", [lead], [moved], name=base, perm=[0, *(p + 1 for p in perm)]),
                  onnx.helper.make_node("Squeeze", [moved, axes], [node.output[0]], name=f"{base}/ck_squeeze")]
        count += 1
    if count:
        del graph.node[:]
        graph.node.extend(nodes)
    return count


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
    import numpy as np

    names = sorted({d for dims in shapes.values() for d in dims if not isinstance(d, int)})
    graph = model.graph
    consts = {i.name for i in graph.initializer}
    if not names:
        return {}
    shape_only = set(consts)  # tensors computed from constants and tensor shapes alone
    for node in graph.node:
        if node.op_type in _VALUE_SHAPED or node.domain not in ("", "ai.onnx"):
            return {}
        args = [node.input[i] for i in _SHAPE_ARGS.get(node.op_type, (1,) if node.op_type.startswith("Reduce") else ())
                if i < len(node.input) and node.input[i]]
        if any(a not in shape_only for a in args):
            return {}  # a shape read from values: measuring at a few sizes would not tell
        random = node.op_type.startswith("Random") or node.op_type in _RANDOM
        if node.op_type in ("Shape", "Size", "Constant") or (
                node.input and all(i in shape_only for i in node.input if i) and not random):
            shape_only.update(node.output)
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
    steady = {t: runs[0] for t, runs in zip(values, measured[len(targets):])
              if runs[0].size <= FOLD_MAX_ELEMENTS and all(r.shape == runs[0].shape and np.array_equal(r, runs[0])
                                                           for r in runs)}
    if steady:  # the same at sizes up to 4: once more at larger ones (floor divisions, clipping), but a
        # batch (a dim only ever at axis 0) a little larger only: a batch of 15 images can take GBs
        batch_like = {n for n in names if all(d != n for dims in shapes.values() for d in dims[1:])}
        larger = {n: base[n] + 2 if n in batch_like else 15 + 2 * k for k, n in enumerate(names)}
        large = _measure(onnx, model, specs, shapes, [(larger, 5)], list(steady))
        steady = {t: v for (t, v), runs in zip(steady.items(), large or [])
                  if runs[0].shape == v.shape and np.array_equal(runs[0], v)}
    inputs = {i.name for i in graph.input} - consts
    was_read = inputs & {i for n in all_nodes(graph) for i in n.input}
    taken = {n for node in graph.node for n in (*node.input, *node.output)} | consts
    changed: list[tuple[Any, int, str]] = []  # (node, input index, what it read before)
    added = 0
    counts = {RESHAPE_FOLD: 0, VALUE_FOLD: 0}
    for node, runs in zip(targets, measured):
        dims = [r.shape for r in runs]  # the first and the last run: the same sizes, other data
        if len({len(d) for d in dims}) != 1 or any(0 in d for d in dims) or dims[-1] != dims[0]:
            continue
        varying = [i for i, col in enumerate(zip(*dims)) if len(set(col)) > 1]
        if len(varying) > 1:
            continue
        name = _unique(taken, f"{node.name or node.output[0]}/ck_shape")
        graph.initializer.append(onnx.numpy_helper.from_array(
            np.array([-1 if i in varying else d for i, d in enumerate(dims[0])], np.int64), name))
        added += 1
        changed.append((node, 1, node.input[1]))
        node.input[1] = name
        counts[RESHAPE_FOLD] += 1
    for tensor, first in steady.items():
        name = _unique(taken, f"{tensor}/ck_const")
        graph.initializer.append(onnx.numpy_helper.from_array(np.asarray(first), name))
        added += 1
        for node in graph.node:
            if not all(o in shape_only for o in node.output):
                for j, i in enumerate(node.input):
                    if i == tensor:
                        changed.append((node, j, i))
                        node.input[j] = name
        counts[VALUE_FOLD] += 1
    live = _live_nodes(graph)
    if changed and not was_read <= {i for m in live for n in _with_subgraphs(m) for i in n.input}:  # read for its shape
        for node, j, old in reversed(changed):
            node.input[j] = old
        del graph.initializer[len(graph.initializer) - added:]
        return {}
    if changed:
        del graph.node[:]
        graph.node.extend(live)
        read = {i for n in all_nodes(graph) for i in n.input} | {i.name for i in graph.input}
        inits = [i for i in graph.initializer if i.name in read]
        del graph.initializer[:]
        graph.initializer.extend(inits)
        del graph.value_info[:]
        with contextlib.suppress(Exception):  # onnx2tf infers what it can itself
            graph.value_info.extend(onnx.shape_inference.infer_shapes(model).graph.value_info)
    return {k: v for k, v in counts.items() if v}


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


def rename_inputs(model: Any) -> list[str]:
    """Give the graph inputs plain names (``ck_input_0`` ...), in place; returns the new names in order."""
    inits = {i.name for i in model.graph.initializer}
    new_names = []
    mapping = {}
    for i, inp in enumerate(v for v in model.graph.input if v.name not in inits):
        new = f"{INPUT_PREFIX}{i}"
        mapping[inp.name] = new
        inp.name = new
        new_names.append(new)
    for node in all_nodes(model.graph):
        for j, name in enumerate(node.input):
            if name in mapping:
                node.input[j] = mapping[name]
    for out in model.graph.output:  # an input passed straight through: an Identity keeps the output's name
        if out.name in mapping:
            model.graph.node.append(_identity(mapping[out.name], out.name))
    return new_names


def sample_data(specs: Sequence[TensorSpec], shapes: Mapping[str, tuple[Dim, ...]], names: Sequence[str],
                sizes: Mapping[str, int], work: Path, seed: int = 0) -> list[list[str]]:
    """Seeded inputs for onnx2tf's dummy inference, one ``.npy`` per input (ONNX layout; dynamic dims
    at ``sizes``), as its ``custom_input_op_name_np_data_path`` takes them."""
    import numpy as np

    from ...parity.inputs import DEFAULT_INT_RANGE

    rng = np.random.default_rng(seed)
    out = []
    for spec, name in zip(specs, names):
        shape = [d if isinstance(d, int) else sizes.get(str(d), 1) for d in shapes[spec.name]]
        if spec.dtype == "bool":
            arr = rng.integers(0, 2, size=shape).astype(bool)
        elif spec.dtype.startswith(("int", "uint")):
            lo, hi = spec.int_range or DEFAULT_INT_RANGE
            arr = rng.integers(lo, hi, size=shape).astype(spec.dtype)
        else:
            arr = rng.standard_normal(shape).astype(spec.dtype)
        path = work / f"{name}.npy"
        np.save(path, arr)
        out.append([name, str(path)])
    return out


def check_ops(model: Any, stage: str) -> None:
    """StageError naming every op of ``model`` onnx2tf has no converter for (one module per op in
    ``onnx2tf/ops``), all at once, with a node of each."""
    import importlib.util

    spec = importlib.util.find_spec("onnx2tf.ops")
    if spec is None or not spec.submodule_search_locations:
        return
    known = {p.stem for d in spec.submodule_search_locations for p in Path(d).glob("*.py")}
    missing: dict[str, str] = {}
    for node in all_nodes(model.graph):
        if node.op_type not in known:
            missing.setdefault(node.op_type, node.name or node.output[0])
    if missing:
        nodes = ", ".join(f"{op} (node '{n}')" for op, n in sorted(missing.items()))
        raise StageError(stage, f"onnx2tf has no converter for op(s): {nodes}",
                         hint="replace them in the model with supported ops, or convert to onnx only")


@contextlib.contextmanager
def offline(onnx2tf: Any) -> Iterator[None]:
    """Keep onnx2tf off the network: for static-batch 3-channel 4-D inputs it downloads a sample
    image file (``calibration_image_sample_data_20x128x128x3_float32.npy``) to drive its own
    per-op check. Seeded local data takes its place."""
    import numpy as np

    from onnx2tf.utils import common_functions

    def local_sample_images() -> Any:
        return np.random.default_rng(0).random((20, 128, 128, 3), dtype=np.float32)

    mods = [m for m in (getattr(onnx2tf, "onnx2tf", None), common_functions) if m is not None]
    saved = [(m, getattr(m, "download_test_image_data", None)) for m in mods]
    for m, _ in saved:
        m.download_test_image_data = local_sample_images
    try:
        yield
    finally:
        for m, fn in saved:
            if fn is not None:
                m.download_test_image_data = fn


def _identity(src: str, dst: str) -> Any:
    from onnx import helper

    return helper.make_node("Identity", [src], [dst], name=f"{dst}/ck_passthrough")


def all_nodes(graph: Any) -> list[Any]:
    """Nodes of the graph and of its subgraphs (If/Loop bodies read outer names too)."""
    return [n for node in graph.node for n in _with_subgraphs(node)]


def _with_subgraphs(node: Any) -> list[Any]:
    """``node`` and the nodes of its subgraphs."""
    out = [node]
    for attr in node.attribute:
        for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
            out.extend(all_nodes(sub))
    return out


def _unique(taken: set[str], base: str) -> str:
    name, i = base, 1
    while name in taken:
        name, i = f"{base}_{i}", i + 1
    taken.add(name)
    return name
