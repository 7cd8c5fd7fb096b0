"""Pooling, lowered channels-last onto TF's MaxPool / AvgPool kernels.

Pads TF's "SAME" does not reproduce become an explicit Pad (-inf for max, 0 for average) before a
"VALID" pool; ceil_mode is extra end padding that the average does not count. An average that must
not count padding divides by the same pool of a mask of ones. Dilated windows have no TF kernel:
each dilation phase is pooled densely (SpaceToBatchND / BatchToSpaceND). Global pools reduce over
the spatial axes wherever they are, so they keep the input's layout.
"""

from __future__ import annotations

from typing import Any

from . import spatial
from .registry import op
from .values import V, channels_last

_POOL = {"max": {2: "max_pool2d", 3: "max_pool3d"}, "avg": {2: "avg_pool2d", 3: "avg_pool3d"}}


class _Pool:
    """One pooling node's input (channels-last, 1-D as 2-D), window and paddings."""

    def __init__(self, cx: Any, node: Any, x: V) -> None:
        self.rank = x.rank
        n = self.rank - 2
        if n not in (1, 2, 3):
            cx.fail(node, f"{n}-D pooling is not supported (1-D, 2-D and 3-D are)")
        self.n = n
        xp = cx.physical(x, channels_last(self.rank))
        self.win = spatial.window(cx, node, tuple(cx.attr(node, "kernel_shape")))
        size = spatial.sizes(cx, xp, n)
        self.pads = spatial.pads(cx, node, size, self.win)
        ceil = bool(cx.attr(node, "ceil_mode", 0))
        self.extra = spatial.ceil_extra(cx, size, self.pads, self.win) if ceil else [0] * n
        self.same = not spatial.is_zero(self.pads) and spatial.same_upper(size, self.win, self.pads) and not ceil
        if n == 1:  # TF's 1-D pools are 2-D ones over (1, W)
            xp = cx.tf.expand_dims(xp, 1)
            self.win = self.win.expanded()
            self.pads = [(0, 0), *self.pads]
            self.extra = [0, *self.extra]
        self.x = xp

    def out(self, y: Any) -> V:
        return V(y[:, 0] if self.n == 1 else y, channels_last(self.rank))

    def all_pads(self) -> list:
        return [(b, e + x) for (b, e), x in zip(self.pads, self.extra)]


def _pool(cx: Any, x: Any, win: spatial.Window, kind: str, padding: str) -> Any:
    """TF's pool kernel (kind "max" or "avg") over a channels-last x, or taps where dilated."""
    if any(d != 1 for d in win.dilations):
        return _dilated(cx, x, win, kind)
    if kind == "max" and len(win.kernel) == 3:
        return _max_pool3d(cx, x, win)
    fn = getattr(cx.tf.nn, _POOL[kind][len(win.kernel)])
    return fn(x, ksize=win.kernel, strides=win.strides, padding=padding)


def _max_pool3d(cx: Any, x: Any, win: spatial.Window) -> Any:
    """A VALID 3-D max pool as two 2-D ones (max is separable): over (H, W) with depth folded into the
    batch, then over D with H*W as one axis. TF.js's wasm MaxPool3D gives wrong results (4.22)."""
    tf = cx.tf
    shape = tf.shape(x)
    n, d, c = shape[0], shape[1], shape[4]
    hw = tf.nn.max_pool2d(tf.reshape(x, tf.stack([n * d, shape[2], shape[3], c])), win.kernel[1:], win.strides[1:],
                          "VALID")
    small = tf.shape(hw)
    y = tf.reshape(hw, tf.stack([n, d, small[1] * small[2], c]))
    y = tf.nn.max_pool2d(y, (win.kernel[0], 1), (win.strides[0], 1), "VALID")
    return tf.reshape(y, tf.stack([n, tf.shape(y)[1], small[1], small[2], c]))


def _dilated(cx: Any, x: Any, win: spatial.Window, kind: str) -> Any:
    """A dilated VALID pool: TF's pools have no dilation, so each dilation phase becomes its own batch
    entry (SpaceToBatchND) and is pooled densely with stride 1 (BatchToSpaceND puts the phases back),
    then every stride-th window is kept. The end is padded to a multiple of the dilation; no kept
    window reaches that padding."""
    tf = cx.tf
    n = len(win.kernel)
    size = spatial.sizes(cx, x, n)
    extra = [(-s) % d for s, d in zip(size, win.dilations)]
    paddings = [[0, e] for e in extra]
    if not all(isinstance(e, int) for e in extra):
        paddings = tf.stack([tf.stack([0, tf.cast(e, tf.int32)]) for e in extra])
    phases = tf.space_to_batch_nd(x, win.dilations, paddings)
    dense = _pool(cx, phases, spatial.Window(win.kernel, (1,) * n, (1,) * n), kind, "VALID")
    y = tf.batch_to_space(dense, win.dilations, [[0, 0]] * n)
    ends = [s - eff + 1 for s, eff in zip(size, win.effective)]
    return tf.strided_slice(y, _vec(cx, [0] * (n + 2)), _vec(cx, [0, *ends, 0]), [1, *win.strides, 1],
                            begin_mask=1 | (1 << (n + 1)), end_mask=1 | (1 << (n + 1)))


def _vec(cx: Any, values: list) -> Any:
    if all(isinstance(v, int) for v in values):
        return values
    return cx.tf.stack([cx.tf.cast(v, cx.tf.int32) for v in values])


