"""Which ONNX node does onnx2tf get wrong? Run only after the onnx->tf stage's result is known wrong,
by the stage's own check (exit 3) or by the validation against the source (exit 1: then the cuts are
measured on the validation samples that showed the drift).

onnx2tf's own per-op check cannot say: it reported "Matches" for every op of the attention block it
mis-converted. So the graph is cut, and each cut is converted and measured here, the way the stage
itself converts and measures (``OnnxToTf._convert`` with the same fixes and shape variant, then
``self_check`` against onnxruntime on the same seeded samples, fp32 tolerance).

A cut after node k keeps the nodes 0..k and makes the *frontier* its outputs: every float tensor
they produce that a later node (or the graph's output) reads. Everything after k is computed from
the frontier, so once a node goes wrong the frontier of every later cut carries the error (unless a
later node hides it), and "the cut after k diverges" is monotone in k: a binary search finds the
first k whose cut diverges in about log2(nodes) conversions. Node k is then the first node whose
output onnx2tf's TensorFlow model gets wrong. Bounded by MAX_CONVERSIONS and TIME_BUDGET_S; a cut
onnx2tf cannot convert, or a search cut short, is said plainly (the hop is still named).
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ...core import KNOWN_WRONG, Artifact, TensorSpec
from ...deps import require
from ...errors import ConvertkitError
from . import own

logger = logging.getLogger(__name__)
MAX_CONVERSIONS = 16  # a binary search over 2**16 nodes; cuts that cannot be compared use some up
TIME_BUDGET_S = 120.0  # on the failure path only; what is narrowed by then is reported
_FLOAT = {1, 10, 11, 16}  # FLOAT, FLOAT16, DOUBLE, BFLOAT16: values a wrong conversion changes
_SHAPE_ONLY = {"Shape", "Size", "EyeLike", "RandomNormalLike", "RandomUniformLike"}  # read no values


def first_diverging_node(stage: Any, src: Artifact, result: Artifact, source_map: Mapping[str, str],
                         feeds: Sequence[Mapping[str, Any]] | None = None) -> dict[str, Any] | None:
    """For the onnx->tf stage: ``{"node", "op", "source", "max_abs", "conversions", "seconds"}`` for the
    first ONNX node whose output the TensorFlow model gets wrong, or ``{"node": None, "why": ...}``.
    ``feeds``: the validation samples, measured on when the stage's own check passed (its samples did
    not show the drift)."""
    from ..onnx.scopes import source_term
    from .from_onnx import OnnxToTf, variants

    if not isinstance(stage, OnnxToTf) or src.path is None:
        return None
    if result.meta.get("converter") == own.CONVERTER:  # every value has a TF twin: one mark-all run, no cuts
        return _own_diverging(stage, src, result, source_map, feeds)
    onnx = require("onnx")
    model, inputs, _, sizes = stage.prepare(src)
    variant = next((v for v in variants(inputs, sizes) if v.label == result.meta.get("shapes")), None)
    if variant is None:
        return {"node": None, "why": f"the shape variant '{result.meta.get('shapes')}' is not one the stage tries"}
    samples = None  # the stage's own seeded samples
    if not result.meta.get(KNOWN_WRONG):
        samples = _fitting(feeds or (), inputs, variant)
        if not samples:
            return {"node": None, "why": "onnx2tf's model matches onnxruntime on the stage's own samples, and no "
                                         "validation sample fits its shapes, so no node can be singled out"}
    t0 = time.perf_counter()
    try:
        cuts = _Cuts(onnx, model)
    except Exception as exc:  # shape inference can fail (or a >2 GiB model): the hop is still named
        return {"node": None, "why": f"the ONNX graph could not be cut ({type(exc).__name__}: {exc})"[:300]}
    found = _bisect(cuts, lambda k, work: _diverges(stage, onnx, cuts, k, inputs, variant, sizes, work, samples),
                    t0, on="the validation samples" if samples else "the stage's own samples")
    found["seconds"] = round(time.perf_counter() - t0, 1)
    if found.get("node") is not None:
        found["source"] = source_term(found["node"], source_map)
    return found


def _own_diverging(stage: Any, src: Artifact, result: Artifact, source_map: Mapping[str, str],
                   feeds: Sequence[Mapping[str, Any]] | None) -> dict[str, Any]:
    from ..onnx.scopes import source_term

    model, inputs, outputs, _ = stage.prepare(src)
    inputs = tuple(own._named_dims(s) for s in inputs)
    names = [s.name for s in inputs]
    samples = [f for f in feeds or () if all(n in f for n in names)] if not result.meta.get(KNOWN_WRONG) else None
    found = own.first_diverging(model, inputs, outputs, stage.tfjs_layout, feeds=samples or None)
    if found.get("node") is not None:
        found["source"] = source_term(found["node"], source_map)
    return found


def _fitting(feeds: Sequence[Mapping[str, Any]], inputs: Sequence[TensorSpec], variant: Any) -> list[dict[str, Any]]:
    """The feeds the variant's shapes take (fixed dims at their size), by input name."""
    def fits(feed: Mapping[str, Any]) -> bool:
        return all(s.name in feed and len(feed[s.name].shape) == len(variant.shapes[s.name]) and all(
            not isinstance(d, int) or d == n for d, n in zip(variant.shapes[s.name], feed[s.name].shape))
            for s in inputs)

    return [{s.name: f[s.name] for s in inputs} for f in feeds if fits(f)]


