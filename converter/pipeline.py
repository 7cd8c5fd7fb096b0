"""Run a planned pipeline: each stage writes into its own directory, and what it did becomes a
StageRecord. A failing stage raises StageError naming it and the stages before it.

Passes (and every stage with ``validate_each``) are measured against the ORIGINAL model: the
``Checker`` runs a result on the validation feeds and compares with the source's outputs,
computed once."""

from __future__ import annotations

import dataclasses

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import registry
from .core import Artifact, Pass, Pipeline, Stage, StageRecord, Tolerance, accumulated_tolerance, now
from .errors import ConvertkitError, StageError, UnsupportedOpError, UserError
from .fsutil import gzip_bytes
from .parity.compare import ParityReport
from .parity.validate import run as run_outputs
from .parity.validate import validate


@dataclass
class Checker:
    """Parity of any artifact against the original, on the validation feeds."""

    reference: Artifact
    feeds: Sequence[Mapping[str, Any]]
    atol: float | None = None  # the user's explicit overrides win over every stage's tolerance
    rtol: float | None = None
    runner_options: Mapping[str, Any] = field(default_factory=dict)
    _ref_outputs: list[dict[str, Any]] | None = None

    def tolerance_for(self, stages: Sequence[Stage]) -> Tolerance:
        """fp32 defaults, loosened by what ``stages`` declare they may add, then the overrides."""
        tol = accumulated_tolerance(stages)
        return dataclasses.replace(tol, atol=tol.atol if self.atol is None else self.atol,
                                   rtol=tol.rtol if self.rtol is None else self.rtol)

    @property
    def reference_outputs(self) -> list[dict[str, Any]]:
        if self._ref_outputs is None:
            self._ref_outputs = run_outputs(self.reference, self.feeds)
        return self._ref_outputs

    def __call__(self, artifact: Artifact, tolerance: Tolerance) -> ParityReport:
        return validate(self.reference, artifact, self.feeds, tolerance,
                        reference_outputs=self.reference_outputs, **self.runner_options)


@dataclass(frozen=True)
class StageCheck:
    """What a pass receives as ``check``: ``check(artifact)`` is the artifact's ParityReport against
    the original under the pass's accumulated ``tolerance``; ``feeds`` are the validation feeds
    (what a pass measures or calibrates with when it is given no data of its own)."""

    checker: Checker
    tolerance: Tolerance

    @property
    def feeds(self) -> Sequence[Mapping[str, Any]]:
        return self.checker.feeds

    def __call__(self, artifact: Artifact) -> ParityReport:
        return self.checker(artifact, self.tolerance)


def run_pipeline(pipeline: Pipeline, src: Artifact, out_dir: Path, work_dir: Path, *,
                 checker: Checker | None = None, validate_each: bool = False,
                 on_stage: Callable[[str], None] | None = None
                 ) -> tuple[Artifact, list[StageRecord], list[Artifact]]:
    """Returns the final artifact, a record per stage, and every stage's artifact in order."""
    records: list[StageRecord] = []
    artifacts: list[Artifact] = []
    current = src
    for i, stage in enumerate(pipeline.stages):
        last = i == len(pipeline.stages) - 1
        target = out_dir if last else work_dir / f"{i:02d}-{stage.name.replace('->', '-to-')}"
        target.mkdir(parents=True, exist_ok=True)
        if on_stage:
            on_stage(stage.name)
        is_pass = isinstance(stage, Pass)
        stage_tol = checker.tolerance_for(pipeline.stages[: i + 1]) if checker else None
        stage_check = StageCheck(checker, stage_tol) if (checker and is_pass and stage_tol) else None
        t0 = now()
        try:
            result = stage.run(current, target, stage_check) if is_pass else stage.run(current, target)
        except (StageError, UnsupportedOpError, UserError):
            raise  # already says where; a user error in a stage's options stays exit 2
        except ConvertkitError as exc:
            raise StageError(stage.name, exc.message, before=_before(pipeline, i), hint=exc.hint) from exc
        except Exception as exc:  # a converter's own error: name the stage, keep the first line
            msg = " ".join(str(exc).split())[:400] or type(exc).__name__
            raise StageError(stage.name, f"{type(exc).__name__}: {msg}", before=_before(pipeline, i)) from exc
        rec = StageRecord(stage.name, stage.config(), round(now() - t0, 3), current.size_bytes(),
                          result.size_bytes(), registry.op_counts(current), registry.op_counts(result),
                          dict(result.meta), _rel(result.path, out_dir))
        if is_pass:
            rec.gzip_bytes_in, rec.gzip_bytes_out = gzip_bytes(current.path), gzip_bytes(result.path)
            if checker is not None:
                rec.latency_ms_in = registry.latency_ms(current, checker.feeds)
                rec.latency_ms_out = registry.latency_ms(result, checker.feeds)
        if checker is not None and (validate_each or is_pass) and not last:
            rec.parity = checker(result, stage_tol).to_json()
        records.append(rec)
        artifacts.append(result)
        current = result
    return current, records, artifacts


def localise(pipeline: Pipeline, records: list[StageRecord], artifacts: list[Artifact], checker: Checker) -> str:
    """After a failed final check: which hop first drifts from the original? Checks every
    intermediate not checked yet (their parity lands in the records) and names the first that fails."""
    for i, (rec, art) in enumerate(zip(records[:-1], artifacts[:-1])):
        if rec.parity is None:
            try:
                rec.parity = checker(art, checker.tolerance_for(pipeline.stages[: i + 1])).to_json()
            except ConvertkitError as exc:  # an intermediate its runtime cannot run: say so, go on
                rec.parity = {"passed": False, "error": exc.one_line()}
        if not rec.parity.get("passed"):
            hop = f"{pipeline.stages[i].accepts} -> {pipeline.stages[i].produces}" \
                if pipeline.stages[i].accepts != pipeline.stages[i].produces else str(pipeline.stages[i].accepts)
            return f"parity against the source first fails after stage '{rec.stage}' ({hop}); the stages before it pass"
    return f"every intermediate matches the source; the drift comes from the last stage '{records[-1].stage}'"


def _before(pipeline: Pipeline, i: int) -> list[str]:
    return [s.name for s in pipeline.stages[:i]]


def _rel(path: Path | None, root: Path) -> str | None:
    if path is None:
        return None
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)
