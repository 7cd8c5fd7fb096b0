"""The per-weight dtype map that ``-p quantize:dtype=uint8`` on a TF.js model searches when plain
uint8 misses its tolerance: each weight at uint8 (1 byte), uint16 or float16 (2 bytes) or float32
(4 bytes), chosen by measured sensitivity per byte.

1. **Measure** (:func:`measure`): in ONE Node process (``formats/tfjs/node/probe_weights.mjs``) the
   model runs on seeded samples as it is, then once per (weight, dtype) with only that weight
   rounded to that dtype (tensorflowjs's own quantize/dequantize). The difference from the unrounded
   outputs is the error that weight adds at that dtype, measured in TF.js, not guessed from the
   weight's own rounding error (a depthwise kernel whose channels differ by 100x in scale and a
   classifier kernel with the same rounding error add very different output errors).
2. **Predict** (:func:`greedy_path`): to first order the output errors of several rounded weights
   add up, so a map's output is predicted as the unrounded output plus the sum of its weights'
   measured differences (the vectors, not their norms: errors that cancel or pile up are seen as
   such). From all-uint8, each step raises the one weight whose raise removes the most predicted
   error (squared, relative to each output's norm) per byte added, to uint16, float16 or float32.
   uint16 (256x finer steps on one affine range) and float16 (relative steps, any range up to 65504)
   cost the same, so the step picks whichever the measurement says helps more for that weight.
   The steps form a path of maps of growing size, from all-uint8 to all-float32.
3. **Screen** (:func:`screen`): the linear prediction is good near the aim but not exact (errors of
   several rounded weights interact), so maps along the path are run in TF.js whole, again in one
   Node process, on the pipeline's own validation feeds, and compared with the unrounded model by
   compare.py under the check's tolerance: first around the step predicted to reach the aim and at
   doubling distances up the path (:func:`coarse_steps`), then every step between the last miss and
   the first pass (:func:`fine_steps`). The aim is the tolerance's cosine with ``headroom`` of its
   budget (1 - min_cosine) left unused, so that a map chosen on a few validation samples holds on
   other inputs too.
4. **Verify**: the smallest screened map that passed goes through the pipeline's check (the real
   conversion against the ORIGINAL model); should the check disagree, the next screened pass is
   checked (at most ``max_checks``). When nothing screened passes, the path's last map is checked.

Measured on fixtures.quant_models.mobilenet_v2_small (PyTorch -> TF.js, 69 weights): all-uint8
cosine 0.979; 28 weights probed (57 runs, ~4 s), 12 maps screened, one check: cosine 0.998 at
0.284x of the float32 bytes.

The report's ``map`` lists every searched weight with its dtype, bytes and why (its measured
output error at uint8, and what raising it bought per byte), and ``search`` the measurement's cost.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..core import Artifact
from ..deps import require

LEVELS = ("uint8", "uint16", "float16", "float32")
NBYTES = {"uint8": 1, "uint16": 2, "float16": 2, "float32": 4}


@dataclass(frozen=True)
class Sensitivity:
    """What one weight rounded to one dtype does to the outputs, measured in TF.js.

    Vectors lay all outputs of all samples end to end, each output divided by its norm, so that
    ``ref + sum(deltas)`` predicts a map's outputs and every output weighs alike."""

    ref: Any  # np.ndarray, the unrounded model's outputs (normalised)
    deltas: Mapping[str, Mapping[str, Any]]  # weight -> dtype -> output difference (normalised)
    segments: tuple[slice, ...]  # each output's part of the vectors
    runs: int
    seconds: float

    def error(self, weight: str, dtype: str) -> float:
        """Relative RMS output error that this weight alone adds at ``dtype`` (worst output)."""
        np = require("numpy")
        d = self.deltas[weight].get(dtype)
        return 0.0 if d is None else max(float(np.linalg.norm(d[s])) for s in self.segments)


