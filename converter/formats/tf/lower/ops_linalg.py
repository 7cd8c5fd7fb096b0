"""Det: TF.js has no MatrixDeterminant kernel, so the determinant is Gaussian elimination with partial
pivoting, unrolled over the (static) matrix size: ArgMax picks each pivot row, a one-hot permutation
matrix swaps it in (no batched Gather: TF.js wasm gets those wrong), and the product of the pivots
with the swaps' signs is the determinant."""

from __future__ import annotations

from typing import Any

from .registry import op
from .values import V

#: larger matrices would unroll into too many ops
MAX_SIZE = 16


@op("Det", since=11)
def det(cx: Any, node: Any, ins: list[V | None]) -> list[V]:
    tf = cx.tf
    a = cx.onnx(ins[0])
    n = a.shape[-1]
    if n is None or a.shape[-2] != n or n > MAX_SIZE:
        cx.fail(node, f"a matrix size known at conversion time, at most {MAX_SIZE}, is needed (got {a.shape})")
    rows = tf.range(n)
    result = tf.ones(tf.shape(a)[:-2], a.dtype)
    for k in range(n):
        pivot_row = tf.cast(tf.argmax(tf.abs(a[..., k:, k]), axis=-1), tf.int32) + k  # [...]
        p = pivot_row[..., None]
        order = tf.where(tf.equal(rows, k), p, tf.where(tf.equal(rows, p), k, rows))  # swap rows k and p
        a = tf.linalg.matmul(tf.cast(tf.one_hot(order, n, dtype=tf.int32), a.dtype), a)
        pivot = a[..., k, k]
        result = result * pivot * tf.where(tf.equal(pivot_row, k), 1.0, -1.0)
        if k + 1 < n:
            safe = tf.where(tf.equal(pivot, 0.0), tf.ones_like(pivot), pivot)
            factors = a[..., k + 1:, k] / safe[..., None]
            below = a[..., k + 1:, :] - factors[..., None] * a[..., k:k + 1, :]
            a = tf.concat([a[..., :k + 1, :], below], axis=-2)
    return [V(result)]
