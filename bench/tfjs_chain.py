"""PyTorch -> TF.js: one convertkit command (export through ONNX and TensorFlow, the torch half in a
child process that exits before TensorFlow loads, validation in TF.js on Node included) against
the manual chain a user runs today as three processes: a script with ``torch.onnx.export``, the
``onnx2tf`` CLI, and ``tensorflowjs_converter``. Wall time and peak
RSS for both (the chain: each step, their sum, its worst step), and parity against torch for
both: the chain's TF.js model is run through convertkit's TfjsRunner, its feeds laid out as
onnx2tf's CLI left the inputs (channels-last by default).

    python -m bench.tfjs_chain [--out out/bench] [--repeat 1] [CASE...]

``--repeat N`` runs N rounds, each the chain's three steps then convertkit, back to back.

``python -m bench.tfjs_chain export-onnx BUILDER OUT.onnx SPEC...`` is the chain's first step.

Targets (issue #4): convertkit with validation at most 0.3x the chain's wall time (the median over
rounds of convertkit / that round's chain), and a peak
memory no higher than the chain's worst step. Add a case to CASES (a tiny BERT, ...) by its builder
and its ``--input`` specs.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

WALL_RATIO_TARGET = 0.3


@dataclass(frozen=True)
class Case:
    builder: str  # package.module:callable returning the nn.Module
    inputs: tuple[str, ...]  # convertkit --input specs; the manual chain exports the same shapes


CASES: dict[str, Case] = {
    "cnn": Case("fixtures.torch_models:cnn", ("x:batch,3,32,32",)),
    # onnx2tf converts an attention block at static shapes only (convertkit falls back to them itself); at
    # 8 tokens of 4 heads x 8 dims its axis guesses go wrong unless convertkit pins them
    "transformer": Case("fixtures.torch_models:transformer", ("x:1,8,32",)),
    # a real-sized image model (MobileNetV2's shape, 3.5 M parameters), where conversion work shows
    "mobilenet": Case("bench.tfjs_chain:mobilenet", ("x:batch,3,224,224",)),
    # Hugging Face BERT (tiny, two int64 inputs), at the static shapes onnx2tf converts
    "tiny_bert": Case("fixtures.hf_models:tiny_bert", ("input_ids:1,16:int64:0..100", "attention_mask:1,16:int64:0..2")),
}


def run(measure: Any, repeat: int, tmp: Path, cases: dict[str, Case] | None = None) -> dict[str, Any]:
    """``measure(cmd, repeat, cwd=..., env=...) -> {"seconds", "peak_mib", ...}`` (bench.run's)."""
    py = Path(sys.executable)
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PATH": f"{py.parent}{os.pathsep}{os.environ.get('PATH', '')}",  # onnx2tf runs `onnxsim`
           "PYTHONPATH": str(root), "TF_ENABLE_ONEDNN_OPTS": "0", "TF_CPP_MIN_LOG_LEVEL": "2"}  # as a user must
    return {name: run_case(measure, case, repeat, tmp / f"chain-{name}", env) for name, case in (cases or CASES).items()}


def run_case(measure: Any, case: Case, repeat: int, work: Path, env: dict[str, str]) -> dict[str, Any]:
    py = Path(sys.executable)
    work.mkdir(parents=True, exist_ok=True)
    exported, onnx_path, saved, web = work / "exported.onnx", work / "model.onnx", work / "saved_model", work / "tfjs"

    def fresh_onnx() -> None:  # onnx2tf overwrites its input with its simplified model: start each run alike
        shutil.rmtree(saved, ignore_errors=True)
        shutil.copyfile(exported, onnx_path)

    out = work / "convertkit"
    jobs = {
        "1 torch.onnx.export script": lambda: measure(
            [str(py), "-m", "bench.tfjs_chain", "export-onnx", case.builder, str(exported), *case.inputs], 1, env=env),
        "2 onnx2tf CLI": lambda: measure([str(py.parent / "onnx2tf"), "-i", str(onnx_path), "-o", str(saved)], 1,
                                         cwd=work, env=env, before=fresh_onnx),
        "3 tensorflowjs_converter": lambda: measure(
            [str(py.parent / "tensorflowjs_converter"), "--input_format", "tf_saved_model", str(saved), str(web)],
            1, env=env, before=lambda: shutil.rmtree(web, ignore_errors=True)),
        "convertkit": lambda: measure([str(py.parent / "convertkit"), "export", case.builder,
                                       *(a for spec in case.inputs for a in ("-i", spec)), "--to", "tfjs", "-o",
                                       str(out), "--force"], 1, env=env),
    }
    rounds = interleaved(jobs, repeat)
    ck, steps = rounds.pop("convertkit"), rounds
    chain_s = sum(s["seconds"] for s in steps.values())
    worst_mib = max(s["peak_tree_mib"] for s in steps.values())  # whole process trees (onnx2tf runs onnxsim)
    # each round's convertkit run against that round's chain: a drift of the machine's speed (seen here:
    # 30% within minutes) moves both sides of one round alike
    round_ratios = [c / sum(s["runs"][i] for s in steps.values()) for i, c in enumerate(ck["runs"])]
    ratio = statistics.median(round_ratios)
    report = json.loads((out / "report.json").read_text())
    return {
        "manual chain": {**steps, "total_seconds": chain_s, "worst_step_peak_mib": worst_mib,
                         "parity": chain_parity(case, web)},
        "convertkit (validated in TF.js)": ck,
        "convertkit parity": {"verdict": report["verdict"],
                              "max_abs": max((o["max_abs"] or 0.0) for o in report["parity"]["outputs"]),
                              "notes": report["parity"]["notes"]},
        "fixed_shape": report["stages"][1]["notes"].get("fixed_shape"),
        "ratio_wall": ratio, "round_ratios": [round(r, 3) for r in round_ratios],
        "ratio_peak": ck["peak_tree_mib"] / worst_mib,
        "target": f"wall (median over rounds of convertkit / that round's chain) <= {WALL_RATIO_TARGET}x; "
                  f"peak memory (process tree, Node included) <= the "
                  f"chain's worst step",
        "met_wall": ratio <= WALL_RATIO_TARGET, "met_peak": ck["peak_tree_mib"] <= worst_mib}


