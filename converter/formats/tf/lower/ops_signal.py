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


def _to_second_last(cx: Any, rank: int, axis: Any) -> tuple[Any, Any]:
    """The transpose that moves ``axis`` (an int, or a scalar tensor known at run time) to rank-2 (the
    last axis holds real/imaginary parts), and the one back."""
    tf = cx.tf
    if isinstance(axis, int):
        lead = [i for i in range(rank - 1) if i != axis]
        perm = [*lead, axis, rank - 1]
        return perm, [perm.index(i) for i in range(rank)]
    a = tf.cast(axis, tf.int32)
    perm = [i + tf.cast(i >= a, tf.int32) for i in range(rank - 2)] + [a, tf.constant(rank - 1)]
    back = [tf.where(tf.equal(j, a), rank - 2, j - tf.cast(j > a, tf.int32)) for j in range(rank - 1)]
    return tf.stack(perm), tf.stack([*back, tf.constant(rank - 1)])


@op("DFT", since=17)
def dft(cx: Any, node: Any, ins: list[V | None]) -> list[V]:
    """TF's FFT / IFFT over complex values built from the real/imaginary last axis, along the axis
    moved next to it (an attribute before opset 20, an input since, possibly known only at run time)."""
    tf = cx.tf
    x = cx.onnx(ins[0])
    rank = x.shape.rank
    if cx.opset >= 20:
        axis_v = ins[2] if len(ins) > 2 else None
        arr = cx.static(axis_v)
        axis: Any = -2 if axis_v is None else int(cx.np.asarray(arr).reshape(-1)[0]) if arr is not None else (
            tf.math.floormod(tf.reshape(tf.cast(axis_v.t, tf.int32), []), rank))
    else:
        axis = int(cx.attr(node, "axis", 1))
    if isinstance(axis, int):
        axis %= rank
    length = cx.static(ins[1]) if len(ins) > 1 and ins[1] is not None else None
    if len(ins) > 1 and ins[1] is not None and length is None:
        cx.fail(node, "a dft_length known only at run time is not supported")
    perm, back = _to_second_last(cx, rank, axis)
    xt = tf.transpose(x, perm)
    parts = xt.shape[-1]
    imag = xt[..., 1] if parts == 2 else tf.zeros_like(xt[..., 0])
    z = tf.complex(xt[..., 0], imag)
    if length is not None:  # zero-padded or cut to dft_length
        n = int(cx.np.asarray(length).reshape(-1)[0])
        z = tf.pad(z[..., :n], [[0, 0]] * (rank - 2) + [[0, tf.maximum(n - tf.shape(z)[-1], 0)]])
    y = tf.signal.ifft(z) if cx.attr(node, "inverse", 0) else tf.signal.fft(z)
    out = _real_imag(cx, y, bool(cx.attr(node, "onesided", 0)))
    return [V(tf.transpose(tf.cast(out, x.dtype), back))]


@op("STFT", since=17)
def stft(cx: Any, node: Any, ins: list[V | None]) -> list[V]:
    """Frames gathered at ``f * frame_step + k``, weighted by the window, FFT along each frame:
    [batch, frames, bins, 2]; step, window and length may be known only at run time."""
    tf = cx.tf
    ins = [*ins, *[None] * (4 - len(ins))]
    x = cx.onnx(ins[0])  # [batch, length, 1 or 2]
    step = tf.cast(tf.reshape(cx.onnx(ins[1]), []), tf.int32)
    window = None if ins[2] is None else cx.onnx(ins[2])
    if ins[3] is not None:
        size = tf.cast(tf.reshape(cx.onnx(ins[3]), []), tf.int32)
    else:
        size = tf.shape(window)[0] if window is not None else tf.shape(x)[1]
    frames = 1 + (tf.shape(x)[1] - size) // step
    idx = tf.range(frames)[:, None] * step + tf.range(size)[None, :]
    framed = tf.gather(x, idx, axis=1)  # [batch, frames, size, parts]
    if window is not None:  # on the real parts: TF.js cpu's complex Mul gave NaN here
        framed = framed * tf.cast(window, framed.dtype)[None, None, :, None]
    imag = framed[..., 1] if x.shape[-1] == 2 else tf.zeros_like(framed[..., 0])
    z = tf.complex(framed[..., 0], imag)
    out = _real_imag(cx, tf.signal.fft(z), bool(cx.attr(node, "onesided", 1)))
    return [V(tf.cast(out, x.dtype))]


def _real_imag(cx: Any, y: Any, onesided: bool) -> Any:
    """[..., n] complex -> [..., n or n//2+1, 2] real: sliced after the split (TF.js's cpu backend
    has no StridedSlice for complex64)."""
    tf = cx.tf
    out = tf.stack([tf.math.real(y), tf.math.imag(y)], axis=-1)
    return out[..., : tf.shape(out)[-2] // 2 + 1, :] if onesided else out


@op("MelWeightMatrix", since=17)
def mel_weight_matrix(cx: Any, node: Any, ins: list[V | None]) -> list[V]:
    """[dft_length // 2 + 1, num_mel_bins] triangular filters between mel-spaced bins, computed as
    ONNX's reference does (its mel step divides by num_mel_bins + 2); float64 arithmetic, so that the
    integer bin edges match (a constant when the inputs are known at conversion time)."""
    tf = cx.tf
    mels, dft_len, rate, low, high = (tf.reshape(cx.onnx(v), []) for v in ins[:5])
    f64 = tf.float64
    edges_mel = [2595.0 * tf.math.log(1.0 + tf.cast(h, f64) / 700.0) / math.log(10.0) for h in (low, high)]
    k = tf.cast(tf.range(tf.cast(mels, tf.int32) + 2), f64)
    step = (edges_mel[1] - edges_mel[0]) / tf.cast(tf.cast(mels, tf.int32) + 2, f64)
    hz = 700.0 * (tf.pow(tf.constant(10.0, f64), (k * step + edges_mel[0]) / 2595.0) - 1.0)
    bins = tf.floor((tf.cast(dft_len, f64) + 1.0) * hz / tf.cast(rate, f64))  # integer bin edges
    left, center, right = bins[None, :-2], bins[None, 1:-1], bins[None, 2:]
    j = tf.cast(tf.range(tf.cast(dft_len, tf.int32) // 2 + 1), f64)[:, None]
    rise = tf.where(tf.equal(center, left), tf.cast(tf.equal(j, center), f64),
                    (j - left) / tf.maximum(center - left, 1.0))
    out = tf.where((j >= left) & (j <= center), rise, tf.zeros_like(rise))
    fall = (right - j) / tf.maximum(right - center, 1.0)
    out = tf.where((j >= center) & (j < right), fall, out)
    return [V(tf.cast(out, cx.dtype(cx.attr(node, "output_datatype", 1))))]
