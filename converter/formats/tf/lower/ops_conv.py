"""Conv and ConvTranspose, lowered channels-last onto TF's conv kernels.

Every kernel here runs NHWC (TF.js's wasm backend has no NCHW conv): the input is taken with
``channels_last`` and the output keeps it, so a conv net has no Transpose between layers. Weights
known at conversion time are laid out in numpy (HWIO, depthwise HWCM); otherwise the same layout is
computed in the graph. 1-D convs run as 2-D ones over (1, W), as TF itself does. Pads that TF's
"SAME" does not reproduce (asymmetric, or SAME_LOWER) become an explicit Pad before a "VALID" conv.
Grouped convs that are not depthwise are split into groups and concatenated: TF.js has no grouped
Conv2D.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import spatial
from .registry import op
from .values import V, channels_last

_CONV = {2: "conv2d", 3: "conv3d"}
_CONV_T = {2: "conv2d_transpose", 3: "conv3d_transpose"}


def _weights(cx: Any, w: V, dtype: Any) -> tuple[Any, Any]:
    """The weight in ONNX order (numpy when static, else a tensor) and the module that transposes it."""
    arr = cx.static(w)
    if arr is not None:
        return np.asarray(arr, dtype=dtype.as_numpy_dtype), np
    return cx.tf.cast(cx.onnx(w), dtype), cx.tf


def _bias(cx: Any, b: V | None, y: Any) -> Any:
    if b is None:
        return y
    arr = cx.static(b)
    bias = cx.tf.constant(arr.astype(y.dtype.as_numpy_dtype)) if arr is not None else cx.tf.cast(cx.onnx(b), y.dtype)
    return cx.tf.nn.bias_add(y, bias)


def _kernel(cx: Any, node: Any, w: Any, n: int) -> tuple[int, ...]:
    shape = cx.attr(node, "kernel_shape", None) or tuple(w.shape[2:])
    if len(shape) != n or any(not isinstance(k, (int, np.integer)) for k in shape):
        cx.fail(node, "the kernel's spatial shape must be known at conversion time")
    return tuple(int(k) for k in shape)


def _to_2d(cx: Any, x: Any, win: spatial.Window, p: list, n: int) -> tuple[Any, spatial.Window, list]:
    """A 1-D problem as a 2-D one over (1, W); 2-D and 3-D ones as they are."""
    if n != 1:
        return x, win, p
    return cx.tf.expand_dims(x, 1), win.expanded(), [(0, 0), *p]


def _operands(cx: Any, node: Any, ins: list[V | None], what: str) -> tuple:
    """(rank, spatial dims, the input channels-last, weight, its module, window, bias V) shared by
    Conv and ConvTranspose."""
    x, w, b = (list(ins) + [None, None])[:3]
    r = x.rank
    n = r - 2
    if n not in (1, 2, 3):
        cx.fail(node, f"{n}-D {what} is not supported (1-D, 2-D and 3-D are)")
    xp = cx.physical(x, channels_last(r))
    weight, m = _weights(cx, w, xp.dtype)
    return r, n, xp, weight, m, spatial.window(cx, node, _kernel(cx, node, weight, n)), b


@op("Conv", since=1)
def conv(cx: Any, node: Any, ins: list[V | None]) -> list[V]:
    r, n, xp, weight, m, win, b = _operands(cx, node, ins, "convolution")
    size = spatial.sizes(cx, xp, n)
    p = spatial.pads(cx, node, size, win)
    xp, win2, p2 = _to_2d(cx, xp, win, p, n)
    if n == 1:
        weight = m.reshape(weight, (*weight.shape[:2], 1, weight.shape[2]))
    if any(d > 1 for d in win2.dilations) and (n == 3 or any(st > 1 for st in win2.strides)):
        # TF's CPU Conv3D has no dilations, and TF.js's convs no dilation with a stride: the kernel
        # is written out with its holes instead
        weight = _dilate(cx, weight, m, win2.dilations)
        win2 = spatial.Window(win2.effective, win2.strides, (1,) * len(win2.kernel))
    padding = _padding(cx, xp, size, win, win2, p, p2)
    if padding == "VALID":
        xp = spatial.pad(cx, xp, p2)
    y = _grouped(cx, node, xp, weight, m, win2, padding)
    y = _bias(cx, b, y)
    if n == 1:
        y = cx.tf.squeeze(y, 1)
    return [V(y, channels_last(r))]


def _padding(cx: Any, x: Any, size: list, win: spatial.Window, win2: spatial.Window, p: list, p2: list) -> Any:
    """TF's padding for these pads: "SAME" where it is that, else explicit pads inside the 2-D conv
    (Conv2D and DepthwiseConv2dNative take them, in TF and TF.js: no Pad op), else "VALID" after a Pad."""
    if spatial.is_zero(p):
        return "VALID"
    if spatial.same_upper(size, win, p):
        return "SAME"
    static = all(isinstance(v, int) for pair in p2 for v in pair)
    if static and len(win2.kernel) == 2 and all(d == 1 for d in win2.dilations):
        return [[0, 0], *([b, e] for b, e in p2), [0, 0]]
    return "VALID"


@op("ConvInteger", since=10)
def conv_integer(cx: Any, node: Any, ins: list[V | None]) -> list[V]:
    """ConvInteger in float32 (TF and TF.js have no integer conv): exact while every sum of products
    stays below 2**24, as for the small kernels and 8-bit values this op is used with."""
    tf = cx.tf
    x, w, xz, wz = (list(ins) + [None, None])[:4]
    rank = w.rank
    x_shift = 0.0 if xz is None else tf.reshape(tf.cast(cx.onnx(xz), tf.float32), [])
    xf = V(tf.cast(x.t, tf.float32) - x_shift, x.perm)
    warr, wzarr = cx.static(w), (np.zeros((), np.float32) if wz is None else cx.static(wz))
    if warr is not None and wzarr is not None:  # scalar or per output channel zero point
        wf = cx.const(warr.astype(np.float32) - np.asarray(wzarr, np.float32).reshape((-1,) + (1,) * (rank - 1)))
    else:
        w_shift = 0.0 if wz is None else tf.reshape(tf.cast(cx.onnx(wz), tf.float32), [-1] + [1] * (rank - 1))
        wf = V(tf.cast(cx.onnx(w), tf.float32) - w_shift)
    y = conv(cx, node, [xf, wf])[0]
    return [V(tf.cast(tf.round(y.t), tf.int32), y.perm)]


@op("QLinearConv", since=10)
def qlinear_conv(cx: Any, node: Any, ins: list[V | None]) -> list[V]:
    """QLinearConv as ONNX defines it: the integer conv of the zero-point-shifted inputs (ConvInteger's
    float32 conv) plus the int32 bias, scaled by x_scale * w_scale / y_scale (per output channel where
    w_scale is), rounded half to even, shifted by y_zero_point and saturated to y's type."""
    tf = cx.tf
    x, xs, xz, w, ws, wz, ys, yz = (list(ins) + [None] * 9)[:8]
    bias = ins[8] if len(ins) > 8 else None
    acc = conv_integer(cx, node, [x, w, xz, wz])[0]
    total = tf.cast(acc.t, tf.float32)
    if bias is not None:
        total = total + tf.cast(cx.onnx(bias), tf.float32)  # channels-last: the bias runs along the last axis
    scale = tf.cast(cx.onnx(xs), tf.float32) * tf.reshape(tf.cast(cx.onnx(ws), tf.float32), [-1])
    y = tf.round(total * (scale / tf.cast(cx.onnx(ys), tf.float32)))
    out = tf.as_dtype(cx.static(yz).dtype) if yz is not None and cx.static(yz) is not None else (
        cx.onnx(yz).dtype if yz is not None else tf.uint8)
    if yz is not None:
        y = y + tf.cast(cx.onnx(yz), tf.float32)
    return [V(tf.cast(tf.clip_by_value(y, out.min, out.max), out), acc.perm)]


