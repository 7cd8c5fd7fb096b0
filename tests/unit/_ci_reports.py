"""Summaries for the report writers' tests, built from REAL report dicts: a tiny ONNX MLP optimized
with the real int8 and fp16 passes (onnxruntime), a real failing validation (two different MLPs),
and the real one-line error of a corrupt model. ``twenty`` varies them into 20 rows."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from converter.ci.summary import ERROR, FAILED, PASSED, UNCHECKED, Row, Summary, overall_exit_code


@dataclass
class RealReports:
    int8: dict[str, Any]      # optimize -p quantize: PASSED, stages with gzip bytes and latency
    fp16: dict[str, Any]      # optimize -p fp16:block=relu: PASSED, one node kept in float32
    failed: dict[str, Any]    # validate mlp(seed 0) vs mlp(seed 1): FAILED, real parity numbers
    error: str                # the one-line error of a corrupt .onnx (exit 2)
    source_bytes: int


def build(tmp: Path) -> RealReports:
    from converter import api
    from converter.errors import ConvertkitError
    from tests.unit._onnx_models import mlp

    tmp.mkdir(parents=True, exist_ok=True)
    a, b = mlp(tmp / "mlp.onnx", seed=0), mlp(tmp / "other.onnx", seed=1)
    api.optimize(a, ["quantize"], tmp / "int8", samples=2)
    api.optimize(a, ["fp16:block=relu"], tmp / "fp16", samples=2)
    failed = json.loads(json.dumps(api.validate(a, b, samples=2).to_json()))  # as report.json holds it
    bad = tmp / "corrupt.onnx"
    bad.write_bytes(b"not an onnx model")
    try:
        api.optimize(bad, ["simplify"], tmp / "never")
        raise AssertionError("a corrupt model was optimized")
    except ConvertkitError as exc:
        error = exc.one_line()
    return RealReports(json.loads((tmp / "int8" / "report.json").read_text()),
                       json.loads((tmp / "fp16" / "report.json").read_text()), failed, error, a.stat().st_size)


def row(model: str, target: str, passes: list[str], report: dict[str, Any] | None, source_bytes: int,
        *, error: str | None = None, seconds: float = 1.0, cached: bool = False) -> Row:
    """A summary row as ``convertkit run`` fills it from an artifact's report.json."""
    if report is None:
        return Row(model, target, passes, ERROR, 2, seconds, cached, error=error)
    stages = report["stages"]
    parity = report["parity"] if "outputs" in report["parity"] else None
    outs = parity["outputs"] if parity else []
    cosines = [o["cosine"] for o in outs if o["cosine"] is not None]
    bad = [o for o in outs if o["status"] != "ok"]
    line = None if parity is None else (
        "parity FAILED: " + "; ".join(f"{o['name']}: {o['message']}" for o in bad) if bad
        else f"parity PASSED: {len(outs)} output(s), {parity['samples']} sample(s)")
    return Row(model, target, passes, report["verdict"], report["exit_code"], seconds, cached,
               artifact=f"{model}/{target}", bytes=stages[-1]["bytes_out"] if stages else source_bytes,
               source_bytes=source_bytes,
               latency_ms=next((s["latency_ms_out"] for s in reversed(stages) if s["latency_ms_out"]), None),
               parity=line, worst_cosine=min(cosines) if cosines else None,
               failing_outputs=[o["name"] for o in bad], report=report)


def unchecked(report: dict[str, Any]) -> dict[str, Any]:
    """The same artifact with validation skipped (validate = "none")."""
    out = copy.deepcopy(report)
    out.update(verdict=UNCHECKED, exit_code=0, parity={"skipped": True})
    return out


def vary(report: dict[str, Any], i: int) -> dict[str, Any]:
    """Another artifact's report: the real one with its numbers scaled (sizes, latency, errors)."""
    out = copy.deepcopy(report)
    for s in out["stages"]:
        for k in ("bytes_out", "gzip_bytes_out"):
            if s[k] is not None:
                s[k] = int(s[k] * (1 + i / 10))
        if s["latency_ms_out"] is not None:
            s["latency_ms_out"] = s["latency_ms_out"] * (1 + i)
    for o in (out["parity"].get("outputs") or []):
        if o["max_abs"] is not None:
            o["max_abs"] *= 1 + i / 20
    return out


def twenty(r: RealReports) -> Summary:
    """20 rows: 14 passed (int8, fp16, some cached), 3 failed, 2 errors, 1 not validated."""
    rows = []
    for i in range(20):
        name = f"model{i:02d}"
        if i in (3, 11, 17):
            rows.append(row(name, "onnx", [], vary(r.failed, i), r.source_bytes, seconds=0.5 + i))
        elif i in (5, 13):
            rows.append(row(name, "tfjs", ["quantize:dtype=uint8"], None, r.source_bytes, error=r.error))
        elif i == 8:
            rows.append(row(name, "onnx", ["quantize"], unchecked(r.int8), r.source_bytes))
        else:
            base, passes = (r.int8, ["quantize"]) if i % 2 else (r.fp16, ["fp16:block=relu"])
            rows.append(row(name, "onnx", passes, vary(base, i), r.source_bytes, seconds=1.5 * i, cached=i % 4 == 0))
    return Summary("models/pipeline.toml", rows, overall_exit_code([x.exit_code for x in rows]), 42.5,
                   {"python": "3.11", "convertkit": "0.1.0"})


VERDICTS = (PASSED, FAILED, ERROR, UNCHECKED)
