"""One lowered ONNX value and the permutation bookkeeping that keeps layouts without guessing.

A value's ``perm`` says how its physical (TensorFlow) axes relate to its ONNX axes: physical axis i
holds ONNX axis ``perm[i]``, so ``physical = tf.transpose(onnx_order, perm)`` and
``onnx_order = tf.transpose(physical, inverse(perm))``. ``None`` is the identity (ONNX order).

Stdlib and typing only: importable without TensorFlow.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class V:
    """One lowered ONNX value."""

    t: Any  # the tf.Tensor, in PHYSICAL axis order
    perm: tuple[int, ...] | None = None  # physical axis i holds ONNX axis perm[i]; None = identity (ONNX order)

    @property
    def rank(self) -> int | None:
        """ONNX rank (= physical rank); None when TensorFlow does not know it."""
        rank = getattr(getattr(self.t, "shape", None), "rank", None)
        if rank is None and self.perm is not None:
            return len(self.perm)
        return rank


def channels_last(rank: int) -> tuple[int, ...]:
    """NCHW -> NHWC as a perm: physical NHWC holds ONNX axes (0, 2, 3, 1); (0, 2, 1) for rank 3."""
    return (0, *range(2, rank), 1) if rank >= 3 else tuple(range(rank))


def inverse(perm: Sequence[int]) -> tuple[int, ...]:
    """The permutation that undoes ``perm``: ``inverse(perm)[perm[i]] == i``."""
    out = [0] * len(perm)
    for i, p in enumerate(perm):
        out[p] = i
    return tuple(out)


def is_identity(perm: Sequence[int] | None) -> bool:
    """None or (0, 1, 2, ...)."""
    return perm is None or all(i == p for i, p in enumerate(perm))


def normal(perm: Sequence[int] | None) -> tuple[int, ...] | None:
    """``perm`` as a tuple, or None when it is the identity (one spelling for "ONNX order")."""
    return None if is_identity(perm) else tuple(perm)  # type: ignore[arg-type]


def compose(outer: Sequence[int], inner: Sequence[int]) -> tuple[int, ...]:
    """``transpose(transpose(x, inner), outer) == transpose(x, compose(outer, inner))``."""
    return tuple(inner[o] for o in outer)


def between(have: Sequence[int] | None, want: Sequence[int] | None, rank: int) -> tuple[int, ...] | None:
    """The transpose that takes a tensor laid out as ``have`` to the layout ``want`` (None: none needed)."""
    ident = tuple(range(rank))
    # physical_have = onnx[have]; onnx = physical_have[inverse(have)]; physical_want = onnx[want]
    step = compose(tuple(want or ident), inverse(tuple(have or ident)))
    return normal(step)


def expand_perm(perm: Sequence[int] | None, rank: int) -> tuple[int, ...] | None:
    """The perm of a value of rank ``len(perm)`` broadcast up to ``rank`` by leading unit axes (numpy
    broadcasting prepends axes): the new leading axes stay in front, in order."""
    if perm is None:
        return None
    extra = rank - len(perm)
    return normal((*range(extra), *(p + extra for p in perm)))
