"""Post-processing ops that select elements: TopK, NonZero, NonMaxSuppression, Unique.

Each maps onto a kernel TF.js has: TopKV2, Where (one input), NonMaxSuppressionV3, Unique. TopK
works on the physical axis that holds ONNX's (one Transpose pair only when that is not the last);
the others depend on ONNX's element order and take ONNX order.
"""

from __future__ import annotations

from typing import Any

from .registry import op
from .values import V


def _scalar(cx: Any, v: V | None, default: Any, cast: Any) -> Any:
    """A scalar input as a python number when known at conversion time, else a scalar tensor."""
    if v is None:
        return default
    arr = cx.static(v)
    if arr is not None:
        return cast(cx.np.asarray(arr).reshape(-1)[0])
    return cx.tf.reshape(v.t, [])


def _top_k(cx: Any, t: Any, k: Any, largest: bool) -> tuple[Any, Any]:
    """Top k along the last axis; equal values keep their order (TF's top_k is stable)."""
    tf = cx.tf
    if largest:
        values, idx = tf.math.top_k(t, k)
    else:  # the k smallest are the k largest of the negated values
        values, idx = tf.math.top_k(-t, k)
        values = -values
    return values, tf.cast(idx, tf.int64)


@op("TopK", since=1)
def top_k(cx: Any, node: Any, ins: list[V | None]) -> list[V]:
    tf = cx.tf
    x = ins[0]
    k = cx.attr(node, "k") if cx.opset < 10 else _scalar(cx, ins[1], None, int)
    if not isinstance(k, int):
        k = tf.cast(k, tf.int32)
    largest = bool(cx.attr(node, "largest", 1))
    rank = x.rank
    a = cx.axis(x, cx.attr(node, "axis", -1))
    if a == rank - 1:
        values, idx = _top_k(cx, x.t, k, largest)
        return [V(values, x.perm), V(idx, x.perm)]
    to_last = [*(i for i in range(rank) if i != a), a]
    back = [to_last.index(i) for i in range(rank)]
    values, idx = _top_k(cx, tf.transpose(x.t, to_last), k, largest)
    return [V(tf.transpose(values, back), x.perm), V(tf.transpose(idx, back), x.perm)]


@op("NonZero", since=9)
def non_zero(cx: Any, node: Any, ins: list[V | None]) -> list[V]:
    tf = cx.tf
    t = cx.onnx(ins[0])
    mask = t if t.dtype == tf.bool else tf.not_equal(t, tf.zeros([], t.dtype))
    if t.shape.rank == 0:  # a scalar: ONNX counts it as one element of a 1-D tensor
        mask = tf.reshape(mask, [1])
    return [V(tf.transpose(tf.where(mask)))]  # row-major coordinates, [rank, count]


def _corners(cx: Any, boxes: Any, center: bool) -> Any:
    """[..., 4] boxes as TF's NMS takes them: (y1, x1, y2, x2); ONNX's center_point_box=1 gives
    (x_center, y_center, width, height)."""
    if not center:
        return boxes
    tf = cx.tf
    xc, yc, w, h = tf.unstack(boxes, 4, axis=-1)
    return tf.stack([yc - h / 2, xc - w / 2, yc + h / 2, xc + w / 2], axis=-1)


@op("NonMaxSuppression", since=10)
def non_max_suppression(cx: Any, node: Any, ins: list[V | None]) -> list[V]:
    """Per batch and class, TF's NonMaxSuppressionV3; rows (batch, class, box) in that order. The
    batch and class counts must be known at conversion time (the loop is unrolled)."""
    tf = cx.tf
    ins = [*ins, *[None] * (5 - len(ins))]
    boxes = _corners(cx, cx.onnx(ins[0]), bool(cx.attr(node, "center_point_box", 0)))
    scores = cx.onnx(ins[1])
    batches, classes = scores.shape[0], scores.shape[1]
    if batches is None or classes is None:
        cx.fail(node, "the number of batches and classes must be known at conversion time")
    max_out = _scalar(cx, ins[2], 0, int)
    iou = _scalar(cx, ins[3], 0.0, float)
    score = _scalar(cx, ins[4], float("-inf"), float)
    if not isinstance(max_out, int):
        max_out = tf.cast(max_out, tf.int32)
    rows = []
    for b in range(batches):
        for c in range(classes):
            keep = tf.image.non_max_suppression(boxes[b], scores[b, c], max_out, iou_threshold=iou,
                                                score_threshold=score)
            keep = tf.cast(keep, tf.int64)
            fill = tf.ones_like(keep)
            rows.append(tf.stack([fill * b, fill * c, keep], axis=1))
    out = tf.concat(rows, 0) if rows else tf.zeros([0, 3], tf.int64)
    return [V(out)]


@op("Unique", since=11)
def unique(cx: Any, node: Any, ins: list[V | None]) -> list[V]:
    """TF's Unique (UniqueV2 along an axis) gives first-occurrence order; with ``sorted`` stable TopKs
    sort the values (slices: lexicographically, one pass per element of a slice) and carry the
    indices, counts and inverse along. Counts and first indices come from a [elements, uniques] mask."""
    tf = cx.tf
    x = cx.onnx(ins[0])
    axis = cx.attr(node, "axis")
    if axis is None:
        x, a = tf.reshape(x, [-1]), 0
        values, inverse = tf.unique(x, out_idx=tf.int32)
        keys = values[:, None]
    else:
        a = int(axis) % x.shape.rank
        values, inverse = tf.raw_ops.UniqueV2(x=x, axis=tf.constant([a], tf.int64), out_idx=tf.int32)
        rest = [i for i in range(x.shape.rank) if i != a]
        dims = [x.shape[i] for i in rest]  # a slice's size, static where the input's is
        size = int(cx.np.prod(dims)) if all(d is not None for d in dims) else -1
        keys = tf.reshape(tf.transpose(values, [a, *rest]), [-1, size])
    n = tf.shape(values)[a]
    length = tf.shape(x)[a]
    hit = tf.equal(inverse[:, None], tf.range(n)[None, :])  # [positions, uniques]
    first = tf.reduce_min(tf.where(hit, tf.range(length)[:, None], length), axis=0)
    counts = tf.reduce_sum(tf.cast(hit, tf.int32), axis=0)
    if cx.attr(node, "sorted", 1):
        order = _lexicographic(cx, node, keys, n)
        _, rank = tf.math.top_k(-order, n)  # the inverse permutation (InvertPermutation: not in TF.js)
        values = tf.gather(values, order, axis=a)
        first, counts = tf.gather(first, order), tf.gather(counts, order)
        inverse = tf.gather(rank, inverse)
    return [V(values), *(V(tf.cast(t, tf.int64)) for t in (first, inverse, counts))]


