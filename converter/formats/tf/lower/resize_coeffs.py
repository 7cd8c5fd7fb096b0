"""Resize's 1-D interpolation as numbers (numpy only), per ONNX's reference implementation.

For the modes no TF kernel reproduces (cubic, antialias, half_pixel_symmetric, tf_crop_and_resize,
a scale that is not out/in, ...), a resize along one axis is a fixed linear map from the input's
positions to the output's: a gather for nearest, an (out x in) matrix otherwise. Both are computed
here at conversion time, for sizes known then. The tap layout follows ``onnx.reference.ops.op_resize``
(ratio in (0, 1], the n nearest inputs, edge padding, ``exclude_outside`` renormalising).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Axis:
    """One resized axis: its sizes, the scale ONNX maps coordinates with, and the roi (crop mode)."""

    size_in: int
    size_out: int
    scale: float
    roi: tuple[float, float] = (0.0, 1.0)


def source(ax: Axis, mode: str) -> tuple[np.ndarray, np.ndarray]:
    """Each output position's coordinate in the input (float64), and whether it lies inside
    (only tf_crop_and_resize extrapolates outside)."""
    x = np.arange(ax.size_out, dtype=np.float64)
    n_in, s = ax.size_in, ax.scale
    width = s * n_in  # the reference's (float) output width
    if mode == "align_corners":
        src = np.zeros_like(x) if width == 1 else x * (n_in - 1) / (width - 1)
    elif mode == "asymmetric":
        src = x / s
    elif mode == "tf_half_pixel_for_nn":
        src = (x + 0.5) / s
    elif mode == "pytorch_half_pixel":
        src = np.full_like(x, -0.5) if width == 1 else (x + 0.5) / s - 0.5
    elif mode == "half_pixel":
        src = (x + 0.5) / s - 0.5
    elif mode == "half_pixel_symmetric":
        offset = n_in / 2 * (1 - ax.size_out / width)
        src = offset + (x + 0.5) / s - 0.5
    elif mode == "tf_crop_and_resize":
        lo, hi = ax.roi
        step = 0.0 if width == 1 else (hi - lo) * (n_in - 1) / (width - 1)
        src = lo * (n_in - 1) + (x * step if width != 1 else np.full_like(x, (hi - lo) * (n_in - 1) / 2))
        return src, (src >= 0) & (src <= n_in - 1)
    else:
        raise ValueError(f"coordinate_transformation_mode {mode!r}")
    return src, np.ones(src.shape, bool)


def _base(src: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The tap left of each coordinate and the ratio in (0, 1] (an integer coordinate has ratio 1)."""
    base = np.floor(src)
    base = np.where(src == base, base - 1, base)
    return base.astype(np.int64), src - base


def nearest(src: np.ndarray, n_in: int, mode: str, downsampling: bool) -> np.ndarray:
    """The input index each output position takes (int64, clamped to the edges)."""
    base, ratio = _base(src)
    if mode == "simple":  # Upsample and Resize-10: floor, but ceil when downsampling (onnxruntime)
        mode = "ceil" if downsampling else "floor"
    whole = ratio == 1
    if mode == "round_prefer_floor":
        up = ratio > 0.5
    elif mode == "round_prefer_ceil":
        up = ratio >= 0.5
    elif mode == "floor":
        up = np.zeros_like(whole)
    elif mode == "ceil":
        up = np.ones_like(whole)
    else:
        raise ValueError(f"nearest_mode {mode!r}")
    return np.clip(base + (up | whole), 0, n_in - 1)


def _cubic(t: np.ndarray, a: float) -> np.ndarray:
    t = np.abs(t)
    near = ((a + 2) * t - (a + 3)) * t * t + 1
    far = ((a * t - 5 * a) * t + 8 * a) * t - 4 * a
    return np.where(t <= 1, near, np.where(t < 2, far, 0.0))


def matrix(src: np.ndarray, ax: Axis, mode: str, *, a: float = -0.75, exclude_outside: bool = False,
           antialias: bool = False) -> np.ndarray:
    """The (out x in) interpolation matrix for "linear" or "cubic" (float64)."""
    base, ratio = _base(src)
    scale = min(ax.scale, 1.0) if antialias else 1.0
    if antialias:  # the filter widens by 1/scale when downsampling
        start = int(np.floor(-(1.0 if mode == "linear" else 2.0) / scale) + 1)
        taps = np.arange(start, 2 - start)
    else:
        taps = np.arange(0, 2) if mode == "linear" else np.arange(-1, 3)
    dist = (taps[None, :] - ratio[:, None]) * scale
    w = np.clip(1 - np.abs(dist), 0, 1) if mode == "linear" else _cubic(dist, a)
    if antialias:
        w = w / w.sum(axis=1, keepdims=True)
    idx = base[:, None] + taps[None, :]
    if exclude_outside:
        w = np.where((idx < 0) | (idx >= ax.size_in), 0.0, w)
        w = w / w.sum(axis=1, keepdims=True)
    out = np.zeros((ax.size_out, ax.size_in))
    rows = np.repeat(np.arange(ax.size_out)[:, None], taps.size, axis=1)
    np.add.at(out, (rows, np.clip(idx, 0, ax.size_in - 1)), w)
    return out
