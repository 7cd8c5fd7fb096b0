"""Axis-taking data-movement ops: Concat, Split, Slice, Gather, Pad. Their axes (and per-axis lists:
pads, starts/ends) are remapped to physical axes through the value's perm, so a channels-last value
stays channels-last."""

from __future__ import annotations

from typing import Any

from .registry import op
from .values import V, inverse

INT32_MAX = 2**31 - 1  # TF.js narrows int64 to int32: slice bounds beyond it mean "to the end"


@op("Concat", since=4)
def concat(cx: Any, node: Any, ins: list[V | None]) -> list[V]:
    live = [v for v in ins if v is not None]
    ts, perm = cx.broadcast(live)  # all of one rank: brought to one layout
    lead = V(ts[0], perm)
    axis = cx.axis(lead, cx.attr(node, "axis", 0))
    return [V(cx.tf.concat(ts, axis), perm)]


@op("Split", since=2)
def split(cx: Any, node: Any, ins: list[V | None]) -> list[V]:
    tf, np = cx.tf, cx.np
    x = ins[0]
    axis = cx.axis(x, cx.attr(node, "axis", 0))
    n = len(node.output)
    sizes = None
    if len(ins) > 1 and ins[1] is not None:
        sizes = cx.static(ins[1])
        if sizes is None:
            return [V(t, x.perm) for t in tf.split(x.t, cx.onnx(ins[1]), axis=axis, num=n)]
    elif cx.attr(node, "split") is not None:
        sizes = cx.attr(node, "split")
    dim = x.t.shape.as_list()[axis]
    if sizes is None and dim is not None and dim % n:  # opset 18 num_outputs: the last part is smaller
        chunk = -(-dim // n)
        sizes = [chunk] * (n - 1) + [dim - chunk * (n - 1)]
    if sizes is None:
        return [V(t, x.perm) for t in tf.split(x.t, n, axis=axis)]
    return [V(t, x.perm) for t in tf.split(x.t, [int(s) for s in np.asarray(sizes).reshape(-1)], axis=axis)]


def _slice_args(cx: Any, node: Any, ins: list[V | None]) -> tuple[Any, Any, Any, Any]:
    """starts, ends, axes, steps: each a static int list, or (starts/ends/steps) a run-time tensor."""
    if cx.opset < 10:
        starts, ends = cx.attr(node, "starts"), cx.attr(node, "ends")
        return starts, ends, cx.attr(node, "axes"), None

    def arg(i: int) -> Any:
        if len(ins) <= i or ins[i] is None:
            return None
        value = cx.static(ins[i])
        return [int(a) for a in value.reshape(-1)] if value is not None else cx.onnx(ins[i])

    return arg(1), arg(2), arg(3), arg(4)


@op("Slice")
def slice_(cx: Any, node: Any, ins: list[V | None]) -> list[V]:
    """tf.strided_slice clamps bounds as Python slicing does, which is ONNX's clamping."""
    tf = cx.tf
    x = ins[0]
    rank = x.rank
    starts, ends, axes, steps = _slice_args(cx, node, ins)
    n = len(starts) if isinstance(starts, list) else starts.shape.as_list()[0]
    if axes is None:
        axes = list(range(n))
    if steps is None:
        steps = [1] * n
    if not isinstance(axes, list):
        return [V(_slice_dynamic(cx, x, starts, ends, axes, steps), x.perm)]
    phys = [cx.axis(x, a) for a in axes]
    static = all(isinstance(v, list) for v in (starts, ends, steps))
    if static:
        begin, end, stride = [0] * rank, [0] * rank, [1] * rank
        for p, b, e, s in zip(phys, starts, ends, steps):
            begin[p], end[p], stride[p] = (max(min(b, INT32_MAX), -INT32_MAX), max(min(e, INT32_MAX), -INT32_MAX), s)
        mask = sum(1 << i for i in range(rank) if i not in phys)
        return [V(tf.strided_slice(x.t, begin, end, stride, begin_mask=mask, end_mask=mask), x.perm)]
    return [V(_slice_dynamic(cx, x, starts, ends, tf.constant(phys, tf.int64), steps, physical=True), x.perm)]


def _slice_dynamic(cx: Any, x: V, starts: Any, ends: Any, axes: Any, steps: Any, physical: bool = False) -> Any:
    """Run-time bounds or axes: full-rank begin/end/stride vectors scattered at run time (axes not
    sliced run 0..INT32_MAX step 1, which is the whole axis)."""
    tf = cx.tf
    rank = x.rank
    axes = tf.cast(tf.reshape(axes, [-1]), tf.int64)
    if not physical:
        axes = tf.where(axes < 0, axes + rank, axes)
        if x.perm:
            axes = tf.gather(tf.constant(inverse(x.perm), tf.int64), axes)
    idx = axes[:, None]

    def vec(values: Any, fill: int) -> Any:
        t = tf.constant(values, tf.int64) if isinstance(values, list) else tf.cast(values, tf.int64)
        t = tf.cast(tf.clip_by_value(tf.reshape(t, [-1]), -INT32_MAX, INT32_MAX), tf.int32)
        return tf.tensor_scatter_nd_update(tf.fill([rank], fill), idx, t)

    return tf.strided_slice(x.t, vec(starts, 0), vec(ends, INT32_MAX), vec(steps, 1))


@op("Gather")
def gather(cx: Any, node: Any, ins: list[V | None]) -> list[V]:
    tf, np = cx.tf, cx.np
    x, idx = ins[0], ins[1]
    onnx_axis = cx.attr(node, "axis", 0)
    onnx_axis = onnx_axis + x.rank if onnx_axis < 0 else onnx_axis
    known = cx.static(idx)
    dim = x.t.shape.as_list()[cx.axis(x, onnx_axis)]
    if known is not None:
        known = np.where(known < 0, known + dim, known) if dim is not None else known
        indices = tf.constant(known) if dim is not None or not (known < 0).any() else None
    if known is None or indices is None:
        i = cx.onnx(idx)
        size = tf.shape(x.t, out_type=i.dtype)[cx.axis(x, onnx_axis)]
        indices = tf.where(i < 0, i + size, i)  # negative indices count from the end, as in numpy
    if x.perm and idx.rank in (0, 1):  # the layout survives: the axis goes, or stays in place
        out = tf.gather(x.t, indices, axis=cx.axis(x, onnx_axis))
        if idx.rank == 1:
            return [V(out, x.perm)]
        return [V(out, tuple(p - (p > onnx_axis) for p in x.perm if p != onnx_axis))]
    return [V(tf.gather(cx.onnx(x), indices, axis=onnx_axis))]


def _pads(cx: Any, node: Any, ins: list[V | None], rank: int) -> Any:
    """[[before, after]] per ONNX axis: a static list, or a run-time [rank, 2] tensor."""
    if cx.opset < 11:
        pads = cx.attr(node, "pads") or cx.attr(node, "paddings")
    else:
        pads = cx.static(ins[1])
        axes_v = ins[3] if cx.opset >= 18 and len(ins) > 3 else None
        if pads is None or (axes_v is not None and cx.static(axes_v) is None):
            return _pads_dynamic(cx, ins[1], axes_v, rank)
        pads = [int(p) for p in pads]
    axes = list(range(rank))
    if cx.opset >= 18 and len(ins) > 3 and ins[3] is not None:
        axes = [int(a) + rank if int(a) < 0 else int(a) for a in cx.static(ins[3])]
    out = [[0, 0] for _ in range(rank)]
    half = len(pads) // 2
    for k, a in enumerate(axes):
        out[a] = [pads[k], pads[half + k]]
    return out


def _pads_dynamic(cx: Any, pads_v: V, axes_v: V | None, rank: int) -> Any:
    tf = cx.tf
    pads = tf.cast(tf.reshape(cx.onnx(pads_v), [2, -1]), tf.int64)
    if axes_v is None:
        return tf.transpose(pads)
    axes = tf.cast(tf.reshape(cx.onnx(axes_v), [-1]), tf.int64)
    axes = tf.where(axes < 0, axes + rank, axes)
    return tf.scatter_nd(axes[:, None], tf.transpose(pads), tf.constant([rank, 2], tf.int64))


@op("Pad", since=2)
def pad(cx: Any, node: Any, ins: list[V | None]) -> list[V]:
    tf = cx.tf
    x = ins[0]
    rank = x.rank
    mode = cx.attr(node, "mode", "constant")
    pads = _pads(cx, node, ins, rank)
    if isinstance(pads, list):
        phys = [pads[p] for p in x.perm] if x.perm else pads
        grow = [[max(b, 0), max(a, 0)] for b, a in phys]
        crop = [[-min(b, 0), -min(a, 0)] for b, a in phys]
    else:
        phys = tf.gather(pads, list(x.perm)) if x.perm else pads
        grow, crop = phys, None
    value = cx.attr(node, "value", 0.0) if cx.opset < 11 else 0
    if cx.opset >= 11 and len(ins) > 2 and ins[2] is not None:
        value = tf.reshape(cx.onnx(ins[2]), [])
    out = _pad_mode(cx, node, x.t, grow, mode, value)
    if crop and any(b or a for b, a in crop):  # negative pads remove
        out = out[tuple(slice(b, -a if a else None) for b, a in crop)]
    return [V(out, x.perm)]


def _pad_mode(cx: Any, node: Any, t: Any, pads: Any, mode: str, value: Any) -> Any:
    tf = cx.tf
    if mode == "constant":
        return tf.pad(t, pads, constant_values=tf.cast(value, t.dtype))
    if mode == "reflect":
        return tf.pad(t, pads, mode="REFLECT")
    if mode in ("edge", "wrap"):  # repeat the border (edge) or the other side (wrap): a gather per axis
        for axis in range(t.shape.rank):
            before, after = (pads[axis][0], pads[axis][1]) if isinstance(pads, list) else (pads[axis, 0], pads[axis, 1])
            if isinstance(before, int) and not before and not after:
                continue
            size = tf.shape(t, out_type=tf.int64)[axis]
            idx = tf.range(-tf.cast(before, tf.int64), size + tf.cast(after, tf.int64))
            idx = tf.clip_by_value(idx, 0, size - 1) if mode == "edge" else tf.math.floormod(idx, size)
            t = tf.gather(t, idx, axis=axis)
        return t
    cx.fail(node, f"pad mode '{mode}' is not supported")
