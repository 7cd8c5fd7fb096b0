"""``convertkit run --markdown FILE``: a summary for a PR comment or ``$GITHUB_STEP_SUMMARY``.

One heading line with the counts, one table row per model x target (verdict, size, size change
against the float32 source, latency, worst cosine, failing outputs), then one line per row that
did not pass (its parity summary or error). Kept under 60 lines for 20 rows: the detail lines stop
at MAX_LINES and say how many were left out. Markers are words (PASS / FAIL / ERROR / UNCHECKED),
no emoji: they read the same in a terminal, a log and a mail. Stdlib only.
"""

from __future__ import annotations

from pathlib import Path

from . import views
from .summary import ERROR, FAILED, PASSED, UNCHECKED, Row, Summary

MAX_LINES = 59
COLUMNS = ("model", "target", "verdict", "size", "vs fp32", "latency", "worst cosine", "failing outputs")
#: a parity or error line in the detail list is cut here (the HTML report and report.json have it whole)
DETAIL_CHARS = 300


def write(summary: Summary, path: Path) -> None:
    views.write_whole(path, render(summary).encode("utf-8"))


def render(summary: Summary) -> str:
    lines = [_heading(summary), "",
             "| " + " | ".join(COLUMNS) + " |",
             "|---|---|---|--:|--:|--:|--:|---|"]
    lines += ["| " + " | ".join(_cell(c) for c in _cells(r)) + " |" for r in summary.rows]
    bad = [r for r in summary.rows if r.verdict != PASSED]
    if bad:
        lines += ["", "**Not passed**", ""]
        room = MAX_LINES - len(lines)
        shown = bad if len(bad) <= room else bad[: room - 1]
        lines += [f"- `{_code(r.model)}/{_code(views.case_name(r))}` {views.MARKERS.get(r.verdict, r.verdict)}: "
                  f"{_cell(_detail(r))}" for r in shown]
        if len(shown) < len(bad):
            lines.append(f"- ... and {len(bad) - len(shown)} more: see summary.json or the HTML report")
    return "\n".join(lines) + "\n"


def _heading(summary: Summary) -> str:
    c = views.counts(summary.rows)
    parts = [f"{c[PASSED]} passed"] + [text for n, text in ((c[FAILED], f"{c[FAILED]} failed"),
                                                              (c[ERROR], views.plural(c[ERROR], "error")),
                                                              (c[UNCHECKED], f"{c[UNCHECKED]} not validated")) if n]
    verdict = "PASS" if summary.exit_code == 0 else "FAIL"
    return (f"### convertkit {verdict}: {', '.join(parts)} of {len(summary.rows)} "
            f"(exit {summary.exit_code}, {summary.seconds:.1f} s, `{_code(Path(summary.pipeline).name)}`)")


def _cells(r: Row) -> list[str]:
    ratio = views.size_ratio(r)
    lat = views.latency_ms(r)
    verdict = views.MARKERS.get(r.verdict, r.verdict) + (" (cached)" if r.cached else "")
    if r.verdict == FAILED:
        verdict = f"**{verdict}**"
    return [r.model, views.case_name(r), verdict, views.size(r.bytes),
            "-" if ratio is None else f"{ratio:.2f}x", "-" if lat is None else f"{lat:.3g} ms",
            views.num(views.worst_cosine(r), ".5f"), ", ".join(views.failing(r)) or "-"]


def _detail(r: Row) -> str:
    text = views.line(r.error) if r.verdict == ERROR else views.parity_line(r)
    return text if len(text) <= DETAIL_CHARS else text[: DETAIL_CHARS - 1] + "…"


def _cell(text: str) -> str:
    """A table cell on one line: a ``|`` would end the cell, a ``<`` could open HTML on GitHub."""
    return views.line(text).replace("|", "\\|").replace("<", "&lt;")


def _code(text: str) -> str:
    return views.line(text).replace("`", "'")
