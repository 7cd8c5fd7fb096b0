"""Run a checked pipeline: each model x target from the cache or through an executor, into
OUTDIR/NAME/TARGET (atomically, as ``convertkit export`` writes), then OUTDIR/summary.json.

One failing model never stops the others. The exit code is summary.overall_exit_code of the
rows: 0 when everything passed, else the most serious failure (3 a conversion failed, 2 a
model's input was bad, 1 a parity check failed; 4 a bug).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from ..errors import UsageError
from ..fsutil import MARKER, check_destination
from .cache import Cache, key_for
from .executor import Event, Executor, Job, OnEvent
from .progress import Progress
from .spec import TargetSpec
from .summary import ERROR, Row, Summary, overall_exit_code

log = logging.getLogger(__name__)
SUMMARY = "summary.json"
RUN_MARKER = ".convertkit-run"  # in OUTDIR from the start of a run: an interrupted run's OUTDIR may be reused


@dataclass(frozen=True)
class Planned:
    """A job and its cache key (None with --no-cache)."""

    job: Job
    key: str | None


def plan_jobs(specs: Sequence[TargetSpec], out_dir: Path, use_cache: bool) -> list[Planned]:
    """Where each model x target goes; refuses (exit 2, before any work) an OUTDIR or artifact
    folder that convertkit did not write, as export would."""
    out_dir = out_dir.resolve()
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"output {out_dir} exists and is a file", hint="give a directory path with -o")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / RUN_MARKER).exists():
        raise UsageError(f"output directory {out_dir} exists and was not written by convertkit run",
                         hint="choose an empty or new directory")
    planned = []
    for spec in specs:
        dest = out_dir / spec.model / spec.target
        check_destination(dest, sources=(Path(spec.source),) if Path(spec.source).exists() else ())
        planned.append(Planned(Job(spec, dest, dest.with_name(f"{spec.target}.log")),
                               key_for(spec) if use_cache else None))
    return planned


def execute(pipeline: str, planned: Sequence[Planned], out_dir: Path, executor: Executor, progress: Progress,
            cache: Cache | None, started: float | None = None) -> Summary:
    """Every planned job, from the cache where it holds it; returns the summary (also written).
    ``started``: time.monotonic() when the command started (the summary's seconds count from it)."""
    t0 = time.monotonic() if started is None else started
    out_dir = out_dir.resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / RUN_MARKER).write_text("written by convertkit run; summary.json lists what this folder holds\n")
    progress.plan([p.job.spec.id for p in planned])
    rows: dict[str, Row] = {}
    to_run: list[Planned] = []
    for p in planned:
        row = _restore(p, cache, progress.event) if cache is not None and p.key is not None else None
        if row is None:
            to_run.append(p)
            continue
        rows[p.job.spec.id] = row
        progress.done(row)
    keys = {p.job.spec.id: p for p in to_run}
    try:
        for row in executor.run([p.job for p in to_run], progress.event):
            p = keys[f"{row.model}/{row.target}"]
            _settle(p, row, cache)
            rows[p.job.spec.id] = row
            progress.done(row)
    finally:
        progress.close()
    ordered = [rows[p.job.spec.id] for p in planned if p.job.spec.id in rows]
    summary = Summary(pipeline, ordered, overall_exit_code([r.exit_code for r in ordered]),
                      round(time.monotonic() - t0, 3), _environment())
    write_summary(summary, out_dir / SUMMARY)
    return summary


def _restore(p: Planned, cache: Cache, on_event: OnEvent) -> Row | None:
    """The row of a job restored from the cache, or None when the cache has no (whole) entry."""
    t0 = time.monotonic()
    hit = cache.lookup(p.key) if p.key else None
    if hit is None:
        return None
    on_event(Event(p.job.spec.id, "start", "cache", time.time()))
    try:
        cache.restore(hit, p.job.dest)
    except OSError as exc:  # an entry removed meanwhile (cache clear in another run): make it again
        log.warning("could not restore %s from the cache: %s", p.job.spec.id, exc)
        on_event(Event(p.job.spec.id, "end", "cache", time.time(), ok=False))
        return None
    on_event(Event(p.job.spec.id, "end", "cache", time.time()))
    p.job.log.write_text(f"restored from the cache {cache.root} (entry {hit.key}; made for {hit.made_at})\n")
    report = json.loads((p.job.dest / MARKER).read_text())
    return replace(hit.row, cached=True, seconds=round(time.monotonic() - t0, 3), report=report)


def _settle(p: Planned, row: Row, cache: Cache | None) -> None:
    """After a job: keep a deterministic result in the cache; an error leaves no artifact behind
    (an older run's folder would pass for this run's)."""
    if row.verdict == ERROR:
        if (p.job.dest / MARKER).is_file():
            shutil.rmtree(p.job.dest, ignore_errors=True)
        return
    if cache is not None and p.key is not None:
        cache.store(p.key, p.job.dest, row)


def write_summary(summary: Summary, path: Path) -> None:
    """summary.json, whole or not at all."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(summary.to_json(), indent=2) + "\n")
    os.replace(tmp, path)


def _environment() -> dict:
    from ..report import environment

    return environment()


def dry_run_lines(planned: Sequence[Planned], cache: Cache | None) -> Iterator[str]:
    """What --dry-run prints: per model x target, its planned stages and whether the cache has it."""
    width = max((len(p.job.spec.id) for p in planned), default=0)
    for p in planned:
        spec = p.job.spec
        check = spec.export_kwargs(p.job.dest)["check"]
        stages = " -> ".join([*spec.stages, *(["validate"] if check else [])])
        state = ""
        if cache is not None and p.key is not None:
            state = "  [cached]" if cache.lookup(p.key) is not None else "  [to run]"
        yield f"{spec.id.ljust(width)}  {stages}{state}  -> {p.job.dest}"
