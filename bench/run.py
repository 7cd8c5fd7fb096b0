"""convertkit benchmarks (not timed tests). Prints tables and writes OUT/results.json.

    python -m bench.run [--out out/bench] [--repeat 3] [--chain-repeat 1]

Targets:
- CLI start-up: `convertkit --help` under 0.3 s.
- torch -> ONNX: convertkit's export without validation within 1.15x of the plain
  torch.onnx.export + onnxruntime script.
- Keras -> TF.js (bench/keras_tfjs.py): export with validation in TF.js costs no more wall time
  than the bare tensorflowjs_converter call.
- PyTorch -> TF.js (bench/tfjs_chain.py): with validation at most 0.3x the manual torch.onnx /
  onnx2tf / tensorflowjs_converter chain, peak memory no higher than the chain's worst step.
- int8 on a MiniLM-shaped encoder (bench/int8_encoder.py): cosine >= 0.99, onnxruntime speed-up
  >= 1.8x at 8 x 128 tokens, file <= 0.30x; the CPU's int8 flags are recorded (machine.cpu_int8_flags).
- TF.js uint8 weight map on MobileNetV2-shaped PyTorch models (bench/tfjs_quant.py): cosine >= 0.995,
  top-1 >= 0.98 on clear decisions, weight bytes <= 0.30x of fp32.
- passes (bench/passes.py): int8 <= 0.27x and fp16 <= 0.51x of the fp32 file for weight-dominated
  models; int8 dynamic onnxruntime latency on the tiny BERT <= 0.8x fp32 at batch 8.
- onnxruntime-web (bench/ort_web.py): wasm latency at batch 1 on the CNN beside onnxruntime's, the
  runtime's start and the kernel preflight's cost (recorded, no target).
- browser-side latency (bench/browser_latency.py): TF.js webgl/wasm and onnxruntime-web wasm in
  headless Chromium beside TF.js wasm and onnxruntime-web under Node, batch 1, on the CNN and a
  MobileNetV2-shaped model (recorded, no target; webgl is SwiftShader here: no GPU).
- `convertkit run` (bench/pipeline_cache.py): an unchanged pipeline's rerun from the cache >= 10x
  faster than the first run, byte-identical artifacts.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

PY = sys.executable
CASES = {"cnn": "x:batch,3,32,32", "transformer": "x:batch,seq,32"}
HELP_TARGET_S = 0.3
EXPORT_RATIO_TARGET = 1.15


def measure(cmd: list[str], repeat: int, *, cwd: Path | None = None, env: dict | None = None,
            before: Callable[[], None] | None = None) -> dict:
    runs = []
    for _ in range(repeat):
        if before is not None:
            before()
        out = subprocess.run([PY, "-m", "bench.measure", *cmd], capture_output=True, text=True, check=True,
                             cwd=cwd, env=env)
        r = json.loads(out.stdout)
        if r["rc"] != 0:
            raise SystemExit(f"benchmark command failed ({r['rc']}): {' '.join(cmd)}\n{r['stderr_tail']}")
        runs.append(r)
    return {"seconds": statistics.median(r["seconds"] for r in runs),
            "peak_mib": max(r["peak_mib"] for r in runs), "peak_tree_mib": max(r["peak_tree_mib"] for r in runs),
            "runs": [round(r["seconds"], 3) for r in runs]}


def bench_startup(repeat: int) -> dict:
    cli = [str(Path(PY).parent / "convertkit"), "--help"]
    help_ = measure(cli, repeat * 3)
    bare = measure([PY, "-c", "pass"], repeat * 3)
    return {"convertkit --help": help_, "python -c pass": bare,
            "help_overhead_s": help_["seconds"] - bare["seconds"],
            "target": f"convertkit --help < {HELP_TARGET_S} s", "met": help_["seconds"] < HELP_TARGET_S}


def bench_export(name: str, spec: str, repeat: int, tmp: Path) -> dict:
    builder = f"fixtures.torch_models:{name}"
    ck = [str(Path(PY).parent / "convertkit"), "export", builder, "-i", spec, "--force"]
    plain = measure([PY, "-m", "bench.plain_torch_onnx", builder, spec, str(tmp / f"{name}.onnx")], repeat)
    nocheck = measure([*ck, "-o", str(tmp / f"{name}-nocheck"), "--no-check"], repeat)
    full = measure([*ck, "-o", str(tmp / f"{name}-full")], repeat)
    report = json.loads((tmp / f"{name}-full" / "report.json").read_text())
    ratio = nocheck["seconds"] / plain["seconds"]
    return {"plain script (export + 1 ORT run)": plain, "convertkit --no-check": nocheck,
            "convertkit (export + validate)": full, "ratio_nocheck_vs_plain": ratio,
            "target": f"--no-check within {EXPORT_RATIO_TARGET}x of the plain script",
            "met": ratio <= EXPORT_RATIO_TARGET, "parity_verdict": report["verdict"],
            "exporter": report["stages"][0]["notes"].get("exporter")}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="out/bench")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--chain-repeat", type=int, default=1,
                    help="rounds of the (slow) PyTorch -> TF.js comparison (each: the chain and convertkit once)")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from converter.passes.int8_target import cpu_features

    results: dict = {"machine": {"python": platform.python_version(), "cpus": _cpus(), "platform": platform.platform(),
                                 "cpu_int8_flags": cpu_features()["flags"]}}
    results["startup"] = bench_startup(args.repeat)
    _print_startup(results["startup"])
    with tempfile.TemporaryDirectory() as tmp:
        results["torch_to_onnx"] = {}
        for name, spec in CASES.items():
            r = bench_export(name, spec, args.repeat, Path(tmp))
            results["torch_to_onnx"][name] = r
            _print_export(name, r)
        from bench import keras_tfjs, passes, tfjs_chain

        results["keras_to_tfjs"] = keras_tfjs.run(measure, args.repeat, Path(tmp))
        keras_tfjs.show(results["keras_to_tfjs"])
        results["torch_to_tfjs"] = tfjs_chain.run(measure, args.chain_repeat, Path(tmp))
        tfjs_chain.show(results["torch_to_tfjs"])
        results["passes"] = passes.run(measure, args.repeat, Path(tmp))
        passes.show(results["passes"])
        from bench import int8_encoder

        results["int8_encoder"] = int8_encoder.run(Path(tmp) / "int8_encoder")
        int8_encoder.show(results["int8_encoder"])
        from bench import lowering

        results["onnx_to_tf_lowering"] = lowering.run(Path(tmp) / "lowering")
        lowering.show(results["onnx_to_tf_lowering"])
        from bench import tfjs_quant

        results["tfjs_uint8_map"] = tfjs_quant.run(Path(tmp) / "tfjs_quant")
        tfjs_quant.show(results["tfjs_uint8_map"])
        from bench import ort_web

        results["ort_web"] = ort_web.run(Path(tmp) / "ort_web")
        ort_web.show(results["ort_web"])
        from bench import browser_latency

        (Path(tmp) / "browser").mkdir()
        results["browser_latency"] = browser_latency.run(Path(tmp) / "browser")
        browser_latency.show(results["browser_latency"])
        from bench import pipeline_cache

        results["pipeline_cache"] = pipeline_cache.run(measure, args.repeat, Path(tmp))
        pipeline_cache.show(results["pipeline_cache"])
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nresults written to {out / 'results.json'}")
    return 0


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 0


def _print_startup(r: dict) -> None:
    print("\nCLI start-up (median)")
    print(f"  convertkit --help   {r['convertkit --help']['seconds']:.3f} s")
    print(f"  python -c pass      {r['python -c pass']['seconds']:.3f} s")
    print(f"  target: {r['target']}: {'MET' if r['met'] else 'MISSED'}")


def _print_export(name: str, r: dict) -> None:
    print(f"\ntorch -> ONNX: {name} (median wall s, peak RSS of the process tree MiB)")
    for key in ("plain script (export + 1 ORT run)", "convertkit --no-check", "convertkit (export + validate)"):
        print(f"  {key:36s} {r[key]['seconds']:7.2f} s {r[key]['peak_tree_mib']:8.0f} MiB")
    print(f"  ratio --no-check / plain: {r['ratio_nocheck_vs_plain']:.2f} "
          f"(target <= {EXPORT_RATIO_TARGET}: {'MET' if r['met'] else 'MISSED'}); "
          f"parity {r['parity_verdict']}, exporter {r['exporter']}")


if __name__ == "__main__":
    sys.exit(main())
