"""Linear algebra and normalising ops: MatMul, Gemm, Einsum, Softmax / LogSoftmax / Hardmax (both
the opset < 13 "coerce to 2-D" and the per-axis semantics), LayerNormalization."""

from __future__ import annotations

from typing import Any

from .registry import op
from .values import V


@op("MatMul")
def matmul(cx: Any, node: Any, ins: list[V | None]) -> list[V]:
    """numpy matmul: 1-D operands get a unit axis (removed again), batch dims broadcast."""
    tf = cx.tf
    ra, rb = ins[0].rank, ins[1].rank
    if ra and rb and ra >= 2 and rb >= 2 and not (rb == 2 and ra > 2):
        return _batched(cx, ins)
    a, b = cx.onnx(ins[0]), cx.onnx(ins[1])
    if ra == 1 and rb == 1:
        return [V(tf.reduce_sum(a * b))]
    if ra == 1:
        return [V(tf.squeeze(tf.linalg.matmul(a[None, :], b), -2))]
    if rb == 1:
        return [V(tf.squeeze(tf.linalg.matmul(a, b[:, None]), -1))]
    if rb == 2 and ra > 2:  # a linear layer: one 2-D MatMul (TF.js runs it as a dense op)
        k, n = b.shape.as_list()
        lead = tf.shape(a, out_type=tf.int64)[:-1]
        flat = tf.linalg.matmul(tf.reshape(a, [-1, k if k is not None else tf.shape(b)[0]]), b)
        out_n = tf.constant([n], tf.int64) if n is not None else tf.shape(b, out_type=tf.int64)[1:]
        out = tf.reshape(flat, tf.concat([lead, out_n], 0))
        known = a.shape.as_list()[:-1] + [n]
        out.set_shape(known)
        return [V(out)]
    return [V(tf.linalg.matmul(a, b))]


def _batched(cx: Any, ins: list[V | None]) -> list[V]:
    (a, ta), (b, tb) = _swapped(cx, ins[0]), _swapped(cx, ins[1])
    return [V(cx.tf.linalg.matmul(a, b, transpose_a=ta, transpose_b=tb))]


def _swapped(cx: Any, v: V) -> tuple[Any, bool]:
    """A matrix operand whose layout differs from ONNX order only in its last two axes (K after
    Transpose(0, 1, 3, 2) in attention) goes to MatMul as it is, with MatMul's transpose flag. Batched
    only: TF.js fuses a 2-D MatMul with a following bias into _FusedMatMul, whose wasm kernel gets
    transpose_b wrong (tfjs 4.22; the cpu kernel is right)."""
    perm = v.perm
    if perm and len(perm) >= 3 and tuple(perm) == (*range(len(perm) - 2), len(perm) - 1, len(perm) - 2):
        return v.t, True
    return cx.onnx(v), False


@op("Gemm")
def gemm(cx: Any, node: Any, ins: list[V | None]) -> list[V]:
    tf = cx.tf
    alpha, beta = cx.attr(node, "alpha", 1.0), cx.attr(node, "beta", 1.0)
    a, b = (_operand(cx, v, bool(cx.attr(node, flag, 0))) for v, flag in ((ins[0], "transA"), (ins[1], "transB")))
    out = tf.linalg.matmul(a[0], b[0], transpose_a=a[1], transpose_b=b[1])
    if alpha != 1.0:
        out = out * tf.cast(alpha, out.dtype)
    if len(ins) > 2 and ins[2] is not None:
        c = cx.onnx(ins[2])
        out = out + (c if beta == 1.0 else c * tf.cast(beta, c.dtype))
    return [V(out)]


def _operand(cx: Any, v: V, transposed: bool) -> tuple[Any, bool]:
    """A Gemm operand, transposed as transA/transB say: a constant now, in numpy; a run-time value by a
    Transpose, not by MatMul's flag (TF.js fuses Gemm's bias into _FusedMatMul, whose wasm kernel
    computes transpose_b wrongly: tfjs 4.22, max abs 1.0 on a 16x8 layer; its cpu kernel is right)."""
    if not transposed:
        return cx.onnx(v), False
    value = cx.static(v)
    if value is not None:
        return cx.const(cx.np.ascontiguousarray(value.T)).t, False
    return cx.tf.transpose(cx.onnx(v)), False


@op("Einsum", since=12)
def einsum(cx: Any, node: Any, ins: list[V | None]) -> list[V]:
    equation = cx.attr(node, "equation").replace(" ", "")
    return [V(cx.tf.einsum(equation, *[cx.onnx(v) for v in ins if v is not None]))]


def _coerced(cx: Any, x: V, axis: int, fn: Any) -> Any:
    """Opset < 13: ``fn`` over the input flattened to 2-D at ``axis``, reshaped back."""
    tf = cx.tf
    data = cx.onnx(x)
    shape = tf.shape(data, out_type=tf.int64)
    flat = tf.reshape(data, tf.stack([tf.reduce_prod(shape[:axis]), -1])) if axis else tf.reshape(data, [1, -1])
    out = tf.reshape(fn(flat, 1), shape)
    out.set_shape(data.shape)
    return out


