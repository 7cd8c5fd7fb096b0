"""Reductions (ReduceSum/Mean/Max/Min/Prod/L1/L2/LogSum/LogSumExp/SumSquare), ArgMax/ArgMin and
CumSum. They reduce over PHYSICAL axes (``cx.axis``), so a reduction after a channels-last conv needs
no Transpose; a dropped axis renumbers the ONNX axes that remain (``_dropped``).

Axes come as an attribute before opset 13 (ReduceSum) / 18 (the others) and as an optional input
since; no axes means all of them, unless ``noop_with_empty_axes`` makes the node an Identity.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from .registry import op
from .values import V, normal


def _dropped(perm: Sequence[int] | None, phys: Sequence[int], rank: int) -> tuple[int, ...] | None:
    """The perm of a value after its physical axes ``phys`` are removed: the ONNX axes left keep their
    order, numbered 0.. again."""
    full = tuple(perm) if perm else tuple(range(rank))
    kept = [full[i] for i in range(rank) if i not in phys]
    order = sorted(kept)
    return normal(tuple(order.index(a) for a in kept))


def _axes(cx: Any, node: Any, ins: list[V | None], input_since: int) -> list[int] | V | None:
    """The ONNX axes to reduce (None: all; [] with noop_with_empty_axes: none), or the axes input
    itself when it is known only at run time."""
    if cx.opset >= input_since:
        axes_v = ins[1] if len(ins) > 1 else None
        if axes_v is None:
            axes = None
        else:
            arr = cx.static(axes_v)
            if arr is None:
                return axes_v
            axes = [int(a) for a in cx.np.asarray(arr).reshape(-1)]
    else:
        axes = cx.attr(node, "axes", None)
    if not axes:
        return [] if cx.attr(node, "noop_with_empty_axes", 0) else None
    return list(axes)


def _run_time_axes(cx: Any, node: Any, x: V, axes_v: V, kernel: Callable[..., Any]) -> V:
    """Axes known only at run time address ONNX axes: the input in ONNX order. No axes at run time
    means all of them (unless noop_with_empty_axes): ``range(rank)`` joins an empty axes input."""
    tf = cx.tf
    t = cx.onnx(x)
    axes = tf.cast(tf.reshape(cx.onnx(axes_v), [-1]), tf.int32)
    if not cx.attr(node, "noop_with_empty_axes", 0):
        empty = tf.cast(tf.equal(tf.size(axes), 0), tf.int32)
        axes = tf.concat([axes, tf.range(tf.rank(t) * empty)], 0)
    out = _over_empty(cx, t, kernel(cx, t, axes), kernel)
    if not cx.attr(node, "keepdims", 1):
        out = tf.reshape(out, _kept_shape(cx, t, axes))
    return V(out)


def _kept_shape(cx: Any, t: Any, axes: Any) -> Any:
    """The shape of ``t`` without the (run-time) ``axes``."""
    tf = cx.tf
    rank = tf.rank(t)
    axes = tf.math.floormod(axes, rank)
    hit = tf.reduce_any(tf.equal(tf.range(rank)[:, None], axes[None, :]), axis=1)
    return tf.boolean_mask(tf.shape(t), tf.logical_not(hit))


def _reduce(kernel: Callable[[Any, Any, list[int]], Any], input_since: int) -> Callable[..., list[V]]:
    """A handler: ``kernel(cx, x, physical_axes)`` reduces with keepdims=True."""
    def handler(cx: Any, node: Any, ins: list[V | None]) -> list[V]:
        x = ins[0]
        axes = _axes(cx, node, ins, input_since)
        if isinstance(axes, V):
            return [_run_time_axes(cx, node, x, axes, kernel)]
        if axes == []:
            return [V(cx.tf.identity(x.t), x.perm)]
        rank = x.rank
        if rank is None:
            cx.fail(node, "the input's rank is unknown")
        phys = sorted({cx.axis(x, a) for a in (axes if axes is not None else range(rank))})
        out = _over_empty(cx, x.t, kernel(cx, x.t, phys), kernel, phys)
        if cx.attr(node, "keepdims", 1):
            return [V(out, x.perm)]
        return [V(cx.tf.squeeze(out, phys) if phys else out, _dropped(x.perm, phys, rank))]

    return handler


def _over_empty(cx: Any, t: Any, out: Any, kernel: Callable[..., Any], axes: list[int] | None = None) -> Any:
    """``out``, or the kernel's value over an empty set (0 for a sum, -inf for a max, ..., computed by
    TensorFlow now) where ``t`` is empty: then every element of ``out`` reduces over nothing, and
    TF.js (wasm: uninitialised memory; cpu: NaN for max/min) gets that wrong. A run-time choice
    unless the shape says at conversion time whether ``t`` is empty. ``axes``: the reduced physical
    axes when known; if their sizes are known and non-zero, no element reduces over nothing."""
    dims = t.shape.as_list() if t.shape.rank is not None else None
    if dims is not None and None not in dims and 0 not in dims:
        return out  # never empty: nothing to add
    if dims is not None and axes is not None and all(dims[a] for a in axes):
        return out  # each element reduces over a known, non-empty set (or there are no elements)
    tf = cx.tf
    with tf.init_scope():
        value = kernel(cx, tf.zeros([0], t.dtype), [0]).numpy().reshape(())
    filled = tf.fill(tf.shape(out), tf.constant(value, out.dtype))
    if dims is not None and 0 in dims:
        return filled
    return tf.where(tf.equal(tf.size(t), 0), filled, out)


def _float(cx: Any, t: Any) -> tuple[Any, Any]:
    """``t`` as a float for kernels TensorFlow has only for floats, and its dtype to cast back to."""
    return (t, None) if t.dtype.is_floating else (cx.tf.cast(t, cx.tf.float32), t.dtype)


def _back(cx: Any, t: Any, dtype: Any) -> Any:
    return t if dtype is None else cx.tf.cast(cx.tf.round(t), dtype)


def _sum(cx: Any, x: Any, axes: list[int]) -> Any:
    return cx.tf.reduce_sum(x, axes, keepdims=True)


def _mean(cx: Any, x: Any, axes: list[int]) -> Any:
    return cx.tf.reduce_mean(x, axes, keepdims=True)


def _max(cx: Any, x: Any, axes: list[int]) -> Any:
    if x.dtype == cx.tf.bool:
        return cx.tf.reduce_any(x, axes, keepdims=True)
    return cx.tf.reduce_max(x, axes, keepdims=True)


def _min(cx: Any, x: Any, axes: list[int]) -> Any:
    if x.dtype == cx.tf.bool:
        return cx.tf.reduce_all(x, axes, keepdims=True)
    return cx.tf.reduce_min(x, axes, keepdims=True)


def _prod(cx: Any, x: Any, axes: list[int]) -> Any:
    return cx.tf.reduce_prod(x, axes, keepdims=True)


def _l1(cx: Any, x: Any, axes: list[int]) -> Any:
    return cx.tf.reduce_sum(cx.tf.abs(x), axes, keepdims=True)


def _l2(cx: Any, x: Any, axes: list[int]) -> Any:
    f, dtype = _float(cx, x)
    return _back(cx, cx.tf.sqrt(cx.tf.reduce_sum(f * f, axes, keepdims=True)), dtype)


def _sum_square(cx: Any, x: Any, axes: list[int]) -> Any:
    return cx.tf.reduce_sum(x * x, axes, keepdims=True)


def _log_sum(cx: Any, x: Any, axes: list[int]) -> Any:
    f, dtype = _float(cx, x)
    return _back(cx, cx.tf.math.log(cx.tf.reduce_sum(f, axes, keepdims=True)), dtype)


def _log_sum_exp(cx: Any, x: Any, axes: list[int]) -> Any:
    # max-shifted, as TF's reduce_logsumexp, written out: that one adds a StopGradient and an
    # IsFinite select the graph does not need; an all -inf slice (or an empty one) gives -inf
    tf = cx.tf
    f, dtype = _float(cx, x)
    m = tf.reduce_max(f, axes, keepdims=True)
    m = tf.where(tf.math.is_finite(m), m, tf.zeros_like(m))
    out = tf.math.log(tf.reduce_sum(tf.exp(f - m), axes, keepdims=True)) + m
    return _back(cx, out, dtype)


_REDUCTIONS = {"ReduceSum": (_sum, 13), "ReduceMean": (_mean, 18), "ReduceMax": (_max, 18),
               "ReduceMin": (_min, 18), "ReduceProd": (_prod, 18), "ReduceL1": (_l1, 18), "ReduceL2": (_l2, 18),
               "ReduceSumSquare": (_sum_square, 18), "ReduceLogSum": (_log_sum, 18),
               "ReduceLogSumExp": (_log_sum_exp, 18)}
for _name, (_kernel, _since) in _REDUCTIONS.items():
    op(_name)(_reduce(_kernel, _since))


def _arg(largest: bool) -> Callable[..., list[V]]:
    def handler(cx: Any, node: Any, ins: list[V | None]) -> list[V]:
        tf = cx.tf
        x = ins[0]
        rank = x.rank
        if rank is None:
            cx.fail(node, "the input's rank is unknown")
        a = cx.axis(x, cx.attr(node, "axis", 0))
        t = x.t if x.t.dtype != tf.bool else tf.cast(x.t, tf.int32)
        fn = tf.math.argmax if largest else tf.math.argmin
        if cx.attr(node, "select_last_index", 0):
            # the last of equal values: the first in the reversed axis, counted from the end
            n = tf.shape(t, out_type=tf.int64)[a]
            out = n - 1 - fn(tf.reverse(t, [a]), axis=a, output_type=tf.int64)
        else:
            out = fn(t, axis=a, output_type=tf.int64)
        if cx.attr(node, "keepdims", 1):
            return [V(tf.expand_dims(out, a), x.perm)]
        return [V(out, _dropped(x.perm, [a], rank))]

    return handler


op("ArgMax")(_arg(True))
op("ArgMin")(_arg(False))


@op("CumSum", since=11)
def cum_sum(cx: Any, node: Any, ins: list[V | None]) -> list[V]:
    x, axis_v = ins[0], ins[1]
    exclusive, reverse = bool(cx.attr(node, "exclusive", 0)), bool(cx.attr(node, "reverse", 0))
    arr = cx.static(axis_v)
    if arr is None:  # an axis known only at run time addresses ONNX axes; TF.js takes no negative one
        t = cx.onnx(x)
        axis = cx.tf.math.floormod(cx.tf.reshape(axis_v.t, []), cx.tf.cast(cx.tf.rank(t), axis_v.t.dtype))
        return [V(cx.tf.math.cumsum(t, axis, exclusive=exclusive, reverse=reverse))]
    a = cx.axis(x, int(cx.np.asarray(arr).reshape(-1)[0]))
    return [V(cx.tf.math.cumsum(x.t, a, exclusive=exclusive, reverse=reverse), x.perm)]


@op("LpNormalization", since=1)
def lp_normalization(cx: Any, node: Any, ins: list[V | None]) -> list[V]:
    """``x / ||x||_p`` along one axis (p 1 or 2), on its physical axis."""
    x = ins[0]
    p = int(cx.attr(node, "p", 2))
    if p not in (1, 2):
        cx.fail(node, f"p={p} (ONNX allows 1 and 2)")
    a = cx.axis(x, cx.attr(node, "axis", -1))
    norm = _l1(cx, x.t, [a]) if p == 1 else _l2(cx, x.t, [a])
    return [V(x.t / norm, x.perm)]
