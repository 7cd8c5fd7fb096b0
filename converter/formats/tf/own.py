"""The onnx->tf stage's first choice: our own lowering (``lower/``), self-checked against onnxruntime
like every onnx2tf attempt. It keeps every dynamic dim (no fixed-shape ladder: that is onnx2tf's
workaround). When its check fails, one "mark all" run (every ONNX value an output, in TensorFlow and
in onnxruntime) names the first node whose value diverges, with no cuts."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ...core import Artifact, TensorSpec
from ...deps import require

logger = logging.getLogger(__name__)
CONVERTER = "convertkit lowering"
SHAPES = "as the model declares them (dynamic dims kept)"
_LAYOUT_NAMES = {4: ("NCHW", "NHWC"), 5: ("NCDHW", "NDHWC")}


@dataclass
class OwnOutcome:
    """The lowering's attempt: a result (right, or wrong with its check), or why there is none."""

    result: Any = None  # a from_onnx._Result
    reason: str | None = None  # why the result is not used / there is none (one line)
    wrong: bool = False  # converted, but its self-check failed


def convert_own(src: Artifact, model: Any, inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec],
                layout: str) -> OwnOutcome:
    from .from_onnx import Variant, _first_line, _Result
    from .lower import LoweringError, lower, missing_ops
    from .self_check import self_check

    missing = missing_ops(model)
    if missing:
        return OwnOutcome(reason="lowering has no handler for " + ", ".join(f"{o} (opset {v})" for o, v in missing))
    inputs = tuple(_named_dims(s) for s in inputs)
    t0 = time.perf_counter()
    try:
        lowered = lower(model, inputs, outputs, layout=layout)
    except LoweringError as exc:
        return OwnOutcome(reason=f"lowering failed: {exc}")
    except Exception as exc:  # a bug in a handler: said, and onnx2tf may still convert the model
        logger.debug("the lowering failed", exc_info=True)
        return OwnOutcome(reason=f"lowering failed: {type(exc).__name__}: {_first_line(exc)}")
    notes: dict[str, Any] = {**lowered.notes, "converter": CONVERTER, "shapes": SHAPES,
                             "lowering_seconds": round(time.perf_counter() - t0, 2)}
    layouts = {s.name: _layout_note(perm) for s, perm in ((s, lowered.input_perms.get(s.name))
                                                          for s in lowered.inputs) if perm}
    if layouts:
        notes["input_layout"] = layouts
    result = _Result(lowered.graph_def, lowered.inputs, lowered.outputs, notes, lowered.fn, lowered.input_perms)
    variant = Variant(SHAPES, {s.name: tuple(s.shape or ()) for s in inputs})
    check = self_check(src.with_(inputs=inputs, outputs=tuple(outputs)), result, variant)
    notes["lowering_check"] = check.summary()
    if check:
        return OwnOutcome(result)
    why = f"lowering's self-check failed: {check.summary()}"
    found = first_diverging(model, inputs, outputs, layout)
    if found.get("node"):
        notes["first_diverging_node"] = found
        why += f"; first diverging node '{found['node']}' ({found['op']})"
    return OwnOutcome(result, why[:600], wrong=True)


def _named_dims(s: TensorSpec) -> TensorSpec:
    """ONNX dims written -1 or 0 are dynamic: named, as the rest of convertkit names them."""
    if s.shape is None or all(not isinstance(d, int) or d > 0 for d in s.shape):
        return s
    dims = tuple(d if not isinstance(d, int) or d > 0 else ("batch" if i == 0 else f"{s.name}_d{i}")
                 for i, d in enumerate(s.shape))
    return TensorSpec(s.name, dims, s.dtype, s.layout, s.int_range)


def _layout_note(perm: tuple[int, ...]) -> dict[str, Any]:
    first, last = _LAYOUT_NAMES.get(len(perm), ("source", "channels-last"))
    return {"layout": last, "source_layout": first, "perm": list(perm)}


def first_diverging(model: Any, inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec], layout: str,
                    feeds: Sequence[Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """``{"node", "op", "max_abs", "conversions", "seconds"}`` for the first ONNX node (in graph order)
    one of whose values the lowering computes differently from onnxruntime, from ONE mark-all run
    (every ONNX value an output on both sides); or ``{"node": None, "why": ...}``."""
    from ...core import FP32
    from ...parity.compare import compare
    from ...parity.inputs import make_feeds
    from .lower import lower
    from .lower.build import feeds_for

    t0 = time.perf_counter()
    try:
        lowered = lower(model, inputs, outputs, layout=layout, mark_all=True)
        sample = dict((feeds or make_feeds(list(inputs), samples=3, seed=7)[::2])[0])
        ref = _ort_all_values(model, lowered.value_names, sample)
        got = lowered.fn(*feeds_for(lowered, sample, [s.name for s in inputs]))
    except Exception as exc:  # localisation is a diagnosis: never fail the stage for it
        logger.debug("mark-all localisation failed", exc_info=True)
        return {"node": None, "why": f"the mark-all run failed: {type(exc).__name__}: {exc}"[:300]}
    import numpy as np

    got_by_value = {n: np.asarray(v) for n, v in zip(lowered.value_names, got)}
    for node in model.graph.node:
        names = [o for o in node.output if o in got_by_value and o in ref]
        if not names:
            continue
        report = compare([{n: ref[n] for n in names}], [{n: got_by_value[n] for n in names}], FP32)
        if not report:
            bad = report.failures()[0]
            return {"node": node.name or node.output[0], "op": node.op_type, "value": bad.name,
                    "max_abs": None if bad.max_abs is None else float(f"{bad.max_abs:.4g}"),
                    "conversions": 1, "seconds": round(time.perf_counter() - t0, 2)}
    return {"node": None, "conversions": 1, "seconds": round(time.perf_counter() - t0, 2),
            "why": "every value matches onnxruntime on the sample: the divergence is within tolerance per node"}


def _ort_all_values(model: Any, names: Sequence[str], feeds: Mapping[str, Any]) -> dict[str, Any]:
    """onnxruntime's value of every name (a copy of the model with them all as graph outputs)."""
    onnx = require("onnx")
    ort = require("onnxruntime")
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    have = {o.name for o in copy.graph.output}
    copy.graph.output.extend(onnx.ValueInfoProto(name=n) for n in names if n not in have)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # every value as the graph says
    sess = ort.InferenceSession(copy.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    wanted = [o.name for o in sess.get_outputs()]
    inits = {i.name for i in model.graph.initializer}
    feed = {i.name: feeds[i.name] for i in model.graph.input if i.name not in inits and i.name in feeds}
    return dict(zip(wanted, sess.run(wanted, feed)))
