"""Elementwise ops with numpy broadcasting: arithmetic, comparisons, logic. The result keeps the
layout of the highest-rank non-constant operand (``Ctx.broadcast``): no Transpose for an Add after
a channels-last conv."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .registry import op
from .values import V


def _binary(fn: Callable[[Any, Any, Any], Any]) -> Callable[..., list[V]]:
    def handler(cx: Any, node: Any, ins: list[V | None]) -> list[V]:
        (a, b), perm = cx.broadcast(ins[:2])
        return [V(fn(cx.tf, a, b), perm)]

    return handler


def _div(tf: Any, a: Any, b: Any) -> Any:
    # ONNX integer Div truncates toward zero (C division); tf.divide would return floats
    return _truncdiv(tf, a, b) if a.dtype.is_integer else tf.math.divide(a, b)


def _truncdiv(tf: Any, a: Any, b: Any) -> Any:
    """Integer division toward zero from FloorDiv/FloorMod: TF.js has no TruncateDiv kernel, and
    shape arithmetic on dynamic dims divides integers. The floor quotient is one too low where the
    signs differ and the division is inexact."""
    q, r = tf.math.floordiv(a, b), tf.math.floormod(a, b)
    if a.dtype.is_unsigned:  # no negative operands: floor is toward zero
        return q
    # no constants of a's dtype (TF.js cannot hold int8/uint8 weights): r != 0 as a cast, signs by Sign
    fix = tf.logical_and(tf.cast(r, tf.bool), tf.not_equal(tf.sign(a), tf.sign(b)))
    return q + tf.cast(fix, q.dtype)


def _fmod(tf: Any, a: Any, b: Any) -> Any:
    """C fmod (the sign of the dividend) without TruncateMod, which TF.js lacks: a - b * trunc(a / b)."""
    if a.dtype.is_integer:
        return a - b * _truncdiv(tf, a, b)
    r = tf.math.floormod(a, b)  # the sign of the divisor: shift by b where the signs of r and a differ
    differ = tf.logical_and(tf.not_equal(r, tf.zeros_like(r)), tf.not_equal(r < 0, a < 0))
    return tf.where(differ, r - b, r)


def _pow(tf: Any, a: Any, b: Any) -> Any:
    if a.dtype != b.dtype:  # opset 12+: the exponent may have another type; the result has the base's
        b = tf.cast(b, a.dtype)
    if a.dtype.is_integer:  # TensorFlow's integer Pow is not in TF.js; exact through float64 for small values
        return tf.cast(tf.round(tf.pow(tf.cast(a, tf.float64), tf.cast(b, tf.float64))), a.dtype)
    return tf.pow(a, b)


_BINARY = {
    "Add": lambda tf, a, b: tf.math.add(a, b),
    "Sub": lambda tf, a, b: tf.math.subtract(a, b),
    "Mul": lambda tf, a, b: tf.math.multiply(a, b),
    "Div": _div,
    "Pow": _pow,
    "Equal": lambda tf, a, b: tf.math.equal(a, b),
    "Greater": lambda tf, a, b: tf.math.greater(a, b),
    "Less": lambda tf, a, b: tf.math.less(a, b),
    "GreaterOrEqual": lambda tf, a, b: tf.math.greater_equal(a, b),
    "LessOrEqual": lambda tf, a, b: tf.math.less_equal(a, b),
    "And": lambda tf, a, b: tf.math.logical_and(a, b),
    "Or": lambda tf, a, b: tf.math.logical_or(a, b),
    "Xor": lambda tf, a, b: tf.math.logical_xor(a, b),
}
for _name, _fn in _BINARY.items():
    op(_name)(_binary(_fn))
_BITWISE = {
    "BitwiseAnd": lambda tf, a, b: tf.bitwise.bitwise_and(a, b),
    "BitwiseOr": lambda tf, a, b: tf.bitwise.bitwise_or(a, b),
    "BitwiseXor": lambda tf, a, b: tf.bitwise.bitwise_xor(a, b),
}
for _name, _fn in _BITWISE.items():
    op(_name, since=18)(_binary(_fn))


@op("BitwiseNot", since=18)
def bitwise_not(cx: Any, node: Any, ins: list[V | None]) -> list[V]:
    x = ins[0]
    return [V(cx.tf.bitwise.invert(x.t), x.perm)]


@op("Mod")
def mod(cx: Any, node: Any, ins: list[V | None]) -> list[V]:
    (a, b), perm = cx.broadcast(ins[:2])
    tf = cx.tf
    if cx.attr(node, "fmod", 0) or a.dtype.is_floating:
        if a.dtype == tf.float16:  # TensorFlow has no half FloorMod kernel either: in float32
            return [V(tf.cast(_fmod(tf, tf.cast(a, tf.float32), tf.cast(b, tf.float32)), a.dtype), perm)]
        out = _fmod(tf, a, b)  # C fmod: the sign of the dividend
    else:
        out = tf.math.floormod(a, b)  # Python %: the sign of the divisor
    return [V(out, perm)]


@op("BitShift", since=11)
def bit_shift(cx: Any, node: Any, ins: list[V | None]) -> list[V]:
    (a, b), perm = cx.broadcast(ins[:2])
    tf = cx.tf
    shift = tf.bitwise.left_shift if cx.attr(node, "direction") == "LEFT" else tf.bitwise.right_shift
    return [V(shift(a, b), perm)]


def _variadic(fn: Callable[[Any, Any, Any], Any], mean: bool = False) -> Callable[..., list[V]]:
    def handler(cx: Any, node: Any, ins: list[V | None]) -> list[V]:
        ts, perm = cx.broadcast(ins)
        ts = [t for t in ts if t is not None]
        out = ts[0]
        for t in ts[1:]:
            out = fn(cx.tf, out, t)
        if len(ts) == 1:  # one operand: still a new value
            out = cx.tf.identity(out)
        if mean:
            out = out / cx.tf.cast(len(ts), out.dtype)
        return [V(out, perm)]

    return handler


op("Max")(_variadic(lambda tf, a, b: tf.math.maximum(a, b)))
op("Min")(_variadic(lambda tf, a, b: tf.math.minimum(a, b)))
op("Sum")(_variadic(lambda tf, a, b: tf.math.add(a, b)))
op("Mean")(_variadic(lambda tf, a, b: tf.math.add(a, b), mean=True))


@op("Not")
def not_(cx: Any, node: Any, ins: list[V | None]) -> list[V]:
    x = ins[0]
    return [V(cx.tf.math.logical_not(x.t), x.perm)]


@op("Where", since=9)
def where(cx: Any, node: Any, ins: list[V | None]) -> list[V]:
    (c, a, b), perm = cx.broadcast(ins[:3])
    return [V(cx.tf.where(c, a, b), perm)]
