"""``-p quantize`` and ``-p fp16`` on TF.js models: the weights rewritten with tensorflowjs's own
quantization scheme, on an existing TF.js model directory (graph or layers format).

The weights are read with ``tensorflowjs.read_weights`` (already quantized ones are dequantized)
and written back with ``tensorflowjs.write_weights`` and a per-weight ``quantization_dtype_map``.
The weights manifest in ``model.json`` records each weight's quantization (``{"dtype": "uint8",
"min", "scale"}`` or ``{"dtype": "float16"}``), and TF.js dequantizes on load: the model computes
in float32 with the rounded weights. What shrinks is the download (the shards), not the memory
TF.js uses at run time, and not the compute. The topology is untouched.

``-p quantize`` options:

- ``dtype=uint8`` (default) or ``uint16``: tensorflowjs's affine scheme, one ``min``/``scale`` per
  weight tensor (w ~ q * scale + min, the range nudged so that 0 is exact): 1 or 2 bytes per weight.
- ``nodes=PATTERN|PATTERN...``: which weights to quantize, as fnmatch patterns over the manifest's
  weight names (what ``tensorflowjs_converter --quantize_uint8 PATTERN`` takes: ``conv*`` matches
  the layers format's ``conv1/kernel``; graph-format names carry the model name first, so write
  ``*conv*``). Default: every float32 weight (tensorflowjs quantizes float32 weights only).
- ``uint16=PATTERN|...`` (with ``dtype=uint8``): weights to write at uint16 from the start.
- ``max_promoted``: the most weights a remedy may raise above the requested dtype (uint8: no bound
  by default, and the smallest weights the map puts at 2 bytes unmeasured do not count; uint16 and
  fp16: 8); ``0`` turns the remedies off.
- ``headroom=0.5`` and ``max_checks=8`` (uint8): see below.

``-p fp16`` options: ``nodes=PATTERN|...`` (default: every float32 weight) and ``max_promoted=8``.
A weight with |w| > 65504 would become Inf: it stays float32 from the start (``meta.kept``).

Every candidate is measured with the pipeline's ``check`` against the ORIGINAL model (without a
check: against this pass's input model, run in TF.js on seeded feeds). The requested variant is
tried first; when it misses its tolerance:

- **uint8: a per-weight dtype map** (``tfjs_weight_map``). Each weight's output error at uint8 and
  at its 2-byte dtype (the finer of uint16 and float16 by its own rounding error) is measured in
  TF.js (one Node process runs the model once per weight and dtype with only that weight rounded);
  a greedy path raises, step by step, the weight whose raise removes the most predicted output
  error per byte added (to 2 bytes or, as the last resort, float32), predicting a map's outputs as
  the sum of its weights' measured output differences; maps along the path are then screened
  whole in TF.js on the validation feeds, and the smallest that passes goes through the check
  (``max_checks=8`` at most). The aim is the tolerance's cosine with ``headroom`` of its budget
  left unused (0.5: cosine >= 0.9975 for 0.995), so that a map chosen on a few validation samples
  holds on other inputs; when no map checked reaches the aim, the smallest that passed the
  tolerance is kept and the verdict says so. ``meta.map`` lists each weight's dtype, bytes,
  measured errors and why; ``meta.search`` the probe, the screened maps and the checks. Depthwise
  kernels with folded BatchNorm are what this is for: per-tensor affine uint8 gives their small
  channels a few levels (fixtures.quant_models.mobilenet_v2_small: cosine 0.979 all-uint8, the map
  0.998 at 0.284x of the float32 bytes).
- **uint16 and fp16: the remedy ladder**: the top 1, 2, 4, ... ``max_promoted`` weights by their
  own rounding error (each tensor's worst per-output-channel relative RMS, ||deq(q(w)) - w|| / ||w||
  over the last axis: one scale per tensor ruins the small channels of a tensor that also holds an
  outlier channel, which a whole-tensor ratio hides) kept float32 (never more than half of the
  weights), tried smallest first.

``meta.kept`` lists what was kept at a higher precision and why, ``meta.attempts`` each candidate's
bytes and parity. When none passes, the best one (highest worst cosine) is written with
``meta.verdict`` saying so: the final validation then fails (exit 1) and the model is kept for
inspection.

Tolerances (weights only: activations stay float32, so the error is far below the ONNX int8 pass's,
which also quantizes activations):

- ``UINT8``: ``min_cosine=0.995``, ``min_top1=0.98``, ``atol=0.5, rtol=0.2`` (the ONNX int8 pass's
  band). The rounding noise of a weight is step/sqrt(12) with step = range/255, ~0.3-1% of a
  typical channel's RMS for well-behaved weights, ~1-3% relative output error after a few layers
  (cosine > 0.999); a tensor whose range is set by an outlier channel (20% noise or more) fails.
  Cosine and top-1 are the real bar: on classifier logits of scale ~3, a map at cosine 0.9975 has
  elementwise errors up to ~0.6 while every clear decision agrees, and a 0.1 band (what this pass
  had before) refused such maps for errors that change no prediction.
- ``UINT16``: ``min_cosine=0.9999``, ``atol=1e-2, rtol=1e-2``: the step is 256x finer (~1e-5
  relative per weight); cosine 0.9999 is ~1.4% relative RMS.
- ``FP16``: ``min_cosine=0.9999``, ``atol=1e-2, rtol=1e-2``: float16 rounds each weight by at most
  2^-11 (~4.9e-4) relative, ~1e-3 relative at the output; the same elementwise band as the ONNX fp16
  pass (which also computes in fp16), a tighter cosine since only the weights are rounded.

Measured in TF.js (wasm, 3 validation samples) against the Keras originals: keras_cnn uint8 cosine
0.99998, max abs 0.009 (graph) / 0.010 (layers); uint16 1.7e-5; fp16 3.7e-4 / 4.4e-4; a 1.3 M
parameter MLP (bench/passes.py) uint8 cosine 0.99997, max abs 0.0057, uint16 3.8e-5, fp16 3.2e-4;
weight shards 0.250x / 0.500x / 0.500x. A Dense layer with one output channel scaled x100 scored
cosine 0.973 at uint8 (fails); the map puts that one tensor at 2 bytes. Scaled x1e4, uint16 still
fails (0.989) where float16 does not: float16; scaled x1e6, float16 overflows: float32
(tests/e2e/test_tfjs_passes.py).
"""

