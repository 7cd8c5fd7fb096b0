"""Indexing ops: GatherElements, GatherND, ScatterND, ScatterElements (and the old Scatter), OneHot,
Compress, Trilu, EyeLike.

Element-wise index ops (GatherElements, ScatterElements) work in the data's PHYSICAL layout: their
indices (and updates) are laid out as the data is, so their coordinates are physical too. Ops whose
indices address ONNX axes as a tuple (GatherND, ScatterND) take ONNX order.

Only kernels TF.js has are used: GatherNd, ScatterNd, TensorScatterUpdate (no TensorScatterAdd/Max/
Min/Mul there), so reductions other than "add" update one index at a time (``_reduce_scatter``).
"""

from __future__ import annotations

from typing import Any

from .registry import op
from .values import V, normal

#: more index tuples than this for a mul/max/min scatter: TF's own kernels (not in TF.js) instead
ONE_BY_ONE_LIMIT = 256


def _positive(cx: Any, idx: Any, dims: Any) -> Any:
    """Negative indices counted from the end, as ONNX allows: ``idx + dim`` where ``idx < 0``."""
    tf = cx.tf
    idx = tf.cast(idx, tf.int64)
    dims = tf.cast(dims, tf.int64)
    return tf.where(idx < 0, idx + dims, idx)


def _coords(cx: Any, idx: Any, axis: int, dim: Any) -> Any:
    """Full coordinates [*idx.shape, rank] of each element of ``idx``: its own position on every axis
    but ``axis``, where it holds the index itself (GatherElements/ScatterElements as *_nd)."""
    tf = cx.tf
    rank = idx.shape.rank
    shape = tf.shape(idx, out_type=tf.int64)
    parts = []
    for j in range(rank):
        if j == axis:
            parts.append(_positive(cx, idx, dim))
            continue
        ones = [1] * rank
        ones[j] = -1
        parts.append(tf.broadcast_to(tf.reshape(tf.range(shape[j]), ones), shape))
    return tf.stack(parts, axis=-1)


def _reduce_scatter(cx: Any, node: Any, data: Any, idx: Any, updates: Any, reduction: str) -> Any:
    """ScatterND semantics (``idx`` [..., k] into ``data``) with ONNX's reduction attribute. A mul/max/
    min reduction updates one index tuple at a time (duplicates combine, as ONNX says), unrolled: TF.js
    has no TensorScatterMul/Max/Min."""
    tf = cx.tf
    if reduction == "none":
        return tf.tensor_scatter_nd_update(data, idx, updates)
    if reduction == "add":  # ScatterNd sums duplicate indices
        return data + tf.scatter_nd(idx, updates, tf.shape(data, out_type=idx.dtype))
    fn = {"mul": tf.multiply, "max": tf.maximum, "min": tf.minimum}.get(reduction)
    if fn is None:
        cx.fail(node, f"unknown reduction '{reduction}'")
    k = idx.shape[-1]
    flat = tf.reshape(idx, [-1, k])
    n = flat.shape[0]
    if n is None or n > ONE_BY_ONE_LIMIT:
        native = {"max": tf.tensor_scatter_nd_max, "min": tf.tensor_scatter_nd_min}.get(reduction)
        if native is None:
            cx.fail(node, f"reduction '{reduction}' over {n or 'a run-time number of'} indices (at most "
                          f"{ONE_BY_ONE_LIMIT} are unrolled)")
        return native(data, idx, updates)
    slice_shape = tf.shape(updates)[idx.shape.rank - 1:]
    ups = tf.reshape(updates, tf.concat([[n], slice_shape], 0))
    for i in range(n):
        at = flat[i:i + 1]
        data = tf.tensor_scatter_nd_update(data, at, fn(tf.gather_nd(data, at), ups[i:i + 1]))
    return data


@op("GatherElements", since=11)
def gather_elements(cx: Any, node: Any, ins: list[V | None]) -> list[V]:
    data, indices = ins[0], ins[1]
    a = cx.axis(data, cx.attr(node, "axis", 0))
    idx = cx.physical(indices, data.perm)
    coords = _coords(cx, idx, a, cx.tf.shape(data.t, out_type=cx.tf.int64)[a])
    return [V(cx.tf.gather_nd(data.t, coords), data.perm)]


