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
3. **Verify** (:func:`choose`): the first map on the path whose predicted cosine reaches the aim is
   run through the pipeline's check (the real conversion against the ORIGINAL model); on a miss the
   search moves up the path (to where the predicted error is smaller by the factor the prediction
   was off), on a pass it bisects down the path for a smaller map that still passes. The smallest
   map that passed is kept. A map passes when the check passes and its cosine reaches the aim,
   which leaves ``headroom`` of the tolerance's cosine budget (1 - min_cosine) unused, so that a
   map chosen on a few validation samples holds on other inputs too.

The report's ``map`` lists every searched weight with its dtype, bytes and why (its measured
output error at uint8, and what raising it bought per byte), and ``search`` the measurement's cost.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core import Artifact
from ..deps import require
from ..errors import ConversionError

LEVELS = ("uint8", "uint16", "float16", "float32")
NBYTES = {"uint8": 1, "uint16": 2, "float16": 2, "float32": 4}
PROBE_SCRIPT = Path(__file__).resolve().parents[1] / "formats" / "tfjs" / "node" / "probe_weights.mjs"
_WIRE = {"f": "float32", "i": "int32", "u": "int32", "b": "bool"}


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


@dataclass
class Choice:
    """What :func:`choose` found: the index of the kept step (None: none passed) and every check."""

    index: int | None
    checked: list[tuple[int, bool, float | None]] = field(default_factory=list)  # (step, passed, cosine)
    note: str = ""


def measure(src: Artifact, data: Mapping[str, Any], names: Sequence[str], dtypes: Sequence[str],
            feeds: Sequence[Mapping[str, Any]], backend: str = "wasm") -> Sensitivity:
    """Run the model at ``src`` once as it is and once per (weight in ``names``, dtype in ``dtypes``)
    with only that weight rounded (``data``: weight name -> float32 array), in one Node process."""
    np = require("numpy")
    from ..formats.tfjs import model_dir
    from ..formats.tfjs.runner import _node_env  # the npm packages' check and module path, as the runner's

    probes = [(n, d) for n in names for d in dtypes if d != "float32"]
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="convertkit-probe-") as tmp:
        blob, offset = open(Path(tmp) / "data.bin", "wb"), 0

        def put(name: str, arr: Any) -> dict[str, Any]:
            nonlocal offset
            arr = np.ascontiguousarray(arr, dtype=_WIRE[arr.dtype.kind])
            blob.write(arr.tobytes())
            spec = {"name": name, "dtype": arr.dtype.name, "shape": list(arr.shape), "offset": offset,
                    "byteLength": arr.nbytes}
            offset += arr.nbytes
            return spec

        with blob:
            job = {"model_dir": str(model_dir(src.path)), "backend": backend, "data": blob.name,
                   "out": str(Path(tmp) / "out.bin"),
                   "feeds": [[put(k, np.asarray(v)) for k, v in f.items()] for f in feeds],
                   "probes": [[put(n, rounded(data[n], d))] for n, d in probes]}
        (Path(tmp) / "job.json").write_text(json.dumps(job))
        node = require_node()
        done = subprocess.run([node, str(PROBE_SCRIPT), str(Path(tmp) / "job.json")], capture_output=True,
                              text=True, env=_node_env(backend), check=False)
        answer = _last_json(done.stdout)
        if done.returncode != 0 or "outputs" not in answer:
            raise ConversionError(f"measuring weight sensitivity in TF.js failed: "
                                  f"{answer.get('error') or done.stderr.strip()[-300:]}")
        flat = np.fromfile(Path(tmp) / "out.bin", dtype="<f4").astype(np.float64)
    runs = flat.reshape(len(probes) + 1, -1)
    segments, order, scale = _layout(answer["outputs"], runs[0])
    ref = (runs[0] * scale)[order]
    deltas: dict[str, dict[str, Any]] = {n: {"float32": np.zeros_like(ref)} for n in names}
    for (n, d), row in zip(probes, runs[1:]):
        deltas[n][d] = (row * scale)[order] - ref
    return Sensitivity(ref, deltas, segments, len(probes) + 1, time.perf_counter() - t0)


def _layout(specs: Sequence[Sequence[Mapping[str, Any]]], base: Any) -> tuple[tuple[slice, ...], Any, Any]:
    """Node writes sample by sample, output by output; the vectors hold output by output (each
    output one slice, its samples end to end). Returns the slices, the reordering, and each
    element's 1/||its output|| (on the unrounded run)."""
    np = require("numpy")
    owner = np.concatenate([np.full(int(np.prod(o["shape"], dtype=np.int64)), k)
                            for sample in specs for k, o in enumerate(sample)])
    scale = np.ones_like(base)
    segments, start = [], 0
    for k in range(len(specs[0])):
        mine = owner == k
        norm = float(np.linalg.norm(base[mine]))
        scale[mine] = 1.0 / norm if norm > 0 else 1.0
        segments.append(slice(start, start + int(mine.sum())))
        start += int(mine.sum())
    return tuple(segments), np.argsort(owner, kind="stable"), scale


def rounded(w: Any, dtype: str) -> Any:
    """``w`` after tensorflowjs's quantize/dequantize round trip at ``dtype`` (what TF.js loads)."""
    np = require("numpy")
    quantization = require("tensorflowjs.quantization")
    if dtype == "float32":
        return w
    q, meta = quantization.quantize_weights(w, quantization.QUANTIZATION_OPTION_TO_DTYPES[dtype])
    with np.errstate(over="ignore", invalid="ignore"):
        return quantization.dequantize_weights(q, meta, np.float32)


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


