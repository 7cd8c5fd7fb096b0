"""onnxruntime-web (wasm EP, under Node) beside onnxruntime (Python, CPU EP) on the fixture CNN at
batch 1 (#16): the latency a JS app sees, the cost of starting the runtime, and the cost of the
kernel preflight cold (every signature probed) and from its cache.

Latency is the median of RUNS calls after one warm-up. For onnxruntime-web two figures: Node's own
timing of ``session.run`` plus reading the outputs (``node``), and the round trip from Python
(``wall``: also the frames over the pipe). onnxruntime-web runs single-threaded here
(``numThreads = 1``: no worker threads, as convertkit validates); onnxruntime Python uses its default
intra-op threads.

    python -m bench.ort_web [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

RUNS = 30


def _median_ms(fn: Any) -> float:
    fn()
    times = []
    for _ in range(RUNS):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return round(statistics.median(times), 3)


def run(tmp: Path) -> dict[str, Any]:
    import numpy as np

    from converter import api
    from converter.formats.onnx import load_proto, open_source
    from converter.formats.onnx.runner import OrtRunner
    from converter.formats.onnx.web_runner import OrtWebRunner, version
    from fixtures.build import build

    src = build(tmp / "fixtures", ["cnn"])["cnn"]["pt2"]
    report = api.export(str(src), to="onnx", out_dir=tmp / "cnn", force=True, runner_options={"onnx_runtime": "web"})
    artifact = open_source(str(tmp / "cnn" / "model.onnx"))
    feed = {"x": np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)}
    out: dict[str, Any] = {"model": "fixture cnn (batch 1, 3x32x32)", "ort_web": version(), "verdict": report.verdict}
    with OrtRunner(artifact) as r:
        out["onnxruntime_python_ms"] = _median_ms(lambda: r.infer(feed))
    t0 = time.perf_counter()
    with OrtWebRunner(artifact) as w:
        out["ort_web_start_s"] = round(time.perf_counter() - t0, 3)  # Node + wasm init + preflight + load
        node_ms: list[float] = []

        def call() -> None:
            w.infer(feed)
            node_ms.append(w.last_infer_ms.get("total", 0.0))

        out["ort_web_wall_ms"] = _median_ms(call)
        out["ort_web_node_ms"] = round(statistics.median(node_ms[1:]), 3)
    out.update(_preflight_cost(load_proto(artifact.path, weights=False), tmp / "cache"))
    return out


def _preflight_cost(model: Any, cache: Path) -> dict[str, Any]:
    """The preflight in a fresh Node (wasm init included) with an empty cache, then again from it."""
    from converter.formats.onnx.web_kernels import preflight
    from converter.formats.onnx.web_runner import start_node, version

    old = os.environ.get("CONVERTKIT_CACHE")
    os.environ["CONVERTKIT_CACHE"] = str(cache)
    node = start_node()
    out: dict[str, Any] = {}
    try:
        for label in ("preflight_cold_s", "preflight_cached_s"):
            t0 = time.perf_counter()
            p = preflight(model, node, version())
            out[label] = round(time.perf_counter() - t0, 3)
        out["preflight_signatures"] = p.checked
    finally:
        node.stop()
        if old is None:
            os.environ.pop("CONVERTKIT_CACHE", None)
        else:
            os.environ["CONVERTKIT_CACHE"] = old
    return out


def show(r: dict[str, Any]) -> None:
    print(f"\nonnxruntime-web {r['ort_web']} vs onnxruntime (Python) on the {r['model']}: median of {RUNS} (ms)")
    print(f"  onnxruntime (Python, CPU EP)               {r['onnxruntime_python_ms']:8.3f} ms")
    print(f"  onnxruntime-web (wasm, Node: run)          {r['ort_web_node_ms']:8.3f} ms")
    print(f"  onnxruntime-web (wasm, Python round trip)  {r['ort_web_wall_ms']:8.3f} ms")
    print(f"  runtime start (Node + wasm + preflight + load) {r['ort_web_start_s']:.2f} s; preflight of "
          f"{r['preflight_signatures']} signatures: cold {r['preflight_cold_s']:.3f} s, cached {r['preflight_cached_s']:.3f} s")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="out/bench")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        r = run(Path(tmp))
    show(r)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "ort_web.json").write_text(json.dumps(r, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
