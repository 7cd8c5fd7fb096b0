"""LSTM, GRU and RNN over a dynamic time axis.

The input projection of every step is one MatMul before the loop; the recurrence is a ``tf.scan``
(a while loop TF.js runs) over however many steps the input has, so the time axis stays dynamic.
``sequence_lens`` masks the steps past each sequence's end (state kept, output zero); the reverse
direction reads each sequence backwards from its own last step (a per-batch gather), as ONNX does.
RNNs need ONNX order: inputs are taken with ``cx.onnx`` and outputs are in ONNX order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from collections.abc import Callable

import numpy as np

from .registry import op
from .values import V

#: activation -> (alpha, beta) it defaults to
_DEFAULTS = {"leakyrelu": (0.01, 0.0), "thresholdedrelu": (1.0, 0.0), "scaledtanh": (1.0, 1.0),
             "hardsigmoid": (0.2, 0.5), "elu": (1.0, 0.0), "affine": (1.0, 0.0)}
_GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}
_DEFAULT_ACTS = {"LSTM": ["Sigmoid", "Tanh", "Tanh"], "GRU": ["Sigmoid", "Tanh"], "RNN": ["Tanh"]}


def _activation(tf: Any, name: str, alpha: float | None, beta: float | None) -> Callable[[Any], Any]:
    key = name.lower()
    a, b = _DEFAULTS.get(key, (0.0, 0.0))
    a = a if alpha is None else alpha
    b = b if beta is None else beta
    table: dict[str, Callable[[Any], Any]] = {
        "sigmoid": tf.sigmoid, "tanh": tf.tanh, "relu": tf.nn.relu,
        "affine": lambda x: a * x + b, "leakyrelu": lambda x: tf.nn.leaky_relu(x, a),
        "thresholdedrelu": lambda x: tf.where(x > a, x, tf.zeros_like(x)),
        "scaledtanh": lambda x: a * tf.tanh(b * x), "hardsigmoid": lambda x: tf.clip_by_value(a * x + b, 0.0, 1.0),
        "elu": lambda x: tf.where(x > 0, x, a * (tf.exp(x) - 1)),
        "softsign": lambda x: x / (1 + tf.abs(x)),  # TF.js has no Softsign kernel
        "softplus": tf.nn.softplus,
    }
    if key not in table:
        raise KeyError(name)
    return table[key]


@dataclass(frozen=True)
class _Spec:
    """One recurrent node: its kind, size, per-direction activations and options."""

    kind: str
    hidden: int
    directions: tuple[str, ...]
    acts: tuple[tuple[Callable[[Any], Any], ...], ...]  # per direction
    clip: float | None
    linear_before_reset: bool
    input_forget: bool = False  # LSTM: the forget gate is 1 - the input gate


def _spec(cx: Any, node: Any, kind: str) -> _Spec:
    direction = cx.attr(node, "direction", "forward")
    dirs = {"forward": ("forward",), "reverse": ("reverse",), "bidirectional": ("forward", "reverse")}.get(direction)
    if dirs is None:
        cx.fail(node, f"direction {direction!r} is not forward, reverse or bidirectional")
    per = len(_DEFAULT_ACTS[kind])
    names = cx.attr(node, "activations", None) or _DEFAULT_ACTS[kind] * len(dirs)
    alphas = list(cx.attr(node, "activation_alpha", None) or [])
    betas = list(cx.attr(node, "activation_beta", None) or [])
    try:
        funcs = [_activation(cx.tf, n, alphas[i] if i < len(alphas) else None, betas[i] if i < len(betas) else None)
                 for i, n in enumerate(names)]
    except KeyError as e:
        cx.fail(node, f"activation {e.args[0]!r} is not supported")
    if len(funcs) < per * len(dirs):
        funcs = funcs * len(dirs)
    clip = cx.attr(node, "clip", None)
    return _Spec(kind, int(cx.attr(node, "hidden_size")), dirs,
                 tuple(tuple(funcs[d * per:(d + 1) * per]) for d in range(len(dirs))),
                 None if clip is None else float(clip), bool(cx.attr(node, "linear_before_reset", 0)),
                 bool(cx.attr(node, "input_forget", 0)))


def _param(cx: Any, v: V | None, dtype: Any) -> Any:
    """A weight in ONNX order: numpy when static, else a tensor; None when absent."""
    if v is None:
        return None
    arr = cx.static(v)
    if arr is not None:
        return np.asarray(arr, dtype=dtype.as_numpy_dtype)
    return cx.tf.cast(cx.onnx(v), dtype)


def _t(cx: Any, w: Any) -> Any:
    """The transpose of a 2-D weight (numpy at conversion time when static)."""
    return np.ascontiguousarray(w.T) if isinstance(w, np.ndarray) else cx.tf.transpose(w)


@dataclass
class _Weights:
    """One direction's weights, laid out for ``x @ w`` and ``h @ r``."""

    w: Any  # (I, G*H)
    r: Any  # (H, G*H)
    bias: Any  # (G*H,) added to the input projection (W and R biases, GRU's R_h bias left out)
    r_bias_h: Any  # GRU: R's bias of the h gate, which the reset gate scales
    peep: Any  # LSTM: (3, H) peephole weights i, o, f, or None