from __future__ import annotations

import fnmatch
import glob
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from ..core import Artifact, Format, Pass, Tolerance
from ..deps import require, version
from ..errors import ConversionError, UsageError
from ..formats import tfjs as tfjs_fmt
from ..parity.validate import FEED_META
from ..quiet import quiet
from .tfjs_trials import Judge, Trials, Variant

UINT8 = Tolerance(atol=0.5, rtol=0.2, min_cosine=0.995, min_top1=0.98)
UINT16 = Tolerance(atol=1e-2, rtol=1e-2, min_cosine=0.9999)
FP16 = Tolerance(atol=1e-2, rtol=1e-2, min_cosine=0.9999)
ITEMSIZE = {"uint8": 1, "uint16": 2, "float16": 2, "float32": 4}
FP16_MAX = 65504.0
_LOGGERS = ("tensorflow", "absl", "tensorflowjs")


class Weights:
    """A TF.js model's model.json and weights (read with tensorflowjs.read_weights: dequantized)."""

    def __init__(self, model_dir: Path) -> None:
        np = require("numpy")
        with quiet(*_LOGGERS):
            read_weights = require("tensorflowjs.read_weights")
        self.dir = model_dir
        self.model_json = tfjs_fmt.read_model_json(model_dir)
        manifest = self.model_json.get("weightsManifest", [])
        self.groups: list[list[dict[str, Any]]] = read_weights.read_weights(manifest, str(model_dir))
        self.data = {e["name"]: e["data"] for g in self.groups for e in g}
        #: the encoding each weight has in the input (uint8/uint16/float16 where it was quantized)
        self.encoded = {w["name"]: w.get("quantization", {}).get("dtype", w.get("dtype", "float32"))
                        for g in manifest for w in g["weights"]}
        self.floats = [n for n, a in self.data.items() if a.dtype == np.float32]
        self.bytes_in = sum((model_dir / p).stat().st_size for g in manifest for p in g.get("paths", []))

    def select(self, patterns: Iterable[str], option: str) -> list[str]:
        """Float32 weights matching ``patterns`` (fnmatch); all of them for no pattern."""
        patterns = list(patterns)
        if not patterns:
            return list(self.floats)
        unmatched = [p for p in patterns if not fnmatch.filter(self.data, p)]
        if unmatched:
            sample = ", ".join(list(self.data)[:6])
            raise UsageError(f"{option}={'|'.join(unmatched)} matches no weight of this model",
                             hint=f"patterns are fnmatch over weight names, e.g. {sample}")
        return [n for n in self.floats if any(fnmatch.fnmatchcase(n, p) for p in patterns)]

    def nbytes(self, dtypes: Mapping[str, str]) -> int:
        """Weight bytes when each float32 weight is written as ``dtypes`` says (others as in the input)."""
        return sum(a.size * ITEMSIZE.get(dtypes.get(n, self.encoded.get(n, "float32")), a.dtype.itemsize)
                   for n, a in self.data.items())

    def write(self, dtypes: Mapping[str, str], out_dir: Path) -> int:
        """model.json + shards in ``out_dir``; weights not in ``dtypes`` keep their input encoding."""
        with quiet(*_LOGGERS):
            write_weights = require("tensorflowjs.write_weights")
        dtypes = {**{n: d for n, d in self.encoded.items() if d in ("uint8", "uint16", "float16")}, **dtypes}
        by_dtype: dict[str, list[str]] = {}
        for name, dtype in dtypes.items():
            if dtype != "float32" and name in self.floats:
                by_dtype.setdefault(dtype, []).append(glob.escape(name))  # names, not patterns
        groups = [[{"name": e["name"], "data": e["data"]} for e in g] for g in self.groups]
        out_dir.mkdir(parents=True, exist_ok=True)
        with quiet(*_LOGGERS):  # it prints when it converts a dtype
            manifest = write_weights.write_weights(groups, str(out_dir), shard_size_bytes=tfjs_fmt.SHARD_BYTES,
                                                   write_manifest=False, quantization_dtype_map=by_dtype or None)
        model_json = {**self.model_json, "weightsManifest": manifest}
        (out_dir / tfjs_fmt.FILENAME).write_text(json.dumps(model_json))
        return sum((out_dir / p).stat().st_size for g in manifest for p in g["paths"])

    def error(self, name: str, dtype: str) -> float:
        """Worst per-output-channel (last axis) relative RMS rounding error of weight ``name`` at
        ``dtype``; whole-tensor for vectors and scalars; inf when it overflows."""
        np = require("numpy")
        quantization = require("tensorflowjs.quantization")
        w = self.data[name]
        q, meta = quantization.quantize_weights(w, quantization.QUANTIZATION_OPTION_TO_DTYPES[dtype])
        with np.errstate(over="ignore", invalid="ignore"):
            d = quantization.dequantize_weights(q, meta, np.float32).astype(np.float64)
        if not np.all(np.isfinite(d)):
            return float("inf")
        w64 = w.astype(np.float64)
        if w.ndim >= 2:
            err = np.sqrt(np.sum((d - w64) ** 2, axis=tuple(range(w.ndim - 1))))
            ref = np.sqrt(np.sum(w64 ** 2, axis=tuple(range(w.ndim - 1))))
        else:
            err, ref = np.array([np.linalg.norm(d - w64)]), np.array([np.linalg.norm(w64)])
        ratio = np.where(ref > 0, err / np.where(ref > 0, ref, 1.0), (err > 0).astype(np.float64))
        return float(ratio.max()) if ratio.size else 0.0


