"""ONNX's fused Attention (opset 23+): scaled dot-product attention with an optional mask (boolean or
additive), causal masking, a key/value cache (past_key/past_value -> present_*), grouped-query heads,
softcap and the qk_matmul_output modes; as ``onnx.reference``'s op_attention computes it, with
dynamic batch and sequence lengths."""

from __future__ import annotations

import math
from typing import Any

from .registry import op
from .values import V


def _heads(tf: Any, t: Any, heads: int) -> Any:
    """[B, S, heads * size] -> [B, heads, S, size]."""
    shape = tf.shape(t, out_type=tf.int64)
    t = tf.reshape(t, tf.concat([shape[:2], tf.constant([heads, -1], tf.int64)], 0))
    return tf.transpose(t, [0, 2, 1, 3])


def _bias(cx: Any, node: Any, ins: list[V | None], q: Any, k: Any, past: Any) -> Any:
    """The additive bias (-inf where masked) broadcast against [B, H, q_len, kv_len], or None."""
    tf = cx.tf
    dtype = q.dtype
    q_len, kv_len = tf.shape(q, out_type=tf.int64)[2], tf.shape(k, out_type=tf.int64)[2]
    neg = tf.constant(-math.inf, dtype)
    mask_v = ins[3] if len(ins) > 3 else None
    bias = None
    if mask_v is not None:
        mask = cx.onnx(mask_v)
        pad = kv_len - tf.shape(mask, out_type=tf.int64)[-1]  # a shorter mask masks the rest
        paddings = tf.concat([tf.zeros([mask.shape.rank - 1, 2], tf.int64), tf.stack([[0, pad]])], 0)
        fill = False if mask.dtype == tf.bool else -math.inf
        mask = tf.pad(mask, paddings, constant_values=tf.constant(fill, mask.dtype))
        bias = tf.where(mask, tf.zeros([], dtype), neg) if mask.dtype == tf.bool else tf.cast(mask, dtype)
    if cx.attr(node, "is_causal", 0):
        rows = tf.range(q_len)[:, None] + (tf.shape(past, out_type=tf.int64)[2] if past is not None else 0)
        causal = tf.where(tf.range(kv_len)[None, :] > rows, neg, tf.zeros([], dtype))
        bias = causal if bias is None else bias + causal
    nonpad_v = ins[6] if len(ins) > 6 else None
    if nonpad_v is not None:
        keep = tf.range(kv_len)[None, :] < tf.cast(cx.onnx(nonpad_v), tf.int64)[:, None]
        padding = tf.where(keep, tf.zeros([], dtype), neg)[:, None, None, :]
        bias = padding if bias is None else bias + padding
    return bias


@op("Attention", since=23)
def attention(cx: Any, node: Any, ins: list[V | None]) -> list[V | None]:
    tf = cx.tf
    q, k, v = (cx.onnx(x) for x in ins[:3])
    three_d = q.shape.rank == 3
    q_heads, kv_heads = cx.attr(node, "q_num_heads"), cx.attr(node, "kv_num_heads")
    if three_d:
        q, k, v = _heads(tf, q, q_heads), _heads(tf, k, kv_heads), _heads(tf, v, kv_heads)
    past_k, past_v = (ins[i] if len(ins) > i else None for i in (4, 5))
    if past_k is not None:
        k = tf.concat([cx.onnx(past_k), k], 2)
    if past_v is not None:
        v = tf.concat([cx.onnx(past_v), v], 2)
    present_k, present_v = k, v
    size = q.shape[3] if q.shape[3] is not None else tf.cast(tf.shape(q)[3], q.dtype)
    scale = cx.attr(node, "scale")
    scale = 1 / math.sqrt(size) if scale is None and isinstance(size, int) else scale
    root = math.sqrt(scale) if scale is not None else tf.sqrt(tf.math.rsqrt(size))
    bias = _bias(cx, node, ins, q, k, cx.onnx(past_k) if past_k is not None else None)
    h_q = q_heads or q.shape[1]
    h_kv = kv_heads or k.shape[1]
    if h_q and h_kv and h_q != h_kv and h_q % h_kv == 0:  # grouped-query: each KV head serves h_q / h_kv heads
        k, v = tf.repeat(k, h_q // h_kv, axis=1), tf.repeat(v, h_q // h_kv, axis=1)
    qk = tf.linalg.matmul(q * tf.cast(root, q.dtype), k * tf.cast(root, k.dtype), transpose_b=True)
    mode = cx.attr(node, "qk_matmul_output_mode", 0)
    scores = qk if bias is None else qk + bias
    qk_out = scores if mode == 1 else qk
    softcap = cx.attr(node, "softcap", 0.0)
    if softcap and softcap > 0:
        scores = softcap * tf.tanh(scores / softcap)
        qk_out = scores if mode == 2 else qk_out
    precision = cx.attr(node, "softmax_precision")
    probs = tf.nn.softmax(tf.cast(scores, cx.dtype(precision)) if precision else scores, axis=-1)
    probs = tf.cast(probs, v.dtype)
    qk_out = probs if mode == 3 else qk_out
    y = tf.linalg.matmul(probs, v)
    if three_d:
        y = tf.transpose(y, [0, 2, 1, 3])
        shape = tf.shape(y, out_type=tf.int64)
        y = tf.reshape(y, tf.concat([shape[:2], tf.constant([-1], tf.int64)], 0))
    outs: list[V | None] = [V(y), V(present_k), V(present_v), V(tf.cast(qk_out, q.dtype))]
    return outs[:len(node.output)]