def _weights(cx: Any, spec: _Spec, ins: list, d: int, dtype: Any) -> _Weights:
    h, g = spec.hidden, _GATES[spec.kind]
    w, r, b = (_param(cx, _opt(ins, i), dtype) for i in (1, 2, 3))
    bias = np.zeros(2 * g * h, dtype.as_numpy_dtype) if b is None else b[d]
    wb, rb = bias[: g * h], bias[g * h:]
    r_bias_h = None
    if spec.kind == "GRU":
        r_bias_h = rb[2 * h:]
        rb = cx.tf.concat([rb[: 2 * h], rb[2 * h:] * 0], 0) if not isinstance(rb, np.ndarray) else np.concatenate(
            [rb[: 2 * h], np.zeros(h, rb.dtype)])
    p = _param(cx, _opt(ins, 7), dtype)
    peep = None if p is None else (p[d].reshape(3, h) if isinstance(p, np.ndarray) else cx.tf.reshape(p[d], [3, h]))
    return _Weights(_t(cx, w[d]), _t(cx, r[d]), wb + rb, r_bias_h, peep)


def _clip(tf: Any, spec: _Spec, x: Any) -> Any:
    return x if spec.clip is None else tf.clip_by_value(x, -spec.clip, spec.clip)


def _step(cx: Any, spec: _Spec, wt: _Weights, acts: tuple) -> Callable[[Any, Any, Any], tuple[Any, Any]]:
    """One time step: (h, c, projected x_t) -> (h', c'); c is unused outside LSTM."""
    tf = cx.tf
    h_size = spec.hidden

    def lstm(h: Any, c: Any, xw: Any) -> tuple[Any, Any]:
        f_act, g_act, h_act = acts
        i, o, f, cc = tf.split(xw + tf.matmul(h, wt.r), 4, axis=-1)
        if wt.peep is not None:
            i, f = i + wt.peep[0] * c, f + wt.peep[2] * c
        i, f, cc = f_act(_clip(tf, spec, i)), f_act(_clip(tf, spec, f)), g_act(_clip(tf, spec, cc))
        if spec.input_forget:
            f = 1 - i
        c2 = f * c + i * cc
        if wt.peep is not None:
            o = o + wt.peep[1] * c2
        return f_act(_clip(tf, spec, o)) * h_act(c2), c2

    def gru(h: Any, c: Any, xw: Any) -> tuple[Any, Any]:
        f_act, g_act = acts
        xz, xr, xh = tf.split(xw, 3, axis=-1)
        r_zr, r_h = wt.r[:, : 2 * h_size], wt.r[:, 2 * h_size:]
        hz, hr = tf.split(tf.matmul(h, r_zr), 2, axis=-1)
        z, r = f_act(_clip(tf, spec, xz + hz)), f_act(_clip(tf, spec, xr + hr))
        if spec.linear_before_reset:
            hh = xh + r * (tf.matmul(h, r_h) + wt.r_bias_h)
        else:
            hh = xh + tf.matmul(r * h, r_h) + wt.r_bias_h
        hh = g_act(_clip(tf, spec, hh))
        return (1 - z) * hh + z * h, c

    def rnn(h: Any, c: Any, xw: Any) -> tuple[Any, Any]:
        return acts[0](_clip(tf, spec, xw + tf.matmul(h, wt.r))), c

    return {"LSTM": lstm, "GRU": gru, "RNN": rnn}[spec.kind]


