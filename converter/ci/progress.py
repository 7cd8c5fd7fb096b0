"""What ``convertkit run`` shows while it works, and the summary table at the end (stdout).

* On a terminal: rich progress, one line per model x target with a spinner, its current stage
  and its elapsed time; the verdict replaces the stage when it is done.
* When stdout is not a terminal, or ``CI=true``: plain timestamped lines, one per stage start
  and end, no ANSI codes (what CI logs show well).
* ``--quiet``: only the summary table.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from typing import IO, Any, Protocol

from .executor import Event
from .summary import ERROR, FAILED, PASSED, Row, Summary
from .views import size

COLORS = {PASSED: "green", FAILED: "bold red", ERROR: "bold red"}


class Progress(Protocol):
    def plan(self, jobs: Sequence[str]) -> None: ...
    def event(self, ev: Event) -> None: ...
    def done(self, row: Row) -> None: ...
    def close(self) -> None: ...


def plain_output(stream: IO[str]) -> bool:
    """Plain lines (no ANSI codes) rather than live progress."""
    return os.environ.get("CI", "").lower() == "true" or not stream.isatty()


def make_progress(quiet: bool, stream: IO[str] | None = None) -> Progress:
    stream = stream or sys.stdout
    if quiet:
        return QuietProgress()
    return PlainProgress(stream) if plain_output(stream) else RichProgress(stream)


def stamp(at: float | None = None) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(at if at is not None else time.time()))


class QuietProgress:
    def plan(self, jobs: Sequence[str]) -> None:
        pass

    def event(self, ev: Event) -> None:
        pass

    def done(self, row: Row) -> None:
        pass

    def close(self) -> None:
        pass


class PlainProgress:
    """``2026-12-01T10:00:03 classifier/onnx: end torch->onnx (2.9 s)``: one line per stage start and end."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.started: dict[tuple[str, str], float] = {}

    def _line(self, at: float | None, text: str) -> None:
        self.stream.write(f"{stamp(at)} {text}\n")
        self.stream.flush()

    def plan(self, jobs: Sequence[str]) -> None:
        self._line(None, f"running {len(jobs)} model x target job(s): {', '.join(jobs)}")

    def event(self, ev: Event) -> None:
        if ev.kind == "start":
            self.started[(ev.job, ev.stage)] = ev.at
            self._line(ev.at, f"{ev.job}: start {ev.stage}")
            return
        began = self.started.pop((ev.job, ev.stage), None)
        took = f"{ev.at - began:.1f} s" if began is not None else ""
        how = ", ".join(x for x in (took, "" if ev.ok else "failed") if x)
        self._line(ev.at, f"{ev.job}: end {ev.stage}" + (f" ({how})" if how else ""))

    def done(self, row: Row) -> None:
        cached = ", from the cache" if row.cached else ""
        self._line(None, f"{row.model}/{row.target}: {row.verdict} (exit {row.exit_code}, {row.seconds:.1f} s{cached})")

    def close(self) -> None:
        pass


class RichProgress:
    """rich's live progress: a spinner, the job, its current stage and elapsed time, per line."""

    def __init__(self, stream: IO[str]) -> None:
        from rich.console import Console
        from rich.progress import Progress as Bar
        from rich.progress import SpinnerColumn, TextColumn, TimeElapsedColumn

        self.bar = Bar(SpinnerColumn(finished_text="•"), TextColumn("{task.description}"),
                       TextColumn("{task.fields[stage]}"), TimeElapsedColumn(), console=Console(file=stream))
        self.tasks: dict[str, Any] = {}

    def plan(self, jobs: Sequence[str]) -> None:
        from rich.markup import escape

        self.bar.start()
        width = max((len(j) for j in jobs), default=0)
        for job in jobs:
            self.tasks[job] = self.bar.add_task(escape(job.ljust(width)), total=1, start=False, stage="waiting")

    def event(self, ev: Event) -> None:
        from rich.markup import escape

        task = self.tasks.get(ev.job)
        if task is None:
            return
        if not self.bar.tasks[task].started:
            self.bar.start_task(task)
        if ev.kind == "start":
            self.bar.update(task, stage=escape(ev.stage))
        elif not ev.ok:
            self.bar.update(task, stage=f"[red]{escape(ev.stage)} failed[/]")

    def done(self, row: Row) -> None:
        task = self.tasks.get(f"{row.model}/{row.target}")
        if task is None:
            return
        if not self.bar.tasks[task].started:
            self.bar.start_task(task)
        color = COLORS.get(row.verdict, "yellow")
        cached = " (cached)" if row.cached else ""
        self.bar.update(task, completed=1, stage=f"[{color}]{row.verdict}[/]{cached}")

    def close(self) -> None:
        self.bar.stop()


