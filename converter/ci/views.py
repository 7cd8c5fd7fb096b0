"""What the JUnit, Markdown and HTML writers read from a summary :class:`Row`: typed views of its
report.json (``convertkit.report/1``) and the few numbers every writer shows. Stdlib only.

A row always has its own summary fields (verdict, bytes, parity line, ...); ``Row.report`` may be
missing (a conversion error, or a summary read back without reports). Each view falls back from
the row's field to the report and says ``None`` when neither knows.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UsageError

from .summary import ERROR, FAILED, PASSED, UNCHECKED, Row

#: the emoji-free markers the Markdown table and the HTML page show per verdict
MARKERS = {PASSED: "PASS", FAILED: "FAIL", UNCHECKED: "UNCHECKED", ERROR: "ERROR"}
#: keys of a stage's notes that list what stayed at a higher precision (see passes/quantize.py,
#: passes/fp16.py: ``kept_fp32`` [{node, op, why}]; passes/tfjs_weights.py: ``kept`` [{weight, dtype, why}])
KEPT_KEYS = ("kept_fp32", "kept")
#: ANSI colour codes (a converter's message may carry them) and the characters XML 1.0 cannot hold
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufffe\uffff]")


@dataclass(frozen=True)
class Histogram:
    edges: list[float]
    counts: list[int]


@dataclass(frozen=True)
class OutputView:
    """One output's parity, as the report has it (``ParityReport.to_json()['outputs'][i]``)."""

    name: str
    status: str
    max_abs: float | None = None
    mean_abs: float | None = None
    p99_abs: float | None = None
    cosine: float | None = None
    top1: float | None = None
    atol_needed: float | None = None
    message: str = ""
    hist: Histogram | None = None

    @property
    def passed(self) -> bool:
        return self.status == "ok"


@dataclass(frozen=True)
class Kept:
    """A node (ONNX passes) or weight (TF.js weight quantization) a pass left at a higher precision."""

    stage: str
    name: str
    kind: str   # the node's op type, or the weight's dtype
    why: str


@dataclass(frozen=True)
class StageView:
    stage: str
    seconds: float
    bytes_in: int | None
    bytes_out: int | None
    gzip_in: int | None
    gzip_out: int | None
    latency_in: float | None
    latency_out: float | None
    kept: list[Kept] = field(default_factory=list)


def case_name(row: Row) -> str:
    """``tfjs+quantize:dtype=uint8``: the target and its passes, as the pipeline file names them."""
    return "+".join([row.target, *row.passes])


def clean(text: str | None) -> str:
    """Text without ANSI colour codes or control characters (tabs and newlines stay)."""
    return _CONTROL.sub("", _ANSI.sub("", str(text or "")))


def line(text: str | None) -> str:
    """One clean line: CI systems show a message attribute or a table cell as a single line."""
    return " ".join(clean(text).split())


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def outputs(row: Row) -> list[OutputView]:
    parity = (row.report or {}).get("parity") or {}
    return [_output(o) for o in parity.get("outputs") or []]


def _output(o: Mapping[str, Any]) -> OutputView:
    h = o.get("abs_error_hist")
    hist = Histogram(list(h["edges"]), list(h["counts"])) if isinstance(h, Mapping) else None
    return OutputView(str(o.get("name")), str(o.get("status")), o.get("max_abs"), o.get("mean_abs"),
                      o.get("p99_abs"), o.get("cosine"), o.get("top1"), o.get("atol_needed"),
                      line(o.get("message")), hist)


def stages(row: Row) -> list[StageView]:
    return [StageView(str(s.get("stage")), float(s.get("seconds") or 0.0), s.get("bytes_in"), s.get("bytes_out"),
                      s.get("gzip_bytes_in"), s.get("gzip_bytes_out"), s.get("latency_ms_in"), s.get("latency_ms_out"),
                      _kept(str(s.get("stage")), s.get("notes") or {}))
            for s in (row.report or {}).get("stages") or []]


