"""Constants and shape ops: Constant, ConstantOfShape, Shape, Size, Reshape, Flatten, Squeeze,
Unsqueeze, Transpose, Expand, Tile, Range. Shapes are int64 in ONNX order; where every dim is known
the result is a constant (the walk then folds the arithmetic that follows); dynamic dims are read
with tf.shape at run time. Transpose, Squeeze and Unsqueeze only relabel the layout (no data moves)."""

from __future__ import annotations

from typing import Any

from .registry import op
from .values import V, inverse, is_identity, normal


def _input_or_attr(cx: Any, node: Any, ins: list[V | None], index: int, name: str) -> Any:
    """An attribute that later opsets moved to an input (axes, split, ...): a static list, or None."""
    if len(ins) > index and ins[index] is not None:
        value = cx.static(ins[index])
        if value is None:
            cx.fail(node, f"'{name}' must be known at conversion time")
        return [int(a) for a in value.reshape(-1)]
    got = cx.attr(node, name)
    return None if got is None else [int(a) for a in got]


@op("Constant")
def constant(cx: Any, node: Any, ins: list[V | None]) -> list[V]:
    np = cx.np
    for name, dtype in (("value", None), ("value_float", np.float32), ("value_floats", np.float32),
                        ("value_int", np.int64), ("value_ints", np.int64)):
        value = cx.attr(node, name)
        if value is not None:
            return [cx.const(np.asarray(value, dtype=dtype) if dtype else value)]
    cx.fail(node, "only tensor, float(s) and int(s) constants are supported (TF.js has no strings)")


@op("ConstantOfShape", since=9)
def constant_of_shape(cx: Any, node: Any, ins: list[V | None]) -> list[V]:
    np, tf = cx.np, cx.tf
    value = cx.attr(node, "value")
    value = np.zeros(1, np.float32) if value is None else value
    fill = tf.constant(value.reshape(()), dtype=tf.as_dtype(value.dtype))
    shape = cx.static(ins[0])
    dims = [int(d) for d in shape] if shape is not None else cx.onnx(ins[0])
    return [V(tf.fill(dims, fill))]


@op("Shape")
def shape(cx: Any, node: Any, ins: list[V | None]) -> list[V]:
    x = ins[0]
    full = cx.shape(x)
    rank = x.rank
    start, end = cx.attr(node, "start", 0), cx.attr(node, "end")
    if start == 0 and end is None:
        return [V(full)]
    if rank is None:
        return [V(full[start:end])]
    lo, hi = slice(start, end).indices(rank)[:2]
    return [V(full[lo:max(lo, hi)])]


@op("Size")
def size(cx: Any, node: Any, ins: list[V | None]) -> list[V]:
    x = ins[0]
    dims = x.t.shape.as_list() if x.t.shape.rank is not None else None
    if dims is not None and None not in dims:
        return [cx.const(cx.np.asarray(int(cx.np.prod(dims, dtype=cx.np.int64)), cx.np.int64))]
    return [V(cx.tf.size(x.t, out_type=cx.tf.int64))]


def _dims(cx: Any, v: V) -> list[Any]:
    """ONNX-order dims: ints where known, scalar int64 tensors where dynamic."""
    tf = cx.tf
    known = v.t.shape.as_list()
    phys = [d if d is not None else None for d in known]
    dyn = tf.shape(v.t, out_type=tf.int64) if None in phys else None
    order = inverse(v.perm) if v.perm else range(len(phys))
    return [phys[i] if phys[i] is not None else dyn[i] for i in order]


def _as_shape(cx: Any, dims: list[Any]) -> Any:
    """A list of ints and scalar tensors -> a shape argument (a list of ints when all are known)."""
    if all(isinstance(d, int) for d in dims):
        return dims
    tf = cx.tf
    return tf.stack([tf.cast(d, tf.int64) if not isinstance(d, int) else tf.constant(d, tf.int64) for d in dims])


