"""Validation samples beside the user's own data (``--inputs real.npz``): where they come from.

``--samples-from`` (CLI) / ``samples_from=`` (API):

- ``data`` (the default with real data): the extra samples follow the data's domain. They are the
  real rows recombined and perturbed: rows shuffled along a batch axis of 2 or more (one
  permutation for every input of that batch, so ids and their mask stay paired); floats scaled
  elementwise by ``exp(0.1 * N(0, 1))`` (each value keeps its sign, and a value away from zero stays
  away from it: a denominator, a Log or Sqrt argument), then clipped to the observed [min, max]
  per input, or per channel for images (4-D with 1, 3 or 4 channels on axis 1 or -1); integers
  drawn from the observed set (up to 64 distinct values: ids, classes) or else from the observed
  [min, max]; booleans, masks (integers that are all 0 or 1) and integers whose order matters are
  kept as the data has them, rows recombined only. Same dtype and shape as the data.
- ``random``: seeded standard-normal floats and integers in the input's range, as without data
  (other sizes for dynamic dims).
- ``mixed``: the extra samples alternate between the two, data first.

numpy only; a hand-written generator because the domain must be the user's data, not a
distribution a library assumes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..core import TensorSpec
from ..errors import UsageError
from .inputs import make_feeds

MODES = ("data", "random", "mixed")
_SET_LIMIT = 64  # integer inputs with at most this many distinct values are drawn from that set
_SCALE = 0.1  # log-normal spread of the multiplicative perturbation of floats


def check_mode(mode: str | None, has_data: bool) -> str:
    """The mode to use: ``data`` by default with real data; without data only ``random`` applies."""
    if mode is not None and mode not in MODES:
        raise UsageError(f"--samples-from '{mode}' is not one of {', '.join(MODES)}")
    if not has_data:
        if mode in ("data", "mixed"):
            raise UsageError(f"--samples-from {mode} needs real data", hint="give --inputs FEEDS.npz")
        return "random"
    return mode or "data"


def extra_samples(data: Mapping[str, Any], specs: Sequence[TensorSpec], count: int, *, seed: int = 0,
                  mode: str = "data") -> tuple[list[dict[str, Any]], str | None]:
    """``count`` samples to validate on besides ``data`` (sample 0), and the note that says how
    they were made (None when there are none)."""
    if count <= 0:
        return [], None
    # only the modes that use them: a string input has data but no random samples
    random = make_feeds(specs, samples=count + 1, seed=seed)[1:] if mode != "data" else []
    if mode == "random":
        return random, f"sample 0 is the given data; samples 1-{count} are seeded random (--samples-from random)"
    import numpy as np

    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        out.append(random[i] if mode == "mixed" and i % 2 == 1 else from_domain(data, rng))
    what = "follow the given data's domain" if mode == "data" else \
        "alternate between the given data's domain (odd) and seeded random (even)"
    return out, (f"sample 0 is the given data; samples 1-{count} {what} (--samples-from {mode}: real rows "
                 f"recombined and perturbed within the observed range, sign and integer values)")


def from_domain(data: Mapping[str, Any], rng: Any) -> dict[str, Any]:
    """One sample like ``data``: rows recombined, values perturbed within the observed domain."""
    import numpy as np

    perms: dict[int, Any] = {}
    out = {}
    for name, arr in data.items():
        a = np.asarray(arr)
        if a.ndim >= 1 and a.shape[0] > 1:
            perm = perms.setdefault(a.shape[0], rng.permutation(a.shape[0]))
            a = a[perm]
        out[name] = _perturbed(a, rng)
    return out


def _perturbed(a: Any, rng: Any) -> Any:
    import numpy as np

    if a.size == 0 or a.dtype == bool:
        return a.copy()
    if a.dtype.kind in "iu":
        values = np.unique(a)
        if values.size <= 2 and set(values.tolist()) <= {0, 1}:
            return a.copy()  # a mask: its pattern (ones then padding) is what makes it valid
        if values.size <= _SET_LIMIT:
            return rng.choice(values, size=a.shape).astype(a.dtype)
        return rng.integers(int(values[0]), int(values[-1]) + 1, size=a.shape).astype(a.dtype)
    if a.dtype.kind != "f":
        return a.copy()
    lo, hi = _bounds(a)
    factor = np.exp(_SCALE * rng.standard_normal(a.shape))
    with np.errstate(invalid="ignore", over="ignore"):
        return np.clip(a.astype(np.float64) * factor, lo, hi).astype(a.dtype)


def _bounds(a: Any) -> tuple[Any, Any]:
    """The observed [min, max] of ``a`` (finite values only): per channel for an image, else whole."""
    import numpy as np

    axis = channel_axis(a.shape)
    finite = np.where(np.isfinite(a), a, np.nan)
    if axis is None:
        return np.nanmin(finite), np.nanmax(finite)
    others = tuple(i for i in range(a.ndim) if i != axis)
    shape = [1] * a.ndim
    shape[axis] = a.shape[axis]
    return np.nanmin(finite, axis=others).reshape(shape), np.nanmax(finite, axis=others).reshape(shape)


def channel_axis(shape: Sequence[int]) -> int | None:
    """Axis 1 (NCHW) or -1 (NHWC) of a 4-D image with 1, 3 or 4 channels; None otherwise."""
    if len(shape) != 4:
        return None
    if shape[1] in (1, 3, 4) and shape[-1] not in (1, 3, 4):
        return 1
    if shape[-1] in (1, 3, 4):
        return 3
    return None