@op("ScatterElements", since=11)
@op("Scatter", since=9, until=10)
def scatter_elements(cx: Any, node: Any, ins: list[V | None]) -> list[V]:
    data, indices, updates = ins[0], ins[1], ins[2]
    tf = cx.tf
    a = cx.axis(data, cx.attr(node, "axis", 0))
    idx = cx.physical(indices, data.perm)
    coords = _coords(cx, idx, a, tf.shape(data.t, out_type=tf.int64)[a])
    ups = cx.physical(updates, data.perm)
    out = _reduce_scatter(cx, node, data.t, coords, ups, cx.attr(node, "reduction", "none"))
    return [V(out, data.perm)]


def _nd_indices(cx: Any, node: Any, data: Any, indices: V, batch_dims: int = 0) -> Any:
    """GatherND/ScatterND indices (ONNX order), negative ones counted from the end of their axis."""
    tf = cx.tf
    idx = cx.onnx(indices)
    k = idx.shape[-1]
    if k is None:
        cx.fail(node, "the last dim of the indices (how many axes each tuple addresses) must be known")
    dims = tf.shape(data, out_type=tf.int64)[batch_dims:batch_dims + k]
    return _positive(cx, idx, dims)


@op("GatherND", since=11)
def gather_nd(cx: Any, node: Any, ins: list[V | None]) -> list[V]:
    b = int(cx.attr(node, "batch_dims", 0))
    data = cx.onnx(ins[0])
    idx = _nd_indices(cx, node, data, ins[1], b)
    return [V(cx.tf.gather_nd(data, idx, batch_dims=b))]


@op("ScatterND", since=11)
def scatter_nd(cx: Any, node: Any, ins: list[V | None]) -> list[V]:
    data = cx.onnx(ins[0])
    idx = _nd_indices(cx, node, data, ins[1])
    out = _reduce_scatter(cx, node, data, idx, cx.onnx(ins[2]), cx.attr(node, "reduction", "none"))
    return [V(out)]


@op("OneHot", since=9)
def one_hot(cx: Any, node: Any, ins: list[V | None]) -> list[V]:
    """The new axis is made LAST physically and stays there (the result's perm says where ONNX wants
    it): TF.js's OneHot ignores TF's axis. TF.js wasm's OneHot writes integer bits into a float
    output, so the hot mask is int32 and a Select picks the on/off values."""
    tf = cx.tf
    indices, depth_v, values = cx.onnx(ins[0]), ins[1], cx.onnx(ins[2])
    depth_arr = cx.static(depth_v)
    if depth_arr is not None:
        depth: Any = int(cx.np.asarray(depth_arr).reshape(-1)[0])
    else:
        depth = tf.cast(tf.reshape(depth_v.t, []), tf.int64)
    if not indices.dtype.is_integer:  # ONNX casts non-integer indices to int64
        indices = tf.cast(indices, tf.int64)
    indices = _positive(cx, indices, depth)  # -1 is the last class; TF would give all "off"
    rank = indices.shape.rank
    axis = int(cx.attr(node, "axis", -1))
    if axis < 0:
        axis += rank + 1
    values = tf.reshape(values, [2])
    hot = tf.one_hot(indices, tf.cast(depth, tf.int32), dtype=tf.int32)
    out = tf.where(tf.cast(hot, tf.bool), values[1], values[0])
    perm = (*range(axis), *range(axis + 1, rank + 1), axis)  # physical: ONNX axes but `axis`, then `axis`
    return [V(out, normal(perm))]


@op("Compress", since=9)
def compress(cx: Any, node: Any, ins: list[V | None]) -> list[V]:
    tf = cx.tf
    x, cond = ins[0], cx.onnx(ins[1])
    cond = tf.reshape(cond if cond.dtype == tf.bool else tf.not_equal(cond, 0), [-1])
    keep = tf.where(cond)[:, 0]  # condition may be shorter than the axis: the rest is dropped
    axis = cx.attr(node, "axis", None)
    if axis is None:
        return [V(tf.gather(tf.reshape(cx.onnx(x), [-1]), keep))]
    return [V(tf.gather(x.t, keep, axis=cx.axis(x, axis)), x.perm)]


