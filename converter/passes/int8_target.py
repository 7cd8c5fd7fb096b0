"""Which int8 settings a quantized ONNX model gets for the CPUs it will run on, and a check that the
written model cannot saturate onnxruntime's int8 kernels.

Why this matters: onnxruntime's x86 int8 GEMM for uint8 activations x int8 weights (U8S8) runs on
AVX2 and on AVX-512 without VNNI through ``vpmaddubsw``, which adds two u8*s8 products into a
SIGNED 16-BIT sum with saturation: 255 * 127 * 2 = 64770 does not fit in 32767. With VNNI
(``vpdpbusd``, 32-bit sums) or on ARM (``sdot``/``udot``) the same model computes exactly. So one
model, validated on a VNNI build machine, can be wrong on a user's AVX2 server. onnxruntime's
quantization guide gives two ways out: ``reduce_range`` (7-bit weights: 255 * 64 * 2 = 32640 fits)
or U8U8 (uint8 weights, computed through 16-bit widened products with no saturation). Both make the
integer products exact on every CPU, so validation on any machine holds on all of them.

Targets (``-p quantize:target=...``), as optimum's ``AutoQuantizationConfig`` presets set them:

- ``portable`` (default), ``avx2``, ``avx512``: int8 weights with ``reduce_range`` (or uint8 weights
  where int8 ones do not load): exact everywhere, a little coarser weights (7 bits).
- ``avx512_vnni``, ``arm64``: full 8-bit int8 weights. Exact on those CPUs, but they SATURATE on
  AVX2 / AVX-512-without-VNNI machines: ship such a model only to the named hardware.

Runtimes (``-p quantize:runtime=...``, by default what ``--onnx-runtime`` says): the runtime(s) every
candidate must open and run in, ``LoadTest``. onnxruntime-web's wasm build (1.31.1) runs ConvInteger
with int8 weights, which onnxruntime 1.23's CPU build does not: with ``web`` the pass can keep that
format, with ``both`` it falls back to one both run.

Stdlib at import time; the check takes the loaded ONNX model and numpy.
"""

from __future__ import annotations

import platform
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

#: the CPU flags that decide int8 numerics and speed (Linux /proc/cpuinfo names)
INT8_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8")
#: |q| of an int8 weight that keeps two u8 x s8 products inside int16: 2 * 255 * 64 = 32640 <= 32767
SAFE_INT8_WEIGHT = 64
INT16_MAX = 32767


@dataclass(frozen=True)
class Target:
    name: str
    reduce_range: bool  # 7-bit int8 weights
    why: str
    #: CPUs that compute this target's int8 products exactly ("any" when the settings cannot saturate)
    exact_on: str


TARGETS: dict[str, Target] = {t.name: t for t in (
    Target("portable", True, "7-bit int8 weights (reduce_range): no 16-bit saturation on AVX2 / AVX-512 "
           "without VNNI, exact on VNNI and ARM too", "any"),
    Target("avx2", True, "AVX2 sums u8*s8 pairs in int16 (vpmaddubsw): 7-bit weights keep them exact", "any"),
    Target("avx512", True, "AVX-512 without VNNI saturates like AVX2: 7-bit weights keep it exact", "any"),
    Target("avx512_vnni", False, "VNNI sums in int32 (vpdpbusd): full 8-bit weights are exact there",
           "CPUs with AVX-512 VNNI or AVX-VNNI"),
    Target("arm64", False, "ARM's dot-product instructions sum in int32: full 8-bit weights are exact there",
           "ARM64 CPUs"),
)}