@dataclass(frozen=True)
class Step:
    """A map on the greedy path: every searched weight's dtype, its bytes, the predicted cosine."""

    dtypes: Mapping[str, str]
    nbytes: int
    predicted_cosine: float
    raised: tuple[str, str, str, float] | None = None  # (weight, from, to, predicted error removed per byte)


def measure(src: Artifact, data: Mapping[str, Any], plan: Mapping[str, Sequence[str]],
            feeds: Sequence[Mapping[str, Any]]) -> Sensitivity:
    """Run the model at ``src`` once as it is and once per (weight, dtype in ``plan[weight]``) with
    only that weight rounded (``data``: weight name -> float32 array), in one Node process."""
    np = require("numpy")
    from .tfjs_probe import run_probes

    probes = [(n, d) for n, dtypes in plan.items() for d in dtypes if d != "float32"]
    t0 = time.perf_counter()
    runs = run_probes(src, data, [[p] for p in probes], feeds)
    names = list(runs[0][0])
    base = [np.concatenate([s[o].astype(np.float64).ravel() for s in runs[0]]) for o in names]
    scale = [1.0 / float(np.linalg.norm(b)) if np.any(b) else 1.0 for b in base]
    sizes = np.cumsum([0] + [b.size for b in base])
    segments = tuple(slice(int(sizes[k]), int(sizes[k + 1])) for k in range(len(names)))

    def vector(run: list[dict[str, Any]]) -> Any:
        return np.concatenate([np.concatenate([s[o].astype(np.float64).ravel() for s in run]) * scale[k]
                               for k, o in enumerate(names)])

    ref = vector(runs[0])
    deltas: dict[str, dict[str, Any]] = {n: {"float32": np.zeros_like(ref)} for n in plan}
    for (n, d), run in zip(probes, runs[1:]):
        deltas[n][d] = vector(run) - ref
    return Sensitivity(ref, deltas, segments, len(probes) + 1, time.perf_counter() - t0)


def greedy_path(sens: Sensitivity, sizes: Mapping[str, int], base: Mapping[str, str], fixed_bytes: int,
                max_raised: int | None = None) -> list[Step]:
    """From ``base`` (searched weights at uint8), raise one weight per step where it removes the most
    predicted squared error per byte added, until no raise is left: at most ``max_raised`` weights
    above uint8, and at most half of them float32 (a map that keeps most weights float32 is not a
    quantization any more; the old remedy ladder had the same bound). ``fixed_bytes``: the bytes of
    the weights not searched."""
    np = require("numpy")
    cur = dict(base)
    max_float32 = len(cur) // 2
    resid = sum((sens.deltas[n][d] for n, d in cur.items()), np.zeros_like(sens.ref))

    def step(raised: tuple[str, str, str, float] | None) -> Step:
        nbytes = fixed_bytes + sum(sizes[n] * NBYTES[d] for n, d in cur.items())
        return Step(dict(cur), nbytes, predicted_cosine(sens, resid), raised)

    path = [step(None)]
    while True:
        if max_raised is not None and sum(d != "uint8" for d in cur.values()) >= max_raised:
            moves = [(n, d) for n, d in cur.items() if d != "uint8" and d != "float32"]
        else:
            moves = [(n, d) for n, d in cur.items() if d != "float32"]
        best: tuple[float, str, str, Any] | None = None
        err = float(resid @ resid)
        full32 = sum(d == "float32" for d in cur.values()) >= max_float32
        for n, d in moves:
            for up in LEVELS[LEVELS.index(d) + 1:]:
                extra = sizes[n] * (NBYTES[up] - NBYTES[d])
                if extra <= 0 or up not in sens.deltas[n] or (up == "float32" and full32):
                    continue
                new = resid - sens.deltas[n][d] + sens.deltas[n][up]
                if not np.all(np.isfinite(new)):
                    continue
                gain = (err - float(new @ new)) / extra
                if best is None or gain > best[0]:
                    best = (gain, n, up, new)
        if best is None:
            return path
        gain, n, up, resid = best
        was, cur[n] = cur[n], up
        path.append(step((n, was, up, gain)))