def _bisect(cuts: _Cuts, diverges: Any, t0: float, on: str = "the stage's own samples") -> dict[str, Any]:
    """The first candidate whose cut diverges. ``lo`` is a cut known to match (-1: nothing cut yet),
    ``hi`` one known to diverge (the last: the whole model, which the stage found wrong); a cut that
    cannot be compared is skipped and a neighbour tried instead."""
    cand = cuts.candidates
    if not cand:
        return {"node": None, "why": "the graph has no node with a float output to compare", "conversions": 0}
    lo, hi = -1, len(cand) - 1
    measured: dict[int, tuple[bool | None, float | None]] = {}
    with tempfile.TemporaryDirectory(prefix="convertkit-localise-") as tmp:
        def probe(i: int) -> tuple[bool | None, float | None]:
            work = Path(tmp) / f"cut{len(measured)}"
            work.mkdir()
            measured[i] = diverges(cand[i], work)
            return measured[i]

        while open_ := [i for i in range(lo + 1, hi) if i not in measured]:
            if len(measured) >= MAX_CONVERSIONS or time.perf_counter() - t0 > TIME_BUDGET_S:
                return {"node": None, "conversions": len(measured), "why": f"the search stopped after "
                        f"{len(measured)} conversions: the first diverging node is {_between(cuts, lo, hi)}"}
            mid = open_[len(open_) // 2]
            bad, _ = probe(mid)
            if bad is not None:
                lo, hi = (lo, mid) if bad else (mid, hi)
        bad, max_abs = measured.get(hi) or probe(hi)  # the whole model's numbers are the stage's, not kept: measure
    n = len(measured)
    if bad is None or any(measured[i][0] is None for i in range(lo + 1, hi)):
        return {"node": None, "conversions": n, "why": f"onnx2tf could not convert some cuts of the graph to compare "
                f"them: the first diverging node is {_between(cuts, lo, hi)}"}
    if not bad:  # the whole graph, converted again, matches: onnx2tf is not consistent with itself here
        return {"node": None, "conversions": n, "why": f"converted again, the whole graph matches onnxruntime on {on}: "
                "onnx2tf does not convert this model the same way twice, or the drift is within onnxruntime's own"}
    k = cand[hi]
    return {"node": cuts.name(k), "op": cuts.model.graph.node[k].op_type,
            "max_abs": None if max_abs is None else float(f"{max_abs:.4g}"), "conversions": n}


def _between(cuts: _Cuts, lo: int, hi: int) -> str:
    after = f"after '{cuts.name(cuts.candidates[lo])}'" if lo >= 0 else "from the graph inputs"
    return f"{after} and at or before '{cuts.name(cuts.candidates[hi])}'"


def _diverges(stage: Any, onnx: Any, cuts: _Cuts, k: int, inputs: tuple[TensorSpec, ...], variant: Any,
              sizes: Mapping[str, int], work: Path, samples: Sequence[Mapping[str, Any]] | None = None
              ) -> tuple[bool | None, float | None]:
    """Convert the cut after node k as the stage converts, and compare it with onnxruntime (on ``samples``,
    else the stage's own). None: could not tell (onnx2tf failed on the cut, TensorFlow could not run it,
    or an output's layout is unclear)."""
    from .. import onnx as onnx_fmt
    from .from_onnx import Variant, _Failed
    from .self_check import self_check, worst

    prefix = cuts.cut(k)
    names = {i.name for i in prefix.graph.input}
    specs = tuple(s for s in inputs if s.name in names)
    outs = onnx_fmt.io_specs(prefix)[1]
    part = Variant(variant.label, {n: d for n, d in variant.shapes.items() if n in names},
                   {n: d for n, d in variant.fixed.items() if n in names})
    path = work / "cut.onnx"
    onnx.save(prefix, str(path))
    try:
        attempt = stage._convert(onnx, require("tensorflow"), prefix, part, specs, outs, sizes, work)
    except _Failed as exc:
        logger.debug("cut after %s: onnx2tf failed: %s", cuts.name(k), exc)
        return None, None
    try:
        check = self_check(Artifact(onnx_fmt.FORMAT, path, specs, outs), attempt, part, adjust=_relayout,
                           feeds=[{s.name: f[s.name] for s in specs} for f in samples] if samples else None)
    except ConvertkitError as exc:  # onnxruntime cannot run the cut (it ran the whole graph): no verdict
        logger.debug("cut after %s: %s", cuts.name(k), exc)
        return None, None
    logger.debug("cut after %s: %s", cuts.name(k), check.summary())
    if not hasattr(check, "outputs") or {o.status for o in check.outputs if not o.passed} == {"shape"}:
        return None, None  # TensorFlow could not run it, or a layout that is not onnx2tf's channels-last
    # the node's own outputs say how wrong it is; the rest of the frontier was right one cut before
    own = set(cuts.model.graph.node[k].output)
    errors = [o.max_abs for o in check.outputs if o.name in own and o.max_abs is not None]
    return not check, max(errors) if errors else worst(check)


def _relayout(got: Any, ref: Any) -> Any:
    """onnx2tf computes channels-last and transposes back only what it knows is a graph output: an inner
    tensor made an output may come out channels-last ([2, 32, 4] for [2, 4, 32]). Compare it in the ONNX
    layout; only a shape that fits one way only is turned (values are never guessed)."""
    import numpy as np

    if ref is None or got.shape == ref.shape or got.ndim < 3:
        return got
    back = np.transpose(got, (0, got.ndim - 1, *range(1, got.ndim - 1)))
    return back if back.shape == ref.shape else got


class _Cuts:
    """The graph's nodes in order, with what a cut after each one must output."""

    def __init__(self, onnx: Any, model: Any) -> None:
        self.model = model
        inferred = onnx.shape_inference.infer_shapes(model)  # types of the intermediate tensors
        graph = inferred.graph
        self._extractor = onnx.utils.Extractor(inferred)
        self._inputs = [i.name for i in graph.input if i.name not in {t.name for t in graph.initializer}]
        floats = {v.name for v in [*graph.value_info, *graph.output] if v.type.tensor_type.elem_type in _FLOAT}
        self._last_use: dict[str, float] = {}
        for i, node in enumerate(graph.node):
            for name in node.input:
                self._last_use[name] = i
        for out in graph.output:
            self._last_use[out.name] = float("inf")
        # only what the input VALUES flow into: a float computed from shapes alone (Sqrt(Cast(Shape(x)))
        # in TorchScript's attention) is a constant at fixed sizes, which onnx2tf drops as an output
        data = set(self._inputs)
        for node in graph.node:
            if node.op_type not in _SHAPE_ONLY and any(name in data for name in node.input):
                data.update(node.output)
        self._produced: list[list[str]] = [
            [o for o in n.output if o in floats and o in data and o in self._last_use] for n in graph.node]
        self.candidates = [k for k, outs in enumerate(self._produced) if outs]

    def name(self, k: int) -> str:
        node = self.model.graph.node[k]
        return node.name or node.output[0]

    def frontier(self, k: int) -> list[str]:
        return [o for outs in self._produced[: k + 1] for o in outs if self._last_use[o] > k or o in self._produced[k]]

    def cut(self, k: int) -> Any:
        """Nodes 0..k that the frontier needs, the frontier as outputs, and only the inputs they read."""
        prefix = self._extractor.extract_model(self._inputs, self.frontier(k))
        read = {name for node in prefix.graph.node for name in node.input}
        keep = [i for i in prefix.graph.input if i.name in read]
        del prefix.graph.input[:]
        prefix.graph.input.extend(keep)
        return prefix