def _lexicographic(cx: Any, node: Any, keys: Any, n: Any) -> Any:
    """The order that sorts the rows of ``keys`` [n, L] ascending, lexicographically: stable sorts by
    the last column first (TF's top_k keeps equal values in order)."""
    tf = cx.tf
    columns = keys.shape[1]
    if columns is None:
        cx.fail(node, "sorted Unique along an axis needs slices of a size known at conversion time")
    if keys.dtype == tf.bool:
        keys = tf.cast(keys, tf.int32)
    order = tf.range(n)
    for j in reversed(range(columns)):
        _, step = tf.math.top_k(-tf.gather(keys[:, j], order), n)
        order = tf.gather(order, step)
    return order


def _sample_axis(cx: Any, pos: Any, size: Any) -> tuple[Any, Any, Any, Any, Any]:
    """Bilinear taps along one axis as RoiAlign takes them (ONNX's reference): positions outside
    [-1, size] count nothing, others clamp into the map. -> (low, high, low weight, high weight, valid)."""
    tf = cx.tf
    size_f = tf.cast(size, pos.dtype)
    valid = (pos >= -1.0) & (pos <= size_f)
    pos = tf.maximum(pos, 0.0)
    low = tf.floor(pos)
    edge = low >= size_f - 1
    low = tf.where(edge, size_f - 1, low)
    high = tf.where(edge, size_f - 1, low + 1)
    frac = tf.where(edge, tf.zeros_like(pos), pos - low)
    return tf.cast(low, tf.int32), tf.cast(high, tf.int32), 1.0 - frac, frac, valid


@op("RoiAlign", since=10)
def roi_align(cx: Any, node: Any, ins: list[V | None]) -> list[V]:
    """Per ROI, ``sampling_ratio``^2 bilinear samples per output bin (a GatherNd per corner over the
    channels-last map), averaged or max-ed per bin; the output stays channels-last."""
    from .values import channels_last

    tf = cx.tf
    feat = cx.physical(ins[0], channels_last(4))  # [N, H, W, C]
    rois, batch = cx.onnx(ins[1]), tf.cast(cx.onnx(ins[2]), tf.int32)
    s = int(cx.attr(node, "sampling_ratio", 0))
    if s <= 0:
        cx.fail(node, "sampling_ratio 0 (a grid that depends on each ROI's size) is not supported")
    oh, ow = int(cx.attr(node, "output_height", 1)), int(cx.attr(node, "output_width", 1))
    scale = float(cx.attr(node, "spatial_scale", 1.0))
    half = cx.opset >= 16 and cx.attr(node, "coordinate_transformation_mode", "half_pixel") == "half_pixel"
    box = rois * scale - (0.5 if half else 0.0)
    start = [box[:, 1], box[:, 0]]  # y, x
    extent = [box[:, 3] - box[:, 1], box[:, 2] - box[:, 0]]
    if not half:  # malformed ROIs are forced to 1x1
        extent = [tf.maximum(e, 1.0) for e in extent]
    shape = tf.shape(feat)
    taps = []
    for axis, n in enumerate((oh, ow)):
        grid = tf.constant([p + (i + 0.5) / s for p in range(n) for i in range(s)], rois.dtype)
        pos = start[axis][:, None] + grid[None, :] * (extent[axis] / n)[:, None]  # [R, n*s]
        taps.append(_sample_axis(cx, pos, shape[1 + axis]))
    (y0, y1, wy0, wy1, vy), (x0, x1, wx0, wx1, vx) = taps
    valid = tf.cast(vy[:, :, None] & vx[:, None, :], feat.dtype)
    rows, cols = tf.shape(y0)[1], tf.shape(x0)[1]
    b = tf.broadcast_to(batch[:, None, None], [tf.shape(batch)[0], rows, cols])
    terms = []
    for yi, wy in ((y0, wy0), (y1, wy1)):
        for xi, wx in ((x0, wx0), (x1, wx1)):
            idx = tf.stack([b, tf.broadcast_to(yi[:, :, None], tf.shape(b)),
                            tf.broadcast_to(xi[:, None, :], tf.shape(b))], axis=-1)
            weight = (wy[:, :, None] * wx[:, None, :] * valid)[..., None]
            terms.append(weight * tf.gather_nd(feat, idx))  # [R, oh*s, ow*s, C]
    per_bin = [-1, oh, s, ow, s, shape[3]]
    if cx.attr(node, "mode", "avg") == "max":
        samples = tf.reduce_max(tf.stack(terms), axis=0)
        out = tf.reduce_max(tf.reshape(samples, per_bin), axis=[2, 4])
    else:
        out = tf.reduce_mean(tf.reshape(tf.add_n(terms), per_bin), axis=[2, 4])
    return [V(out, channels_last(4))]
