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
from .core import (KNOWN_WRONG, SOURCE_MAP, Artifact, Pass, Pipeline, Stage, StageRecord, Tolerance,
                   accumulated_tolerance, now, reported_meta)
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
    _ref_outputs: list[dict[str, Any]] | None = field(default=None, init=False, repr=False)

    def tolerance_for(self, stages: Sequence[Stage]) -> Tolerance:
        """fp32 defaults, loosened by what ``stages`` declare they may add, then the overrides."""
        tol = accumulated_tolerance(stages)
        return dataclasses.replace(tol, atol=tol.atol if self.atol is None else self.atol,
                                   rtol=tol.rtol if self.rtol is None else self.rtol)

    def with_reference_outputs(self, outputs: list[dict[str, Any]] | None) -> Checker:
        """The source's outputs on ``feeds``, computed already (parity.reference, before any export)."""
        self._ref_outputs = list(outputs) if outputs is not None else None
        return self

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
                 on_stage: Callable[[str], None] | None = None,
                 done: Sequence[tuple[StageRecord, Artifact]] = ()
                 ) -> tuple[Artifact, list[StageRecord], list[Artifact]]:
    """Returns the final artifact, a record per stage, and every stage's artifact in order. ``done``:
    the first stages' records and artifacts, already run elsewhere (isolate.py)."""
    records = [rec for rec, _ in done]
    artifacts = [art for _, art in done]
    current = artifacts[-1] if artifacts else src
    for i in range(len(done), len(pipeline.stages)):
        stage = pipeline.stages[i]
        last = i == len(pipeline.stages) - 1
        target = out_dir if last else stage_dir(work_dir, i, stage)
        target.mkdir(parents=True, exist_ok=True)
        if on_stage:
            on_stage(stage.name)
        rec, result = run_stage(pipeline, i, current, target, out_dir, checker=checker, validate_each=validate_each)
        records.append(rec)
        artifacts.append(result)
        current = result
    return current, records, artifacts


def stage_dir(work_dir: Path, i: int, stage: Stage) -> Path:
    """Where stage ``i`` writes when it is not the last: ``work_dir/00-torch-to-onnx``."""
    return work_dir / f"{i:02d}-{stage.name.replace('->', '-to-')}"


def run_stage(pipeline: Pipeline, i: int, current: Artifact, target: Path, out_dir: Path, *,
              checker: Checker | None = None, validate_each: bool = False) -> tuple[StageRecord, Artifact]:
    """Stage ``i`` of ``pipeline`` on ``current``, written into ``target`` (which exists and is empty):
    its record and its artifact. A failure raises StageError naming the stage and those before it."""
    stage = pipeline.stages[i]
    last = i == len(pipeline.stages) - 1
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
                      reported_meta(result.meta), _rel(result.path, out_dir))
    if is_pass:
        rec.gzip_bytes_in, rec.gzip_bytes_out = gzip_bytes(current.path), gzip_bytes(result.path)
        if checker is not None:
            rec.latency_ms_in = registry.latency_ms(current, checker.feeds, checker.reference)
            rec.latency_ms_out = registry.latency_ms(result, checker.feeds, checker.reference)
    if checker is not None and (validate_each or is_pass) and not last:
        rec.parity = checker(result, stage_tol).to_json()
    return rec, result


#: stage note: the first node of the stage's input that its result gets wrong (or why none was found)
NODE_NOTE = "first_diverging_node"


def localise(pipeline: Pipeline, records: list[StageRecord], artifacts: list[Artifact], checker: Checker) -> str:
    """After a failed final check: which hop first drifts from the original? Checks every
    intermediate not checked yet (their parity lands in the records) and names the first that fails,
    then, where that hop's format can tell, the first node it gets wrong (in the stage's notes too)."""
    first = len(records) - 1
    for i, (rec, art) in enumerate(zip(records[:-1], artifacts[:-1])):
        if rec.parity is None:
            try:
                rec.parity = checker(art, checker.tolerance_for(pipeline.stages[: i + 1])).to_json()
            except ConvertkitError as exc:  # an intermediate its runtime cannot run: say so, go on
                rec.parity = {"passed": False, "error": exc.one_line()}
        if not rec.parity.get("passed"):
            first = i
            break
    stage = pipeline.stages[first]
    if first < len(records) - 1:
        hop = f"{stage.accepts} -> {stage.produces}" if stage.accepts != stage.produces else str(stage.accepts)
        text = f"parity against the source first fails after stage '{stage.name}' ({hop}); the stages before it pass"
    else:
        text = f"every intermediate matches the source; the drift comes from the last stage '{stage.name}'"
    node = diverging_node(pipeline, first, records, artifacts, checker.reference, feeds=checker.feeds)
    return f"{text}; {describe_node(node)}" if node else text