@op("MaxPool", since=1)
def max_pool(cx: Any, node: Any, ins: list[V | None]) -> list[V | None]:
    p = _Pool(cx, node, ins[0])
    if len(node.output) > 1 and node.output[1]:
        return _with_indices(cx, node, p)
    tf = cx.tf
    kept = p.x.dtype
    if kept in (tf.uint8, tf.int8, tf.uint16, tf.int16):  # TF.js pools float32 only; these are exact in it
        p.x = tf.cast(p.x, tf.float32)
    if p.same and p.n < 3:
        y = _pool(cx, p.x, p.win, "max", "SAME")
    else:
        y = _pool(cx, spatial.pad(cx, p.x, p.all_pads(), spatial.lowest(cx, p.x.dtype)), p.win, "max", "VALID")
    return [p.out(y if y.dtype == kept else tf.cast(y, kept))]


def _with_indices(cx: Any, node: Any, p: _Pool) -> list[V | None]:
    """MaxPool with its Indices output, on TF's MaxPoolWithArgmax (TF.js has it too). TF counts in the
    padded NHWC tensor, (y*W' + x)*C + c; ONNX in the unpadded NCHW one, ((n*C + c)*H + y)*W + x
    (storage_order 1: x*H + y)."""
    tf = cx.tf
    if p.n == 3 or any(d != 1 for d in p.win.dilations):
        cx.fail(node, "the Indices output is supported for 1-D and 2-D pools without dilations")
    x = spatial.pad(cx, p.x, p.all_pads(), spatial.lowest(cx, p.x.dtype))
    y, arg = tf.nn.max_pool_with_argmax(x, p.win.kernel, p.win.strides, "VALID", include_batch_in_index=False)
    shape = tf.shape(p.x, out_type=tf.int64)
    padded_w = tf.shape(x, out_type=tf.int64)[2]
    channels, height, width = shape[3], shape[1], shape[2]
    pos = arg // channels
    row = pos // padded_w - tf.cast(p.pads[0][0], tf.int64)
    col = pos % padded_w - tf.cast(p.pads[1][0], tf.int64)
    batch = tf.reshape(tf.range(shape[0]), [-1, 1, 1, 1])
    chan = tf.reshape(tf.range(channels), [1, 1, 1, -1])
    plane = (batch * channels + chan) * height * width
    within = col * height + row if cx.attr(node, "storage_order", 0) else row * width + col
    return [p.out(y), p.out(plane + within)]


@op("AveragePool", since=1)
def average_pool(cx: Any, node: Any, ins: list[V | None]) -> list[V]:
    p = _Pool(cx, node, ins[0])
    include = bool(cx.attr(node, "count_include_pad", 0))
    if p.same and not include:  # TF's SAME average counts only the input, as count_include_pad=0
        return [p.out(_pool(cx, p.x, p.win, "avg", "SAME"))]
    return [p.out(_average(cx, p, p.x, include))]


def _average(cx: Any, p: _Pool, x: Any, include: bool) -> Any:
    """Mean over each window of zero-padded x, counting the padding only if ``include`` (never the
    ceil_mode extension)."""
    tf = cx.tf
    y = _pool(cx, spatial.pad(cx, x, p.all_pads()), p.win, "avg", "VALID")
    counted = p.pads if include else [(0, 0)] * len(p.pads)
    uncounted = [(b - c, e + x_ - ce) for (b, e), x_, (c, ce) in zip(p.pads, p.extra, counted)]
    if spatial.is_zero(uncounted):
        return y
    ones = tf.ones_like(x[:1, ..., :1])
    mask = spatial.pad(cx, spatial.pad(cx, ones, counted, 1.0), uncounted, 0.0)
    return y / _pool(cx, mask, p.win, "avg", "VALID")


@op("LpPool", since=1)
def lp_pool(cx: Any, node: Any, ins: list[V | None]) -> list[V]:
    p = _Pool(cx, node, ins[0])
    power = float(cx.attr(node, "p", 2))
    area = 1
    for k in p.win.kernel:
        area *= k
    powered = cx.tf.pow(cx.tf.abs(p.x), power)
    y = _pool(cx, spatial.pad(cx, powered, p.all_pads()), p.win, "avg", "VALID") * area
    return [p.out(cx.tf.pow(y, 1.0 / power))]


def _spatial_axes(cx: Any, x: V) -> list[int]:
    return sorted(cx.axis(x, a) for a in range(2, x.rank))


@op("GlobalAveragePool", since=1)
def global_average_pool(cx: Any, node: Any, ins: list[V | None]) -> list[V]:
    x = ins[0]
    return [V(cx.tf.reduce_mean(x.t, axis=_spatial_axes(cx, x), keepdims=True), x.perm)]


@op("GlobalMaxPool", since=1)
def global_max_pool(cx: Any, node: Any, ins: list[V | None]) -> list[V]:
    x = ins[0]
    return [V(cx.tf.reduce_max(x.t, axis=_spatial_axes(cx, x), keepdims=True), x.perm)]


@op("GlobalLpPool", since=1)
def global_lp_pool(cx: Any, node: Any, ins: list[V | None]) -> list[V]:
    x = ins[0]
    tf = cx.tf
    power = float(cx.attr(node, "p", 2))
    total = tf.reduce_sum(tf.pow(tf.abs(x.t), power), axis=_spatial_axes(cx, x), keepdims=True)
    return [V(tf.pow(total, 1.0 / power), x.perm)]
