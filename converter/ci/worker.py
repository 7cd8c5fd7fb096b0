"""One model x target of ``convertkit run``, in its own process: what ``convertkit export`` does
(``converter.api.export`` with the options mapped as cli.export maps them), writing
OUTDIR/NAME/TARGET atomically, then its summary row.

    python -m converter.ci.worker JOB.json

JOB.json: ``{"spec": TargetSpec.to_json(), "dest": ..., "result": ...}``. The row is written to
``result`` (JSON). Stage starts and ends go to the parent as JSON lines on the file descriptor
named by ``CONVERTKIT_EVENTS_FD`` (a pipe of its own: frameworks print to stdout and stderr,
which go to the log). A crash of this process (a segfault, the OOM killer) takes down only this
model x target: the parent sees no result and records an error row.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .spec import TargetSpec
from .summary import ERROR, Row

EVENTS_FD = "CONVERTKIT_EVENTS_FD"
Emit = Callable[[str, str, bool], None]  # (kind: start | end, stage, ok)


def line_emitter(fd: int | None) -> Emit:
    """Events as JSON lines on ``fd`` (nothing without one)."""
    def emit(kind: str, stage: str, ok: bool = True) -> None:
        if fd is None:
            return
        line = json.dumps({"kind": kind, "stage": stage, "at": time.time(), "ok": ok}) + "\n"
        try:
            os.write(fd, line.encode())
        except OSError:
            pass  # the parent is gone: the work goes on, its result file still counts
    return emit


class Phases:
    """Turns stage calls into start/end events, with the phases around them: ``load`` (the source,
    its inputs and reference outputs; on a route through TensorFlow from PyTorch also the first
    stage, which runs in its own child: converter.isolate) and ``validate`` (the final parity check)."""

    def __init__(self, emit: Emit, stages: tuple[str, ...], check: bool) -> None:
        self.emit, self.stages, self.check = emit, stages, check
        self.open: str | None = None

    def begin(self, name: str) -> None:
        self.finish()
        self.open = name
        self.emit("start", name, True)

    def finish(self, ok: bool = True) -> None:
        if self.open is not None:
            self.emit("end", self.open, ok)
            self.open = None

    def stage_done(self, index: int, total: int) -> None:
        self.finish()
        if index == total - 1 and self.check:
            self.begin("validate")


@contextlib.contextmanager
def observe_stages(phases: Phases) -> Iterator[None]:
    """Report each stage that converter.pipeline.run_pipeline runs. api.export takes no stage
    callback, so run_stage (which run_pipeline calls by its module name) is wrapped here, in this
    process only; the stage itself runs unchanged."""
    from .. import pipeline

    original = pipeline.run_stage

    def observed(pl: Any, i: int, *args: Any, **kwargs: Any) -> Any:
        phases.begin(pl.stages[i].name)
        try:
            result = original(pl, i, *args, **kwargs)
        except BaseException:
            phases.finish(ok=False)
            raise
        phases.stage_done(i, len(pl.stages))
        return result

    pipeline.run_stage = observed
    try:
        yield
    finally:
        pipeline.run_stage = original


def run_job(spec: TargetSpec, dest: Path, emit: Emit) -> Row:
    """Export one model x target into ``dest``; its row (an error row for exit 2, 3 and 4)."""
    from .. import api
    from ..errors import ConvertkitError

    t0 = time.monotonic()
    kwargs = spec.export_kwargs(dest)
    phases = Phases(emit, spec.stages, kwargs["check"])
    phases.begin("load")
    try:
        with observe_stages(phases):
            report = api.export(spec.source, **kwargs)
    except ConvertkitError as exc:
        phases.finish(ok=False)
        return error_row(spec, exc.exit_code, exc.one_line(), time.monotonic() - t0)
    except Exception as exc:  # a bug in convertkit or a library's own crash: exit 4, traceback in the log
        phases.finish(ok=False)
        traceback.print_exc()
        return error_row(spec, 4, f"internal error: {type(exc).__name__}: {' '.join(str(exc).split())[:300]}",
                         time.monotonic() - t0)
    phases.finish()
    return row_from_report(spec, report, dest, time.monotonic() - t0)


def error_row(spec: TargetSpec, code: int, message: str, seconds: float) -> Row:
    return Row(spec.model, spec.target, list(spec.passes), ERROR, code, round(seconds, 3), False, error=message)


def row_from_report(spec: TargetSpec, report: Any, dest: Path, seconds: float) -> Row:
    """The summary row of a written artifact (its report.json as written, and the ParityReport)."""
    doc = json.loads((dest / "report.json").read_text())
    stages = doc.get("stages") or []
    latency = next((s["latency_ms_out"] for s in reversed(stages) if s.get("latency_ms_out") is not None), None)
    parity = report.parity
    cosines = [o.cosine for o in parity.outputs if o.cosine is not None] if parity is not None else []
    return Row(spec.model, spec.target, list(spec.passes), doc["verdict"], doc["exit_code"], round(seconds, 3), False,
               artifact=f"{spec.model}/{spec.target}", bytes=model_bytes(stages, dest),
               source_bytes=stages[0].get("bytes_in") if stages else None, latency_ms=latency,
               parity=parity.summary() if parity is not None else "validation skipped (validate = \"none\")",
               worst_cosine=min(cosines) if cosines else None,
               failing_outputs=[o.name for o in parity.failures()] if parity is not None else [], report=doc)


def model_bytes(stages: list[dict[str, Any]], dest: Path) -> int:
    """The model's size on disk, as its report counts it (the last stage's bytes out: every file of
    the model, not the report nor the generated JS module beside it); without a stage record, every
    file of the folder but report.json."""
    if stages and stages[-1].get("bytes_out") is not None:
        return int(stages[-1]["bytes_out"])
    return sum(p.stat().st_size for p in dest.rglob("*") if p.is_file() and p.name != "report.json"
               and "intermediates" not in p.relative_to(dest).parts)


def write_json(path: Path, doc: Any) -> None:
    """Whole or not at all: the parent reads it once this process has ended."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    os.replace(tmp, path)


def main() -> None:
    from ..deps import exit_now, short_lived

    job = json.loads(Path(sys.argv[1]).read_text())
    short_lived()  # this process ends with its export, as the CLI's
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    fd = int(os.environ[EVENTS_FD]) if os.environ.get(EVENTS_FD) else None
    spec = TargetSpec.from_json(job["spec"])
    row = run_job(spec, Path(job["dest"]), line_emitter(fd))
    write_json(Path(job["result"]), row.to_json())
    exit_now(0)


if __name__ == "__main__":
    main()