@op("Reshape", since=5)
def reshape(cx: Any, node: Any, ins: list[V | None]) -> list[V]:
    tf = cx.tf
    x, target = ins[0], ins[1]
    data = cx.onnx(x)
    allowzero = cx.attr(node, "allowzero", 0)
    want = cx.static(target)
    if want is not None:
        dims: list[Any] = [int(d) for d in want]
        if not allowzero and 0 in dims:
            have = _dims(cx, V(data))
            dims = [have[i] if d == 0 else d for i, d in enumerate(dims)]
        return [V(tf.reshape(data, _as_shape(cx, dims)))]
    shape_t = tf.cast(cx.onnx(target), tf.int64)
    n = shape_t.shape.as_list()[0] if shape_t.shape.rank == 1 else None
    if not allowzero and n is not None and x.rank is not None:
        have = tf.shape(data, out_type=tf.int64)
        have = tf.concat([have, tf.ones([max(0, n - x.rank)], tf.int64)], 0)[:n]
        shape_t = tf.where(tf.equal(shape_t, 0), have, shape_t)
    return [V(tf.reshape(data, shape_t))]


@op("Flatten")
def flatten(cx: Any, node: Any, ins: list[V | None]) -> list[V]:
    tf = cx.tf
    x = ins[0]
    rank = x.rank
    axis = cx.attr(node, "axis", 1)
    axis = axis + rank if axis < 0 else axis
    dims = _dims(cx, x)
    lead, rest = dims[:axis], dims[axis:]
    np = cx.np
    if all(isinstance(d, int) for d in rest):  # the usual case (a dynamic batch only): [-1, known]
        return [V(tf.reshape(cx.onnx(x), [-1 if lead else 1, int(np.prod(rest, dtype=np.int64))]))]
    if all(isinstance(d, int) for d in lead):
        return [V(tf.reshape(cx.onnx(x), [int(np.prod(lead, dtype=np.int64)), -1]))]
    first = tf.reduce_prod(tf.stack([tf.cast(d, tf.int64) for d in lead]))
    return [V(tf.reshape(cx.onnx(x), tf.stack([first, tf.constant(-1, tf.int64)])))]


def _runtime_axes(cx: Any, ins: list[V | None]) -> Any:
    """Axes given as a run-time input (the rank change is still known: their count is static)."""
    if len(ins) > 1 and ins[1] is not None and cx.static(ins[1]) is None and ins[1].t.shape.is_fully_defined():
        return cx.tf.cast(cx.tf.reshape(cx.onnx(ins[1]), [-1]), cx.tf.int64)
    return None


def _squeeze_dynamic(cx: Any, x: V, axes: Any) -> V:
    tf = cx.tf
    rank = x.rank
    axes = tf.where(axes < 0, axes + rank, axes)
    keep = tf.logical_not(tf.reduce_any(tf.equal(tf.range(rank, dtype=tf.int64)[:, None], axes[None, :]), 1))
    data = cx.onnx(x)
    return V(tf.reshape(data, tf.boolean_mask(tf.shape(data, out_type=tf.int64), keep)))


def _unsqueeze_dynamic(cx: Any, x: V, axes: Any) -> V:
    tf = cx.tf
    out_rank = x.rank + axes.shape.as_list()[0]
    axes = tf.where(axes < 0, axes + out_rank, axes)
    new = tf.reduce_any(tf.equal(tf.range(out_rank, dtype=tf.int64)[:, None], axes[None, :]), 1)
    src = tf.clip_by_value(tf.cumsum(tf.cast(tf.logical_not(new), tf.int64)) - 1, 0, max(x.rank - 1, 0))
    data = cx.onnx(x)
    have = tf.concat([tf.shape(data, out_type=tf.int64), tf.ones([1], tf.int64)], 0)
    return V(tf.reshape(data, tf.where(new, tf.ones_like(src), tf.gather(have, src))))