def _grouped(cx: Any, node: Any, x: Any, weight: Any, m: Any, win: spatial.Window, padding: str) -> Any:
    """The convolution of x (channels-last, padded) with an ONNX-ordered weight (M, C/group, k...)."""
    tf = cx.tf
    group = int(cx.attr(node, "group", 1))
    nd = len(win.kernel)
    if group == 1:
        return _plain(cx, x, weight, m, win, padding)
    depthwise = nd == 2 and weight.shape[1] == 1 and (win.strides[0] == win.strides[1] or win.dilations == (1, 1))
    if depthwise and all(s == 1 for s in win.strides) or depthwise and all(d == 1 for d in win.dilations):
        cout = weight.shape[0]
        # (C*mult, 1, kh, kw) -> (kh, kw, C, mult): output channel c*mult + j is filter[..., c, j], as in ONNX
        filt = m.transpose(m.reshape(weight, (group, cout // group, *weight.shape[2:])), (2, 3, 0, 1))
        return tf.nn.depthwise_conv2d(x, filt, strides=(1, *win.strides, 1), padding=padding,
                                      dilations=win.dilations)
    xs = tf.split(x, group, axis=-1)
    ws = m.split(weight, group, 0)
    return tf.concat([_plain(cx, xi, wi, m, win, padding) for xi, wi in zip(xs, ws)], axis=-1)


def _plain(cx: Any, x: Any, weight: Any, m: Any, win: spatial.Window, padding: str) -> Any:
    nd = len(win.kernel)
    filt = m.transpose(weight, (*range(2, nd + 2), 1, 0))  # (M, C, k...) -> (k..., C, M)
    fn = getattr(cx.tf.nn, _CONV[nd])
    return fn(x, filt, strides=(1, *win.strides, 1), padding=padding, dilations=(1, *win.dilations, 1))


def _dilate(cx: Any, weight: Any, m: Any, dilations: tuple[int, ...]) -> Any:
    """A dilated kernel written out with zeros between its taps (ConvTranspose of a dilated kernel)."""
    if all(d == 1 for d in dilations):
        return weight
    if m is not np:
        return _dilate_graph(cx, weight, dilations)
    k = weight.shape[2:]
    out = np.zeros((*weight.shape[:2], *((ki - 1) * d + 1 for ki, d in zip(k, dilations))), weight.dtype)
    out[(slice(None), slice(None), *(slice(None, None, d) for d in dilations))] = weight
    return out


def _dilate_graph(cx: Any, t: Any, factors: tuple[int, ...], first: int = 2) -> Any:
    """t with d - 1 zeros between neighbours along axes first, first + 1, ... (a dilated kernel, or
    a strided transposed conv's input): each element followed by its zeros (a stack and a reshape),
    then the zeros after the last one cut off."""
    tf = cx.tf
    for i, d in enumerate(factors):
        if d == 1:
            continue
        axis = first + i
        w = tf.expand_dims(t, axis + 1)
        pads = [[0, 0]] * (t.shape.rank + 1)
        pads[axis + 1] = [0, d - 1]
        w = tf.pad(w, pads)
        shape = tf.shape(t)
        w = tf.reshape(w, tf.concat([shape[:axis], [shape[axis] * d], shape[axis + 1:]], 0))
        t = tf.gather(w, tf.range(tf.shape(w)[axis] - (d - 1)), axis=axis)
    return t


@op("ConvTranspose", since=1)
def conv_transpose(cx: Any, node: Any, ins: list[V | None]) -> list[V]:
    tf = cx.tf
    r, n, xp, weight, m, win, b = _operands(cx, node, ins, "transposed convolution")
    weight = _dilate(cx, weight, m, win.dilations)  # a dilated kernel written out: no dilated transposed conv
    size = spatial.sizes(cx, xp, n)
    full = [(s - 1) * st + eff for s, st, eff in zip(size, win.strides, win.effective)]
    begin, end = _transpose_pads(cx, node, size, full, win)
    if n == 1:
        xp = tf.expand_dims(xp, 1)
        weight = m.reshape(weight, (*weight.shape[:2], 1, weight.shape[2]))
        full = [1, *full]
        begin, end = [0, *begin], [0, *end]
    strides = (1, *win.strides) if n == 1 else win.strides
    y = _transposed(cx, node, xp, weight, m, full, strides)
    y = _crop(cx, y, begin, end)
    y = _bias(cx, b, y)
    if n == 1:
        y = tf.squeeze(y, 1)
    return [V(y, channels_last(r))]


def _transpose_pads(cx: Any, node: Any, size: list, full: list, win: spatial.Window) -> tuple[list, list]:
    """What to cut from the start and the end of the full (VALID) output; a negative end grows it
    (output_padding). Follows the ONNX reference: output_shape or SAME_* fix the total padding."""
    n = len(size)
    extra = [int(v) for v in (cx.attr(node, "output_padding", None) or (0,) * n)]
    auto = cx.attr(node, "auto_pad", "NOTSET") or "NOTSET"
    shape = cx.attr(node, "output_shape", None)
    flat = cx.attr(node, "pads", None)
    if shape is not None and len(shape) > n:
        shape = shape[-n:]
    if flat is None and auto in ("SAME_UPPER", "SAME_LOWER") and shape is None:
        # output = input * stride: the size cancels out of the total padding, a dynamic size included
        total = [eff + e - st for eff, e, st in zip(win.effective, extra, win.strides)]
    elif flat is None and shape is not None:
        total = [f + e - int(o) for f, e, o in zip(full, extra, shape)]
    else:
        flat = [0] * (2 * n) if auto == "VALID" or flat is None else [int(p) for p in flat]
        return flat[:n], [flat[n + i] - extra[i] for i in range(n)]
    if auto == "SAME_UPPER":
        begin = [t // 2 for t in total]
    elif auto == "SAME_LOWER":
        begin = [t - t // 2 for t in total]
    else:  # output_shape with explicit (zero) pads: the output starts at the full output's start
        begin = [0] * n
    return begin, [t - bg - e for t, bg, e in zip(total, begin, extra)]


def _transposed(cx: Any, node: Any, x: Any, weight: Any, m: Any, full: list, strides: tuple) -> Any:
    """The full ("VALID") transposed convolution of channels-last x by an ONNX weight (C, M/group, k...)."""
    tf = cx.tf
    group = int(cx.attr(node, "group", 1))
    nd = len(full)
    fn = getattr(tf.nn, _CONV_T[nd])
    cout = weight.shape[1]
    batch = tf.shape(x)[0]
    out_shape = tf.stack([batch, *[tf.cast(f, tf.int32) for f in full], tf.constant(cout, tf.int32)])

    def one(xi: Any, wi: Any) -> Any:
        if nd == 3:  # TF.js has no Conv3DBackpropInputV2
            return _transposed_as_conv(cx, xi, wi, m, strides)
        filt = m.transpose(wi, (*range(2, nd + 2), 1, 0))  # (C, M, k...) -> (k..., M, C)
        return fn(xi, filt, out_shape, strides=(1, *strides, 1), padding="VALID")

    if group == 1:
        return one(x, weight)
    return tf.concat([one(xi, wi) for xi, wi in zip(tf.split(x, group, axis=-1), m.split(weight, group, 0))], -1)


def _transposed_as_conv(cx: Any, x: Any, weight: Any, m: Any, strides: tuple) -> Any:
    """The full transposed convolution as a plain one: stride-1 zeros between the input's elements,
    k - 1 zeros around them, and the kernel flipped with its in/out channels swapped."""
    tf = cx.tf
    nd = len(strides)
    k = weight.shape[2:]
    x = _dilate_graph(cx, x, tuple(strides), first=1)
    x = spatial.pad(cx, x, [(int(ki) - 1, int(ki) - 1) for ki in k])
    filt = m.transpose(weight, (*range(2, nd + 2), 0, 1))  # (C, M, k...) -> (k..., C, M)
    filt = np.ascontiguousarray(np.flip(filt, tuple(range(nd)))) if m is np else tf.reverse(filt, list(range(nd)))
    return getattr(tf.nn, _CONV[nd])(x, filt, strides=(1,) * (nd + 2), padding="VALID")


def _crop(cx: Any, y: Any, begin: list, end: list) -> Any:
    """y with begin[i] cut from the start of spatial axis i and end[i] from its end (negative: zeros added)."""
    tf = cx.tf
    if not all(isinstance(e, int) for e in end):  # sizes known only at run time
        y = spatial.pad(cx, y, [(0, tf.maximum(-e, 0)) for e in end])
        end = [tf.maximum(e, 0) for e in end]
    elif any(e < 0 for e in end):
        y = spatial.pad(cx, y, [(0, max(-e, 0)) for e in end])
        end = [max(e, 0) for e in end]
    if all(isinstance(v, int) and v == 0 for v in (*begin, *end)):
        return y
    shape = tf.shape(y)
    starts = [0, *begin, 0]
    stops = [shape[0], *[shape[i + 1] - e for i, e in enumerate(end)], shape[-1]]
    return tf.strided_slice(y, tf.stack([tf.constant(s, tf.int32) if isinstance(s, int) else s for s in starts]),
                            tf.stack(stops))
