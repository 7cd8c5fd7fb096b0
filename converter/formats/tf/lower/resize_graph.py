"""Resize along one axis when its sizes or scale are known only at run time (scales or sizes fed as
inputs, dynamic H/W): the same formulas as ``resize_coeffs``, written as graph ops. Each output
position gathers its taps and sums them with their weights (nearest: one tap). Coordinates are
float32, as TF.js computes."""

from __future__ import annotations

from typing import Any


def _coords(tf: Any, x: Any, n: Any, s: Any, out: Any, mode: str, roi: tuple[Any, Any]) -> tuple[Any, Any]:
    """Each output position's input coordinate, and whether it is inside (tf_crop_and_resize)."""
    width = s * n
    one = tf.equal(width, 1.0)
    safe = tf.where(one, 2.0, width)  # keeps the branch that is not taken finite
    inside = None
    if mode == "align_corners":
        src = tf.where(one, tf.zeros_like(x), x * (n - 1) / (safe - 1))
    elif mode == "asymmetric":
        src = x / s
    elif mode == "tf_half_pixel_for_nn":
        src = (x + 0.5) / s
    elif mode == "pytorch_half_pixel":
        src = tf.where(one, tf.fill(tf.shape(x), -0.5), (x + 0.5) / s - 0.5)
    elif mode == "half_pixel":
        src = (x + 0.5) / s - 0.5
    elif mode == "half_pixel_symmetric":
        src = n / 2 * (1 - out / width) + (x + 0.5) / s - 0.5
    elif mode == "tf_crop_and_resize":
        lo, hi = roi
        src = lo * (n - 1) + tf.where(one, tf.fill(tf.shape(x), (hi - lo) * (n - 1) / 2),
                                      x * (hi - lo) * (n - 1) / (safe - 1))
        inside = tf.logical_and(src >= 0, src <= n - 1)
    else:
        raise ValueError(f"coordinate_transformation_mode {mode!r}")
    return src, inside


def _nearest_up(tf: Any, ratio: Any, mode: str, downsampling: Any) -> Any:
    whole = tf.equal(ratio, 1.0)
    if mode == "simple":
        return tf.logical_or(whole, downsampling)
    up = {"round_prefer_floor": ratio > 0.5, "round_prefer_ceil": ratio >= 0.5,
          "floor": tf.zeros_like(whole), "ceil": tf.ones_like(whole)}.get(mode)
    if up is None:
        raise ValueError(f"nearest_mode {mode!r}")
    return tf.logical_or(whole, up)


def _cubic(tf: Any, t: Any, a: float) -> Any:
    t = tf.abs(t)
    near = ((a + 2) * t - (a + 3)) * t * t + 1
    far = ((a * t - 5 * a) * t + 8 * a) * t - 4 * a
    return tf.where(t <= 1, near, tf.where(t < 2, far, tf.zeros_like(t)))


def resize_axis(cx: Any, t: Any, axis: int, n: Any, out: Any, scale: Any, plan: Any, roi: tuple[Any, Any]) -> Any:
    """t resized along physical ``axis`` from n to out positions (any of them tensors)."""
    tf = cx.tf
    f32 = tf.float32
    nf, sf = tf.cast(n, f32), tf.cast(scale, f32) if scale is not None else tf.cast(out, f32) / tf.cast(n, f32)
    x = tf.cast(tf.range(tf.cast(out, tf.int32)), f32)
    src, inside = _coords(tf, x, nf, sf, tf.cast(out, f32), plan.coords, (tf.cast(roi[0], f32), tf.cast(roi[1], f32)))
    base = tf.floor(src)
    base = tf.where(tf.equal(src, base), base - 1, base)
    ratio = src - base
    last = tf.cast(n, tf.int32) - 1
    rank = t.shape.rank
    shape = [1] * rank
    shape[axis] = -1

    def tap(k: int) -> Any:
        return tf.clip_by_value(tf.cast(base, tf.int32) + k, 0, last)

    if plan.mode == "nearest":
        up = _nearest_up(tf, ratio, plan.nearest, sf < 1)
        y = tf.gather(t, tf.where(up, tap(1), tap(0)), axis=axis)
    else:
        taps = range(0, 2) if plan.mode == "linear" else range(-1, 3)
        dist = [float(k) - ratio for k in taps]
        if plan.antialias:  # the filter widens by 1/scale: every input position is a tap, most weigh 0
            taps = range(-int(n) - 1, int(n) + 2)
            dist = [(float(k) - ratio) * tf.minimum(sf, 1.0) for k in taps]
        ws = [tf.maximum(1 - tf.abs(d), 0.0) for d in dist] if plan.mode == "linear" else [
            _cubic(tf, d, plan.cubic_a) for d in dist]
        if plan.antialias:
            total = tf.add_n(ws)
            ws = [w / total for w in ws]
        if plan.exclude_outside:
            idx = [tf.cast(base, tf.int32) + k for k in taps]
            ws = [tf.where(tf.logical_and(i >= 0, i <= last), w, tf.zeros_like(w)) for i, w in zip(idx, ws)]
            total = tf.add_n(ws)
            ws = [w / total for w in ws]
        dtype = t.dtype if t.dtype.is_floating else f32
        src_t = tf.cast(t, dtype)
        y = tf.add_n([tf.gather(src_t, tap(k), axis=axis) * tf.reshape(tf.cast(w, dtype), shape)
                      for k, w in zip(taps, ws)])
        y = y if dtype == t.dtype else tf.cast(tf.round(y), t.dtype)
    if inside is not None:
        y = tf.where(tf.reshape(inside, shape), y, tf.cast(plan.extrapolation, y.dtype))
    return y
