"""Run the reference and the candidate in their own runtimes on the same feeds and compare."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .. import registry
from ..core import Artifact, Tolerance
from ..errors import ConvertkitError
from .compare import ERROR, OutputParity, ParityReport, compare, match_names


def run(artifact: Artifact, feeds: Sequence[Mapping[str, Any]], **runner_options: Any) -> list[dict[str, Any]]:
    """All samples through one runner (one runtime start per validation, not per sample)."""
    with registry.runner_for(artifact, **runner_options) as runner:
        return [runner.infer(f) for f in feeds]


def feeds_for(candidate: Artifact, feeds: Sequence[Mapping[str, Any]]) -> tuple[list[dict[str, Any]], str | None]:
    """Rename feeds to the candidate's input names where they differ only in name."""
    if not feeds or not candidate.inputs:
        return [dict(f) for f in feeds], None
    mapping, note = match_names(list(feeds[0]), [s.name for s in candidate.inputs])
    if not note:
        return [dict(f) for f in feeds], None
    return [{mapping[k]: v for k, v in f.items() if k in mapping} for f in feeds], "inputs " + note


def validate(reference: Artifact, candidate: Artifact, feeds: Sequence[Mapping[str, Any]], tol: Tolerance, *,
             reference_outputs: list[dict[str, Any]] | None = None, **runner_options: Any) -> ParityReport:
    """A candidate that cannot load raises (the conversion failed); one that loads but fails on some
    sample (e.g. a dimension the exporter fixed) is a parity failure, reported per output."""
    refs = reference_outputs if reference_outputs is not None else run(reference, feeds)
    cand_feeds, note = feeds_for(candidate, feeds)
    gots: list[dict[str, Any]] = []
    with registry.runner_for(candidate, **runner_options) as runner:
        for i, f in enumerate(cand_feeds):
            try:
                gots.append(runner.infer(f))
            except ConvertkitError as exc:
                shapes = ", ".join(f"{k}{list(v.shape)}" for k, v in f.items())
                msg = f"the candidate failed to run on sample {i} ({shapes}): {exc.message}"
                return ParityReport([OutputParity(name, ERROR, message=msg) for name in refs[0]], tol, len(feeds),
                                    [note] if note else [])
    report = compare(refs, gots, tol)
    if note:
        report.notes.insert(0, note)
    return report