#: the summary table's columns, in order; on a terminal too narrow for all, the last of DROP go first
COLUMNS = ("model", "target", "passes", "verdict", "exit", "size", "vs source", "latency ms", "worst cosine",
           "seconds", "cached")
DROP = ("passes", "exit", "size", "worst cosine", "cached", "seconds", "latency ms", "vs source")
RIGHT = ("exit", "size", "vs source", "latency ms", "seconds")


def _cells(r: Row) -> dict[str, str]:
    ratio = f"{r.bytes / r.source_bytes:.2f}x" if r.bytes and r.source_bytes else "-"
    return {"model": r.model, "target": r.target, "passes": ", ".join(r.passes) or "-", "verdict": r.verdict,
            "exit": str(r.exit_code), "size": size(r.bytes), "vs source": ratio,
            "latency ms": f"{r.latency_ms:.3g}" if r.latency_ms is not None else "-",
            "worst cosine": f"{r.worst_cosine:.6f}" if r.worst_cosine is not None else "-",
            "seconds": f"{r.seconds:.1f}", "cached": "yes" if r.cached else ""}


def fitting_columns(rows: list[dict[str, str]], width: int) -> list[str]:
    """The columns that fit ``width`` (each as wide as its widest cell, two spaces between)."""
    need = {c: max([len(c), *(len(row[c]) for row in rows)]) + 2 for c in COLUMNS}
    keep = list(COLUMNS)
    for col in reversed(DROP):
        if sum(need[c] for c in keep) <= width:
            break
        keep.remove(col)
    return keep


def print_summary(summary: Summary, where: str, stream: IO[str] | None = None) -> None:
    """The table of rows, the failures one per line, and a closing line with the exit code."""
    from rich import box
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    stream = stream or sys.stdout
    plain = plain_output(stream)
    console = Console(file=stream, force_terminal=False, no_color=True, width=160) if plain else Console(file=stream)
    rows = [_cells(r) for r in summary.rows]
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, title="convertkit run", title_justify="left")
    columns = fitting_columns(rows, console.width)
    for col in columns:
        table.add_column(col, justify="right" if col in RIGHT else "left", no_wrap=True)
    for r, cells in zip(summary.rows, rows):
        color = COLORS.get(r.verdict, "yellow")
        table.add_row(*(f"[{color}]{r.verdict}[/]" if c == "verdict" else escape(cells[c]) for c in columns))
    console.print(table)
    for r in summary.rows:
        if r.verdict == ERROR:
            console.print(f"{escape(r.model)}/{r.target}: error (exit {r.exit_code}): {escape(r.error or '')}")
        elif r.verdict == FAILED:
            console.print(f"{escape(r.model)}/{r.target}: {escape(r.parity or 'parity FAILED')}")
    counts = {v: sum(r.verdict == v for r in summary.rows) for v in (PASSED, FAILED, ERROR)}
    unchecked = len(summary.rows) - sum(counts.values())
    parts = [f"{counts[PASSED]} of {len(summary.rows)} passed"] + \
        ([f"{counts[FAILED]} failed parity"] if counts[FAILED] else []) + \
        ([f"{counts[ERROR]} error(s)"] if counts[ERROR] else []) + ([f"{unchecked} unchecked"] if unchecked else [])
    cached = sum(r.cached for r in summary.rows)
    console.print(f"{', '.join(parts)}; {cached} from the cache; {summary.seconds:.1f} s; "
                  f"summary: {escape(where)}; exit {summary.exit_code}", highlight=False)