def _diagonals(cx: Any, rows: Any, cols: Any) -> Any:
    """[rows, cols] int64: column index minus row index (the diagonal each element is on)."""
    tf = cx.tf
    return tf.range(cols, dtype=tf.int64)[None, :] - tf.range(rows, dtype=tf.int64)[:, None]


@op("Trilu", since=14)
def trilu(cx: Any, node: Any, ins: list[V | None]) -> list[V]:
    tf = cx.tf
    x = cx.onnx(ins[0])
    k_v = ins[1] if len(ins) > 1 else None
    k_arr = cx.static(k_v)
    k: Any = 0 if k_v is None else int(cx.np.asarray(k_arr).reshape(-1)[0]) if k_arr is not None else (
        tf.cast(tf.reshape(k_v.t, []), tf.int64))
    shape = tf.shape(x, out_type=tf.int64)
    diag = _diagonals(cx, shape[-2], shape[-1])
    keep = diag >= k if cx.attr(node, "upper", 1) else diag <= k
    return [V(tf.where(keep, x, tf.zeros_like(x)))]


@op("EyeLike", since=9)
def eye_like(cx: Any, node: Any, ins: list[V | None]) -> list[V]:
    tf = cx.tf
    x = ins[0]
    shape = cx.shape(x)
    dtype = cx.dtype(cx.attr(node, "dtype")) if cx.attr(node, "dtype") is not None else x.t.dtype
    ones = tf.equal(_diagonals(cx, shape[0], shape[1]), int(cx.attr(node, "k", 0)))
    return [V(tf.cast(ones, dtype))]


def _batched_gather(cx: Any, x: Any, idx: Any) -> Any:
    """``out[b, l, ...] = x[b, idx[b, l], ...]`` as one flat Gather over (batch, axis 1): TF.js wasm's
    GatherV2 with batch_dims gives wrong values here."""
    tf = cx.tf
    shape = tf.shape(x)
    flat = tf.reshape(x, tf.concat([[-1], shape[2:]], 0))
    rows = idx + tf.range(shape[0])[:, None] * shape[1]
    return tf.gather(flat, rows)


@op("ReverseSequence", since=10)
def reverse_sequence(cx: Any, node: Any, ins: list[V | None]) -> list[V]:
    """Each batch entry's first ``sequence_lens[b]`` time steps reversed: a batched Gather of
    ``len - 1 - t`` (t < len) or ``t`` along time, with batch and time leading (TF's ReverseSequence
    is not in TF.js)."""
    tf = cx.tf
    x = cx.onnx(ins[0])
    lens = tf.cast(cx.onnx(ins[1]), tf.int32)
    b, t = int(cx.attr(node, "batch_axis", 1)), int(cx.attr(node, "time_axis", 0))
    rank = x.shape.rank
    lead = [b, t, *(i for i in range(rank) if i not in (b, t))]
    xt = tf.transpose(x, lead)
    steps = tf.range(tf.shape(xt)[1])[None, :]
    idx = tf.where(steps < lens[:, None], lens[:, None] - 1 - steps, steps)
    out = _batched_gather(cx, xt, idx)
    return [V(tf.transpose(out, [lead.index(i) for i in range(rank)]))]


@op("TensorScatter", since=24)
def tensor_scatter(cx: Any, node: Any, ins: list[V | None]) -> list[V]:
    """A KV-cache write: ``update``'s positions along ``axis`` land at ``write_indices[b] + s`` of
    ``past`` (mod its length in circular mode). As a batched Gather of the update at ``p -
    write_indices[b]`` for each cache position p, and a Select where that is inside the update."""
    tf = cx.tf
    past, update = cx.onnx(ins[0]), cx.onnx(ins[1])
    rank = past.shape.rank
    a = int(cx.attr(node, "axis", -2)) % rank
    if a == 0:
        cx.fail(node, "axis 0 is the batch axis")
    batch = tf.shape(past)[0]
    starts = tf.zeros([batch], tf.int32) if len(ins) < 3 or ins[2] is None else tf.cast(cx.onnx(ins[2]), tf.int32)
    length, count = tf.shape(past)[a], tf.shape(update)[a]
    src = tf.range(length)[None, :] - starts[:, None]  # [batch, cache positions]
    if cx.attr(node, "mode", "linear") == "circular":
        src = tf.math.floormod(src, length)
    inside = (src >= 0) & (src < count)
    lead = [0, a, *(i for i in range(1, rank) if i != a)]
    src = tf.minimum(tf.maximum(src, 0), count - 1)  # not ClipByValue: TF.js wasm clips int32 as floats
    taken = tf.transpose(_batched_gather(cx, tf.transpose(update, lead), src), [lead.index(i) for i in range(rank)])
    mask = tf.reshape(inside, [batch, *([1] * (a - 1)), length, *([1] * (rank - a - 1))])
    return [V(tf.where(tf.broadcast_to(mask, tf.shape(past)), taken, past))]