def interleaved(jobs: dict[str, Callable[[], dict[str, Any]]], repeat: int) -> dict[str, dict[str, Any]]:
    """Each job once per round (one run each: ``measure(cmd, 1)``), ``repeat`` rounds; per job the
    median time, the largest peaks, and every round's time in order."""
    got: dict[str, list[dict[str, Any]]] = {k: [] for k in jobs}
    for _ in range(repeat):
        for name, job in jobs.items():
            got[name].append(job())
    return {name: {"seconds": statistics.median(r["seconds"] for r in runs),
                   "peak_mib": max(r["peak_mib"] for r in runs),
                   "peak_tree_mib": max(r["peak_tree_mib"] for r in runs),
                   "runs": [r["runs"][0] for r in runs]} for name, runs in got.items()}


def chain_parity(case: Case, web: Path) -> dict[str, Any]:
    """The manual chain's TF.js model against torch, on convertkit's seeded samples of the static
    sizes the chain exported (inputs laid out as that model takes them)."""
    import converter
    from converter.core import FP32
    from converter.formats.tfjs.runner import TfjsRunner
    from converter.parity.compare import compare
    from converter.parity.inputs import make_feeds, parse_input_spec
    from converter.parity.validate import run as run_outputs

    specs = [parse_input_spec(s) for s in case.inputs]
    feeds = make_feeds(specs, samples=3, seed=0)
    feeds = [f for f in feeds if all(f[s.name].shape == feeds[0][s.name].shape for s in specs)]
    refs = run_outputs(converter.load(case.builder).with_(inputs=tuple(specs)), feeds)
    model = converter.load(str(web))
    layouts = []
    try:
        with TfjsRunner(model) as runner:
            gots = []
            for f in feeds:
                laid = {}
                by_name = {t.name: t for t in model.inputs}
                pairs = [(s, by_name[s.name]) for s in specs] if all(s.name in by_name for s in specs) \
                    else list(zip(specs, model.inputs))
                for spec, tfjs_spec in pairs:
                    arr = f[spec.name]
                    perm = _perm(arr.shape, tfjs_spec.shape)
                    laid[tfjs_spec.name] = arr.transpose(perm) if perm else arr
                    if perm and len(layouts) < len(specs):
                        layouts.append(f"{spec.name}: transposed {list(perm)} (onnx2tf's channels-last input)")
                gots.append(runner.infer(laid))
    except Exception as exc:  # the chain's model may not run at all: that is a result too
        return {"verdict": "ERROR", "message": str(exc)[:300]}
    report = compare(refs, gots, FP32)
    return {"verdict": "PASSED" if report else "FAILED",
            "max_abs": max((o.max_abs or 0.0) for o in report.outputs) if report.outputs else None,
            "samples": len(feeds), "notes": [*layouts, *report.notes], "summary": report.summary()}


def _perm(shape: tuple[int, ...], want: Any) -> tuple[int, ...] | None:
    """How the chain's model wants an array of ``shape``: as is, or channels-last (onnx2tf's default)."""
    if want is None or len(want) != len(shape):
        return None
    last = (0, *range(2, len(shape)), 1) if len(shape) >= 3 else None

    def fits(p: tuple[int, ...]) -> bool:
        return all(w is None or w == shape[i] for i, w in zip(p, want))

    ident = tuple(range(len(shape)))
    if last and fits(last) and not fits(ident):
        return last
    if last and fits(last) and fits(ident) and len(set(shape[1:])) < len(shape) - 1:
        return last  # ambiguous sizes: onnx2tf's CLI transposes 3-D to 5-D inputs by default
    return None