@cache
def cpu_features() -> dict[str, Any]:
    """What this machine's CPU offers for int8: {machine, flags: [...]} (flags from /proc/cpuinfo)."""
    flags: set[str] = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                flags.update(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    machine = platform.machine().lower()
    return {"machine": machine, "flags": [f for f in INT8_FLAGS if f in flags]}


def saturates_here(features: Mapping[str, Any]) -> bool:
    """Whether onnxruntime's U8S8 kernels saturate on this CPU: x86 without any VNNI."""
    flags = set(features.get("flags", ()))
    x86 = features.get("machine") in ("x86_64", "amd64", "i686", "x86")
    return x86 and not flags & {"avx512_vnni", "avx_vnni", "amx_int8"}


def numerics_note(target: Target, features: Mapping[str, Any], saturation_free: bool) -> str | None:
    """A sentence when the CPU that validated the model and the target compute its int8 products
    differently; None when they compute them the same."""
    if saturation_free:
        return None  # exact integer products on every CPU: what was validated here holds everywhere
    if target.exact_on == "any":
        return (f"target {target.name}, yet some int8 GEMM weights use the full 8-bit range: those products "
                "saturate on AVX2 / AVX-512-without-VNNI CPUs (see saturation_free and worst_tensor)")
    if saturates_here(features):
        return (f"validated on a CPU without VNNI, whose int8 kernels saturate 8-bit weights; on the target "
                f"({target.exact_on}) the products are exact, so the numbers there differ from these")
    return (f"target {target.name}: 8-bit weights are exact on {target.exact_on} (as on this CPU) but saturate on "
            "AVX2 / AVX-512-without-VNNI CPUs; use target=portable to ship to unknown hardware")


@dataclass(frozen=True)
class Saturation:
    """The int8 weights of a quantized model against the 16-bit pair-sum bound."""

    free: bool
    int8_weights: int  # weight tensors feeding int8 GEMMs as int8
    uint8_weights: int  # ... as uint8 (U8U8: never saturates)
    max_abs_q: int  # the largest |q - zero_point| among the int8 ones
    worst: str | None = None  # the tensor with the largest |q - zero_point|

    def to_json(self) -> dict[str, Any]:
        return {"saturation_free": self.free, "int8_weight_tensors": self.int8_weights,
                "uint8_weight_tensors": self.uint8_weights, "max_abs_int8_weight": self.max_abs_q,
                **({"worst_tensor": self.worst} if self.worst else {})}


#: op -> (index of the quantized weight, index of its zero point) for the integer GEMMs onnxruntime runs
_GEMMS = {"MatMulInteger": (1, 3), "ConvInteger": (1, 3), "QLinearMatMul": (3, 5), "QLinearConv": (3, 5),
          "DynamicQuantizeMatMul": (1, 3)}
#: float ops whose QDQ-wrapped weights onnxruntime runs as integer GEMMs (QLinearMatMul, QLinearConv, ...)
_QDQ_GEMMS = ("MatMul", "Gemm", "Conv", "ConvTranspose")


def saturation(model: Any) -> Saturation:
    """Whether any integer GEMM of ``model`` (dynamic MatMulInteger/ConvInteger, or the QDQ form's
    DequantizeLinear'd weights that onnxruntime fuses into QLinear kernels) can overflow a 16-bit
    pair sum on AVX2: int8 weights must stay within |q - zp| <= 64; uint8 weights never saturate."""
    from onnx import numpy_helper

    inits = {t.name: t for t in model.graph.initializer}
    gemm_inputs = {i for n in model.graph.node if n.op_type in _QDQ_GEMMS for i in n.input[:2]}
    weights: list[tuple[str, str | None]] = []
    for node in model.graph.node:
        idx = _GEMMS.get(node.op_type)
        if idx is not None and len(node.input) > idx[0]:
            w, zp = node.input[idx[0]], node.input[idx[1]] if len(node.input) > idx[1] else None
            weights.append((w, zp or None))
        elif (node.op_type == "DequantizeLinear" and node.input[0] in inits  # QDQ: a constant weight ...
              and node.output[0] in gemm_inputs):  # ... that a GEMM reads (an Add's or Mul's constant is no GEMM)
            weights.append((node.input[0], node.input[2] if len(node.input) > 2 and node.input[2] else None))
    n8 = n_u8 = 0
    worst, worst_name = 0, None
    for w, zp in _unique(weights):
        if w not in inits:
            continue
        q = numpy_helper.to_array(inits[w])
        if q.dtype.kind == "u":
            n_u8 += 1
            continue
        if q.dtype.itemsize != 1:
            continue
        n8 += 1
        z = numpy_helper.to_array(inits[zp]).astype("int32") if zp in inits else 0
        m = int(abs(q.astype("int32") - (z.reshape(_zp_shape(z, q)) if getattr(z, "ndim", 0) else z)).max()) if q.size else 0
        if m > worst:
            worst, worst_name = m, w
    return Saturation(worst <= SAFE_INT8_WEIGHT, n8, n_u8, worst, worst_name)


def _zp_shape(z: Any, q: Any) -> tuple[int, ...]:
    """Per-channel zero points broadcast along the weight's channel axis (axis 0 for Conv, last for MatMul)."""
    if z.size == q.shape[0]:
        return (z.size,) + (1,) * (q.ndim - 1)
    return (1,) * (q.ndim - 1) + (z.size,)


def _unique(pairs: Iterable[tuple[str, str | None]]) -> list[tuple[str, str | None]]:
    return list(dict.fromkeys(pairs))


#: the runtimes a quantized candidate may have to load and run in (``-p quantize:runtime=...``)
RUNTIMES = ("python", "web", "both")
_RUNTIME_WHY = {
    "python": "every candidate was opened and run in onnxruntime (Python), the runtime that validates it",
    "web": "every candidate was opened and run in onnxruntime-web (wasm) after its kernel preflight, so no format "
           "it has no kernel for is kept (--onnx-runtime web)",
    "both": "every candidate was opened and run in onnxruntime (Python) and in onnxruntime-web (wasm, after its "
            "kernel preflight): only a format both run is kept (--onnx-runtime both)",
}


def runtime_label(runtime: str) -> str:
    return {"python": "onnxruntime", "web": "onnxruntime-web", "both": "onnxruntime and onnxruntime-web"}[runtime]


def runtime_of(check: Any, requested: str | None = None) -> str:
    """The runtime(s) a candidate must run in: those of the pipeline's check (``--onnx-runtime``; python
    without a check) and those ``requested`` (``-p quantize:runtime=``): web asked for while python
    validates is both, since the kept model must also pass the check."""
    options = getattr(getattr(check, "checker", None), "runner_options", None)
    validating = (options or {}).get("onnx_runtime") or "python"
    if requested is None or options is None:
        return requested or (validating if validating in RUNTIMES else "python")
    wanted = {rt for r in (requested, validating) for rt in (("python", "web") if r == "both" else (r,))}
    return "both" if len(wanted) == 2 else wanted.pop()


@dataclass(frozen=True)
class LoadTest:
    """Opens and runs a quantized candidate in the runtime(s) it must run in: onnxruntime in a child
    process (onnx_graph.probe) and/or onnxruntime-web (formats/onnx/web_runner.probe)."""

    runtime: str

    def __call__(self, path: Path, feeds: Any) -> Any:
        from . import onnx_graph as g

        res = None
        if self.runtime in ("python", "both"):
            (res,) = g.probe([path], feeds)
            if not res.ok:
                return res
        if self.runtime in ("web", "both"):
            from ..formats.onnx.web_runner import probe

            ok, error, outputs = probe(path, feeds)
            if not ok:
                return g.Probe(False, error)
            res = res or g.Probe(True, None, outputs)
        return res

    def describe(self) -> dict[str, Any]:
        return {"runtime": self.runtime, "why": _RUNTIME_WHY[self.runtime]}
