"""The variants ``-p quantize`` tries on ONNX, cheapest first, and how the remedies are chosen.

First the requested variant, then per-channel weight scales (free in bytes), then 7-bit weights when
the target uses 8-bit ones and this CPU saturates them (see int8_target.py). When those fail, the
remedies are ranked by MEASURED per-node sensitivity on the best candidate so far
(``onnx_graph.node_error_growth``: the relative error each node adds) and tried in order of the
float32 bytes they keep:

- the 1, 2, ... ``max_excluded`` most sensitive nodes kept in float32 (MatMul, Gemm, Conv, Gather);
- the embedding Gathers (a Gather reading a constant table) kept in float32: trained transformers'
  embedding tables are where per-tensor 8-bit hurts most, and a Gather's output feeds everything;
- the embedding Gathers plus the most sensitive other nodes;
- last, for a dynamic request: static QDQ (int8 activations with calibrated ranges, per-channel
  weights), calibrated on ``calibration=`` data or on the validation feeds.

The first variant that passes is kept, so the smallest passing one (within what was tried) wins.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from . import onnx_graph as g
from .int8_target import TARGETS, cpu_features, saturates_here


class Ladder:
    """An iterator of Variants; ``failed`` tells it how the last one did (the remedies need that)."""

    def __init__(self, q: Any, model: Any, feeds: list[dict[str, Any]], candidates: list[str],
                 pre: dict[str, str], meta: dict[str, Any], static_exclude: Callable[[], dict[str, str]]) -> None:
        from .quantize import Variant

        self.q, self.model, self.feeds, self.candidates, self.meta = q, model, feeds, candidates, meta
        self.static_exclude = static_exclude
        rr = TARGETS[q.target].reduce_range
        self.base = Variant(q.per_channel, tuple(pre), tuple(pre.values()), rr)
        self.queue = [self.base] + ([dataclasses.replace(self.base, per_channel=True)] if not q.per_channel else [])
        if not rr and saturates_here(cpu_features()):
            self.queue.append(dataclasses.replace(self.base, per_channel=True, reduce_range=True))
        self.loaded: dict[bool, bool] = {}
        self.best: tuple[float, Path] | None = None
        self.remedies_added = False

    def __iter__(self) -> Iterator[Any]:
        while True:
            if not self.queue and not self.remedies_added:
                self.remedies_added = True
                self.queue.extend(self._remedies())
            if not self.queue:
                return
            yield self.queue.pop(0)

    def failed(self, v: Any, *, loaded: bool, path: Path | None = None, score: float | None = None) -> None:
        self.loaded.setdefault(v.per_channel, loaded)
        if loaded and path is not None and score is not None and (self.best is None or score > self.best[0]):
            self.best = (score, path)

    # -- remedies ------------------------------------------------------------------------------------

    def _remedies(self) -> list[Any]:
        ranking = self._rank()
        per_channel = self.loaded.get(True, not self.loaded.get(False, False))  # remedies add up
        budget = min(self.q.max_excluded, len(self.candidates) // 2)
        base = dataclasses.replace(self.base, per_channel=per_channel)
        found = [(n, f"adds {e:.3g} relative error at its output") for n, e in ranking]
        rungs = [found[:k] for k in range(1, budget + 1) if len(found) >= k]
        gathers = [(n, "an embedding table: one 8-bit scale for the whole table costs the most accuracy here")
                   for n in self.candidates if self._is_embedding(n)]
        if gathers and budget:
            rungs.append(gathers)
            others = [t for t in found if t[0] not in dict(gathers)][:budget]
            if others:
                rungs.append(gathers + others)
        rungs.sort(key=self._fp32_bytes)
        out = [dataclasses.replace(base, exclude=(*base.exclude, *(n for n, _ in r)), why=(*base.why, *(w for _, w in r)))
               for r in rungs]
        if self.q.mode == "dynamic" and budget:
            pre = self.static_exclude()
            out.append(dataclasses.replace(base, per_channel=True, static=True, exclude=tuple(pre),
                                           why=tuple(pre.values())))
        return out

    def _rank(self) -> list[tuple[str, float]]:
        if self.best is None:
            return []
        try:
            ranking = g.node_error_growth(self.model, self.best[1], self.feeds, self.candidates)
        except Exception as exc:  # the ranking is a heuristic; without it the ranked remedies are skipped
            self.meta["ranking_error"] = " ".join(str(exc).split())[:200]
            return []
        self.meta["most_sensitive"] = [{"node": n, "error_added": round(e, 4)} for n, e in ranking[:5]]
        return [(n, e) for n, e in ranking if e > 0]

    def _is_embedding(self, name: str) -> bool:
        inits = g.initializers(self.model.graph)
        return any(n.name == name and n.op_type == "Gather" and n.input[0] in inits for n in self.model.graph.node)

    def _fp32_bytes(self, rung: list[tuple[str, str]]) -> int:
        """The float32 weight bytes a rung keeps (what it costs in file size)."""
        inits = g.initializers(self.model.graph)
        names = {n for n, _ in rung}
        total = 0
        for node in self.model.graph.node:
            if node.name in names:
                for i in node.input:
                    if i in inits:
                        t = inits[i]
                        size = 1
                        for d in t.dims:
                            size *= d
                        total += 4 * size
        return total
