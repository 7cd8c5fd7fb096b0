"""Window functions (HannWindow, HammingWindow, BlackmanWindow): cosine sums over ``range(size)``,
with ``size`` known at conversion time or only at run time."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from .registry import op
from .values import V

#: window -> the coefficients a_k of sum_k (-1)^k a_k cos(2 pi k n / N), as ONNX's reference has them
_WINDOWS: dict[str, Sequence[float]] = {
    "HannWindow": (0.5, 0.5),
    "HammingWindow": (25.0 / 46.0, 1.0 - 25.0 / 46.0),
    "BlackmanWindow": (0.42, 0.5, 0.08),
}


def _window(coefficients: Sequence[float]) -> Any:
    def handler(cx: Any, node: Any, ins: list[V | None]) -> list[V]:
        tf = cx.tf
        size = tf.cast(tf.reshape(cx.onnx(ins[0]), []), tf.int32)
        n = tf.cast(tf.range(size), tf.float32)
        # periodic (default): N = size; symmetric: N = size - 1
        span = tf.cast(size if cx.attr(node, "periodic", 1) else size - 1, tf.float32)
        out = tf.zeros_like(n)
        for k, a in enumerate(coefficients):
            out += (-1) ** k * a * tf.cos(2 * math.pi * k * n / span)
        return [V(tf.cast(out, cx.dtype(cx.attr(node, "output_datatype", 1))))]

    return handler


for _name, _coefficients in _WINDOWS.items():
    op(_name, since=17)(_window(_coefficients))
