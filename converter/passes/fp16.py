"""``-p fp16`` on ONNX: float16 weights and compute, with the nodes that cannot take it kept in float32.

Options (``-p fp16:key=value,...``):

- ``keep_io_types=true`` (default): inputs and outputs stay float32 (Casts at the edges), so
  callers and validation see the same interface; ``false`` makes them float16 too (validation
  then fails on the float32 -> float16 dtype change unless ``parity.compare`` allows that change).
- ``block=NAME|OP|...``: node names or op types to keep in float32 in addition to the automatic ones.
- ``max_blocked=8``: the most nodes the parity remedy may add to the block list.

Which nodes stay float32, automatically:

1. Range analysis: the float32 model is run on the validation feeds (the Checker's, else seeded
   random ones) with every intermediate tensor exposed; a node whose output or non-constant input
   reaches |x| > 65504 / 4 (fp16's largest finite value, with 4x headroom for inputs larger than
   the feeds) is blocked, and so is a node with a weight beyond 65504 (it would be clamped).
2. Parity: the candidate is run (NaN/Inf fails) and checked against the ORIGINAL model; when it is
   finite but misses the tolerance, the nodes that add the most relative error (float32 vs
   float16 intermediates on the same feeds) are blocked, 1, 2, 4, ... up to ``max_blocked``.
3. Load search: on the transformer block, BOTH converters' output crashed onnxruntime (SIGSEGV) at
   session creation with the default ``ORT_ENABLE_ALL`` optimizations (it loads at
   ``ORT_ENABLE_EXTENDED``); keeping the Transpose after the first LayerNorm (or either attention
   scaling Mul) in float32 avoids it. When no converter's output loads, the pass finds the fewest
   such nodes by bisection over the graph order (one child-process load per step, ~log2(nodes)
   per node found) and says so in ``meta.load_search``.

Two converters, because neither is right everywhere on this stack (onnxruntime 1.23):
``onnxruntime.transformers.float16`` worked on the tiny BERT, but with a block list it left an fp16
Cast between two blocked nodes and overflowed to NaN; ``onnxconverter_common.float16`` kept blocked
nodes in float32 correctly, but wrote an invalid BERT (Cast type mismatch). The pass tries the first
(the second first when something is blocked), load-tests the result in a child process, runs it,
checks parity, and falls back to the other; ``meta.converter`` says which one was kept.

Tolerance (``FP16``): ``atol=1e-2, rtol=1e-2, min_cosine=0.999``. float16 has a 10-bit mantissa
(relative step 2^-11 ~ 4.9e-4 per rounding); errors accumulate over a few dozen ops to ~1e-3
relative on the fixtures (max abs 3e-5 on the CNN, 1.4e-3 on the tiny BERT) so 1e-2 leaves
room for deeper models while a real defect (an overflow, a wrong Cast) breaks it by orders of
magnitude; cosine 0.999 catches a systematically distorted output that stays inside the
elementwise band.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from ..core import Artifact, Format, Pass, Tolerance
from ..deps import require
from ..errors import StageError, UsageError
from ..formats import onnx as onnx_fmt
from ..quiet import quiet
from . import onnx_graph as g

FP16 = Tolerance(atol=1e-2, rtol=1e-2, min_cosine=0.999)
HEADROOM = 4.0
RANGE_LIMIT = g.FP16_MAX / HEADROOM
CONVERTERS = ("onnxruntime.transformers.float16", "onnxconverter_common.float16")


@dataclass(frozen=True)
class Fp16(Pass):
    name: ClassVar[str] = "fp16"
    accepts: ClassVar[Format] = onnx_fmt.FORMAT
    produces: ClassVar[Format] = onnx_fmt.FORMAT
    keep_io_types: bool = True
    block: tuple[str, ...] = ()
    max_blocked: int = 8

    @property
    def tolerance(self) -> Tolerance:  # type: ignore[override]
        """FP16; with keep_io_types=false the float32 outputs become float16 on purpose."""
        return FP16 if self.keep_io_types else dataclasses.replace(FP16, dtype_changes=(("float32", "float16"),))

    def run(self, src: Artifact, out_dir: Path, check: Any = None) -> Artifact:
        np = require("numpy")
        feeds, feeds_from = g.pass_feeds(src, check)
        work = out_dir / ".candidates"
        work.mkdir(parents=True, exist_ok=True)
        model = g.name_nodes(g.load_model(src))
        src_outputs = g.run(g.session(model), feeds)
        blocked, user_ops = self._asked(model)
        blocked.update(self._out_of_range(model, feeds, np))
        counter = itertools.count()
        search = _Search(self, src, model, feeds, src_outputs, user_ops, g.Judge(check, src_outputs, feeds, self.tolerance),
                         lambda: work / f"candidate-{next(counter)}.onnx")
        for phase in ("as converted", "search"):
            for conv in (CONVERTERS[::-1] if blocked else CONVERTERS):
                block = dict(blocked)
                if phase == "search":  # crashes or load errors: find nodes to keep in fp32 so that it loads
                    found = self._search(conv, model, block, user_ops, feeds, search.work_path)
                    if found is None:
                        continue
                    block.update({n: "the fp16 model does not load or crashes onnxruntime unless this node stays fp32"
                                  for n in found})
                    search.searched[conv] = ", ".join(found)
                if search.try_converter(conv, block):
                    break
            if search.best is not None:
                break
        if search.best is None:
            raise StageError(self.name, "no fp16 model that onnxruntime can load and run: " + "; ".join(
                a["result"] for a in search.attempts)[:500],
                hint="skip -p fp16 for this model, or block ops with -p fp16:block=OP")
        path, conv, block = search.chosen or search.best[1:]
        meta = search.meta(conv, block) | {"range_analysis": f"max |activation| over {len(feeds)} sample(s) of "
                                           f"{feeds_from}, limit {RANGE_LIMIT:g} (fp16 max {g.FP16_MAX:g} / {HEADROOM:g})"}
        return g.artifact_for(src, g.finish(path, out_dir, work), meta)

    def _asked(self, model: Any) -> tuple[dict[str, str], list[str]]:
        """The nodes ``block=`` names (blocked here) and the op types it names (for the converters)."""
        op_types = {n.op_type for n in model.graph.node}
        blocked = {node.name: "asked for (block=)" for node in model.graph.node if node.name in self.block}
        unknown = [b for b in self.block if b not in op_types and b not in blocked]
        if unknown:
            raise UsageError(f"-p fp16:block= names no node or op type of this model: {', '.join(unknown)}",
                             hint="give node names or op types (e.g. LayerNormalization), separated by |")
        return blocked, [b for b in self.block if b in op_types]

    def _candidate(self, conv: str, model: Any, block: dict[str, str], ops: list[str], feeds: list,
                   path: Path) -> tuple[Path, g.Probe | None, str | None]:
        error = self._convert(conv, model, block, ops, path)
        return path, (g.probe([path], feeds)[0] if error is None else None), error

    def _search(self, conv: str, model: Any, block: dict[str, str], ops: list[str], feeds: list,
                new_path: Callable[[], Path]) -> list[str] | None:
        """The fewest nodes (found one at a time by bisection over the graph order) that, kept in
        fp32, make the fp16 model load and run; None when blocking everything does not help or more
        than ``max_blocked`` are needed."""
        cache: dict[frozenset[str], bool] = {}

        def loads(extra: list[str]) -> bool:
            key = frozenset(extra)
            if key not in cache:
                path, res, _ = self._candidate(conv, model, {**block, **dict.fromkeys(extra, "")}, ops, feeds,
                                               new_path())
                cache[key] = bool(res and res.ok)
                path.unlink(missing_ok=True)
            return cache[key]

        pool = [n.name for n in model.graph.node if n.name not in block]
        required: list[str] = []
        while not loads(required):
            if len(required) >= self.max_blocked or not loads(required + pool):
                return None
            lo, hi = 0, len(pool)  # loads(required + pool[:hi]) holds, loads(required + pool[:lo]) does not
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if loads(required + pool[:mid]):
                    hi = mid
                else:
                    lo = mid
            required.append(pool[hi - 1])
            pool = pool[:hi - 1]
        return required

    def _out_of_range(self, model: Any, feeds: list, np: Any) -> dict[str, str]:
        """{node: why} for the nodes fp16 would overflow on: a weight beyond fp16's max (it would be
        clamped), else an output or non-constant input beyond RANGE_LIMIT on ``feeds``."""
        numpy_helper = require("onnx.numpy_helper")
        peak = g.activation_absmax(model, feeds)
        inits = g.initializers(model.graph)
        hot = {t.index: t for t in g.nodes_touching(model, peak, RANGE_LIMIT, inclusive=False, skip_initializers=True)}
        why: dict[str, str] = {}
        for i, node in enumerate(model.graph.node):
            for name in node.input:
                if name in inits:
                    w = numpy_helper.to_array(inits[name])
                    if w.dtype.kind == "f" and w.size and float(np.abs(w).max()) > g.FP16_MAX:
                        why.setdefault(node.name, f"weight {name} has |w| up to {float(np.abs(w).max()):.3g} > fp16 max")
            if (t := hot.get(i)) is not None:
                why.setdefault(node.name, f"{t.side} {t.tensor} reaches |x| = {t.peak:.3g} > {RANGE_LIMIT:g}")
        return why

    def _convert(self, conv: str, model: Any, block: dict[str, str], ops: list[str], path: Path) -> str | None:
        """Write the fp16 model to ``path``; returns an error message instead when the converter fails."""
        onnx = require("onnx")
        m = onnx.ModelProto()
        m.CopyFrom(model)
        try:
            with quiet():
                if conv == CONVERTERS[0]:
                    f16 = require("onnxruntime.transformers.float16")
                    out = f16.convert_float_to_float16(m, keep_io_types=self.keep_io_types,
                                                       op_block_list=list(f16.DEFAULT_OP_BLOCK_LIST) + ops,
                                                       node_block_list=list(block))
                else:
                    f16 = require("onnxconverter_common.float16")
                    out = f16.convert_float_to_float16(m, keep_io_types=self.keep_io_types, min_positive_val=5.96e-08,
                                                       max_finite_val=g.FP16_MAX,
                                                       op_block_list=list(f16.DEFAULT_OP_BLOCK_LIST) + ops,
                                                       node_block_list=list(block))
            g.save(out, path)
        except Exception as exc:  # the converters raise many kinds; all mean "no model"
            return f"{conv} failed: {' '.join(str(exc).split())[:200]}"
        return None


@dataclass
class _Search:
    """The fp16 candidates tried: each converter with a block list, then the parity remedy (the
    nodes that add the most error kept in fp32, 1, 2, 4, ...); the first that passes, else the best."""

    fp16: Fp16
    src: Artifact
    model: Any
    feeds: list
    src_outputs: Any
    user_ops: list[str]
    judge: Any
    work_path: Callable[[], Path]
    attempts: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    best: tuple[float, Path, str, dict[str, str]] | None = None
    chosen: tuple[Path, str, dict[str, str]] | None = None
    searched: dict[str, str] = dataclasses.field(default_factory=dict)

    def try_converter(self, conv: str, block: dict[str, str]) -> bool:
        """Candidates of ``conv`` until one passes (True) or the remedy is spent."""
        added, rounds = 0, 0
        while True:
            path, res, error = self.fp16._candidate(conv, self.model, block, self.user_ops, self.feeds,
                                                    self.work_path())
            if res is None or not res.ok:
                self.attempts.append({"converter": conv, "blocked": len(block),
                                      "result": f"not loadable: {error or (res.error if res else '?')}"})
                return False
            if g.output_error(self.src_outputs, res.outputs)["rel_rms"] == float("inf"):
                self.attempts.append({"converter": conv, "blocked": len(block), "result": "NaN/Inf in the outputs"})
                return False
            passed, summary, info = self.judge(g.artifact_for(self.src, path), res.outputs)
            self.attempts.append({"converter": conv, "blocked": len(block), "result": summary, **info})
            if self.best is None or g.score(info) > self.best[0]:
                self.best = (g.score(info), path, conv, dict(block))
            if passed:
                self.chosen = (path, conv, block)
                return True
            step = 2 ** rounds  # parity remedy: keep the nodes that add the most error in fp32
            if added + step > self.fp16.max_blocked or info.get("dtype_mismatch"):
                return False
            ranking = [(n, e) for n, e in g.node_error_growth(self.model, path, self.feeds,
                                                              [n.name for n in self.model.graph.node])
                       if n not in block and e > 0][:step]
            if not ranking:
                return False
            block.update({n: f"adds {e:.3g} relative error in fp16 (parity remedy)" for n, e in ranking})
            added, rounds = added + len(ranking), rounds + 1

    def meta(self, conv: str, block: dict[str, str]) -> dict[str, Any]:
        ops = {n.name: n.op_type for n in self.model.graph.node}
        meta: dict[str, Any] = {
            "converter": conv, "keep_io_types": self.fp16.keep_io_types, "measured_against": self.judge.against,
            "kept_fp32": [{"node": n, "op": ops.get(n, "?"), "why": w} for n, w in block.items()],
            "kept_fp32_ops": self.user_ops, "attempts": self.attempts}
        if self.searched:
            meta["load_search"] = self.searched
        meta["verdict"] = ("met the fp16 tolerance" if self.chosen else
                           f"no variant met the tolerance (tried {len(self.attempts)}); the best is kept for "
                           "inspection: validation will fail")
        return meta


PASSES = (Fp16,)