def predicted_cosine(sens: Sensitivity, resid: Any) -> float:
    """The worst output's cosine between the unrounded outputs and those plus ``resid``."""
    np = require("numpy")
    cos = []
    for s in sens.segments:
        r, g = sens.ref[s], sens.ref[s] + resid[s]
        denom = float(np.linalg.norm(r) * np.linalg.norm(g))
        cos.append(float(r @ g) / denom if denom > 0 else (1.0 if not np.any(g) else 0.0))
    return min(cos) if cos else 1.0


@dataclass(frozen=True)
class Screened:
    """A path step run in TF.js with its whole map rounded, against the unrounded model."""

    step: int
    nbytes: int
    cosine: float | None
    passed: bool  # the tolerance and the aim


def screen(src: Artifact, data: Mapping[str, Any], path: Sequence[Step], fixed: Mapping[str, str],
           steps: Sequence[int], feeds: Sequence[Mapping[str, Any]], tolerance: Any, aim: float) -> list[Screened]:
    """Run the maps of ``steps`` (with ``fixed``, the weights not searched) in one Node process and
    compare each with the unrounded model under ``tolerance`` (compare.py: cosine, top-1 on clear
    decisions, the elementwise band) and ``aim``."""
    from ..parity.compare import compare
    from .tfjs_probe import run_probes

    maps = [{**fixed, **path[i].dtypes} for i in steps]
    runs = run_probes(src, data, [[(n, d) for n, d in m.items() if d != "float32"] for m in maps], feeds)
    out = []
    for i, run in zip(steps, runs[1:]):
        report = compare(runs[0], run, tolerance)
        cos = [o.cosine for o in report.outputs if o.cosine is not None]
        worst = min(cos) if cos else None
        out.append(Screened(i, path[i].nbytes, worst, bool(report) and (worst is None or worst >= aim)))
    return out


