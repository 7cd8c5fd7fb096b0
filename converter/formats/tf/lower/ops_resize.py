"""Resize, Upsample, DepthToSpace, SpaceToDepth.

Resize runs on TF's (and TF.js's) ResizeBilinear / ResizeNearestNeighbor kernels, channels-last,
wherever one reproduces ONNX's mapping exactly: 4-D, only H and W resized, the scale equal to
out/in, and a (mode, coordinate_transformation_mode, nearest_mode) those kernels implement. Those
cover what PyTorch exports (nearest asymmetric/floor, bilinear with pytorch_half_pixel or
align_corners). Every other case (cubic, antialias, crop_and_resize, half_pixel_symmetric, other
rounding, 3-D/5-D) is a gather (nearest) or an interpolation matrix (linear, cubic) per resized
axis, computed at conversion time from ONNX's reference formulas (``resize_coeffs``); it needs the
resized axes' input sizes then, and keeps the input's layout.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import resize_coeffs as rc
from . import resize_graph
from .registry import op
from .values import V, channels_last

#: (mode, coordinate mode, nearest mode) -> (kernel, align_corners, half_pixel_centers)
_KERNELS = {
    ("linear", "half_pixel", None): ("bilinear", False, True),
    ("linear", "pytorch_half_pixel", None): ("bilinear", False, True),  # out > 1 checked below
    ("linear", "align_corners", None): ("bilinear", True, False),
    ("linear", "asymmetric", None): ("bilinear", False, False),
    ("nearest", "asymmetric", "floor"): ("nearest", False, False),
    ("nearest", "half_pixel", "round_prefer_ceil"): ("nearest", False, True),
    ("nearest", "tf_half_pixel_for_nn", "floor"): ("nearest", False, True),
    ("nearest", "align_corners", "round_prefer_ceil"): ("nearest", True, False),
}
#: kernels that match only for integer upscales, where ONNX's rounding never meets a tie: (x + 0.5)/s
#: is never a whole number plus a half (the default nearest mode, half_pixel + round_prefer_floor)
_INTEGER_UPSCALE = {("nearest", "half_pixel", "round_prefer_floor"): ("nearest", False, True)}


@dataclass
class _Resize:
    """One Resize/Upsample node: the mode and, per ONNX axis, input size, output size and scale."""

    mode: str
    coords: str = "half_pixel"
    nearest: str = "round_prefer_floor"
    cubic_a: float = -0.75
    exclude_outside: bool = False
    extrapolation: float = 0.0
    antialias: bool = False
    size_in: list = field(default_factory=list)  # int, or a tensor for a dim unknown at conversion time
    size_out: list = field(default_factory=list)
    scales: list = field(default_factory=list)  # float, or None where only a dynamic output size is known
    roi: list = field(default_factory=list)  # (start, end) per axis

    def changed(self) -> list[int]:
        """The axes this resize may change (a scale fed at run time may change any)."""
        return [a for a in range(len(self.size_in)) if not (isinstance(self.scales[a], float) and self.scales[a] == 1.0
                                                            and self.roi[a] == (0.0, 1.0))]

    def static(self, a: int) -> bool:
        return all(isinstance(v, (int, float)) for v in (self.size_in[a], self.size_out[a], *self.roi[a])) and (
            self.scales[a] is None or isinstance(self.scales[a], float))


def _sizes_in(cx: Any, x: V) -> list:
    known = x.t.shape.as_list()
    shape = None
    out = []
    for a in range(x.rank):
        p = cx.axis(x, a)
        if known[p] is not None:
            out.append(int(known[p]))
        else:
            shape = cx.tf.shape(x.t) if shape is None else shape
            out.append(shape[p])
    return out


def _plan(cx: Any, node: Any, x: V, scales: Any, sizes: Any, roi: Any) -> _Resize:
    """Sizes and scales per ONNX axis, from scales or sizes (with axes and keep_aspect_ratio_policy)."""
    r = x.rank
    plan = _Resize(mode=cx.attr(node, "mode", "nearest"))
    plan.size_in = _sizes_in(cx, x)
    axes = [a % r for a in (cx.attr(node, "axes", None) or range(r))]
    plan.roi = [(0.0, 1.0)] * r
    if roi is not None:
        static = isinstance(roi, np.ndarray)
        for i, a in enumerate(axes):
            lo, hi = roi[i], roi[len(axes) + i]
            plan.roi[a] = (float(lo), float(hi)) if static else (lo, hi)
    plan.scales, plan.size_out = [1.0] * r, list(plan.size_in)
    if sizes is not None:
        _from_sizes(cx, node, plan, axes, sizes)
    elif scales is not None:
        tf = cx.tf
        for i, a in enumerate(axes):
            s = float(scales[i]) if isinstance(scales, np.ndarray) else tf.cast(scales[i], tf.float32)
            n = plan.size_in[a]
            plan.scales[a] = s
            plan.size_out[a] = int(math.floor(n * s)) if isinstance(n, int) and isinstance(s, float) else tf.cast(
                tf.floor(tf.cast(n, tf.float32) * s), tf.int32)
    return plan


def _from_sizes(cx: Any, node: Any, plan: _Resize, axes: list[int], sizes: Any) -> None:
    policy = cx.attr(node, "keep_aspect_ratio_policy", "stretch")
    static = isinstance(sizes, np.ndarray)
    for i, a in enumerate(axes):
        n = plan.size_in[a]
        out = int(sizes[i]) if static else cx.tf.cast(sizes[i], cx.tf.int32)
        plan.size_out[a] = out
        plan.scales[a] = out / n if static and isinstance(n, int) else None
    if policy == "stretch":
        return
    if all(isinstance(plan.scales[a], float) for a in axes):
        s = (min if policy == "not_larger" else max)(plan.scales[a] for a in axes)
        for a in axes:
            plan.scales[a] = s
            plan.size_out[a] = int(s * plan.size_in[a] + 0.5)
        return
    tf = cx.tf
    ratios = tf.stack([tf.cast(plan.size_out[a], tf.float32) / tf.cast(plan.size_in[a], tf.float32) for a in axes])
    s = tf.reduce_min(ratios) if policy == "not_larger" else tf.reduce_max(ratios)
    for a in axes:
        plan.scales[a] = s
        plan.size_out[a] = tf.cast(tf.floor(s * tf.cast(plan.size_in[a], tf.float32) + 0.5), tf.int32)


def _kernel_for(plan: _Resize, rank: int) -> tuple[str, bool, bool] | None:
    """The TF kernel that computes this resize exactly, if one does. Sizes fed at run time are taken
    to keep N and C (a resize of the batch or channels has no kernel, and no model does it)."""
    fed = [a for a in plan.changed() if plan.scales[a] is None and not isinstance(plan.size_out[a], int)]
    if rank != 4 or plan.antialias or any(a not in (2, 3, *fed) for a in plan.changed()):
        return None
    key = (plan.mode, plan.coords, plan.nearest if plan.mode == "nearest" else None)
    kernel = _KERNELS.get(key)
    if kernel is None and key in _INTEGER_UPSCALE and all(_integer_upscale(plan, a) for a in (2, 3)):
        kernel = _INTEGER_UPSCALE[key]
    if kernel is None:
        return None
    for a in (2, 3):
        n, out, s = plan.size_in[a], plan.size_out[a], plan.scales[a]
        if plan.coords == "pytorch_half_pixel" and isinstance(out, int) and out == 1:
            return None  # its output of size 1 maps to -0.5, which the kernel does not do (a run-time size: _resize)
        if s is None:
            continue  # sizes given: TF's scale is out/in, as ONNX's
        if not isinstance(s, float):
            return None  # a scale fed at run time: out/in may differ from it
        if isinstance(n, int) and isinstance(out, int):
            if n * s != out:
                return None
        elif s != int(s) or s < 1:
            return None  # an integer upscale has out = in * scale for every in
    return kernel


def _integer_upscale(plan: _Resize, a: int) -> bool:
    n, out, s = plan.size_in[a], plan.size_out[a], plan.scales[a]
    if isinstance(s, float):
        return s >= 1 and s == int(s)
    return isinstance(n, int) and isinstance(out, int) and out >= n and out % n == 0


def _run_kernel(cx: Any, x: V, plan: _Resize, kernel: tuple[str, bool, bool]) -> V:
    tf = cx.tf
    xp = cx.physical(x, channels_last(4))
    size = tf.stack([tf.cast(plan.size_out[2], tf.int32), tf.cast(plan.size_out[3], tf.int32)]) if not all(
        isinstance(plan.size_out[a], int) for a in (2, 3)) else [plan.size_out[2], plan.size_out[3]]
    name, align, half = kernel
    if name == "bilinear":
        y = tf.raw_ops.ResizeBilinear(images=xp, size=size, align_corners=align, half_pixel_centers=half)
        y = tf.cast(y, xp.dtype) if y.dtype != xp.dtype else y
    else:
        y = tf.raw_ops.ResizeNearestNeighbor(images=xp, size=size, align_corners=align, half_pixel_centers=half)
    return V(y, channels_last(4))


def _run_general(cx: Any, node: Any, x: V, plan: _Resize) -> V:
    """Resize axis by axis (last first, as the reference nests) with a gather or a matrix."""
    tf = cx.tf
    t = x.t
    for a in reversed(plan.changed()):
        n, out, s = plan.size_in[a], plan.size_out[a], plan.scales[a]
        p = cx.axis(x, a)
        if not plan.static(a):
            if plan.antialias and not (isinstance(n, int) and n <= 64):
                cx.fail(node, "antialias with a scale fed at run time needs the input size (at most 64) at conversion time")
            t = resize_graph.resize_axis(cx, t, p, n, out, s, plan, plan.roi[a])
            continue
        ax = rc.Axis(n, out, s if s is not None else out / n, plan.roi[a])
        src, inside = rc.source(ax, plan.coords)
        if plan.mode == "nearest":
            t = tf.gather(t, rc.nearest(src, n, plan.nearest, ax.scale < 1), axis=p)
        else:
            m = rc.matrix(src, ax, plan.mode, a=plan.cubic_a, exclude_outside=plan.exclude_outside,
                          antialias=plan.antialias)
            t = _along(cx, t, m, p)
        if not inside.all():
            shape = [1] * x.rank
            shape[p] = out
            keep = tf.constant(inside.reshape(shape))
            t = tf.where(keep, t, tf.constant(plan.extrapolation, t.dtype))
    return V(t, x.perm)


def _along(cx: Any, t: Any, m: np.ndarray, axis: int) -> Any:
    """``m`` (out x in) applied along ``axis`` of t: tensordot, then the new axis back in place."""
    tf = cx.tf
    dtype = t.dtype if t.dtype.is_floating else tf.float32
    y = tf.tensordot(tf.cast(t, dtype), tf.constant(m.T.astype(dtype.as_numpy_dtype)), axes=[[axis], [0]])
    rank = t.shape.rank
    perm = [*range(axis), rank - 1, *range(axis, rank - 1)]
    if perm != list(range(rank)):
        y = tf.transpose(y, perm)
    return y if dtype == t.dtype else tf.cast(tf.round(y), t.dtype)


def _resize(cx: Any, node: Any, x: V, plan: _Resize) -> list[V]:
    if not plan.changed():
        return [x]
    if plan.mode not in ("nearest", "linear", "cubic"):
        cx.fail(node, f"mode {plan.mode!r} is not one of nearest, linear, cubic")
    kernel = _kernel_for(plan, x.rank)
    if not kernel:
        return [_run_general(cx, node, x, plan)]
    runtime = [plan.size_out[a] for a in (2, 3) if not isinstance(plan.size_out[a], int)]
    if plan.coords != "pytorch_half_pixel" or not runtime:
        return [_run_kernel(cx, x, plan, kernel)]
    # PyTorch's bilinear on sizes known at run time (interpolate(size=skip.shape[-2:])): the kernel is
    # exact unless an output size is 1; that rare case takes the gathers, chosen in the graph (If)
    tf = cx.tf
    xl = V(cx.physical(x, channels_last(4)), channels_last(4))
    big = tf.reduce_all(tf.stack([tf.cast(o, tf.int32) > 1 for o in runtime]))
    y = tf.cond(big, lambda: _run_kernel(cx, xl, plan, kernel).t, lambda: _run_general(cx, node, xl, plan).t)
    return [V(y, channels_last(4))]


def _input(cx: Any, ins: list, i: int) -> Any:
    """Optional input i: numpy when static, a tensor when dynamic, None when absent or empty."""
    v = ins[i] if i < len(ins) else None
    if v is None:
        return None
    arr = cx.static(v)
    if arr is not None:
        return arr if arr.size else None
    return cx.onnx(v)


@op("Resize", since=11)
def resize(cx: Any, node: Any, ins: list[V | None]) -> list[V]:
    x = ins[0]
    scales, sizes = _input(cx, ins, 2), _input(cx, ins, 3)
    if sizes is not None:  # ONNX: scales is then empty
        scales = None
    plan = _plan(cx, node, x, scales, sizes, _input(cx, ins, 1) if cx.attr(
        node, "coordinate_transformation_mode") == "tf_crop_and_resize" else None)
    plan.coords = cx.attr(node, "coordinate_transformation_mode", "half_pixel")
    plan.nearest = cx.attr(node, "nearest_mode", "round_prefer_floor")
    plan.cubic_a = float(cx.attr(node, "cubic_coeff_a", -0.75))
    plan.exclude_outside = bool(cx.attr(node, "exclude_outside", 0))
    plan.extrapolation = float(cx.attr(node, "extrapolation_value", 0.0))
    plan.antialias = bool(cx.attr(node, "antialias", 0)) and plan.mode != "nearest"
    return _resize(cx, node, x, plan)


def _asymmetric(cx: Any, node: Any, x: V, scales: Any) -> list[V]:
    """Upsample and Resize-10: asymmetric coordinates; nearest floors (ceils when downsampling)."""
    plan = _plan(cx, node, x, scales, None, None)
    plan.coords, plan.nearest = "asymmetric", "simple"
    if plan.mode == "bilinear":
        plan.mode = "linear"
    if plan.mode == "nearest" and all(isinstance(s, float) and s >= 1 for s in plan.scales):
        plan.nearest = "floor"
    return _resize(cx, node, x, plan)


@op("Resize", since=10, until=10)
def resize_10(cx: Any, node: Any, ins: list[V | None]) -> list[V]:
    return _asymmetric(cx, node, ins[0], _input(cx, ins, 1))


@op("Upsample", since=9)
def upsample(cx: Any, node: Any, ins: list[V | None]) -> list[V]:
    return _asymmetric(cx, node, ins[0], _input(cx, ins, 1))


@op("Upsample", since=1, until=8)
def upsample_7(cx: Any, node: Any, ins: list[V | None]) -> list[V]:
    scales = cx.attr(node, "scales", None)
    if scales is None:  # opset 1: height_scale / width_scale on 4-D
        scales = [1.0, 1.0, cx.attr(node, "height_scale", 1.0), cx.attr(node, "width_scale", 1.0)]
    return _asymmetric(cx, node, ins[0], np.asarray(scales, np.float32))


@op("DepthToSpace", since=1)
def depth_to_space(cx: Any, node: Any, ins: list[V | None]) -> list[V]:
    x = ins[0]
    tf = cx.tf
    bs = int(cx.attr(node, "blocksize"))
    xp = cx.physical(x, channels_last(4))
    if cx.attr(node, "mode", "DCR") == "CRD":
        # CRD reads channel c*bs*bs + i*bs + j; TF's (DCR) reads (i*bs + j)*C + c: reorder the channels first
        channels = xp.shape[-1]
        if channels is not None:
            order = np.arange(channels).reshape(channels // (bs * bs), bs * bs).T.reshape(-1)
        else:
            order = tf.reshape(tf.transpose(tf.reshape(tf.range(tf.shape(xp)[-1]), [-1, bs * bs])), [-1])
        xp = tf.gather(xp, order, axis=3)
    return [V(tf.nn.depth_to_space(xp, bs), channels_last(4))]


@op("SpaceToDepth", since=1)
def space_to_depth(cx: Any, node: Any, ins: list[V | None]) -> list[V]:
    x = ins[0]
    xp = cx.physical(x, channels_last(4))
    bs = int(cx.attr(node, "blocksize"))
    # TF.js has no SpaceToDepth kernel: output channel (i*bs + j)*C + c is x[h*bs + i, w*bs + j, c], one
    # strided slice per (i, j), concatenated in that order
    parts = [xp[:, i::bs, j::bs, :] for i in range(bs) for j in range(bs)]
    return [V(cx.tf.concat(parts, axis=3), channels_last(4))]