def _kept(stage: str, notes: Mapping[str, Any]) -> list[Kept]:
    out = []
    for key in KEPT_KEYS:
        for k in notes.get(key) or []:
            if isinstance(k, Mapping):
                out.append(Kept(stage, str(k.get("node") or k.get("weight") or "?"),
                                str(k.get("op") or k.get("dtype") or "float32"), line(k.get("why"))))
    for op in notes.get("kept_fp32_ops") or []:  # fp16's block=OP: every node of that op type
        out.append(Kept(stage, f"all {op} nodes", str(op), "asked for (block=)"))
    return out


def parity_line(row: Row) -> str:
    """The one-line parity summary (ParityReport.summary()), or what stands in its place."""
    if row.parity:
        return line(row.parity)
    outs = outputs(row)
    if not outs:
        return line(row.error) or "not validated"
    bad = [o for o in outs if not o.passed]
    if not bad:
        return f"parity PASSED: {len(outs)} output(s), max abs error {max(o.max_abs or 0.0 for o in outs):.3g}"
    return "parity FAILED: " + "; ".join(f"{o.name}: {o.message}" for o in bad)


def worst_cosine(row: Row) -> float | None:
    if row.worst_cosine is not None:
        return row.worst_cosine
    cos = [o.cosine for o in outputs(row) if o.cosine is not None]
    return min(cos) if cos else None


def failing(row: Row) -> list[str]:
    return list(row.failing_outputs) or [o.name for o in outputs(row) if not o.passed]


def latency_ms(row: Row) -> float | None:
    if row.latency_ms is not None:
        return row.latency_ms
    return next((s.latency_out for s in reversed(stages(row)) if s.latency_out is not None), None)


def size_ratio(row: Row) -> float | None:
    """Artifact bytes / source bytes: the size change against the float32 source."""
    if row.bytes is None or not row.source_bytes:
        return None
    return row.bytes / row.source_bytes


def kept(row: Row) -> list[Kept]:
    return [k for s in stages(row) for k in s.kept]


def parity_table(row: Row) -> str:
    """The per-output table in plain text (the JUnit failure text, a terminal, a log)."""
    head = ("output", "status", "max abs", "mean abs", "p99 abs", "cosine", "top-1", "needs atol", "message")
    rows = [head] + [(o.name, o.status, num(o.max_abs), num(o.mean_abs), num(o.p99_abs), num(o.cosine, ".6f"),
                      num(o.top1, ".3f"), num(o.atol_needed), o.message) for o in outputs(row)]
    if len(rows) == 1:
        return parity_line(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(head) - 1)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1] for r in rows).rstrip()


def counts(rows: list[Row]) -> dict[str, int]:
    out = dict.fromkeys(MARKERS, 0)
    for r in rows:
        out[r.verdict] = out.get(r.verdict, 0) + 1
    return out


def num(v: float | None, fmt: str = ".3g") -> str:
    return "-" if v is None else format(v, fmt)


def size(n: int | None) -> str:
    """Bytes for people: ``812 B``, ``1.7 KiB``, ``23.4 MiB``."""
    if n is None:
        return "-"
    value, unit = float(n), "B"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            break
        value /= 1024
    return f"{n} B" if unit == "B" else f"{value:.1f} {unit}"


def write_whole(path: Path, data: bytes) -> None:
    """Write ``path`` whole or not at all (a temporary file beside it, then a rename), as every
    convertkit output is; a destination that cannot be written is a one-line UsageError (exit 2)."""
    path = Path(path)
    if path.is_symlink() and path.is_file():
        path = path.resolve()  # the file the link names is the report; the link stays
    if path.is_dir():
        raise UsageError(f"cannot write the report {path}: it is a directory", hint="give a file path")
    if path.exists() and not path.is_file():  # /dev/stdout, a pipe: written through, never renamed over
        with open(path, "wb") as f:
            f.write(data)
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise UsageError(f"cannot write the report {path}: {exc.strerror or exc}",
                         hint="give a path in a directory you can write to") from exc
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600: a CI artifact is read by others
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
