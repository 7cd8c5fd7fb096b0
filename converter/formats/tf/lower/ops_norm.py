"""Normalizations: BatchNormalization, InstanceNormalization, GroupNormalization, LRN,
MeanVarianceNormalization.

They are per-channel, not layout-bound: each keeps its input's layout and applies its scale and
bias along the physical axis that holds ONNX axis 1 (``cx.axis(x, 1)``), so a BatchNorm after a
channels-last conv stays channels-last. Inference BatchNorm with static parameters folds into one
multiply and one add (numpy, at conversion time).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .registry import op
from .values import V, channels_last


def _vector(cx: Any, v: V, dtype: Any) -> Any:
    """A 1-D parameter as numpy (static) or a tensor, in the input's dtype."""
    arr = cx.static(v)
    if arr is not None:
        return np.asarray(arr, dtype=dtype.as_numpy_dtype)
    return cx.tf.cast(cx.onnx(v), dtype)


def _along(cx: Any, vec: Any, axis: int, rank: int) -> Any:
    """A per-channel vector shaped to broadcast along physical ``axis`` of a rank-``rank`` tensor."""
    shape = [1] * rank
    shape[axis] = -1
    if axis == rank - 1:
        return vec
    return np.reshape(vec, shape) if isinstance(vec, np.ndarray) else cx.tf.reshape(vec, shape)


@op("BatchNormalization", since=1)
def batch_norm(cx: Any, node: Any, ins: list[V | None]) -> list[V | None]:
    x = ins[0]
    tf = cx.tf
    dtype = x.t.dtype
    eps = float(cx.attr(node, "epsilon", 1e-5))
    scale, bias, mean, var = (_vector(cx, v, dtype) for v in ins[1:5])
    ca = cx.axis(x, 1)
    if cx.attr(node, "training_mode", 0):
        return _batch_norm_training(cx, node, x, (scale, bias, mean, var), eps)
    static = all(isinstance(p, np.ndarray) for p in (scale, bias, mean, var))
    if static and x.rank == 4 and ca == 3 and dtype == tf.float32:
        # channels-last after a conv: FusedBatchNormV3, which the TF.js converter folds into the conv's
        # weights (tensorflowjs fold_batch_norms), so BN costs nothing in TF.js
        y = tf.raw_ops.FusedBatchNormV3(x=x.t, scale=scale, offset=bias, mean=mean, variance=var, epsilon=eps,
                                        is_training=False)[0]
        return [V(y, x.perm)] + [None] * (len(node.output) - 1)
    if static:
        mul = (scale / np.sqrt(var + np.asarray(eps, var.dtype))).astype(var.dtype)
        add = (bias - mean * mul).astype(var.dtype)
    else:
        mul = scale * tf.math.rsqrt(var + eps)
        add = bias - mean * mul
    y = x.t * _along(cx, mul, ca, x.rank) + _along(cx, add, ca, x.rank)
    return [V(y, x.perm)] + [None] * (len(node.output) - 1)


def _batch_norm_training(cx: Any, node: Any, x: V, params: tuple, eps: float) -> list[V | None]:
    """training_mode=1: normalise by the batch's statistics; the running ones move by ``momentum``."""
    tf = cx.tf
    scale, bias, mean, var = params
    momentum = float(cx.attr(node, "momentum", 0.9))
    ca = cx.axis(x, 1)
    axes = [a for a in range(x.rank) if a != ca]
    bmean, bvar = tf.nn.moments(x.t, axes=axes)
    mul = scale * tf.math.rsqrt(bvar + eps)
    y = (x.t - _along(cx, bmean, ca, x.rank)) * _along(cx, mul, ca, x.rank) + _along(cx, bias, ca, x.rank)
    outs: list[V | None] = [V(y, x.perm), V(mean * momentum + bmean * (1 - momentum)),
                            V(var * momentum + bvar * (1 - momentum))]
    return outs[: len(node.output)]


