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
``sqrt(head size)``): ``onnx_fold.fold_shape_arithmetic`` makes those constants where measuring
shows them (``-1`` for a dynamic batch in a target), so that every other dim is known again.

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