def _reverse(cx: Any, x: Any, lens: Any) -> Any:
    """x (T, B, ...) with each sequence read backwards from its own last step (steps past it stay)."""
    tf = cx.tf
    if lens is None:
        return tf.reverse(x, [0])
    steps = tf.shape(x)[0]
    t = tf.range(steps)[None, :]  # (1, T)
    n = tf.cast(lens, tf.int32)[:, None]  # (B, 1)
    idx = tf.where(t < n, n - 1 - t, t)  # (B, T)
    perm = [1, 0, *range(2, x.shape.rank)]
    return tf.transpose(tf.gather(tf.transpose(x, perm), idx, axis=1, batch_dims=1), perm)


def _direction(cx: Any, spec: _Spec, x: Any, ins: list, d: int, lens: Any) -> tuple[Any, Any, Any]:
    """One direction over time-major x: Y (T, B, H), last h (B, H), last c (B, H)."""
    tf = cx.tf
    dtype = x.dtype
    wt = _weights(cx, spec, ins, d, dtype)
    reverse = spec.directions[d] == "reverse"
    if reverse:
        x = _reverse(cx, x, lens)
    shape = tf.shape(x)
    xw = tf.reshape(tf.matmul(tf.reshape(x, [-1, shape[2]]), wt.w) + wt.bias, tf.stack([shape[0], shape[1], -1]))
    zeros = tf.zeros(tf.stack([shape[1], spec.hidden]), dtype)
    h0, c0 = (zeros if v is None else cx.onnx(v)[d] for v in (_opt(ins, 5), _opt(ins, 6)))
    step = _step(cx, spec, wt, spec.acts[d])
    if lens is None:
        mask = tf.ones(tf.stack([shape[0], shape[1], 1]), tf.bool)
    else:
        mask = (tf.range(shape[0])[:, None] < tf.cast(lens, tf.int32)[None, :])[:, :, None]

    def scan_fn(carry: tuple, elems: tuple) -> tuple:
        h, c, _ = carry
        xw_t, m_t = elems
        h2, c2 = step(h, c, xw_t)
        h2, c2 = tf.where(m_t, h2, h), tf.where(m_t, c2, c)
        return h2, c2, tf.where(m_t, h2, tf.zeros_like(h2))

    hs, cs, ys = tf.scan(scan_fn, (xw, mask), initializer=(tf.cast(h0, dtype), tf.cast(c0, dtype), zeros))
    if reverse:
        ys = _reverse(cx, ys, lens)
    last = tf.maximum(shape[0] - 1, 0)
    return ys, tf.gather(hs, last), tf.gather(cs, last)


def _opt(ins: list, i: int) -> V | None:
    return ins[i] if i < len(ins) else None


def _recurrent(cx: Any, node: Any, ins: list[V | None], kind: str) -> list[V | None]:
    tf = cx.tf
    spec = _spec(cx, node, kind)
    layout = int(cx.attr(node, "layout", 0))
    x = cx.onnx(ins[0])
    if layout:
        x = tf.transpose(x, [1, 0, 2])  # (B, T, I) -> time-major
    lens_v = _opt(ins, 4)
    lens = None if lens_v is None else cx.onnx(lens_v)
    runs = [_direction(cx, spec, x, ins, d, lens) for d in range(len(spec.directions))]
    y = tf.stack([r[0] for r in runs], axis=1)  # (T, D, B, H)
    y_h = tf.stack([r[1] for r in runs], axis=0)  # (D, B, H)
    y_c = tf.stack([r[2] for r in runs], axis=0)
    if layout:
        y, y_h, y_c = tf.transpose(y, [2, 0, 1, 3]), tf.transpose(y_h, [1, 0, 2]), tf.transpose(y_c, [1, 0, 2])
    outs: list[V | None] = [V(y), V(y_h), V(y_c)]
    return [outs[i] if name else None for i, name in enumerate(node.output)]


@op("LSTM", since=1)
def lstm(cx: Any, node: Any, ins: list[V | None]) -> list[V | None]:
    return _recurrent(cx, node, ins, "LSTM")


@op("GRU", since=1)
def gru(cx: Any, node: Any, ins: list[V | None]) -> list[V | None]:
    return _recurrent(cx, node, ins, "GRU")


@op("RNN", since=1)
def rnn(cx: Any, node: Any, ins: list[V | None]) -> list[V | None]:
    return _recurrent(cx, node, ins, "RNN")