@op("InstanceNormalization", since=1)
def instance_norm(cx: Any, node: Any, ins: list[V | None]) -> list[V]:
    x = ins[0]
    tf = cx.tf
    dtype = x.t.dtype
    eps = float(cx.attr(node, "epsilon", 1e-5))
    scale, bias = (_vector(cx, v, dtype) for v in ins[1:3])
    ca = cx.axis(x, 1)
    mean, var = tf.nn.moments(x.t, axes=sorted(cx.axis(x, a) for a in range(2, x.rank)), keepdims=True)
    y = (x.t - mean) * tf.math.rsqrt(var + eps) * _along(cx, scale, ca, x.rank) + _along(cx, bias, ca, x.rank)
    return [V(y, x.perm)]


@op("GroupNormalization", since=18)
def group_norm(cx: Any, node: Any, ins: list[V | None]) -> list[V]:
    """Channels-last: (N, spatial..., C) -> (N, S, G, C/G), statistics over S and C/G."""
    x = ins[0]
    tf = cx.tf
    r = x.rank
    xp = cx.physical(x, channels_last(r))
    groups = int(cx.attr(node, "num_groups"))
    eps = float(cx.attr(node, "epsilon", 1e-5))
    channels = xp.shape[-1] if xp.shape[-1] is not None else tf.shape(xp)[-1]
    scale, bias = (_vector(cx, v, xp.dtype) for v in ins[1:3])
    if cx.opset < 21:  # opset 18: one scale and bias per group
        scale, bias = (np.repeat(p, channels // groups) if isinstance(p, np.ndarray) else
                       tf.repeat(p, channels // groups) for p in (scale, bias))
    shape = tf.shape(xp)
    grouped = tf.reshape(xp, tf.stack([shape[0], -1, groups, channels // groups]))
    mean, var = tf.nn.moments(grouped, axes=[1, 3], keepdims=True)
    y = tf.reshape((grouped - mean) * tf.math.rsqrt(var + eps), shape)
    return [V(y * scale + bias, channels_last(r))]


@op("LRN", since=1)
def lrn(cx: Any, node: Any, ins: list[V | None]) -> list[V]:
    x = ins[0]
    tf = cx.tf
    size = int(cx.attr(node, "size"))
    alpha = float(cx.attr(node, "alpha", 1e-4))
    beta = float(cx.attr(node, "beta", 0.75))
    bias = float(cx.attr(node, "bias", 1.0))
    if x.rank == 4 and size % 2 == 1 and x.t.dtype == tf.float32:  # TF's (and TF.js's) LRN kernel: NHWC
        xp = cx.physical(x, channels_last(4))
        y = tf.nn.local_response_normalization(xp, depth_radius=(size - 1) // 2, bias=bias, alpha=alpha / size,
                                               beta=beta)
        return [V(y, channels_last(4))]
    ca = cx.axis(x, 1)
    channels = x.t.shape[ca]
    if channels is None:
        cx.fail(node, "LRN needs the channel count at conversion time")
    sq = tf.square(x.t)
    before = (size - 1) // 2
    padding = [[0, 0]] * x.rank
    padding[ca] = [before, size - 1 - before]
    sq = tf.pad(sq, padding)
    total = tf.add_n([tf.gather(sq, list(range(i, i + channels)), axis=ca) for i in range(size)])
    return [V(x.t / tf.pow(bias + (alpha / size) * total, beta), x.perm)]


@op("MeanVarianceNormalization", since=1)
def mean_variance_norm(cx: Any, node: Any, ins: list[V | None]) -> list[V]:
    """As ONNX's function body: (X - E[X]) / (sqrt(E[X^2] - E[X]^2) + 1e-9)."""
    x = ins[0]
    tf = cx.tf
    axes = sorted(cx.axis(x, a) for a in (cx.attr(node, "axes", None) or (0, 2, 3)))
    mean = tf.reduce_mean(x.t, axis=axes, keepdims=True)
    var = tf.reduce_mean(tf.square(x.t), axis=axes, keepdims=True) - tf.square(mean)
    return [V((x.t - mean) / (tf.sqrt(var) + 1e-9), x.perm)]