@op("MaxUnpool", since=9)
def max_unpool(cx: Any, node: Any, ins: list[V | None]) -> list[V]:
    """Values written at their flat indices into zeros of the inferred (or given) output shape.
    TensorScatterUpdate, not ScatterNd: a value a max pool picked twice is written once, not summed."""
    tf = cx.tf
    x, idx = cx.onnx(ins[0]), tf.cast(cx.onnx(ins[1]), tf.int64)
    kernel = [int(k) for k in cx.attr(node, "kernel_shape")]
    n = len(kernel)
    strides = [int(s) for s in cx.attr(node, "strides", None) or [1] * n]
    pads = [int(p) for p in cx.attr(node, "pads", None) or [0] * (2 * n)]
    shape = tf.shape(x, out_type=tf.int64)
    spatial = [(shape[2 + i] - 1) * strides[i] - pads[i] - pads[n + i] + kernel[i] for i in range(n)]
    inferred = tf.stack([shape[0], shape[1], *spatial])
    flat = tf.tensor_scatter_nd_update(tf.zeros([tf.reduce_prod(inferred)], x.dtype),
                                       tf.reshape(idx, [-1, 1]), tf.reshape(x, [-1]))
    out = tf.reshape(flat, inferred)
    wanted = ins[2] if len(ins) > 2 else None
    if wanted is not None:  # a larger output: the unpooled block at its start, zeros after
        extra = tf.cast(cx.onnx(wanted), tf.int64) - inferred
        out = tf.pad(out, tf.stack([tf.zeros_like(extra), extra], axis=1))
    return [V(out)]


