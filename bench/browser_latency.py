"""Browser-side latency at batch 1 (#16 part 4): TF.js on webgl and wasm and onnxruntime-web on wasm in
headless Chromium, beside the same runtimes under Node, for the fixture CNN and a MobileNetV2-shaped
model (bench.tfjs_chain:mobilenet, 224x224). The numbers a web developer asks for first.

Each figure is the median of RUNS calls after WARMUP calls (webgl compiles its shaders on the first
ones), timed where the model runs: the page's (or Node's) own clock from making the input tensors to
having the outputs' data back (``ms.total``), so the pipe or HTTP hop to Python is not counted. The
round trip from Python is recorded beside it (``*_wall_ms``). Chromium here has no GPU: webgl runs on
SwiftShader (software), which says nothing about a real GPU; wasm and cpu figures are representative
of a CPU of this class. onnxruntime-web runs single-threaded (numThreads = 1), TF.js wasm as its
build decides (no cross-origin isolation: no threads in the page).

    python -m bench.browser_latency [--out DIR] [--models cnn,mobilenet]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

RUNS = 15
WARMUP = 3
MODELS = {"cnn": ("fixtures.torch_models:cnn", "x:batch,3,32,32", (1, 3, 32, 32)),
          "mobilenet": ("bench.tfjs_chain:mobilenet", "x:batch,3,224,224", (1, 3, 224, 224))}


def _time(runner: Any, feed: dict[str, Any]) -> dict[str, float]:
    """Median in-runtime total and Python round trip (ms) over RUNS calls after WARMUP calls."""
    for _ in range(WARMUP):
        runner.infer(feed)
    inner, wall = [], []
    for _ in range(RUNS):
        t0 = time.perf_counter()
        runner.infer(feed)
        wall.append((time.perf_counter() - t0) * 1000)
        inner.append(float(runner.last_infer_ms.get("total", 0.0)))
    return {"ms": round(statistics.median(inner), 3), "wall_ms": round(statistics.median(wall), 3)}


def _runners(tfjs_dir: Path, onnx_path: Path) -> dict[str, Any]:
    """Each runtime's runner, by label (none entered yet)."""
    from converter.browser.runner import ChromiumOrtRunner, ChromiumTfjsRunner
    from converter.formats.onnx import FORMAT as ONNX
    from converter.formats.onnx.web_runner import OrtWebRunner
    from converter.formats.tfjs import FORMAT as TFJS
    from converter.formats.tfjs.runner import TfjsRunner
    from converter.core import Artifact

    tfjs, onnx = Artifact(TFJS, tfjs_dir), Artifact(ONNX, onnx_path)
    return {"node tfjs wasm": lambda: TfjsRunner(tfjs, backend="wasm"),
            "node ort-web wasm": lambda: OrtWebRunner(onnx),
            "chromium tfjs webgl": lambda: ChromiumTfjsRunner(tfjs, backend="webgl"),
            "chromium tfjs wasm": lambda: ChromiumTfjsRunner(tfjs, backend="wasm"),
            "chromium ort-web wasm": lambda: ChromiumOrtRunner(onnx)}


def run_model(name: str, tmp: Path) -> dict[str, Any]:
    import numpy as np

    from converter import api

    builder, spec, shape = MODELS[name]
    api.export(builder, to="tfjs", out_dir=tmp / f"{name}-tfjs", inputs=[spec], force=True, check=False)
    api.export(builder, to="onnx", out_dir=tmp / f"{name}-onnx", inputs=[spec], force=True, check=False)
    feed = {"x": np.random.default_rng(0).standard_normal(shape).astype(np.float32)}
    out: dict[str, Any] = {"input": list(shape)}
    for label, make in _runners(tmp / f"{name}-tfjs", tmp / f"{name}-onnx" / "model.onnx").items():
        t0 = time.perf_counter()
        with make() as runner:
            row = {"start_s": round(time.perf_counter() - t0, 2), **_time(runner, feed)}
            info = getattr(runner, "info", {})
            row.update({k: info[k] for k in ("precision", "flags") if info.get(k)})
        out[label] = row
    return out


def run(tmp: Path, models: tuple[str, ...] = tuple(MODELS)) -> dict[str, Any]:
    from converter.browser import chromium

    return {"chromium": chromium(), "runs": RUNS, "warmup": WARMUP,
            "models": {name: run_model(name, tmp) for name in models}}


def show(r: dict[str, Any]) -> None:
    print(f"\nbrowser-side latency at batch 1 (median of {r['runs']} after {r['warmup']} warm-up; ms in the runtime "
          f"/ Python round trip; {r['chromium']} headless, webgl on SwiftShader)")
    for name, rows in r["models"].items():
        print(f"  {name} {rows['input']}")
        for label, row in rows.items():
            if isinstance(row, dict):
                print(f"    {label:24s} {row['ms']:9.2f} ms  (round trip {row['wall_ms']:9.2f} ms, start {row['start_s']:.1f} s)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="out/bench")
    ap.add_argument("--models", default=",".join(MODELS))
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        r = run(Path(tmp), tuple(args.models.split(",")))
    show(r)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "browser_latency.json").write_text(json.dumps(r, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
