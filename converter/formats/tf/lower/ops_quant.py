"""Integer quantization ops as float arithmetic (TF.js has no quantized kernels): QuantizeLinear,
DequantizeLinear, DynamicQuantizeLinear, QLinearMatMul, MatMulInteger.

Integers pass through float32, exact below 2^24 (8-bit data and their int32 products in the
conformance sizes); rounding is half to even, as ONNX's rint (TF's Round). Per-tensor, per-axis and
blocked (opset 21) scales are broadcast in ONNX order.
"""

from __future__ import annotations

from typing import Any

from .registry import op
from .values import V

#: integer quantized types -> their (low, high) saturation range
_RANGES = {"uint8": (0, 255), "int8": (-128, 127), "uint16": (0, 65535), "int16": (-32768, 32767),
           "int32": (-2**31, 2**31 - 1)}


def _param(cx: Any, v: V | None, x: Any, axis: int, block: int) -> Any:
    """A scale / zero point broadcastable against ``x`` (ONNX order): a scalar as it is, a 1-D one
    along ``axis``, a blocked one repeated ``block`` times along ``axis`` (and cut to its length)."""
    tf = cx.tf
    t = cx.onnx(v)
    rank = x.shape.rank
    if t.shape.rank == 0 or (t.shape.rank == 1 and t.shape[0] == 1 and not block):
        return tf.reshape(t, [])
    if block:
        t = tf.repeat(t, block, axis=axis)
        return tf.gather(t, tf.range(tf.shape(x)[axis]), axis=axis)
    shape = [1] * rank
    shape[axis] = -1
    return tf.reshape(t, shape)


def _saturate(cx: Any, y: Any, dtype: Any) -> Any:
    low, high = _RANGES[dtype.name]
    return cx.tf.cast(cx.tf.clip_by_value(y, float(low), float(high)), dtype)


def _quantize(cx: Any, x: Any, scale: Any, zero: Any, dtype: Any) -> Any:
    tf = cx.tf
    y = tf.round(tf.cast(x, tf.float32) / tf.cast(scale, tf.float32))
    if zero is not None:
        y = y + tf.cast(zero, tf.float32)
    return _saturate(cx, y, dtype)


@op("QuantizeLinear", since=10)
def quantize_linear(cx: Any, node: Any, ins: list[V | None]) -> list[V]:
    x = cx.onnx(ins[0])
    axis = int(cx.attr(node, "axis", 1)) % max(x.shape.rank, 1)
    block = int(cx.attr(node, "block_size", 0) or 0)
    zero_v = ins[2] if len(ins) > 2 else None
    dtype = zero_v.t.dtype if zero_v is not None else cx.dtype(cx.attr(node, "output_dtype", 0) or 2)
    if dtype.name not in _RANGES:
        cx.fail(node, f"quantizing to {dtype.name} is not supported (8/16-bit integers are)")
    zero = _param(cx, zero_v, x, axis, block) if zero_v is not None else None
    return [V(_quantize(cx, x, _param(cx, ins[1], x, axis, block), zero, dtype))]


@op("DequantizeLinear", since=10)
def dequantize_linear(cx: Any, node: Any, ins: list[V | None]) -> list[V]:
    tf = cx.tf
    x = cx.onnx(ins[0])
    if not x.dtype.is_integer:
        cx.fail(node, f"dequantizing {x.dtype.name} is not supported (integer types are)")
    axis = int(cx.attr(node, "axis", 1)) % max(x.shape.rank, 1)
    block = int(cx.attr(node, "block_size", 0) or 0)
    scale = _param(cx, ins[1], x, axis, block)
    y = tf.cast(x, tf.float32)
    if len(ins) > 2 and ins[2] is not None:
        y = y - tf.cast(_param(cx, ins[2], x, axis, block), tf.float32)
    return [V(tf.cast(y * tf.cast(scale, tf.float32), scale.dtype))]


@op("DynamicQuantizeLinear", since=11)
def dynamic_quantize_linear(cx: Any, node: Any, ins: list[V | None]) -> list[V]:
    """uint8 with a scale and zero point from the data's range (0 always inside it)."""
    tf = cx.tf
    x = tf.cast(cx.onnx(ins[0]), tf.float32)
    high = tf.maximum(0.0, tf.reduce_max(x))
    low = tf.minimum(0.0, tf.reduce_min(x))
    scale = tf.where(tf.equal(high, low), 1.0, high - low) / 255.0
    zero = tf.round(tf.clip_by_value(-low / scale, 0.0, 255.0))
    y = _saturate(cx, tf.round(x / scale) + zero, tf.uint8)
    return [V(y), V(tf.cast(scale, ins[0].t.dtype)), V(tf.cast(zero, tf.uint8))]


def _centered(cx: Any, v: V, zero: V | None, axis_of_zero: int) -> Any:
    """``v - zero`` as float32 (exact for 8-bit values); a 1-D zero point runs along ``axis_of_zero``
    (rows of A, columns of B)."""
    tf = cx.tf
    t = tf.cast(cx.onnx(v), tf.float32)
    if zero is None:
        return t
    z = tf.cast(cx.onnx(zero), tf.float32)
    if z.shape.rank == 1 and axis_of_zero == -2:
        z = z[:, None]
    return t - z


@op("MatMulInteger", since=10)
def matmul_integer(cx: Any, node: Any, ins: list[V | None]) -> list[V]:
    tf = cx.tf
    ins = [*ins, *[None] * (4 - len(ins))]
    acc = tf.linalg.matmul(_centered(cx, ins[0], ins[2], -2), _centered(cx, ins[1], ins[3], -1))
    return [V(tf.cast(tf.round(acc), tf.int32))]


@op("QLinearMatMul", since=10)
def qlinear_matmul(cx: Any, node: Any, ins: list[V | None]) -> list[V]:
    tf = cx.tf
    a, a_scale, a_zero, b, b_scale, b_zero, y_scale, y_zero = ins
    acc = tf.linalg.matmul(_centered(cx, a, a_zero, -2), _centered(cx, b, b_zero, -1))
    scale = (tf.cast(cx.onnx(a_scale), tf.float32) * tf.cast(cx.onnx(b_scale), tf.float32)
             / tf.cast(cx.onnx(y_scale), tf.float32))
    y = tf.round(acc * scale) + tf.cast(cx.onnx(y_zero), tf.float32)
    return [V(_saturate(cx, y, y_zero.t.dtype))]