def coarse_steps(path: Sequence[Step], aim: float, most: int = 16) -> list[int]:
    """Where to screen first: around the first step predicted to reach ``aim`` (from where the
    predicted error is 4x the aim's), then doubling distances up the path, and its end."""
    target, last = 1.0 - aim, len(path) - 1
    pred = [1.0 - s.predicted_cosine for s in path]
    i0 = next((k for k in range(1, len(path)) if pred[k] <= target), last)
    a = next((k for k in range(1, len(path)) if pred[k] <= 4 * target), i0)
    steps = {a, (a + i0) // 2, i0, last} | {min(last, i0 + 2 ** j) for j in range(last.bit_length() + 1)}
    steps = sorted(k for k in steps if k >= 1)
    return steps[:most - 1] + [last] if len(steps) > most else steps


def fine_steps(screened: Sequence[Screened], most: int = 16) -> list[int]:
    """The steps between the last screened miss below the first screened pass and that pass."""
    first = next((s.step for s in screened if s.passed), None)
    if first is None:
        return []
    below = max((s.step for s in screened if not s.passed and s.step < first), default=0)
    inside = list(range(below + 1, first))
    if len(inside) > most:
        inside = sorted({inside[round(k * (len(inside) - 1) / (most - 1))] for k in range(most)})
    return inside


@dataclass(frozen=True)
class Planned:
    """How the search treats one weight: its 2-byte dtype (the finer of uint16 and float16 by its
    own rounding error, float32 where both fail), whether the probe measures it, those errors."""

    wide: str
    probed: bool
    errors: Mapping[str, float]


#: validation samples the per-weight probe runs on (the screen runs on all of them)
PROBE_SAMPLES = 3
#: the smallest weights, together at most this share of the searched weights' elements, are not
#: probed (each probe is a whole model run; a MobileNetV2 has ~100 bias vectors): they go to 2 bytes
#: at once, which costs at most SMALL_SHARE / 4 of the float32 bytes
SMALL_SHARE = 0.01


def probe_plan(w: Any, names: Sequence[str]) -> dict[str, Planned]:
    """Each weight's 2-byte dtype and whether it is probed (see :class:`Planned`)."""
    import math

    total = sum(int(w.data[n].size) for n in names)
    small, acc = set(), 0
    for n in sorted(names, key=lambda n: (int(w.data[n].size), n)):
        acc += int(w.data[n].size)
        if acc > SMALL_SHARE * total:
            break
        small.add(n)
    plan = {}
    for n in names:
        errors = {d: w.error(n, d) for d in ("uint8", "uint16", "float16")}
        wide = min(("uint16", "float16"), key=lambda d: errors[d])
        plan[n] = Planned(wide if math.isfinite(errors[wide]) else "float32", n not in small, errors)
    return plan


def _finite(x: float) -> float | None:
    """A measured error for JSON: None where the rounded weight overflowed (float16 past 65504)."""
    import math

    return round(x, 6) if math.isfinite(x) else None


def probe_feeds(src: Artifact, check: Any) -> list[dict[str, Any]]:
    """The pipeline's validation feeds (``check.feeds``), laid out as the model takes them, so that
    the screen sees what the check will; without a check, seeded samples of the model's inputs."""
    from ..parity.inputs import make_feeds
    from ..parity.validate import feeds_for, fitted_feeds

    feeds = [dict(f) for f in getattr(check, "feeds", None) or []]
    if not feeds:
        return make_feeds(src.inputs, samples=3, seed=0)
    if src.meta.get("fixed_shape"):
        feeds, _ = fitted_feeds(src.inputs, [s.name for s in src.inputs], src.meta["fixed_shape"], feeds)
    return feeds_for(src, feeds, getattr(check, "reference", None))[0]


def search_map(w: Any, base: Mapping[str, str], trials: Any, src: Artifact, *, max_raised: int | None,
               max_checks: int) -> tuple[Any, dict[str, Any]]:
    """The map search for the weights ``base`` puts at uint8 (``w``: tfjs_weights.Weights, ``trials``:
    its Trials, whose aim the chosen map must reach). Returns (the Variant kept or None, report notes)."""
    search = _MapSearch(w, base, trials, src, max_raised)
    screened = search.screen_path()
    chosen, checked = search.verify([s.step for s in screened if s.passed] or [len(search.path) - 1], max_checks)
    return (chosen[1] if chosen else None), search.notes(chosen[0] if chosen else 0, screened, checked)


class _MapSearch:
    """One search: the plan, the measurement, the greedy path, and the words for the report."""

    def __init__(self, w: Any, base: Mapping[str, str], trials: Any, src: Artifact, max_raised: int | None) -> None:
        self.w, self.trials, self.src = w, trials, src
        self.plan = probe_plan(w, [n for n, d in base.items() if d == "uint8"])
        self.names = [n for n, p in self.plan.items() if p.probed]
        sizes = {n: int(w.data[n].size) for n in self.names}
        self.fixed = {**{n: d for n, d in base.items() if n not in self.names},
                      **{n: p.wide for n, p in self.plan.items() if not p.probed}}
        self.feeds = probe_feeds(src, trials.judge.check)
        self.tolerance = getattr(trials.judge.check, "tolerance", trials.judge.tolerance)
        # the probe runs the model twice per weight: on at most PROBE_SAMPLES of the validation samples
        self.sens = measure(src, w.data, {n: ("uint8", self.plan[n].wide) for n in self.names},
                            self.feeds[:PROBE_SAMPLES])
        uint8 = dict.fromkeys(self.names, "uint8")
        self.path = greedy_path(self.sens, sizes, uint8, w.nbytes({**self.fixed, **uint8}) - sum(sizes.values()),
                                max_raised)
        self.raised_at = {(s.raised[0], s.raised[2]): (k, s.raised[3]) for k, s in enumerate(self.path) if s.raised}
        self.screen_seconds = 0.0

    def screen_path(self) -> list[Screened]:
        t0 = time.perf_counter()
        args = (self.src, self.w.data, self.path, self.fixed)
        screened = screen(*args, coarse_steps(self.path, self.trials.aim), self.feeds, self.tolerance, self.trials.aim)
        fine = fine_steps(screened)
        if fine:
            screened = sorted([*screened, *screen(*args, fine, self.feeds, self.tolerance, self.trials.aim)],
                              key=lambda s: s.step)
        self.screen_seconds = time.perf_counter() - t0
        return screened

    def verify(self, order: Sequence[int], max_checks: int) -> tuple[tuple[int, Any] | None, list[dict[str, Any]]]:
        """The pipeline's check on the screened passes, smallest first, until one passes."""
        checked = []
        for i in order[:max_checks]:
            v = self.variant(i)
            ok, info = self.trials(v)
            checked.append({"step": i, "weight_bytes": self.path[i].nbytes, "passed": ok, "cosine": info.get("cosine")})
            if ok:
                return (i, v), checked
        return None, checked

    def variant(self, i: int) -> Any:
        from .tfjs_trials import Variant

        dtypes = {**self.fixed, **self.path[i].dtypes}
        kept = tuple((n, d, self.why(n, d)) for n, d in dtypes.items() if n in self.plan and d != "uint8")
        return Variant(dtypes, kept, f"map step {i}: {len(kept)} of {len(self.plan)} weights above uint8")

    def why(self, n: str, d: str) -> str:
        if not self.plan[n].probed:
            return (f"small ({self.w.data[n].size} weights; the smallest, together at most {SMALL_SHARE:.0%} of the "
                    f"searched ones): {d} without measuring, its finer 2-byte dtype by rounding error")
        alone = f"alone at uint8 it adds {self.sens.error(n, 'uint8'):.3g} relative output error (measured in TF.js)"
        if d == "uint8":
            return alone
        k, gain = self.raised_at.get((n, d), (0, 0.0))
        return (f"{alone}; at {d} {self.sens.error(n, d):.2g}; raised at step {k} "
                f"({gain:.3g} squared error removed per byte)")

    def notes(self, step: int, screened: Sequence[Screened], checked: list[dict[str, Any]]) -> dict[str, Any]:
        kept = {**self.fixed, **self.path[step].dtypes}
        sens, ranking = self.sens, sorted(self.names, key=lambda n: -self.sens.error(n, "uint8"))
        return {
            "search": {"how": "per-weight dtype map by measured output error per byte (tfjs_weight_map)",
                       "aim_cosine": round(self.trials.aim, 6), "probed_weights": len(self.names),
                       "probe_runs": sens.runs, "probe_seconds": round(sens.seconds, 2),
                       "screen_seconds": round(self.screen_seconds, 2), "path_steps": len(self.path),
                       "screened": [{"step": s.step, "weight_bytes": s.nbytes, "predicted_cosine":
                                     round(self.path[s.step].predicted_cosine, 6), "cosine": s.cosine,
                                     "passed": s.passed} for s in screened],
                       "checked": checked},
            "most_sensitive": [{"weight": n, "uint8_output_error": round(sens.error(n, "uint8"), 5)} for n in ranking[:5]],
            "map": [{"weight": n, "dtype": kept[n], "bytes": int(self.w.data[n].size) * NBYTES[kept[n]],
                     "weight_error": {d: _finite(e) for d, e in p.errors.items()},
                     **({"output_error": {d: _finite(sens.error(n, d)) for d in ("uint8", p.wide)}} if p.probed else {}),
                     "why": self.why(n, kept[n])} for n, p in self.plan.items()]}