class WeightsPass(Pass):
    """Shared by the TF.js weight passes: the variants, their measurement and the choice."""

    accepts: ClassVar[Format] = tfjs_fmt.FORMAT
    produces: ClassVar[Format] = tfjs_fmt.FORMAT
    max_promoted: int | None
    #: the dtype the pass writes (uint8, uint16, float16)
    target: str

    def _base(self, w: Weights) -> tuple[dict[str, str], list[dict[str, str]]]:
        """(the requested dtype of each weight, what is kept at a higher precision from the start)."""
        raise NotImplementedError

    def _remedies(self, dtype: str) -> tuple[str, ...]:
        """The precisions the remedies raise the most sensitive weights to, in order."""
        return ("float32",)

    def _search(self, w: Weights, base: dict[str, str], trials: Trials, src: Artifact) -> tuple[Variant | None, dict]:
        """The remedy ladder: the top 1, 2, 4, ... ``max_promoted`` weights by their own rounding
        error raised to each remedy's precision, tried smallest first."""
        target, cap_all = self.target, 8 if self.max_promoted is None else self.max_promoted
        lowest = [n for n, d in base.items() if d == target]
        ranking = sorted(((n, w.error(n, target)) for n in lowest), key=lambda t: -t[1])
        variants = []
        for level in self._remedies(target):
            cap = min(cap_all, len(ranking) if level != "float32" else len(lowest) // 2)
            for k in sorted({min(2 ** i, cap) for i in range(cap.bit_length() + 1)} - {0}):
                top = ranking[:k]
                why = tuple((n, level, f"{target} error {e:.3g} (worst channel, relative RMS), rank {i + 1}")
                            for i, (n, e) in enumerate(top))
                variants.append(Variant({**base, **{n: level for n, _ in top}}, why, f"top {k} at {level}"))
        variants.sort(key=lambda v: w.nbytes(v.dtypes))  # stable: smaller first
        for v in variants:
            if trials(v)[0]:
                return v, {"most_sensitive": [{"weight": n, f"{target}_error": round(e, 5)} for n, e in ranking[:5]]}
        return None, {"most_sensitive": [{"weight": n, f"{target}_error": round(e, 5)} for n, e in ranking[:5]]}

    def _aim(self) -> float | None:
        return None

    def run(self, src: Artifact, out_dir: Path, check: Any = None) -> Artifact:
        w = Weights(tfjs_fmt.model_dir(src.path))
        base, kept_first = self._base(w)
        judge = Judge(src, check, self.tolerance)
        trials = Trials(w, out_dir / ".candidates", judge, self._aim())
        found: dict[str, Any] = {}
        asked = Variant(base)
        chosen = asked if trials(asked)[0] else None
        if chosen is None and self.max_promoted != 0:
            chosen, found = self._search(w, base, trials, src)
        v = trials.keep(chosen, out_dir)
        return src.with_(path=out_dir, meta=self._meta(src, w, v, trials, kept_first, found))

    def _meta(self, src: Artifact, w: Weights, v: Variant, trials: Trials,
              kept_first: list[dict[str, str]], found: dict[str, Any]) -> dict[str, Any]:
        target, out_dir = self.target, trials.work.parent
        counts: dict[str, int] = {}
        for n in w.floats:
            counts[v.dtypes.get(n, "float32")] = counts.get(v.dtypes.get(n, "float32"), 0) + 1
        bytes_out = sum((out_dir / p).stat().st_size for g in tfjs_fmt.read_model_json(out_dir)["weightsManifest"]
                        for p in g["paths"])
        meta: dict[str, Any] = {
            **{k: src.meta[k] for k in ("kind", *FEED_META) if k in src.meta},
            "tool": f"tensorflowjs {version('tensorflowjs')} (quantization, write_weights)",
            "scheme": (f"{target}, affine per tensor (min, scale); TF.js dequantizes on load"
                       if target != "float16" else "float16; TF.js converts to float32 on load"),
            "measured_against": trials.judge.against, "weights_by_dtype": counts,
            "weight_bytes_in": w.bytes_in, "weight_bytes_out": bytes_out,
            "weight_bytes_ratio": round(bytes_out / w.bytes_in, 4) if w.bytes_in else None,
            **found,
            "kept": kept_first + [{"weight": n, "dtype": d, "why": y} for n, d, y in v.kept],
            "attempts": trials.attempts}
        if not any(d != "float32" for d in v.dtypes.values()):
            meta["note"] = "nothing was rewritten: no float32 weight was selected (tensorflowjs quantizes float32 weights only)"
        elif any(d in ("uint8", "uint16", "float16") for d in w.encoded.values()):
            meta["note"] = "the input's weights were already quantized; they were rewritten from their dequantized values"
        meta["verdict"] = trials.verdict(v, target)
        return meta


@dataclass(frozen=True)
class TfjsQuantize(WeightsPass):
    name: ClassVar[str] = "quantize"

    dtype: str = "uint8"
    nodes: tuple[str, ...] = ()
    uint16: tuple[str, ...] = ()
    max_promoted: int | None = None
    headroom: float = 0.5
    max_checks: int = 8

    def __post_init__(self) -> None:
        if self.dtype not in ("uint8", "uint16"):
            raise ValueError(f"dtype must be uint8 or uint16, not '{self.dtype}' (float16: -p fp16)")
        if self.uint16 and self.dtype != "uint8":
            raise ValueError("uint16=PATTERN applies with dtype=uint8")
        if self.max_promoted is not None and self.max_promoted < 0:
            raise ValueError("max_promoted must be >= 0")
        if not 0.0 <= self.headroom < 1.0:
            raise ValueError("headroom must be in [0, 1)")
        if self.max_checks < 1:
            raise ValueError("max_checks must be >= 1")

    @property
    def tolerance(self) -> Tolerance:  # type: ignore[override]
        return UINT8 if self.dtype == "uint8" else UINT16

    @property
    def target(self) -> str:  # type: ignore[override]
        return self.dtype

    def _aim(self) -> float | None:
        cos = self.tolerance.min_cosine
        return 1.0 - (1.0 - cos) * (1.0 - self.headroom) if self.dtype == "uint8" and cos is not None else None

    def _base(self, w: Weights) -> tuple[dict[str, str], list[dict[str, str]]]:
        wide = set(w.select(self.uint16, "uint16")) if self.uint16 else set()
        chosen = [n for n in w.floats if n in set(w.select(self.nodes, "nodes")) | wide]
        base = {n: ("uint16" if n in wide else self.dtype) for n in chosen}
        return base, [{"weight": n, "dtype": "uint16", "why": "asked for (uint16=)"} for n in chosen if n in wide]

    def _remedies(self, dtype: str) -> tuple[str, ...]:
        return ("uint16", "float32") if dtype == "uint8" else ("float32",)

    def _search(self, w: Weights, base: dict[str, str], trials: Trials, src: Artifact) -> tuple[Variant | None, dict]:
        """uint8: the per-weight dtype map (tfjs_weight_map); uint16: the ladder."""
        if self.dtype != "uint8":
            return super()._search(w, base, trials, src)
        from .tfjs_weight_map import search_map

        try:
            return search_map(w, base, trials, src, max_raised=self.max_promoted, max_checks=self.max_checks)
        except ConversionError as exc:  # the probe could not run the model: the ladder needs no probe
            chosen, found = super()._search(w, base, trials, src)
            return chosen, {**found, "search": {"note": f"map search unavailable ({exc.one_line()[:200]}); "
                                                        "used the remedy ladder"}}


@dataclass(frozen=True)
class TfjsFp16(WeightsPass):
    name: ClassVar[str] = "fp16"
    tolerance: ClassVar[Tolerance] = FP16
    target: ClassVar[str] = "float16"

    nodes: tuple[str, ...] = ()
    max_promoted: int = 8

    def __post_init__(self) -> None:
        if self.max_promoted < 0:
            raise ValueError("max_promoted must be >= 0")

    def _base(self, w: Weights) -> tuple[dict[str, str], list[dict[str, str]]]:
        np = require("numpy")
        base, kept = {}, []
        for n in w.select(self.nodes, "nodes"):
            peak = float(np.abs(w.data[n]).max()) if w.data[n].size else 0.0
            if peak > FP16_MAX:
                kept.append({"weight": n, "dtype": "float32", "why": f"|w| up to {peak:.3g} > float16 max {FP16_MAX:g}"})
            else:
                base[n] = "float16"
        return base, kept


PASSES = (TfjsQuantize, TfjsFp16)
