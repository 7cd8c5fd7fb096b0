"""The run report: what was converted, by which stages, and whether it still computes the same.

``report.json`` follows SCHEMA (bumped on any incompatible change). The terminal gets a table.
"""

from __future__ import annotations

import json
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .core import StageRecord
from .deps import version
from .parity.compare import ParityReport

SCHEMA = "convertkit.report/1"
PASSED, FAILED, UNCHECKED = "PASSED", "FAILED", "UNCHECKED"
#: every library that touches an artifact (the report records them; convertkit run's cache keys on them)
_FRAMEWORKS = ("torch", "onnx", "onnxruntime", "onnxscript", "numpy", "tensorflow", "keras", "tf_keras", "tensorflowjs",
               "tf2onnx", "onnx2tf", "optimum", "optimum-onnx", "transformers", "onnxsim", "onnxconverter-common")


def environment() -> dict[str, Any]:
    env = {"python": platform.python_version(), "platform": platform.platform(), "convertkit": version("convertkit")}
    env.update({name: v for name in _FRAMEWORKS if (v := version(name))})
    return env


@dataclass
class RunReport:
    command: str
    source: dict[str, Any]
    target: str | None
    stages: list[StageRecord] = field(default_factory=list)
    parity: ParityReport | None = None
    inputs: list[dict[str, Any]] = field(default_factory=list)
    outputs: list[dict[str, Any]] = field(default_factory=list)
    artifact: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        if self.parity is None:
            return UNCHECKED
        return PASSED if self.parity else FAILED

    @property
    def exit_code(self) -> int:
        return 1 if self.verdict == FAILED else 0

    def to_json(self) -> dict[str, Any]:
        return {"schema": SCHEMA, "command": self.command, "verdict": self.verdict, "exit_code": self.exit_code,
                "source": self.source, "target": self.target, "artifact": self.artifact,
                "inputs": self.inputs, "outputs": self.outputs,
                "stages": [s.to_json() for s in self.stages],
                "parity": self.parity.to_json() if self.parity is not None else {"skipped": True},
                "notes": self.notes, "environment": environment()}

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_json(), indent=2, sort_keys=False) + "\n")


def render(report: RunReport, console: Any = None) -> None:
    """A readable summary on the terminal (stderr by default, so stdout stays clean for pipes)."""
    import sys

    from rich.console import Console
    from rich.markup import escape  # notes, names and messages carry brackets ("x[batch,4,32]") rich would eat
    from rich.table import Table

    # rich assumes 80 columns when stderr is not a terminal (CI logs): too narrow for the table
    console = console or Console(stderr=True, width=None if sys.stderr.isatty() else 140)
    if report.stages:
        st = Table(title="stages", title_justify="left", show_edge=False)
        for col in ("stage", "seconds", "bytes in", "bytes out", "gzip out", "latency ms", "ops", "notes"):
            st.add_column(col)
        for s in report.stages:
            notes = ", ".join(f"{k}={_note(v)}" for k, v in s.notes.items() if k != "fallback_reason" and _note(v))
            latency = "-" if s.latency_ms_out is None else f"{_f(s.latency_ms_in)} -> {_f(s.latency_ms_out)}"
            st.add_row(escape(s.stage), f"{s.seconds:.2f}", _n(s.bytes_in), _n(s.bytes_out), _n(s.gzip_bytes_out),
                       latency, escape(_ops(s)), escape(notes))
        console.print(st)
        for s in report.stages:
            if s.parity is not None and not s.parity.get("passed"):
                console.print(f"[yellow]after {escape(s.stage)}[/]: parity against the source already fails here")
    if report.parity is not None:
        pt = Table(title=f"parity ({report.parity.samples} samples; atol {report.parity.tolerance.atol:g}, "
                         f"rtol {report.parity.tolerance.rtol:g})", title_justify="left", show_edge=False)
        for col in ("output", "status", "max abs", "max rel", "mean abs", "p99 abs", "cosine", "top-1", "needs atol"):
            pt.add_column(col)
        for o in report.parity.outputs:
            style = "green" if o.passed else "bold red"
            pt.add_row(escape(o.name), f"[{style}]{o.status}[/]", _f(o.max_abs), _f(o.max_rel), _f(o.mean_abs),
                       _f(o.p99_abs), _f(o.cosine, ".6f"), _top1(o), _f(o.atol_needed))
        console.print(pt)
        for o in report.parity.failures():
            console.print(f"[bold red]{escape(o.name)}[/]: {escape(str(o.message))}")
        for n in report.parity.notes:
            console.print(f"note: {escape(n)}")
    for n in report.notes:
        console.print(f"note: {escape(n)}")
    color = {PASSED: "green", FAILED: "bold red", UNCHECKED: "yellow"}[report.verdict]
    where = f" -> {escape(report.artifact)}" if report.artifact else ""
    console.print(f"[{color}]{report.verdict}[/]{where}")


def _top1(o: Any) -> str:
    """Top-1 agreement over the clear rows, with the near-tie rows it left out (see parity.compare)."""
    ties = f" ({o.top1_near_ties} near-tie)" if o.top1_near_ties else ""
    return ("-" if o.top1 is None else f"{o.top1:.3f}") + ties


def _ops(s: StageRecord) -> str:
    """Passes (the records with gzip sizes) change ops within one format: show the diff. Across
    formats a diff says nothing (Conv -> Conv2D), so exports show the op totals."""
    if not s.ops_in or not s.ops_out:
        return "-" if not s.ops_out else f"{sum(s.ops_out.values())} ops"
    if s.gzip_bytes_out is not None:
        return op_diff(s.ops_in, s.ops_out)
    return f"{sum(s.ops_in.values())} -> {sum(s.ops_out.values())} ops"


def op_diff(before: dict[str, int], after: dict[str, int]) -> str:
    """``Transpose -3 (5->2), Conv +1 (0->1)``: what a stage changed in the op histogram."""
    parts = []
    for op in sorted(set(before) | set(after)):
        a, b = before.get(op, 0), after.get(op, 0)
        if a != b:
            parts.append(f"{op} {b - a:+d} ({a}->{b})")
    return ", ".join(parts) or "unchanged"


def _note(v: Any, limit: int = 80) -> str:
    """A stage note for the table: scalars and lists of scalars, cut to ``limit``; the JSON has all."""
    if isinstance(v, (list, tuple)) and all(isinstance(x, (str, int, float, bool)) for x in v):
        v = "; ".join(map(str, v))
    if not isinstance(v, (str, int, float, bool)):
        return ""
    text = str(v)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _n(v: int | None) -> str:
    return "-" if v is None else f"{v:,}"


def _f(v: float | None, fmt: str = ".3g") -> str:
    return "-" if v is None else format(v, fmt)