def diverging_node(pipeline: Pipeline, i: int, records: list[StageRecord], artifacts: list[Artifact],
                   source: Artifact, feeds: Sequence[Mapping[str, Any]] | None = None) -> dict[str, Any] | None:
    """Ask the format stage ``i`` produces for the first node of its input that the result gets wrong
    (``first_diverging_node(stage, input, result, source_map, feeds=)`` in the format package; formats
    without it say nothing). ``feeds``: the validation samples that showed the drift, for a result the
    stage's own check passed. Once per stage: the answer is kept in its notes."""
    if NODE_NOTE in records[i].notes:
        return records[i].notes[NODE_NOTE]
    stage = pipeline.stages[i]
    hook = getattr(registry.format_modules().get(stage.produces.name), "first_diverging_node", None)
    if hook is None:
        return None
    before = [source, *artifacts[:i]]
    terms: dict[str, str] = {}
    for art in before:  # passes keep node names but not the map: take it from whichever stage made it
        terms.update(art.meta.get(SOURCE_MAP) or {})
    try:
        found = hook(stage, before[-1], artifacts[i], terms, feeds=feeds)
    except Exception as exc:  # a diagnosis must not hide the failure it explains
        found = {"node": None, "why": f"the search failed: {type(exc).__name__}: {' '.join(str(exc).split())[:200]}"}
    if found is not None:
        records[i].notes[NODE_NOTE] = found
    return found


def describe_node(found: Mapping[str, Any] | None) -> str:
    """``first diverging node 'node_permute' (Transpose) in attn (torch.nn.MultiheadAttention), aten.permute
    (max abs 0.91 there)``, or why no node was named."""
    if not found:
        return ""
    if found.get("node") is None:
        return f"no first diverging node named: {found.get('why', 'not searched')}"
    where = f" in {found['source']}" if found.get("source") else ""
    err = f" (max abs {found['max_abs']:.3g} there)" if found.get("max_abs") is not None else ""
    return f"first diverging node '{found['node']}' ({found.get('op', '?')}){where}{err}"


def refuse_known_wrong(pipeline: Pipeline, records: list[StageRecord], artifacts: list[Artifact], source: Artifact,
                       parity: ParityReport | None = None) -> None:
    """A stage that found its own result wrong ends the run with exit 3 (with --no-check, or when the
    final validation fails too): its model is never shipped. The error names the stage, the first
    node it gets wrong where that can be found (a search ``localise`` may already have done), and how
    far the result is from the source."""
    i = next((i for i, rec in enumerate(records) if rec.notes.get(KNOWN_WRONG)), None)
    if i is None or (parity is not None and parity):
        return  # the final model passes under the run's tolerance (e.g. a looser --atol): validation decides
    stage, rec = pipeline.stages[i], records[i]
    found = diverging_node(pipeline, i, records, artifacts, source)
    worst = max((o.max_abs for o in parity.outputs if o.max_abs is not None), default=None) \
        if parity is not None else None
    how = f"max abs {worst:.3g} against the source" if worst is not None and not parity \
        else f"its own check: {rec.notes[KNOWN_WRONG]}"
    what = f"the {stage.produces} model it made does not compute what its {stage.accepts} input does ({how})"
    fixes = ["rewrite that part of the model"] if found and found.get("node") else []
    if stage.accepts.name in registry.targets() and stage.accepts != source.format:  # --to its own format is refused
        fixes.append(f"stop before this stage with --to {stage.accepts}")
    raise StageError(stage.name, f"{what}: {describe_node(found)}" if found else what, before=_before(pipeline, i),
                     hint="nothing was written" + (f"; {' or '.join(fixes)}" if fixes else ""))


def _before(pipeline: Pipeline, i: int) -> list[str]:
    return [s.name for s in pipeline.stages[:i]]


def _rel(path: Path | None, root: Path) -> str | None:
    if path is None:
        return None
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)
