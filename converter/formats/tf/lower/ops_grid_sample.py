"""GridSample (opsets 16+): sample a channels-last map at the grid's normalised coordinates, nearest,
(bi/tri)linear or bicubic, with zeros / border / reflection padding, as ``onnx.reference``'s
op_grid_sample computes it. TF.js has no GridSample kernel: each interpolation tap is a GatherNd over
the channels-last map, weighted and summed; the output stays channels-last."""

from __future__ import annotations

import itertools
from typing import Any

from .registry import op
from .values import V, channels_last

_CUBIC_A = -0.75


def _reflect(cx: Any, x: Any, lo: Any, hi: Any) -> Any:
    """Reflect ``x`` at the borders until it lies in [lo, hi] (the reference's _gs_reflect)."""
    tf = cx.tf
    span = hi - lo

    def fold(dx: Any, near: Any, far: Any) -> Any:
        n = tf.floor(dx / span)
        r = dx - n * span
        return tf.where(tf.math.floormod(n, 2.0) == 0, near + r, far - r)

    below = fold(lo - x, lo, hi)
    above = fold(x - hi, -hi, -lo)  # hi - r or lo + r, written as the negated fold
    return tf.where(x < lo, below, tf.where(x > hi, -above, x))


def _cubic(cx: Any, t: Any) -> list[Any]:
    a = _CUBIC_A
    w0 = ((a * (t + 1) - 5 * a) * (t + 1) + 8 * a) * (t + 1) - 4 * a
    w1 = ((a + 2) * t - (a + 3)) * t * t + 1
    w2 = ((a + 2) * (1 - t) - (a + 3)) * (1 - t) * (1 - t) + 1
    w3 = ((a * (2 - t) - 5 * a) * (2 - t) + 8 * a) * (2 - t) - 4 * a
    return [w0, w1, w2, w3]


def _taps(cx: Any, g: Any, size: Any, mode: str, padding: str, align: bool) -> list[tuple[Any, Any]]:
    """One spatial axis: [(index int32, weight)] per tap, indices already padded (an index outside
    the map with zeros padding gets weight 0 and index 0)."""
    tf = cx.tf
    n = tf.cast(size, g.dtype)
    p = (g + 1) / 2 * (n - 1) if align else ((g + 1) * n - 1) / 2
    lo, hi = (0.0, n - 1) if align else (-0.5, n - 0.5)
    if mode == "nearest":
        p = tf.round(p)  # half to even, as the reference's rint
    outside = (p < lo) | (p > hi)
    if padding == "border":
        p = tf.where(outside, tf.clip_by_value(p, 0.0, n - 1), p)
    elif padding == "reflection":
        p = tf.where(outside, _reflect(cx, p, lo, hi), p)
    if mode == "nearest":
        base, weights = p, [tf.ones_like(p)]
        offsets = [0]
    else:
        base = tf.floor(p)
        t = p - base
        weights = [1 - t, t] if mode in ("linear", "bilinear") else _cubic(cx, t)
        offsets = [0, 1] if len(weights) == 2 else [-1, 0, 1, 2]
    out = []
    for off, w in zip(offsets, weights):
        i = base + off
        if padding == "zeros":
            inside = (i >= 0) & (i <= n - 1)
            w = w * tf.cast(inside, w.dtype)
            i = tf.where(inside, i, tf.zeros_like(i))
        elif padding == "border":
            i = tf.clip_by_value(i, 0.0, n - 1)
        else:
            i = tf.where((i < lo) | (i > hi), _reflect(cx, i, lo, hi), i)
        out.append((tf.cast(i, tf.int32), w))  # int cast truncates, as the reference
    return out


@op("GridSample", since=16)
def grid_sample(cx: Any, node: Any, ins: list[V | None]) -> list[V]:
    tf = cx.tf
    x = ins[0]
    rank = x.rank
    k = rank - 2
    feat = cx.physical(x, channels_last(rank))  # [N, *S, C]
    grid = cx.onnx(ins[1])  # [N, *O, k], coordinates (x, y[, z]): the last spatial axis first
    mode = cx.attr(node, "mode", "linear" if cx.opset >= 20 else "bilinear")
    mode = {"bilinear": "linear", "bicubic": "cubic"}.get(mode, mode)
    if mode not in ("nearest", "linear", "cubic"):
        cx.fail(node, f"mode '{mode}'")
    padding = cx.attr(node, "padding_mode", "zeros")
    align = bool(cx.attr(node, "align_corners", 0))
    shape = tf.shape(feat)
    per_axis = [_taps(cx, tf.cast(grid[..., k - 1 - j], tf.float32), shape[1 + j], mode, padding, align)
                for j in range(k)]
    batch = tf.broadcast_to(tf.reshape(tf.range(shape[0]), [-1, *([1] * k)]), tf.shape(grid)[:-1])
    total = None
    for combo in itertools.product(*per_axis):
        idx = tf.stack([batch, *(i for i, _ in combo)], axis=-1)
        weight = combo[0][1]
        for _, w in combo[1:]:
            weight = weight * w
        term = tf.gather_nd(feat, idx) * tf.cast(weight, feat.dtype)[..., None]
        total = term if total is None else total + term
    return [V(total, channels_last(rank))]
