"""``-p quantize`` on ONNX: int8 weights (and activations), through ``onnxruntime.quantization``.

Options (``-p quantize:key=value,...``):

- ``mode=dynamic`` (default): int8 weights, activations quantized at run time
  (``quantize_dynamic``). No data needed. Linear layers exported as ``Gemm`` are turned into
  ``MatMulInteger`` by the tool; only ``MatMul`` with a constant weight is quantized
  (``MatMulConstBOnly``), not activation x activation products such as attention scores.
- ``mode=static``: int8 weights and activations in QDQ form (``quantize_static``,
  QuantizeLinear/DequantizeLinear pairs that any ONNX runtime reads), with activation ranges
  calibrated on ``calibration=FEEDS.npz`` (one array per input name; a leading batch axis is split
  into samples) or, when no file is given, on the validation feeds, with a warning in the meta:
  random or validation data calibrate worse than a few hundred real samples, and parity measured
  on the calibration data itself is optimistic.
- ``target=portable`` (default) | ``avx2`` | ``avx512`` | ``avx512_vnni`` | ``arm64``: the CPUs the model
  will run on (int8_target.py). portable/avx2/avx512 write 7-bit int8 weights (``reduce_range``),
  which cannot saturate the 16-bit pair sums of AVX2 / AVX-512-without-VNNI kernels: the integer
  products are exact on every CPU, so validation here holds there. avx512_vnni/arm64 keep 8-bit
  weights (exact on that hardware only; the report says so). The report's ``int8`` block reads the
  written weights back (``saturation_free``) and ``cpu`` records the flags of the validating CPU.
- ``runtime=python|web|both`` (default: what ``--onnx-runtime`` says, else python; a runtime asked for
  here is added to the one that validates): the runtime(s) every candidate must load and run in
  (int8_target.runtime_of). With ``web``, candidates are load-tested in
  onnxruntime-web (wasm) after its kernel preflight, so a format it has no kernel for is never kept
  (the fallbacks name the missing ops); the report's ``int8.runtime`` block says why.
- ``per_channel=false``: one scale per weight tensor; ``true``: one per output channel.
- ``method=minmax|entropy|percentile`` (static only): how activation ranges are chosen.
- ``max_excluded=3``: the most nodes the remedies may keep in float32 (never more than half of
  the quantizable nodes).

What was seen here: dynamic ``QInt8`` weights on a ``Conv`` produce ``ConvInteger`` with int8
weights, which onnxruntime 1.23's CPU build does not implement (the model does not load; onnxruntime-web
1.31.1's wasm build does run it, so with ``runtime=web`` that variant is kept); the pass
load-tests every candidate and falls back to ``QUInt8`` weights, then to quantizing only
``MatMul``/``Gemm``. ``quantize_dynamic`` failed with "Inferred shape and existing shape differ" on
dynamo exports with a ``Gemm`` (stale ``value_info`` after it rewrites Gemm to MatMul): the pass
drops intermediate shape annotations first. The entropy and percentile calibrators stack every
sample's activations and failed on feeds of different sizes: the pass calibrates one sample at a
time (``CalibStridedMinMax=1``, which merges the histograms).

Remedies (quantize_ladder.py), each measured with the pipeline's check against the ORIGINAL model:
when the requested variant misses the tolerance, the pass tries per-channel weight scales, then
keeps in float32, in order of the float32 bytes each keeps, the 1, 2, ... ``max_excluded`` nodes that
add the most error (ranked by per-node error growth: the relative error of each node's output minus
that of its inputs, float32 vs the candidate, on the same feeds), the embedding Gathers, or both;
a dynamic request's last remedy is static QDQ. The first variant that passes is kept. When none passes,
the best one (highest worst-output cosine) is written anyway with ``meta.verdict`` saying so: the
final validation then reports FAILED and convertkit exits 1 with the model kept for inspection
(a parity failure is a report, not an exception; see ``converter.api.export``).

Tolerance (``INT8``): ``min_cosine=0.99`` per output and ``min_top1=0.9`` for classifier-like
outputs are the real bar: int8 error is relative to an output's dynamic range, which cosine
measures (cosine 0.99 ~ 14% relative RMS error). The elementwise bound is loose (``atol=0.5,
rtol=0.2``) and only catches gross errors; for outputs of large magnitude (|y| >> 1) give
``--atol``. Honest conversions of the fixtures (3 seeded samples) scored, dynamic / static:
CNN cosine 0.99999 / 0.99999, transformer block 0.999996 / 0.9999, tiny BERT 0.9987 / 0.9959
(the worst, max abs error 0.09 on logits ~1), top-1 agreement 1.0 everywhere; the
quantization-hostile fixture (an outlier activation channel) scored cosine 0.37 and top-1 0.17
per-tensor and fails unless the remedies rescue it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from ..core import Artifact, Format, Pass, Tolerance
from ..deps import require
from ..errors import StageError
from ..formats import onnx as onnx_fmt
from ..quiet import quiet
from . import onnx_graph as g
from .int8_target import (RUNTIMES, TARGETS, LoadTest, cpu_features, numerics_note, runtime_label, runtime_of,
                          saturation)
from .quantize_ladder import Ladder

INT8 = Tolerance(atol=0.5, rtol=0.2, min_cosine=0.99, min_top1=0.9)
MODES = ("dynamic", "static")
METHODS = ("minmax", "entropy", "percentile")
#: op types whose nodes the remedies may keep in float32, per mode
DYNAMIC_OPS = ("MatMul", "Gemm", "Conv", "Gather", "Attention", "LSTM")
#: static quantization leaves in float32 the nodes whose inputs or outputs reach this magnitude on the
#: calibration data: sentinels such as an additive attention mask (finfo.min, -3.4e38) or -inf. One
#: int8 scale cannot hold them beside ordinary activations: every other value rounds to zero.
SENTINEL_ABS = 1e6
STATIC_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul", "Gather", "Add", "Mul", "Concat", "Softmax",
              "LayerNormalization", "InstanceNormalization", "BatchNormalization", "Resize", "AveragePool",
              "GlobalAveragePool", "Where", "Split")


@dataclass(frozen=True)
class Variant:
    per_channel: bool
    exclude: tuple[str, ...] = ()
    why: tuple[str, ...] = ()
    reduce_range: bool = True
    static: bool = False  # a dynamic request's last remedy: QDQ with calibrated activation ranges

    @property
    def label(self) -> str:
        base = ("static QDQ, " if self.static else "") + ("per-channel" if self.per_channel else "per-tensor")
        base += "" if self.reduce_range else ", 8-bit weights"
        return base + (f", {len(self.exclude)} node(s) in fp32" if self.exclude else "")


@dataclass(frozen=True)
class Quantize(Pass):
    name: ClassVar[str] = "quantize"
    accepts: ClassVar[Format] = onnx_fmt.FORMAT
    produces: ClassVar[Format] = onnx_fmt.FORMAT
    tolerance: ClassVar[Tolerance] = INT8

    mode: str = "dynamic"
    per_channel: bool = False
    method: str = "minmax"
    calibration: str | None = None
    max_excluded: int = 3
    target: str = "portable"
    runtime: str | None = None  # None: the validation runtime (--onnx-runtime), else python

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, not '{self.mode}'")
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, not '{self.method}'")
        if self.mode == "dynamic" and (self.calibration or self.method != "minmax"):
            raise ValueError("calibration and method apply to mode=static (dynamic needs no data)")
        if self.max_excluded < 0:
            raise ValueError("max_excluded must be >= 0")
        if self.target not in TARGETS:
            raise ValueError(f"target must be one of {', '.join(TARGETS)}, not '{self.target}'")
        if self.runtime is not None and self.runtime not in RUNTIMES:
            raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)}, not '{self.runtime}'")

    def run(self, src: Artifact, out_dir: Path, check: Any = None) -> Artifact:
        ort = require("onnxruntime")
        require("onnxruntime.quantization")
        feeds, feeds_from = g.pass_feeds(src, check)
        work = out_dir / ".candidates"
        work.mkdir(parents=True, exist_ok=True)
        model = g.strip_value_info(g.name_nodes(g.load_model(src)))
        prepared = g.save(model, work / "prepared.onnx")
        judge = g.Judge(check, g.run(g.session(model), feeds), feeds, self.tolerance)
        meta: dict[str, Any] = {"tool": f"onnxruntime.quantization {ort.__version__}", "mode": self.mode,
                                "measured_against": judge.against}
        calib = g.load_calibration(self.calibration, src) if self.calibration else feeds
        if self.mode == "static":
            meta["calibration"] = {"method": self.method, "samples": len(calib),
                                   "data": self.calibration or feeds_from}
            if not self.calibration:
                meta["calibration"]["warning"] = (
                    f"calibrated on {feeds_from}: give calibration=FEEDS.npz with real inputs for better "
                    "activation ranges (parity measured on the calibration data itself is optimistic)")
        runtime = runtime_of(check, self.runtime)
        loads = LoadTest(runtime)
        meta["runtime"] = loads.describe()
        dynamic = _Dynamic(prepared, feeds, loads)
        static = _Static(prepared, feeds, calib, self.method, loads)
        ops = STATIC_OPS if self.mode == "static" else DYNAMIC_OPS
        candidates = [n.name for n in model.graph.node if n.op_type in ops and _quantizable(n, model, self.mode)]
        pre = _sentinel_nodes(model, calib, candidates) if self.mode == "static" else {}
        ladder = Ladder(self, model, feeds, candidates, pre, meta, static_exclude=lambda: _sentinel_nodes(
            model, calib, [n.name for n in model.graph.node if n.op_type in STATIC_OPS]))
        attempts: list[dict[str, Any]] = []
        best: tuple[float, Path, Variant, dict[str, Any]] | None = None
        chosen = None
        for v in ladder:
            path = work / f"candidate-{len(attempts)}.onnx"
            build = static if (v.static or self.mode == "static") else dynamic
            built = build(v, path)
            if built is None:
                attempts.append({"variant": v.label, "result": f"not loadable: {build.last_error}"})
                ladder.failed(v, loaded=False)
                continue
            passed, summary, info = judge(g.artifact_for(src, path), built)
            attempts.append({"variant": v.label, "result": summary, **info})
            if best is None or g.score(info) > best[0]:
                best = (g.score(info), path, v, info)
            if passed:
                chosen = (path, v)
                break
            ladder.failed(v, loaded=True, path=path, score=g.score(info))
        if best is None:
            raise StageError(self.name, f"no quantized variant loads in {runtime_label(runtime)}: " + "; ".join(
                a["result"] for a in attempts)[:500], hint="try mode=dynamic, or skip -p quantize for this model")
        path, v = chosen if chosen else (best[1], best[2])
        self._describe(meta, model, path, v, static if (v.static or self.mode == "static") else dynamic, attempts)
        if chosen:
            meta["verdict"] = f"met the int8 tolerance with the {v.label} variant"
        else:
            meta["verdict"] = (f"no variant met the tolerance (tried {len(attempts)}); the best ({v.label}, "
                               f"cosine {best[3].get('cosine')}) is kept for inspection: validation will fail")
        final = g.finish(path, out_dir, work)
        return g.artifact_for(src, final, meta)

    def _describe(self, meta: dict[str, Any], model: Any, path: Path, v: Variant, build: Any,
                  attempts: list[dict[str, Any]]) -> None:
        """The chosen variant's settings, what it kept in fp32, the CPU it was validated on, and whether
        its int8 products are exact on every CPU (read back from the written file)."""
        onnx = require("onnx")
        meta.update(build.describe())
        meta["per_channel"] = v.per_channel
        meta["kept_fp32"] = [{"node": n, "op": _op(model, n), "why": w} for n, w in zip(v.exclude, v.why)]
        meta["attempts"] = attempts
        written = onnx.load(str(path))
        sat = saturation(written)
        target = TARGETS[self.target]
        meta["int8"] = {"target": target.name, "reduce_range": v.reduce_range, "why": target.why,
                        **({"static_remedy": True} if v.static else {}), **sat.to_json()}
        meta["cpu"] = cpu_features()
        note = numerics_note(target, meta["cpu"], sat.free)
        if note:
            meta["int8"]["numerics_note"] = note
        ops = {n.op_type for n in written.graph.node}
        if not ops & {"MatMulInteger", "ConvInteger", "QuantizeLinear", "DynamicQuantizeLinear", "QLinearMatMul"}:
            meta["note"] = "nothing was quantized: no node the tool quantizes (MatMul/Gemm/Conv with a constant weight, ...)"


def _sentinel_nodes(model: Any, calib: list[dict[str, Any]], candidates: list[str]) -> dict[str, str]:
    """{node: why} for the candidates that read or write values of SENTINEL_ABS or more on ``calib``."""
    try:
        peak = g.activation_absmax(model, calib)
    except Exception:  # the analysis is a help; without it the remedies below still run
        return {}
    wanted = set(candidates)
    return {t.node.name: f"{t.side} {t.tensor} reaches |x| = {t.peak:.3g} (a sentinel such as an attention mask): "
                         "one int8 scale cannot hold it beside ordinary values"
            for t in g.nodes_touching(model, peak, SENTINEL_ABS, inclusive=True) if t.node.name in wanted}


def _op(model: Any, name: str) -> str:
    return next((n.op_type for n in model.graph.node if n.name == name), "?")


def _quantizable(node: Any, model: Any, mode: str) -> bool:
    """Dynamic mode quantizes only nodes with a constant weight (MatMulConstBOnly)."""
    if mode == "static":
        return True
    inits = {t.name for t in model.graph.initializer}
    return any(i in inits for i in node.input[:2])


class _Dynamic:
    """quantize_dynamic, with the weight type that loads here: QInt8, else QUInt8, else MatMul only."""

    SETTINGS = (("QInt8", None), ("QUInt8", None), ("QInt8", ("MatMul", "Gemm")))

    def __init__(self, prepared: Path, feeds: list[dict[str, Any]], loads: LoadTest) -> None:
        self.prepared, self.feeds, self.loads = prepared, feeds, loads
        self.setting: int | None = None
        self.fallbacks: list[str] = []
        self.last_error = ""

    def __call__(self, v: Variant, path: Path) -> list[dict[str, Any]] | None:
        q = require("onnxruntime.quantization")
        order = [self.setting] if self.setting is not None else range(len(self.SETTINGS))
        for i in order:
            wt, ops = self.SETTINGS[i]
            exclude = [n for name in v.exclude for n in (name, f"{name}_MatMul")]  # the tool renames Gemm
            try:
                with quiet():
                    q.quantize_dynamic(str(self.prepared), str(path), weight_type=getattr(q.QuantType, wt),
                                       per_channel=v.per_channel, nodes_to_exclude=exclude,
                                       reduce_range=v.reduce_range and wt == "QInt8",  # U8U8 cannot saturate
                                       op_types_to_quantize=list(ops) if ops else None,
                                       extra_options={"MatMulConstBOnly": True})
            except Exception as exc:
                self.last_error = f"quantize_dynamic({wt}) failed: {' '.join(str(exc).split())[:200]}"
                self.fallbacks.append(self.last_error)
                continue
            res = self.loads(path, self.feeds)
            if res.ok:
                self.setting = i
                return res.outputs
            self.last_error = f"{wt} weights{' on ' + '/'.join(ops) if ops else ''}: {res.error}"
            self.fallbacks.append(f"{self.last_error} -> next setting")
        return None

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"tool_call": "quantize_dynamic (MatMulConstBOnly)"}
        if self.setting is not None:
            wt, ops = self.SETTINGS[self.setting]
            out["weight_type"] = wt
            out["op_types"] = list(ops) if ops else "default (MatMul/Gemm, Conv, Gather, ...)"
        if self.fallbacks:
            out["fallbacks"] = self.fallbacks
        return out


class _Static:
    """quantize_static in QDQ form, int8 weights and activations, calibrated one sample at a time."""

    def __init__(self, prepared: Path, feeds: list[dict[str, Any]], calib: list[dict[str, Any]], method: str,
                 loads: LoadTest) -> None:
        self.prepared, self.feeds, self.calib, self.method, self.loads = prepared, feeds, calib, method, loads
        self.last_error = ""

    def __call__(self, v: Variant, path: Path) -> list[dict[str, Any]] | None:
        q = require("onnxruntime.quantization")
        method = {"minmax": q.CalibrationMethod.MinMax, "entropy": q.CalibrationMethod.Entropy,
                  "percentile": q.CalibrationMethod.Percentile}[self.method]
        try:
            with quiet():
                q.quantize_static(str(self.prepared), str(path), _reader(q, self.calib), quant_format=q.QuantFormat.QDQ,
                                  per_channel=v.per_channel, calibrate_method=method,
                                  activation_type=q.QuantType.QInt8, weight_type=q.QuantType.QInt8,
                                  nodes_to_exclude=list(v.exclude), reduce_range=v.reduce_range,
                                  extra_options={"CalibStridedMinMax": 1})
        except Exception as exc:
            self.last_error = f"quantize_static failed: {' '.join(str(exc).split())[:200]}"
            return None
        res = self.loads(path, self.feeds)
        if not res.ok:
            self.last_error = res.error or "?"
            return None
        return res.outputs

    def describe(self) -> dict[str, Any]:
        return {"tool_call": "quantize_static (QDQ, int8 activations and weights)"}


def _reader(q: Any, feeds: list[dict[str, Any]]) -> Any:
    class Reader(q.CalibrationDataReader):
        """Feeds samples one at a time; ``set_range`` lets the tool calibrate in strides."""

        def __init__(self) -> None:
            self.set_range(0, len(feeds))

        def __len__(self) -> int:
            return len(feeds)

        def set_range(self, start_index: int, end_index: int) -> None:
            self._it = iter(feeds[start_index:end_index])

        def get_next(self) -> dict[str, Any] | None:
            return next(self._it, None)

    return Reader()


PASSES = (Quantize,)
