"""`convertkit run` and its cache: a pipeline of three PyTorch models (four artifacts: ONNX with
int8, TF.js, and two plain ONNX) run from an empty cache, then again unchanged (every artifact
restored from the cache), then with one model changed (only that one converted again).

Target (issue #15): the unchanged rerun at least 10x faster than the first run, with
byte-identical artifacts.

    python -c "import tempfile, pathlib; from bench.run import measure; from bench import pipeline_cache as b; \\
        b.show(b.run(measure, 1, pathlib.Path(tempfile.mkdtemp())))"
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

TARGET_SPEEDUP = 10.0
PIPELINE = """
[defaults]
samples = 2

[[model]]
name = "mlp"
source = "fixtures/mlp.pt2"
targets = ["onnx", "tfjs"]
[model.passes]
onnx = ["quantize"]

[[model]]
name = "cnn"
source = "fixtures/cnn.pt2"
atol = {cnn_atol}

[[model]]
name = "two_io"
source = "fixtures/two_io.pt2"
"""


def _digests(out: Path) -> dict[str, str]:
    return {p.relative_to(out).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(out.glob("*/*/**/*")) if p.is_file()}


def run(measure: Any, repeat: int, tmp: Path) -> dict[str, Any]:
    from fixtures.build import build

    root = tmp / "pipeline_cache"
    build(root / "fixtures", ["mlp", "cnn", "two_io"])
    pipeline = root / "models.toml"
    pipeline.write_text(PIPELINE.format(cnn_atol="1e-4"))
    cache, out = root / "cache", root / "out"
    env = {**os.environ, "CONVERTKIT_CACHE": str(cache)}
    cmd = [str(Path(sys.executable).parent / "convertkit"), "run", str(pipeline), "-o", str(out), "-q"]

    def fresh() -> None:
        shutil.rmtree(cache, ignore_errors=True)
        shutil.rmtree(out, ignore_errors=True)

    first = measure(cmd, repeat, env=env, before=fresh)
    made = _digests(out)
    cached = measure(cmd, repeat * 3, env=env)
    rows = json.loads((out / "summary.json").read_text())["rows"]
    identical = _digests(out) == made and all(r["cached"] for r in rows)
    pipeline.write_text(PIPELINE.format(cnn_atol="2e-4"))
    changed = measure(cmd, 1, env=env)
    rerun = [f"{r['model']}/{r['target']}" for r in json.loads((out / "summary.json").read_text())["rows"]
             if not r["cached"]]
    speedup = first["seconds"] / cached["seconds"]
    return {"first run (empty cache)": first, "unchanged rerun (from the cache)": cached,
            "one model changed": changed, "converted again after the change": rerun,
            "artifacts": len(made), "byte_identical": identical, "speedup": speedup,
            "target": f"unchanged rerun >= {TARGET_SPEEDUP:g}x faster, byte-identical",
            "met": speedup >= TARGET_SPEEDUP and identical}


def show(r: dict[str, Any]) -> None:
    print("\nconvertkit run: 3 models, 4 artifacts (median wall s, peak RSS of the process tree MiB)")
    for key in ("first run (empty cache)", "unchanged rerun (from the cache)", "one model changed"):
        print(f"  {key:34s} {r[key]['seconds']:7.2f} s {r[key]['peak_tree_mib']:8.0f} MiB")
    print(f"  converted again after changing cnn's atol: {', '.join(r['converted again after the change'])}")
    print(f"  speed-up {r['speedup']:.1f}x, byte-identical {r['byte_identical']} "
          f"(target: {r['target']}: {'MET' if r['met'] else 'MISSED'})")
