"""Unary math and activations: the layout passes through (an activation after a channels-last conv
stays channels-last), except PRelu's slope, which broadcasts like an elementwise operand."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from .registry import op
from .values import V


def _unary(fn: Callable[..., Any]) -> Callable[..., list[V]]:
    def handler(cx: Any, node: Any, ins: list[V | None]) -> list[V]:
        x = ins[0]
        return [V(fn(cx, node, x.t), x.perm)]

    return handler


def _is_inf(cx: Any, node: Any, x: Any) -> Any:
    tf = cx.tf
    pos, neg = cx.attr(node, "detect_positive", 1), cx.attr(node, "detect_negative", 1)
    inf = tf.constant(math.inf, x.dtype)
    if pos and neg:
        return tf.math.equal(tf.abs(x), inf)
    if pos:
        return tf.math.equal(x, inf)
    if neg:
        return tf.math.equal(x, -inf)
    return tf.zeros_like(x, tf.bool)


def _abs(cx: Any, node: Any, x: Any) -> Any:
    if x.dtype.is_unsigned:  # TF has no Abs for unsigned ints
        return cx.tf.identity(x)
    return cx.tf.abs(x)


def _hard_sigmoid(cx: Any, node: Any, x: Any) -> Any:
    alpha, beta = cx.attr(node, "alpha", 0.2), cx.attr(node, "beta", 0.5)
    return cx.tf.clip_by_value(x * alpha + beta, 0.0, 1.0)


def _celu(cx: Any, node: Any, x: Any) -> Any:
    tf = cx.tf
    alpha = cx.attr(node, "alpha", 1.0)
    return tf.maximum(x, 0.0) + tf.minimum(0.0, alpha * (tf.exp(x / alpha) - 1.0))


def _elu(cx: Any, node: Any, x: Any) -> Any:
    tf = cx.tf
    alpha = cx.attr(node, "alpha", 1.0)
    return tf.where(x > 0, x, alpha * (tf.exp(x) - 1.0))  # tf.nn.elu has alpha fixed to 1


def _selu(cx: Any, node: Any, x: Any) -> Any:
    tf = cx.tf
    alpha = cx.attr(node, "alpha", 1.67326319217681884765625)
    gamma = cx.attr(node, "gamma", 1.05070102214813232421875)
    return gamma * tf.where(x > 0, x, alpha * (tf.exp(x) - 1.0))


def _gelu(cx: Any, node: Any, x: Any) -> Any:
    tf = cx.tf
    if cx.attr(node, "approximate", "none") == "tanh":
        return 0.5 * x * (1.0 + tf.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x * x * x)))
    return 0.5 * x * (1.0 + tf.math.erf(x * (1 / math.sqrt(2))))


def _thresholded(cx: Any, node: Any, x: Any) -> Any:
    tf = cx.tf
    return tf.where(x > cx.attr(node, "alpha", 1.0), x, tf.zeros_like(x))


def _shrink(cx: Any, node: Any, x: Any) -> Any:
    tf = cx.tf
    lambd, bias = cx.attr(node, "lambd", 0.5), cx.attr(node, "bias", 0.0)
    lo, hi = x + tf.cast(bias, x.dtype), x - tf.cast(bias, x.dtype)
    zero = tf.zeros_like(x)
    return tf.where(x < -lambd, lo, tf.where(x > lambd, hi, zero))


_UNARY: dict[str, Callable[..., Any]] = {
    "Abs": _abs,
    "Neg": lambda cx, n, x: cx.tf.negative(x),
    "Exp": lambda cx, n, x: cx.tf.exp(x),
    "Log": lambda cx, n, x: cx.tf.math.log(x),
    "Sqrt": lambda cx, n, x: cx.tf.sqrt(x),
    "Reciprocal": lambda cx, n, x: cx.tf.math.reciprocal(x),
    "Floor": lambda cx, n, x: cx.tf.floor(x),
    "Ceil": lambda cx, n, x: cx.tf.math.ceil(x),
    "Round": lambda cx, n, x: cx.tf.round(x),  # half to even, as ONNX
    "Sign": lambda cx, n, x: cx.tf.sign(x),
    "Sin": lambda cx, n, x: cx.tf.sin(x),
    "Cos": lambda cx, n, x: cx.tf.cos(x),
    "Tan": lambda cx, n, x: cx.tf.tan(x),
    "Asin": lambda cx, n, x: cx.tf.asin(x),
    "Acos": lambda cx, n, x: cx.tf.acos(x),
    "Atan": lambda cx, n, x: cx.tf.atan(x),
    "Sinh": lambda cx, n, x: cx.tf.sinh(x),
    "Cosh": lambda cx, n, x: cx.tf.cosh(x),
    "Asinh": lambda cx, n, x: cx.tf.asinh(x),
    "Acosh": lambda cx, n, x: cx.tf.acosh(x),
    "Atanh": lambda cx, n, x: cx.tf.atanh(x),
    "Erf": lambda cx, n, x: cx.tf.math.erf(x),
    "IsNaN": lambda cx, n, x: cx.tf.math.is_nan(x),
    "IsInf": _is_inf,
    "Relu": lambda cx, n, x: cx.tf.nn.relu(x),
    "LeakyRelu": lambda cx, n, x: cx.tf.nn.leaky_relu(x, alpha=cx.attr(n, "alpha", 0.01)),
    "Elu": _elu,
    "Selu": _selu,
    "Celu": _celu,
    "Sigmoid": lambda cx, n, x: cx.tf.sigmoid(x),
    "HardSigmoid": _hard_sigmoid,
    "HardSwish": lambda cx, n, x: x * cx.tf.clip_by_value(x * (1 / 6) + 0.5, 0.0, 1.0),
    "Softplus": lambda cx, n, x: cx.tf.math.softplus(x),
    "Softsign": lambda cx, n, x: x / (1.0 + cx.tf.abs(x)),
    "Tanh": lambda cx, n, x: cx.tf.tanh(x),
    "Gelu": _gelu,
    "Mish": lambda cx, n, x: x * cx.tf.tanh(cx.tf.math.softplus(x)),
    "ThresholdedRelu": _thresholded,
    "Identity": lambda cx, n, x: cx.tf.identity(x),
    "Shrink": _shrink,
    "Swish": lambda cx, n, x: x * cx.tf.sigmoid(x * cx.attr(n, "alpha", 1.0)),
}
for _name, _fn in _UNARY.items():
    op(_name)(_unary(_fn))


@op("PRelu")
def prelu(cx: Any, node: Any, ins: list[V | None]) -> list[V]:
    slope_v = ins[1]
    value = cx.static(slope_v)
    if cx.opset < 7 and value is not None and value.ndim == 1 and value.size > 1 and (ins[0].rank or 0) > 2:
        # opset 6: a per-channel slope [C] applies to axis 1 (no numpy broadcasting yet)
        slope_v = cx.const(value.reshape((-1,) + (1,) * (ins[0].rank - 2)))
    (x, slope), perm = cx.broadcast([ins[0], slope_v])
    tf = cx.tf
    return [V(tf.where(x < 0, x * slope, x), perm)]


@op("Clip", until=10)
def clip_attrs(cx: Any, node: Any, ins: list[V | None]) -> list[V]:
    x = ins[0]
    lo, hi = cx.attr(node, "min"), cx.attr(node, "max")
    return [V(_clip_static(cx.tf, x.t, lo, hi), x.perm)]


@op("Clip", since=11)
def clip(cx: Any, node: Any, ins: list[V | None]) -> list[V]:
    """Known bounds become one op TF.js fuses into a preceding conv where it can (Relu6 after
    MobileNet's convs: ~2x faster in TF.js wasm than Maximum + Minimum); run-time bounds stay two ops."""
    x = ins[0]
    tf = cx.tf
    lo_v = ins[1] if len(ins) > 1 else None
    hi_v = ins[2] if len(ins) > 2 else None
    lo, hi = (cx.static(v) if v is not None else None for v in (lo_v, hi_v))
    if (lo_v is None or lo is not None) and (hi_v is None or hi is not None):
        return [V(_clip_static(tf, x.t, None if lo is None else lo.item(), None if hi is None else hi.item()), x.perm)]
    out = x.t
    if lo_v is not None:
        out = tf.maximum(out, tf.cast(cx.onnx(lo_v), out.dtype))  # min/max are scalars: any layout fits
    if hi_v is not None:
        out = tf.minimum(out, tf.cast(cx.onnx(hi_v), out.dtype))
    return [V(out, x.perm)]


def _clip_static(tf: Any, t: Any, lo: Any, hi: Any) -> Any:
    if lo == 0 and hi == 6 and t.dtype.is_floating:
        return tf.nn.relu6(t)
    if lo == 0 and hi is None and t.dtype.is_floating:
        return tf.nn.relu(t)
    if lo is None and hi is None:
        return tf.identity(t)
    if lo is None or hi is None:
        return tf.maximum(t, tf.cast(lo, t.dtype)) if hi is None else tf.minimum(t, tf.cast(hi, t.dtype))
    return tf.clip_by_value(t, tf.cast(lo, t.dtype), tf.cast(hi, t.dtype))


@op("Dropout")
def dropout(cx: Any, node: Any, ins: list[V | None]) -> list[V]:
    """Inference: the input, and an all-true mask when asked for. Training mode (opset 12+, with a
    ratio above 0) draws random masks: refused rather than computed differently."""
    x = ins[0]
    tf = cx.tf
    training = cx.static(ins[2]) if len(ins) > 2 and ins[2] is not None else None
    ratio = cx.static(ins[1]) if len(ins) > 1 and ins[1] is not None else cx.np.asarray(0.5)
    if len(ins) > 2 and ins[2] is not None and (training is None or bool(training)) and \
            (ratio is None or float(ratio) > 0):
        cx.fail(node, "training-mode Dropout draws random masks; export the model in inference mode")
    out = [V(tf.identity(x.t), x.perm)]
    if len(node.output) > 1 and node.output[1]:
        out.append(V(tf.ones_like(x.t, tf.bool), x.perm))
    return out


@op("Cast")
def cast(cx: Any, node: Any, ins: list[V | None]) -> list[V]:
    x = ins[0]
    to = cx.dtype(cx.attr(node, "to"))
    return [V(_cast(cx, x.t, to), x.perm)]


@op("CastLike", since=15)
def cast_like(cx: Any, node: Any, ins: list[V | None]) -> list[V]:
    x, like = ins[0], ins[1]
    return [V(_cast(cx, x.t, like.t.dtype), x.perm)]


def _cast(cx: Any, t: Any, to: Any) -> Any:
    # float -> int truncates toward zero in ONNX (a C cast), as tf.cast does
    return cx.tf.identity(t) if t.dtype == to else cx.tf.cast(t, to)