def choose(path: Sequence[Step], check: Callable[[int], tuple[bool, float | None]], aim: float,
           max_checks: int = 8) -> Choice:
    """The smallest step of ``path`` (path[0] already failed) that ``check`` passes, found with few
    checks: up the path from the first step predicted to reach ``aim`` until one passes (each miss
    moves to where the predicted error is smaller by the factor the prediction was off, at least 2),
    then bisecting down between the last miss and the pass."""
    pred = [1.0 - s.predicted_cosine for s in path]
    target = 1.0 - aim
    choice = Choice(None)
    lo, i = 0, next((k for k in range(1, len(path)) if pred[k] <= target), len(path) - 1)
    while len(choice.checked) < max_checks and i > lo:
        ok, cos = check(i)
        choice.checked.append((i, ok, cos))
        if ok:
            choice.index = i
            break
        lo = i
        off = (1.0 - cos) / pred[i] if cos is not None and pred[i] > 0 else 2.0
        want = min(pred[i] / 2.0, target / max(off, 1.0))
        i = next((k for k in range(i + 1, len(path)) if pred[k] <= want), len(path) - 1)
    else:
        choice.note = (f"{len(choice.checked)} check(s) allowed (max_checks)" if len(choice.checked) >= max_checks
                       else "the whole path was tried")
        return choice
    hi = choice.index
    assert hi is not None
    while hi - lo > 1 and len(choice.checked) < max_checks:
        mid = (lo + hi) // 2
        ok, cos = check(mid)
        choice.checked.append((mid, ok, cos))
        lo, hi = (lo, mid) if ok else (mid, hi)
    choice.index = hi
    return choice


def _finite(x: float) -> float | None:
    """A measured error for JSON: None where the rounded weight overflowed (float16 past 65504)."""
    import math

    return round(x, 6) if math.isfinite(x) else None


def require_node() -> str:
    import shutil

    from ..errors import MissingDependencyError

    node = shutil.which("node")
    if node is None:
        raise MissingDependencyError("Node.js (`node`) is not on PATH; TF.js models run in Node",
                                     hint="install Node.js >= 18, then run `make install`")
    return node


def _last_json(text: str) -> dict[str, Any]:
    for line in reversed(text.strip().splitlines()):
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return {}


def search_map(w: Any, base: Mapping[str, str], trials: Any, src: Artifact, *, max_raised: int | None,
               max_checks: int) -> tuple[Any, dict[str, Any]]:
    """The map search for the weights ``base`` puts at uint8 (``w``: tfjs_weights.Weights, ``trials``:
    its Trials, whose aim the chosen map must reach). Returns (the Variant kept or None, report notes)."""
    from ..parity.inputs import make_feeds
    from .tfjs_weights import Variant

    names = [n for n, d in base.items() if d == "uint8"]
    sizes = {n: int(w.data[n].size) for n in names}
    sens = measure(src, w.data, names, ("uint8", "uint16", "float16"), make_feeds(src.inputs, samples=3, seed=0))
    path = greedy_path(sens, sizes, {n: "uint8" for n in names}, w.nbytes(base) - sum(sizes.values()), max_raised)
    raised_at = {}
    for k, s in enumerate(path):
        if s.raised is not None:
            raised_at[(s.raised[0], s.raised[2])] = (k, s.raised[3])

    def why(n: str, d: str) -> str:
        alone = f"alone at uint8 it adds {sens.error(n, 'uint8'):.3g} relative output error (measured in TF.js)"
        if d == "uint8":
            return alone
        k, gain = raised_at.get((n, d), (0, 0.0))
        return f"{alone}; at {d} {sens.error(n, d):.2g}; raised at step {k} ({gain:.3g} squared error removed per byte)"

    def variant(i: int) -> Any:
        dtypes = path[i].dtypes
        kept = tuple((n, d, why(n, d)) for n, d in dtypes.items() if d != "uint8")
        return Variant({**base, **dtypes}, kept, f"map step {i}: {len(kept)} of {len(names)} weights above uint8")

    tried: dict[int, Any] = {}

    def check(i: int) -> tuple[bool, float | None]:
        tried[i] = variant(i)
        ok, info = trials(tried[i])
        return ok, info.get("cosine")

    choice = choose(path, check, trials.aim, max_checks)
    kept = path[choice.index] if choice.index is not None else path[0]
    ranking = sorted(names, key=lambda n: -sens.error(n, "uint8"))
    notes = {
        "search": {"how": "per-weight dtype map by measured output error per byte (tfjs_weight_map)",
                   "aim_cosine": round(trials.aim, 6), "probe_runs": sens.runs,
                   "probe_seconds": round(sens.seconds, 2), "path_steps": len(path),
                   "checked": [{"step": i, "weight_bytes": path[i].nbytes, "predicted_cosine":
                                round(path[i].predicted_cosine, 6), "passed": ok, "cosine": cos}
                               for i, ok, cos in choice.checked],
                   **({"note": choice.note} if choice.note else {})},
        "most_sensitive": [{"weight": n, "uint8_output_error": round(sens.error(n, "uint8"), 5)} for n in ranking[:5]],
        "map": [{"weight": n, "dtype": kept.dtypes[n], "bytes": sizes[n] * NBYTES[kept.dtypes[n]],
                 "output_error": {d: _finite(sens.error(n, d)) for d in ("uint8", "uint16", "float16")},
                 "why": why(n, kept.dtypes[n])} for n in names]}
    return (tried[choice.index] if choice.index is not None else None), notes
