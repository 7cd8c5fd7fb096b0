"""onnx2tf's result against onnxruntime on the ONNX model it came from: how from_onnx.py chooses
among its conversion attempts, and how localise.py finds the first node a conversion gets wrong."""

from __future__ import annotations

from typing import Any

from ...core import Artifact, TensorSpec
from ...deps import require


def self_check(src: Artifact, attempt: Any, variant: Any, adjust: Any = None, feeds: Any = None) -> Any:
    """The frozen function against onnxruntime on the ONNX model: two seeded samples (the second with
    other, smaller sizes for the dims that stayed dynamic), or ``feeds``. ``adjust(got, ref)`` may re-lay
    an output out before the comparison (localise.py: an inner tensor made an output keeps onnx2tf's
    layout)."""
    import numpy as np

    from ...core import FP32
    from ...parity.compare import compare
    from ...parity.inputs import make_feeds
    from .. import onnx as onnx_pkg
    from .from_onnx import _first_line  # TensorFlow's errors: the useful line and the TF node

    specs = [TensorSpec(s.name, variant.shapes[s.name], s.dtype, int_range=s.int_range) for s in src.inputs]
    if not feeds:
        feeds = make_feeds(specs, samples=3, seed=7)[::2]  # dynamic dims at two sizes, the smaller ones
    with onnx_pkg.make_runner(src) as ort:
        refs = [ort.infer(f) for f in feeds]
    tf = require("tensorflow")
    gots = []
    for f in feeds:
        args = []
        for s, name in zip(src.inputs, (t.name for t in attempt.inputs)):
            arr = f[s.name]
            perm = attempt.input_perms.get(name)
            args.append(tf.constant(np.transpose(arr, perm) if perm else arr))
        try:
            outs = attempt.fn(*args)
        except Exception as exc:
            return FailedCheck(f"TensorFlow could not run it at {[list(a.shape) for a in args]}: {_first_line(exc)}")
        got = {o.name: np.asarray(v) for o, v in zip(src.outputs, outs)}
        gots.append({k: adjust(v, refs[len(gots)].get(k)) for k, v in got.items()} if adjust else got)
    return compare(refs, gots, FP32)


class FailedCheck:
    """A check that could not even run the model: falsy, with the reason."""

    def __init__(self, message: str) -> None:
        self.message = message

    def __bool__(self) -> bool:
        return False

    def summary(self) -> str:
        return self.message


def worst(check: Any) -> float:
    """The largest max-abs error of a check (inf when an output could not be compared)."""
    outs = getattr(check, "outputs", None)
    if not outs or any(o.max_abs is None for o in outs):
        return float("inf")
    return max(o.max_abs for o in outs)
