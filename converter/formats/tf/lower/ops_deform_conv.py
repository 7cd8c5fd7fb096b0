"""DeformConv (opset 19, 2-D): each kernel tap samples the input at its offset position (bilinear,
zero outside the map, as ``onnx.reference`` samples through GridSample with align_corners), scaled
by the mask; the sampled taps then meet the weights in one MatMul per group. TF.js has no such
kernel: the sampling is GatherNd over the channels-last input, and the output stays channels-last."""

from __future__ import annotations

from typing import Any

from .registry import op
from .values import V, channels_last


def _bilinear(cx: Any, feat: Any, y: Any, x: Any) -> Any:
    """``feat`` [N, H, W, C] at pixel coordinates y, x [N, oh, ow] -> [N, oh, ow, C]; taps outside
    the map count zero."""
    tf = cx.tf
    shape = tf.shape(feat)
    size = [tf.cast(shape[1], y.dtype), tf.cast(shape[2], y.dtype)]
    batch = tf.broadcast_to(tf.reshape(tf.range(shape[0]), [-1, 1, 1]), tf.shape(y))
    taps = []
    for p, n in ((y, size[0]), (x, size[1])):
        base = tf.floor(p)
        frac = p - base
        axis = []
        for i, w in ((base, 1 - frac), (base + 1, frac)):
            inside = (i >= 0) & (i <= n - 1)
            axis.append((tf.cast(tf.where(inside, i, tf.zeros_like(i)), tf.int32), w * tf.cast(inside, w.dtype)))
        taps.append(axis)
    total = None
    for yi, wy in taps[0]:
        for xi, wx in taps[1]:
            term = tf.gather_nd(feat, tf.stack([batch, yi, xi], axis=-1)) * (wy * wx)[..., None]
            total = term if total is None else total + term
    return total


@op("DeformConv", since=19)
def deform_conv(cx: Any, node: Any, ins: list[V | None]) -> list[V]:
    tf = cx.tf
    ins = [*ins, *[None] * (5 - len(ins))]
    x, w = ins[0], cx.onnx(ins[1])
    if x.rank != 4:
        cx.fail(node, "only 2-D DeformConv is supported")
    feat = cx.physical(x, channels_last(4))  # [N, H, W, C]
    kh, kw = (int(k) for k in (cx.attr(node, "kernel_shape", None) or w.shape[2:]))
    sh, sw = cx.attr(node, "strides", None) or [1, 1]
    dh, dw = cx.attr(node, "dilations", None) or [1, 1]
    pads = cx.attr(node, "pads", None) or [0, 0, 0, 0]
    group, offset_group = int(cx.attr(node, "group", 1)), int(cx.attr(node, "offset_group", 1))
    offset = cx.onnx(ins[2])
    n, oh, ow = tf.shape(offset)[0], tf.shape(offset)[2], tf.shape(offset)[3]
    offset = tf.reshape(offset, tf.stack([n, offset_group, kh, kw, 2, oh, ow]))
    mask = None if ins[4] is None else tf.reshape(cx.onnx(ins[4]), tf.stack([n, offset_group, kh, kw, oh, ow]))
    channels = feat.shape[-1]
    per_offset_group = channels // offset_group
    oy = tf.cast(tf.range(oh) * sh - pads[0], feat.dtype)[None, :, None]
    ox = tf.cast(tf.range(ow) * sw - pads[1], feat.dtype)[None, None, :]
    taps = []
    for i in range(kh):
        for j in range(kw):
            parts = []
            for g in range(offset_group):
                y = oy + i * dh + offset[:, g, i, j, 0]
                xx = ox + j * dw + offset[:, g, i, j, 1]
                sampled = _bilinear(cx, feat[..., g * per_offset_group:(g + 1) * per_offset_group], y, xx)
                parts.append(sampled if mask is None else sampled * mask[:, g, i, j][..., None])
            taps.append(tf.concat(parts, axis=-1))  # [N, oh, ow, C]
    cols = tf.stack(taps, axis=-1)  # [N, oh, ow, C, kh*kw]: (channel, tap) as W's (in-channel, kh, kw)
    outs = []
    in_per_group, out_per_group = channels // group, w.shape[0] // group
    for g in range(group):
        col = tf.reshape(cols[..., g * in_per_group:(g + 1) * in_per_group, :], [-1, in_per_group * kh * kw])
        weight = tf.reshape(w[g * out_per_group:(g + 1) * out_per_group], [out_per_group, -1])
        outs.append(tf.linalg.matmul(col, tf.transpose(weight)))  # explicit transpose: see ops_index.affine_grid
    out = tf.reshape(tf.concat(outs, axis=-1), tf.stack([n, oh, ow, w.shape[0]]))
    if ins[3] is not None:
        out = out + cx.onnx(ins[3])
    return [V(out, channels_last(4))]