@op("CenterCropPad", since=18)
def center_crop_pad(cx: Any, node: Any, ins: list[V | None]) -> list[V]:
    """Each listed axis cropped (centred, the extra element at the end) or zero-padded (likewise) to
    its target size, on the physical axes: the layout stays. Sizes may be known only at run time."""
    tf = cx.tf
    x = ins[0]
    rank = x.rank
    target = tf.cast(tf.reshape(cx.onnx(ins[1]), [-1]), tf.int32)
    axes = cx.attr(node, "axes", None) or list(range(rank))
    dims = tf.shape(x.t)
    begin, size, pads = [0] * rank, [-1] * rank, [[0, 0] for _ in range(rank)]
    for i, a in enumerate(axes):
        p = cx.axis(x, a)
        dim, want = dims[p], target[i]
        begin[p] = tf.maximum(dim - want, 0) // 2
        size[p] = tf.minimum(dim, want)
        grow = tf.maximum(want - dim, 0)
        pads[p] = [grow // 2, grow - grow // 2]
    out = tf.slice(x.t, tf.stack(begin), tf.stack(size))
    return [V(tf.pad(out, tf.stack([tf.stack(p) for p in pads])), x.perm)]


@op("AffineGrid", since=20)
def affine_grid(cx: Any, node: Any, ins: list[V | None]) -> list[V]:
    """Sampling grid [N, *spatial, k] = theta [N, k, k+1] applied to the homogeneous coordinates
    (x, y[, z], 1) of a regular grid in [-1, 1] (x along the last axis), sizes known at run time."""
    tf = cx.tf
    theta, size = cx.onnx(ins[0]), tf.cast(tf.reshape(cx.onnx(ins[1]), [-1]), tf.int32)
    k = theta.shape[1]
    if k not in (2, 3):
        cx.fail(node, f"theta of shape {theta.shape} (2-D and 3-D grids are supported)")
    spatial = [size[2 + j] for j in range(k)]
    align = bool(cx.attr(node, "align_corners", 0))
    axes = []
    for j, n in enumerate(spatial):
        i, n_f = tf.cast(tf.range(n), theta.dtype), tf.cast(n, theta.dtype)
        c = -1.0 + 2.0 * i / (n_f - 1.0) if align else -1.0 + (2.0 * i + 1.0) / n_f
        shape = [1] * k
        shape[j] = -1
        axes.append(tf.broadcast_to(tf.reshape(c, shape), tf.stack(spatial)))
    homo = tf.stack([*reversed(axes), tf.ones(tf.stack(spatial), theta.dtype)], axis=-1)  # x first
    points = tf.reshape(homo, [1, -1, k + 1])
    batch = tf.shape(theta)[0]
    # an explicit transpose, no transpose_b: TF.js wasm's fused MatMul gets transpose_b wrong
    grid = tf.linalg.matmul(tf.broadcast_to(points, tf.stack([batch, tf.shape(points)[1], k + 1])),
                            tf.transpose(theta, [0, 2, 1]))
    return [V(tf.reshape(grid, tf.concat([[batch], tf.stack(spatial), [k]], 0)))]


def _unravel(cx: Any, flat: Any, dims: list[Any]) -> list[Any]:
    """Row-major coordinates of ``flat`` over ``dims`` (int32 scalars, possibly run-time)."""
    out, rest = [], flat
    for d in reversed(dims):
        out.append(cx.tf.math.floormod(rest, d))
        rest = rest // d
    return out[::-1]


@op("Col2Im", since=18)
def col2im(cx: Any, node: Any, ins: list[V | None]) -> list[V]:
    """Blocks [N, C*prod(block), L] summed into the image [N, C, *image_shape]: each (kernel offset,
    block) pair's image position, computed with run-time sizes, and one ScatterNd (which sums
    overlapping blocks; positions in the padding go to a dropped extra slot)."""
    tf = cx.tf
    x = cx.onnx(ins[0])
    image = tf.cast(tf.reshape(cx.onnx(ins[1]), [-1]), tf.int32)
    block = tf.cast(tf.reshape(cx.onnx(ins[2]), [-1]), tf.int32)
    k = ins[1].t.shape[0] if ins[1].t.shape.rank == 1 else None
    if k is None:
        cx.fail(node, "the number of image dims must be known at conversion time")
    strides = cx.attr(node, "strides", None) or [1] * k
    dilations = cx.attr(node, "dilations", None) or [1] * k
    pads = cx.attr(node, "pads", None) or [0] * (2 * k)
    img = [image[d] for d in range(k)]
    blk = [block[d] for d in range(k)]
    grid = [(img[d] + pads[d] + pads[k + d] - dilations[d] * (blk[d] - 1) - 1) // strides[d] + 1 for d in range(k)]
    shape = tf.shape(x)
    kernel = tf.reduce_prod(block)
    offsets = _unravel(cx, tf.range(kernel)[:, None], blk)  # [K, 1] each
    blocks = _unravel(cx, tf.range(shape[2])[None, :], grid)  # [1, L] each
    target, valid, size = tf.zeros([kernel, shape[2]], tf.int32), None, tf.reduce_prod(image)
    for d in range(k):
        pos = blocks[d] * strides[d] - pads[d] + offsets[d] * dilations[d]  # [K, L]
        inside = (pos >= 0) & (pos < img[d])
        valid = inside if valid is None else valid & inside
        target = target * img[d] + pos
    target = tf.where(valid, target, size)  # the padding's positions: one extra slot, dropped
    channels = shape[1] // kernel
    updates = tf.transpose(tf.reshape(x, tf.stack([shape[0], channels, kernel, shape[2]])), [2, 3, 0, 1])
    summed = tf.scatter_nd(target[..., None], updates, tf.stack([size + 1, shape[0], channels]))
    out = tf.transpose(summed[:size], [1, 2, 0])
    return [V(tf.reshape(out, tf.concat([tf.stack([shape[0], channels]), image], 0)))]
