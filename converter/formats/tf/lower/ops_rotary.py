"""RotaryEmbedding (opset 23): rotate the first ``rotary_embedding_dim`` channels of each head by
position-dependent angles, given as cos/sin caches (indexed by ``position_ids`` when given), split
in halves or interleaved; as ``onnx.reference``'s op_rotary_embedding computes it."""

from __future__ import annotations

from typing import Any

from .registry import op
from .values import V


@op("RotaryEmbedding", since=23)
def rotary_embedding(cx: Any, node: Any, ins: list[V | None]) -> list[V]:
    tf = cx.tf
    x, cos, sin = cx.onnx(ins[0]), cx.onnx(ins[1]), cx.onnx(ins[2])
    if len(ins) > 3 and ins[3] is not None:  # caches [max_pos, half] -> [batch, seq, half]
        ids = cx.onnx(ins[3])
        cos, sin = tf.gather(cos, ids), tf.gather(sin, ids)
    shape = tf.shape(x)
    if x.shape.rank == 3:  # [batch, seq, hidden] -> [batch, seq, heads, head_size]
        heads = int(cx.attr(node, "num_heads", 0))
        if not heads:
            cx.fail(node, "a 3-D input needs num_heads")
        x = tf.reshape(x, tf.stack([shape[0], shape[1], heads, -1]))
        cos, sin = cos[:, :, None, :], sin[:, :, None, :]
    else:  # [batch, heads, seq, head_size]: the caches broadcast over heads
        cos, sin = cos[:, None, :, :], sin[:, None, :, :]
    half = cos.shape[-1]
    if half is None:
        cx.fail(node, "the caches' last dim (rotary_embedding_dim / 2) must be known at conversion time")
    rot = int(cx.attr(node, "rotary_embedding_dim", 0) or 2 * half)
    turned, kept = x[..., :rot], x[..., rot:]
    interleaved = bool(cx.attr(node, "interleaved", 0))
    x1, x2 = (turned[..., 0::2], turned[..., 1::2]) if interleaved else (turned[..., :half], turned[..., half:])
    real, imag = cos * x1 - sin * x2, sin * x1 + cos * x2
    if interleaved:  # (real, imag) pairs back in place
        turned = tf.reshape(tf.stack([real, imag], axis=-1), tf.shape(turned))
    else:
        turned = tf.concat([real, imag], axis=-1)
    out = tf.concat([turned, kept], axis=-1)
    return [V(tf.reshape(out, shape) if ins[0].rank == 3 else out)]
