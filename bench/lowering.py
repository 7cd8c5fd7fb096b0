"""The own ONNX -> TensorFlow lowering against onnx2tf (issue 13), in one process, on the same ONNX
files: the onnx->tf stage's wall time (conversion plus its self-check against onnxruntime, both
converters alike; frameworks already imported), the TF.js wasm latency of the model each one's
graph becomes at batch 1, the Transposes in that TF.js graph, and whether dynamic dims stayed.

    python -m bench.lowering [CASE...]

Targets: conversion wall time at most 0.5x onnx2tf's; TF.js wasm latency at most 1.0x.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

WALL_TARGET, LATENCY_TARGET = 0.5, 1.0
#: name -> (builder, --input specs): the CNN fixtures, the transformer block, the tiny BERT, a MobileNet
CASES: dict[str, tuple[str, tuple[str, ...]]] = {
    "cnn": ("fixtures.torch_models:cnn", ("x:batch,3,32,32",)),
    "dwcnn": ("fixtures.torch_models:dwcnn", ("x:batch,3,32,32",)),
    "transformer": ("fixtures.torch_models:transformer", ("x:batch,seq,32",)),
    "tiny_bert": ("fixtures.hf_models:tiny_bert", ("input_ids:batch,seq:int64:0..100", "attention_mask:batch,seq:int64:0..2")),
    "mobilenet": ("bench.tfjs_chain:mobilenet", ("x:batch,3,224,224",)),
}
SEQ = 16  # the size of a dynamic dim other than the batch, where onnx2tf did not fix one


def run(tmp: Path, cases: dict[str, tuple[str, tuple[str, ...]]] | None = None) -> dict[str, Any]:
    results = {name: run_case(name, builder, inputs, tmp / name) for name, (builder, inputs) in (cases or CASES).items()}
    wall = [r["ratio"]["wall"] for r in results.values() if r["ratio"]["wall"] is not None]
    lat = [r["ratio"]["latency"] for r in results.values() if r["ratio"]["latency"] is not None]
    results["summary"] = {"wall_ratio_median": _r(statistics.median(wall)) if wall else None,
                          "latency_ratio_median": _r(statistics.median(lat)) if lat else None,
                          "wall_target": WALL_TARGET, "latency_target": LATENCY_TARGET}
    return results


def run_case(name: str, builder: str, inputs: tuple[str, ...], root: Path) -> dict[str, Any]:
    import converter
    from converter.formats.tf.from_onnx import OnnxToTf
    from converter.formats.tfjs.from_tf import TfToTfjs

    converter.export(builder, to="onnx", out_dir=root / "onnx", inputs=list(inputs), check=False, force=True)
    src = converter.load(str(root / "onnx" / "model.onnx"))
    out: dict[str, Any] = {}
    for conv in ("onnx2tf", "own"):
        (root / conv / "tf").mkdir(parents=True)
        (root / conv / "tfjs").mkdir()
        t0 = time.perf_counter()
        tf_art = OnnxToTf(onnx_to_tf=conv).run(src, root / conv / "tf")
        seconds = time.perf_counter() - t0
        tfjs_art = TfToTfjs().run(tf_art, root / conv / "tfjs")
        out[conv] = {"seconds": _r(seconds), "converter": tf_art.meta.get("converter"),
                     "fixed_shape": tf_art.meta.get("fixed_shape"), "artifact": tfjs_art}
    feed = _feed(src, out["onnx2tf"]["fixed_shape"] or {})
    from converter.formats import tfjs

    for conv in ("onnx2tf", "own"):
        art = out[conv].pop("artifact")
        try:
            out[conv]["tfjs_ms"] = _r(tfjs.latency_ms(art, [feed], runs=20))
        except Exception as exc:  # a model that does not run at this feed: said, not timed
            out[conv]["tfjs_ms"], out[conv]["error"] = None, str(exc)[:300]
        out[conv]["transposes"] = tfjs.op_counts(art).get("Transpose", 0)
    own, ref = out["own"], out["onnx2tf"]
    latency = own["tfjs_ms"] / ref["tfjs_ms"] if own["tfjs_ms"] and ref["tfjs_ms"] else None
    out["ratio"] = {"wall": _r(own["seconds"] / ref["seconds"]), "latency": None if latency is None else _r(latency)}
    out["feed"] = {k: list(v.shape) for k, v in feed.items()}
    return out


def _feed(src: Any, fixed: dict[str, list[Any]]) -> dict[str, Any]:
    """One seeded sample at batch 1: onnx2tf's fixed sizes where it fixed some, else SEQ."""
    from converter.core import TensorSpec
    from converter.parity.inputs import make_feeds

    specs = []
    for s in src.inputs:
        dims = list(fixed.get(s.name) or s.shape)
        dims = [d if isinstance(d, int) else (1 if i == 0 else SEQ) for i, d in enumerate(dims)]
        specs.append(TensorSpec(s.name, tuple(dims), s.dtype, s.layout, s.int_range))
    return make_feeds(specs, samples=1, seed=0)[0]


def show(results: dict[str, Any]) -> None:
    print("\nONNX -> TF: own lowering vs onnx2tf (stage wall s incl. self-check; TF.js wasm ms at batch 1)")
    print(f"{'case':12} {'onnx2tf s':>9} {'own s':>7} {'ratio':>6} {'onnx2tf ms':>10} {'own ms':>8} {'ratio':>6}"
          f" {'T(o2t)':>6} {'T(own)':>6}  onnx2tf fixed")
    for name, r in results.items():
        if name == "summary":
            continue
        o, w = r["onnx2tf"], r["own"]
        print(f"{name:12} {o['seconds']:9.2f} {w['seconds']:7.2f} {r['ratio']['wall']:6.2f} {_f(o['tfjs_ms']):>10}"
              f" {_f(w['tfjs_ms']):>8} {_f(r['ratio']['latency']):>6} {o['transposes']:6} {w['transposes']:6}  "
              f"{o['fixed_shape'] or '-'}")
        for conv in ("onnx2tf", "own"):
            if r[conv].get("error"):
                print(f"  {conv} did not run in TF.js at {r['feed']}: {r[conv]['error']}")
    s = results["summary"]
    print(f"median ratios: wall {s['wall_ratio_median']} (target <= {WALL_TARGET}), "
          f"TF.js latency {s['latency_ratio_median']} (target <= {LATENCY_TARGET})")


def _f(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def _r(x: float) -> float:
    return round(x, 4)


def main(argv: list[str] | None = None) -> int:
    names = (argv if argv is not None else sys.argv[1:]) or list(CASES)
    with tempfile.TemporaryDirectory() as tmp:
        show(run(Path(tmp), {n: CASES[n] for n in names}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
