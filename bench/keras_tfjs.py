"""Keras -> TF.js: convertkit (export + validation in TF.js on Node) against the bare
`tensorflowjs_converter` CLI call a user runs today, which validates nothing.

Target (issue #3): convertkit's export with validation costs no more wall time than the bare
converter call. Cases: the tf_keras CNN (.h5) to layers and to graph format, and the Keras 3
two-input model (.keras) to layers format.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

CASES = (  # (fixture, form, tfjs format, tensorflowjs_converter --input_format)
    ("keras_cnn", "h5", "layers", "keras"),
    ("keras_cnn", "h5", "graph", "keras"),
    ("keras_two_inputs", "keras", "layers", "keras_keras"),  # the CLI converts .keras to layers only
)


def run(measure: Any, repeat: int, tmp: Path) -> dict[str, Any]:
    from fixtures.build_tf import build

    py = Path(sys.executable)
    fixtures = build(tmp / "fixtures", sorted({c[0] for c in CASES}))
    results = {}
    for name, form, fmt, input_format in CASES:
        src = fixtures[name][form]
        out = tmp / f"{name}-{fmt}"
        bare = measure([str(py.parent / "tensorflowjs_converter"), "--input_format", input_format,
                        "--output_format", f"tfjs_{fmt}_model", str(src), str(out / "bare")], repeat)
        ck = measure([str(py.parent / "convertkit"), "export", str(src), "--to", "tfjs", "--tfjs-format", fmt,
                      "-o", str(out / "ck"), "--force"], repeat)
        report = json.loads((out / "ck" / "report.json").read_text())
        ratio = ck["seconds"] / bare["seconds"]
        results[f"{name}.{form} -> tfjs {fmt}"] = {
            "tensorflowjs_converter (no validation)": bare, "convertkit (export + validate in TF.js)": ck,
            "ratio": ratio, "met": ratio <= 1.0, "parity_verdict": report["verdict"],
            "target": "convertkit with validation <= 1.0x the bare tensorflowjs_converter call"}
    return results


def show(results: dict[str, Any]) -> None:
    for case, r in results.items():
        print(f"\nKeras -> TF.js: {case} (median wall s, peak RSS of the process tree MiB)")
        for key in ("tensorflowjs_converter (no validation)", "convertkit (export + validate in TF.js)"):
            print(f"  {key:42s} {r[key]['seconds']:7.2f} s {r[key]['peak_tree_mib']:8.0f} MiB")
        print(f"  ratio: {r['ratio']:.2f} (target <= 1.0: {'MET' if r['met'] else 'MISSED'}); parity {r['parity_verdict']}")