def mobilenet() -> Any:
    """A seeded MobileNetV2-shaped network (inverted residuals, BatchNorm, ReLU6; 3.5 M parameters)."""
    import torch
    from torch import nn

    def conv_bn(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, act: bool = True) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout),
                *([nn.ReLU6()] if act else [])]

    class Block(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
            super().__init__()
            mid = cin * expand
            self.residual = stride == 1 and cin == cout
            self.body = nn.Sequential(*(conv_bn(cin, mid, 1) if expand != 1 else []), *conv_bn(mid, mid, 3, stride, mid),
                                      *conv_bn(mid, cout, 1, act=False))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + self.body(x) if self.residual else self.body(x)

    torch.manual_seed(11)
    layers: list[nn.Module] = [*conv_bn(3, 32, 3, 2)]
    cin = 32
    for expand, cout, repeats, stride in ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                                          (6, 160, 3, 2), (6, 320, 1, 1)):
        for i in range(repeats):
            layers.append(Block(cin, cout, stride if i == 0 else 1, expand))
            cin = cout
    model = nn.Sequential(*layers, *conv_bn(cin, 1280, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(1280, 1000))
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0.0, 0.1)
                m.running_mean.normal_(0.0, 0.1)
                m.running_var.uniform_(0.5, 2.0)
    return model.eval()


def show(results: dict[str, Any]) -> None:
    for name, r in results.items():
        chain = r["manual chain"]
        print(f"\nPyTorch -> TF.js: {name} (median wall s, peak RSS of the process tree MiB)")
        for step in [k for k in chain if k[0].isdigit()]:
            print(f"  chain {step:34s} {chain[step]['seconds']:7.2f} s {chain[step]['peak_tree_mib']:8.0f} MiB")
        parity = chain["parity"]
        said = f"max abs {parity['max_abs']:.3g}" if parity["verdict"] == "PASSED" else \
            parity.get("summary") or parity.get("message")
        print(f"  chain total / worst step                 {chain['total_seconds']:7.2f} s "
              f"{chain['worst_step_peak_mib']:8.0f} MiB   parity {parity['verdict']} ({said})")
        ck = r["convertkit (validated in TF.js)"]
        print(f"  convertkit (validated in TF.js)          {ck['seconds']:7.2f} s {ck['peak_tree_mib']:8.0f} MiB   "
              f"parity {r['convertkit parity']['verdict']} (max abs {r['convertkit parity']['max_abs']:.3g})")
        print(f"  wall ratio {r['ratio_wall']:.2f}, median of rounds {r['round_ratios']} (target <= {WALL_RATIO_TARGET}: "
              f"{'MET' if r['met_wall'] else 'MISSED'}); peak ratio {r['ratio_peak']:.2f} "
              f"(target <= 1: {'MET' if r['met_peak'] else 'MISSED'})")


def export_onnx(builder: str, out: str, *specs: str) -> None:
    """The chain's first step, the script a user writes: torch.onnx.export (dynamo; the dims the
    specs name are dynamic), then one onnxruntime run to see that it loads."""
    import importlib

    import onnxruntime as ort
    import torch

    from converter.parity.inputs import make_feeds, parse_input_spec

    model = getattr(importlib.import_module(builder.split(":")[0]), builder.split(":")[1])()
    parsed = [parse_input_spec(s) for s in specs]
    example = make_feeds(parsed, samples=1)[0]
    dims: dict[str, Any] = {}
    dyn = tuple({i: dims.setdefault(d, torch.export.Dim(d, min=1)) for i, d in enumerate(p.shape) if isinstance(d, str)}
                for p in parsed)
    torch.onnx.export(model, tuple(torch.from_numpy(example[p.name]) for p in parsed), out, dynamo=True,
                      external_data=False, input_names=[p.name for p in parsed], dynamic_shapes=dyn, opset_version=18)
    ort.InferenceSession(out, providers=["CPUExecutionProvider"]).run(None, example)


def main(argv: list[str] | None = None) -> int:
    import argparse
    import tempfile

    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["export-onnx"]:
        export_onnx(*argv[1:])
        return 0

    from bench.run import measure

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="out/bench")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("cases", nargs="*", help=f"cases to run (default: all of {', '.join(CASES)})")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cases = {k: CASES[k] for k in args.cases} if args.cases else CASES
    with tempfile.TemporaryDirectory() as tmp:
        results = run(measure, args.repeat, Path(tmp), cases)
    show(results)
    (out / "tfjs_chain.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(f"\nresults written to {out / 'tfjs_chain.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

