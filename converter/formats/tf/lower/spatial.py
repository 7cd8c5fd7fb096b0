"""Window arithmetic shared by the conv and pool handlers: kernel/strides/dilations, ONNX pads and
auto_pad, ceil_mode, and padding a channels-last tensor.

A size here is a python int where TensorFlow knows the dim while tracing, else an int32 scalar
tensor (``tf.shape``): the same expressions serve both, so a dynamic H/W stays dynamic and a static
one folds to numbers at conversion time (no shape ops in the graph).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

Size = Any  # int, or an int32 scalar tf.Tensor for a dim unknown at conversion time


@dataclass(frozen=True)
class Window:
    """A sliding window over the spatial dims, in ONNX spatial order."""

    kernel: tuple[int, ...]
    strides: tuple[int, ...]
    dilations: tuple[int, ...]

    @property
    def effective(self) -> tuple[int, ...]:
        """The extent each kernel covers, dilation included."""
        return tuple((k - 1) * d + 1 for k, d in zip(self.kernel, self.dilations))

    def expanded(self) -> Window:
        """The 1-D window as a 2-D one over (1, W): TF's 1-D kernels are 2-D ones underneath."""
        return Window((1, *self.kernel), (1, *self.strides), (1, *self.dilations))


def window(cx: Any, node: Any, kernel: tuple[int, ...]) -> Window:
    n = len(kernel)
    strides = tuple(cx.attr(node, "strides", None) or (1,) * n)
    dilations = tuple(cx.attr(node, "dilations", None) or (1,) * n)
    return Window(tuple(int(k) for k in kernel), tuple(int(s) for s in strides), tuple(int(d) for d in dilations))


def sizes(cx: Any, x: Any, n: int) -> list[Size]:
    """The n spatial sizes of a channels-last tensor (physical axes 1..n)."""
    known = x.shape.as_list()
    dyn = None
    out: list[Size] = []
    for i in range(1, n + 1):
        if known[i] is not None:
            out.append(int(known[i]))
        else:
            dyn = cx.tf.shape(x) if dyn is None else dyn
            out.append(dyn[i])
    return out


def _max0(cx: Any, v: Size) -> Size:
    return max(v, 0) if isinstance(v, int) else cx.tf.maximum(v, 0)


def pads(cx: Any, node: Any, size: list[Size], win: Window) -> list[tuple[Size, Size]]:
    """(begin, end) padding per spatial dim, from auto_pad or pads."""
    n = len(win.kernel)
    auto = cx.attr(node, "auto_pad", "NOTSET") or "NOTSET"
    if auto == "VALID":
        return [(0, 0)] * n
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        out = []
        for i in range(n):
            total = _max0(cx, ((size[i] + win.strides[i] - 1) // win.strides[i] - 1) * win.strides[i]
                          + win.effective[i] - size[i])
            small, big = total // 2, total - total // 2
            out.append((small, big) if auto == "SAME_UPPER" else (big, small))
        return out
    if auto != "NOTSET":
        cx.fail(node, f"auto_pad {auto!r} is not one of NOTSET, SAME_UPPER, SAME_LOWER, VALID")
    flat = [int(p) for p in (cx.attr(node, "pads", None) or (0,) * (2 * n))]
    return list(zip(flat[:n], flat[n:]))


def ceil_extra(cx: Any, size: list[Size], p: list[tuple[Size, Size]], win: Window) -> list[Size]:
    """Per spatial dim, the extra end padding that makes a floor-mode window count ONNX's ceil_mode one."""
    return [_ceil_extra(cx, s, b, e, eff, st) for s, (b, e), eff, st in zip(size, p, win.effective, win.strides)]


def _ceil_extra(cx: Any, size: Size, begin: Size, end: Size, eff: int, stride: int) -> Size:
    """Extra end padding so that a floor-mode window count equals ONNX's ceil-mode output size.

    ceil_mode keeps a last, partial window only if it starts inside the input or its begin padding
    (ONNX, as PyTorch): out = ceil((size + pads - eff) / stride) + 1, less one when the last window
    would start in the end padding."""
    span = size + begin + end - eff
    out = (span + stride - 1) // stride + 1
    if isinstance(out, int):
        out -= int((out - 1) * stride >= size + begin)
    else:
        out -= cx.tf.cast((out - 1) * stride >= size + begin, out.dtype)
    return _max0(cx, (out - 1) * stride + eff - (size + begin + end))


def is_zero(p: list[tuple[Size, Size]]) -> bool:
    return all(isinstance(v, int) and v == 0 for pair in p for v in pair)


def same_upper(size: list[Size], win: Window, p: list[tuple[Size, Size]]) -> bool:
    """Whether these pads are what TF's padding="SAME" does (extra at the end), for these sizes.

    With stride 1 SAME pads do not depend on the size, so a dynamic dim still qualifies."""
    for s, st, eff, (b, e) in zip(size, win.strides, win.effective, p):
        if not (isinstance(b, int) and isinstance(e, int)):
            return False
        if st == 1:
            total = eff - 1
        elif isinstance(s, int):
            total = max(((s + st - 1) // st - 1) * st + eff - s, 0)
        else:
            return False
        if (b, e) != (total // 2, total - total // 2):
            return False
    return True


def pad(cx: Any, x: Any, p: list[tuple[Size, Size]], value: float = 0.0) -> Any:
    """x (channels-last) padded by p on its spatial axes with a constant value."""
    if is_zero(p):
        return x
    tf = cx.tf
    rows = [(0, 0), *p, (0, 0)]
    if all(isinstance(v, int) for row in rows for v in row):
        paddings: Any = [list(r) for r in rows]
    else:
        paddings = tf.stack([tf.stack([tf.cast(v, tf.int32) for v in r]) for r in rows])
    return tf.pad(x, paddings, constant_values=tf.constant(value, x.dtype))


def lowest(cx: Any, dtype: Any) -> float:
    """The value max pooling pads with: -inf for floats, the type's minimum for integers."""
    return float("-inf") if dtype.is_floating else dtype.min