def _softmax_family(fn_name: str) -> tuple[Any, Any]:
    def per_axis(cx: Any, node: Any, ins: list[V | None]) -> list[V]:
        x = ins[0]
        axis = cx.axis(x, cx.attr(node, "axis", -1))
        return [V(_FNS[fn_name](cx, x.t, axis), x.perm)]

    def coerced(cx: Any, node: Any, ins: list[V | None]) -> list[V]:
        x = ins[0]
        axis = cx.attr(node, "axis", 1)
        axis = axis + x.rank if axis < 0 else axis
        if axis == x.rank - 1:  # the 2-D view changes nothing: the last axis
            return [V(_FNS[fn_name](cx, x.t, cx.axis(x, axis)), x.perm)]
        return [V(_coerced(cx, x, axis, lambda t, a: _FNS[fn_name](cx, t, a)))]

    return per_axis, coerced


def _hardmax(cx: Any, t: Any, axis: int) -> Any:
    tf = cx.tf
    idx = tf.expand_dims(tf.argmax(t, axis=axis, output_type=tf.int32), axis)  # the first of equal maxima, as ONNX
    # positions compared with the argmax, not OneHot: TF.js's OneHot ignores its axis and its wasm kernel
    # writes integer bits into float outputs
    rank = t.shape.rank
    shape = [1] * rank
    shape[axis] = -1
    pos = tf.reshape(tf.range(tf.shape(t, out_type=tf.int32)[axis]), shape)
    # a Select, not a Cast of the bool: TF.js 4.22's cpu backend handed that Cast's float32 output back
    # as one byte per element
    return tf.where(tf.equal(pos, idx), tf.ones_like(t), tf.zeros_like(t))


_FNS = {
    "Softmax": lambda cx, t, axis: cx.tf.nn.softmax(t, axis=axis),
    "LogSoftmax": lambda cx, t, axis: cx.tf.nn.log_softmax(t, axis=axis),
    "Hardmax": _hardmax,
}
for _name in _FNS:
    _per_axis, _coerce = _softmax_family(_name)
    op(_name, since=13)(_per_axis)
    op(_name, until=12)(_coerce)


@op("LayerNormalization", since=17)
def layer_norm(cx: Any, node: Any, ins: list[V | None]) -> list[V | None]:
    """Normalised over ONNX axes axis..rank-1 (physical axes through the perm); Mean and InvStdDev
    (the optional outputs) keep those axes as 1s."""
    tf = cx.tf
    x = ins[0]
    rank = x.rank
    axis = cx.attr(node, "axis", -1)
    axis = axis + rank if axis < 0 else axis
    eps = cx.attr(node, "epsilon", 1e-5)
    axes = sorted(cx.axis(x, a) for a in range(axis, rank))
    t = x.t
    stash = t.dtype in (tf.float16, tf.bfloat16) and cx.attr(node, "stash_type", 1) == 1
    if stash:  # statistics in float32, as ONNX's stash_type says
        t = tf.cast(t, tf.float32)
    mean = tf.reduce_mean(t, axes, keepdims=True)
    centred = t - mean
    inv = tf.math.rsqrt(tf.reduce_mean(tf.square(centred), axes, keepdims=True) + eps)
    y = centred * inv
    if stash:
        y = tf.cast(y, x.t.dtype)
    (y, *affine), perm = cx.broadcast([V(y, x.perm), *[v for v in ins[1:3] if v is not None]])
    if affine:
        y = y * affine[0]
    if len(affine) > 1:
        y = y + affine[1]
    out: list[V | None] = [V(y, perm)]
    if len(node.output) > 1:
        out += [V(mean, x.perm), V(inv, x.perm)]
    return out


@op("RMSNormalization", since=23)
def rms_norm(cx: Any, node: Any, ins: list[V | None]) -> list[V]:
    """x / sqrt(mean(x^2 over axis..rank-1) + epsilon) * scale, statistics in float32 for half inputs."""
    tf = cx.tf
    x = ins[0]
    rank = x.rank
    axis = cx.attr(node, "axis", -1)
    axis = axis + rank if axis < 0 else axis
    axes = sorted(cx.axis(x, a) for a in range(axis, rank))
    t = x.t
    stash = t.dtype in (tf.float16, tf.bfloat16) and cx.attr(node, "stash_type", 1) == 1
    if stash:
        t = tf.cast(t, tf.float32)
    y = t * tf.math.rsqrt(tf.reduce_mean(tf.square(t), axes, keepdims=True) + cx.attr(node, "epsilon", 1e-5))
    if stash:
        y = tf.cast(y, x.t.dtype)
    (y, scale), perm = cx.broadcast([V(y, x.perm), ins[1]])
    return [V(y * scale, perm)]
