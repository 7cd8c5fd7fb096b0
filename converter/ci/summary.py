"""The result of one pipeline run: one :class:`Row` per model x target, written as
OUTDIR/summary.json (schema ``convertkit.summary/1``) and read by the JUnit, Markdown and HTML
writers. The per-artifact detail stays in each artifact's own report.json (``convertkit.report/1``),
which ``Row.report`` carries when there is one. Stdlib only."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

SCHEMA = "convertkit.summary/1"
#: a row's verdict: the artifact's report verdict, or ERROR when no artifact was made (exit 3/2/4)
PASSED, FAILED, UNCHECKED, ERROR = "PASSED", "FAILED", "UNCHECKED", "ERROR"


@dataclass
class Row:
    """One model x target of a pipeline run."""

    model: str                      # the [[model]] name
    target: str                     # onnx | tf | tfjs
    passes: list[str]               # pass specs applied, in order (as written in the pipeline file)
    verdict: str                    # PASSED | FAILED | UNCHECKED | ERROR
    exit_code: int                  # what `convertkit export` would have exited with
    seconds: float                  # wall time of this row (restoring it, when cached)
    cached: bool                    # restored from the cache instead of converted
    artifact: str | None = None     # OUTDIR-relative folder of the artifact (OUTDIR/NAME/TARGET)
    bytes: int | None = None        # artifact size on disk (all files)
    source_bytes: int | None = None  # size of the source model (for the size change vs fp32)
    latency_ms: float | None = None  # median latency of the artifact, when the report measured one
    parity: str | None = None       # the one-line parity summary (ParityReport.summary())
    worst_cosine: float | None = None
    failing_outputs: list[str] = field(default_factory=list)
    error: str | None = None        # the one-line error, for exit codes 2, 3, 4
    report: dict[str, Any] | None = None  # the artifact's report.json, when one was written

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Summary:
    pipeline: str                   # path of the pipeline file
    rows: list[Row]
    exit_code: int
    seconds: float
    environment: dict[str, Any] = field(default_factory=dict)

    def to_json(self, *, with_reports: bool = False) -> dict[str, Any]:
        rows = [r.to_json() for r in self.rows]
        if not with_reports:
            for r in rows:
                r.pop("report")
        return {"schema": SCHEMA, "pipeline": self.pipeline, "exit_code": self.exit_code,
                "seconds": self.seconds, "rows": rows, "environment": self.environment}

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n")


def overall_exit_code(codes: list[int]) -> int:
    """0 when every row passed; else the most serious failure: 4 (a bug) > 3 (conversion failed)
    > 2 (bad input of one model) > 1 (parity failed)."""
    return max(codes, default=0)