@op("Squeeze")
def squeeze(cx: Any, node: Any, ins: list[V | None]) -> list[V]:
    x = ins[0]
    dynamic = _runtime_axes(cx, ins)
    if dynamic is not None and x.rank is not None:
        return [_squeeze_dynamic(cx, x, dynamic)]
    axes = _input_or_attr(cx, node, ins, 1, "axes")
    rank = x.rank
    if axes is None:
        known = x.t.shape.as_list()
        if None in known:  # which dims are 1 is known only at run time: ONNX order, TF decides
            return [V(cx.tf.squeeze(cx.onnx(x)))]
        phys = [i for i, d in enumerate(known) if d == 1]
        axes = [x.perm[i] if x.perm else i for i in phys]
    gone = sorted(a + rank if a < 0 else a for a in axes)
    out = cx.tf.squeeze(x.t, [cx.axis(x, a) for a in gone]) if gone else cx.tf.identity(x.t)
    perm = None
    if x.perm:  # the remaining axes keep their physical order, renumbered
        perm = normal([p - sum(g < p for g in gone) for p in x.perm if p not in gone])
    return [V(out, perm)]


@op("Unsqueeze")
def unsqueeze(cx: Any, node: Any, ins: list[V | None]) -> list[V]:
    tf = cx.tf
    x = ins[0]
    dynamic = _runtime_axes(cx, ins)
    if dynamic is not None and x.rank is not None:
        return [_unsqueeze_dynamic(cx, x, dynamic)]
    axes = _input_or_attr(cx, node, ins, 1, "axes") or []
    out_rank = x.rank + len(axes)
    new = sorted(a + out_rank if a < 0 else a for a in axes)
    old = [i for i in range(out_rank) if i not in new]  # ONNX axis j of x becomes old[j]
    if is_identity(x.perm):
        t = x.t
        for a in new:
            t = tf.expand_dims(t, a)
        return [V(t)]
    t = x.t  # a relabelled layout: the unit axes go last physically, no data moves
    for _ in new:
        t = tf.expand_dims(t, -1)
    return [V(t, normal([old[p] for p in x.perm] + new))]


@op("Transpose")
def transpose(cx: Any, node: Any, ins: list[V | None]) -> list[V]:
    """Only the layout label changes: output ONNX axis i is input ONNX axis perm[i]; consumers that
    need ONNX order materialise it (a Transpose sinks into the next layout-bound op where they agree)."""
    x = ins[0]
    rank = x.rank
    perm = cx.attr(node, "perm") or list(reversed(range(rank)))
    back = inverse(perm)
    have = x.perm or tuple(range(rank))
    return [V(cx.tf.identity(x.t), normal([back[p] for p in have]))]


@op("Expand", since=8)
def expand(cx: Any, node: Any, ins: list[V | None]) -> list[V]:
    tf, np = cx.tf, cx.np
    x, shape_v = ins[0], ins[1]
    want = cx.static(shape_v)
    known = x.t.shape.as_list() if x.t.shape.rank is not None else None
    if want is not None and x.perm and len(want) == x.rank and known is not None and None not in known:
        onnx_dims = [known[i] for i in inverse(x.perm)]
        out = np.broadcast_shapes(tuple(onnx_dims), tuple(int(d) for d in want))
        return [V(tf.broadcast_to(x.t, [out[p] for p in x.perm]), x.perm)]
    data = cx.onnx(x)
    if want is not None and known is not None and None not in known:
        return [V(tf.broadcast_to(data, np.broadcast_shapes(tuple(data.shape.as_list()),
                                                           tuple(int(d) for d in want))))]
    target = tf.broadcast_dynamic_shape(tf.shape(data, out_type=tf.int64), tf.cast(cx.onnx(shape_v), tf.int64))
    return [V(tf.broadcast_to(data, target))]


@op("Tile", since=6)
def tile(cx: Any, node: Any, ins: list[V | None]) -> list[V]:
    tf = cx.tf
    x = ins[0]
    reps = cx.static(ins[1])
    if reps is not None:
        reps = [int(r) for r in reps]
        return [V(tf.tile(x.t, [reps[p] for p in x.perm] if x.perm else reps), x.perm)]
    return [V(tf.tile(cx.onnx(x), cx.onnx(ins[1])))]


@op("Range", since=11)
def range_(cx: Any, node: Any, ins: list[V | None]) -> list[V]:
    tf = cx.tf
    start, limit, delta = (cx.onnx(v) for v in ins[:3])
    return [V(tf.range(start, limit, delta, dtype=start.dtype))]
