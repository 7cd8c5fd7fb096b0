"""What a handler gets besides its node and inputs: TensorFlow, numpy, the opset, attribute reading,
conversion-time constants (``static``), and the layout helpers that keep the permutation bookkeeping
(``onnx``, ``physical``, ``axis``, ``broadcast``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NoReturn

from ....errors import ConversionError
from .values import V, between, expand_perm, inverse, is_identity, normal


FOLD_LIMIT = 1 << 22  # elements: a graph tensor larger than this is not folded into a numpy value


class LoweringError(ConversionError):
    """The lowering cannot convert a node: names the node, its op type and why, in one line (exit 3)."""


class Ctx:
    """Per-lowering state: the static values known so far and the transposes already made."""

    def __init__(self, tf: Any, np: Any, opset: int, opsets: dict[str, int] | None = None) -> None:
        self.tf = tf
        self.np = np
        self.opset = opset
        self.opsets = opsets or {"": opset}  # every domain's opset
        self._static: dict[int, tuple[Any, Any]] = {}  # id(tensor) -> (tensor kept alive, its physical values)
        self._laid: dict[tuple[Any, ...], tuple[Any, Any]] = {}  # (id, have, want) -> (src, out)
        self.transposes = 0  # Transposes the bookkeeping had to add (materialisations)

    # -- attributes and constants ------------------------------------------------------------
    def attr(self, node: Any, name: str, default: Any = None) -> Any:
        """The attribute as a python value: int, float, str (decoded), lists, TensorProto -> np.ndarray
        (graphs stay GraphProto)."""
        from onnx import helper, numpy_helper

        for a in node.attribute:
            if a.name == name:
                value = helper.get_attribute_value(a)
                if isinstance(value, bytes):
                    return value.decode("utf-8")
                if hasattr(value, "data_type") and hasattr(value, "dims"):
                    return numpy_helper.to_array(value)
                if isinstance(value, list):
                    return [v.decode("utf-8") if isinstance(v, bytes) else v for v in value]
                return value
        return default

    def static(self, v: V | None) -> Any:
        """The value in ONNX order when it is known at conversion time, else None."""
        if v is None:
            return None
        phys = self._physical_value(v.t)
        if phys is None:
            return None
        return phys if is_identity(v.perm) else self.np.transpose(phys, inverse(v.perm))

    def _physical_value(self, t: Any) -> Any:
        """The tensor's own (physical) values when known at conversion time; remembered."""
        hit = self._static.get(id(t))
        if hit is not None and hit[0] is t:
            return hit[1]
        arr = None
        if hasattr(t, "numpy") and self.tf.executing_eagerly():
            try:
                arr = t.numpy()
            except Exception:  # a graph tensor outside its graph
                arr = None
        if arr is None:
            if t.shape.num_elements() is not None and t.shape.num_elements() > FOLD_LIMIT:
                return None  # a big computed tensor (ConstantOfShape weights) is not worth holding in numpy
            try:
                arr = self.tf.get_static_value(t)
            except Exception:  # TensorFlow could not fold it
                arr = None
        if arr is None:
            return None
        arr = self.np.asarray(arr)
        self._static[id(t)] = (t, arr)
        return arr

    def const(self, array: Any, perm: Sequence[int] | None = None) -> V:
        """A conversion-time constant (``array`` in ONNX order) as a V laid out as ``perm``."""
        np = self.np
        perm = normal(perm)
        arr = np.ascontiguousarray(np.transpose(np.asarray(array), perm)) if perm else np.asarray(array)
        t = self.tf.constant(arr)
        self._static[id(t)] = (t, arr)
        return V(t, perm)

    def fail(self, node: Any, why: str) -> NoReturn:
        raise LoweringError(f"node '{node.name or node.output[0]}' ({node.op_type}): {why}")

    # -- layout ------------------------------------------------------------------------------
    def onnx(self, v: V) -> Any:
        """The tensor in ONNX axis order (adds a Transpose only if v.perm is not identity)."""
        return self.physical(v, None)

    def physical(self, v: V, perm: Sequence[int] | None) -> Any:
        """The tensor laid out with ``perm`` (None: ONNX order); one Transpose per (value, layout)."""
        want = normal(perm)
        if normal(v.perm) == want:
            return v.t
        key = (id(v.t), normal(v.perm), want)
        hit = self._laid.get(key)
        if hit is not None and hit[0] is v.t:
            return hit[1]
        rank = len(v.perm or want or ())
        value = self.static(v) if self._static.get(id(v.t)) is not None else None
        step = between(v.perm, want, rank)
        if value is not None:  # a constant: laid out in numpy, now
            out = self.const(value, want).t
        elif self._only_units_move(v.t, step):
            out = self._reshaped(v.t, step)
        else:
            out = self.tf.transpose(v.t, step)
            self.transposes += 1
        self._laid[key] = (v.t, out)
        return out

    @staticmethod
    def _only_units_move(t: Any, step: Sequence[int] | None) -> bool:
        """Whether the transpose ``step`` moves only axes of size 1 relative to the others: then it is a
        reshape (no data moves; [N,1,1,C] after a global pool, in ONNX order [N,C,1,1])."""
        if step is None or t.shape.rank is None:
            return False
        dims = t.shape.as_list()
        if sum(d is None for d in dims) > 1 or 0 in dims:
            return False
        kept = [a for a in step if dims[a] != 1]
        return kept == sorted(kept)

    def _reshaped(self, t: Any, step: Sequence[int]) -> Any:
        tf = self.tf
        dims = t.shape.as_list()
        new = [dims[a] for a in step]
        if None in new:  # one dynamic dim: -1 stands for it
            new = [-1 if d is None else d for d in new]
        out = tf.reshape(t, new)
        out.set_shape([dims[a] for a in step])
        return out

    def axis(self, v: V, onnx_axis: int) -> int:
        """The physical axis that holds ONNX axis ``onnx_axis`` (negative axes normalised by rank)."""
        rank = v.rank
        a = int(onnx_axis)
        if a < 0:
            if rank is None:
                raise LoweringError(f"a negative axis ({a}) on a value of unknown rank")
            a += rank
        return a if is_identity(v.perm) else v.perm.index(a)  # type: ignore[union-attr]

    def shape(self, v: V) -> Any:
        """int64 shape in ONNX order (a constant when TensorFlow knows every dim)."""
        tf = self.tf
        dims = v.t.shape.as_list() if v.t.shape.rank is not None else None
        if dims is not None and all(d is not None for d in dims):
            onnx_dims = [dims[i] for i in inverse(v.perm)] if v.perm else dims
            return self.const(self.np.asarray(onnx_dims, dtype=self.np.int64)).t
        shape = tf.shape(v.t, out_type=tf.int64)
        return shape if is_identity(v.perm) else tf.gather(shape, list(inverse(v.perm)))

    def broadcast(self, vs: Sequence[V | None]) -> tuple[list[Any], tuple[int, ...] | None]:
        """Operands of an elementwise op laid out alike: the perm of the highest-rank non-constant input
        (constants are laid out in numpy); lower-rank operands get the leading unit axes numpy
        broadcasting would give them, in that layout. Returns (tensors, perm of the result)."""
        live = [v for v in vs if v is not None]
        ranks = [v.rank for v in live]
        if any(r is None for r in ranks):  # unknown rank: ONNX order everywhere
            return [None if v is None else self.onnx(v) for v in vs], None
        top = max(ranks, default=0)
        lead = [v for v in live if v.rank == top and self.static(v) is None] or [v for v in live if v.rank == top]
        perm = normal(lead[0].perm) if lead else None
        out = []
        for v in vs:
            if v is None or perm is None:
                out.append(None if v is None else self.onnx(v))
                continue
            out.append(self._raise_rank(v, top, perm))
        return out, perm

    def _raise_rank(self, v: V, top: int, perm: tuple[int, ...]) -> Any:
        np, tf = self.np, self.tf
        extra = top - (v.rank or 0)
        if not extra:
            return self.physical(v, perm)
        arr = self.static(v)
        if arr is not None:
            arr = np.reshape(arr, (1,) * extra + arr.shape)
            return self.const(arr, perm).t
        if all(p == i for i, p in enumerate(perm[:extra])) and normal(v.perm) == normal(
                tuple(p - extra for p in perm[extra:])):
            return v.t  # the new axes lead in both layouts: TF's own broadcasting does it
        t = self.onnx(v)
        for _ in range(extra):
            t = tf.expand_dims(t, 0)
        return self.physical(V(t, expand_perm(None, top)), perm)

    def dtype(self, onnx_type: int) -> Any:
        """The TensorFlow dtype for an ONNX TensorProto element type."""
        from onnx import TensorProto, helper

        if onnx_type == TensorProto.STRING:
            return self.tf.string
        try:
            return self.tf.as_dtype(helper.tensor_dtype_to_np_dtype(onnx_type))
        except TypeError:  # int4, float8, ...: no TensorFlow dtype
            raise LoweringError(f"ONNX type {TensorProto.DataType.Name(onnx_type)} has no TensorFlow dtype") from None
