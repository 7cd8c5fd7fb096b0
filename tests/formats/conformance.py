"""ONNX's own conformance data through our lowering (issue 13): every case of the ``onnx`` package's
``backend/test/data/node`` and ``pytorch-converted``, lowered, run in TensorFlow in-process on the
case's inputs, and compared with the case's expected outputs.

Each case ends as one ``Outcome``; what is skipped, tolerated and known wrong is data
(``conformance_data.py``). ``python -m tests.formats.conformance --write-docs`` writes the table of
ops with their counts to ``docs/onnx-ops.md``; ``python -m tests.formats.conformance [NAME...]``
prints the outcome of the cases whose names contain NAME.
"""

from __future__ import annotations

import enum
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.formats.conformance_data import (
    ATOL_FLOOR,
    DOMAIN_REASON,
    FLOAT16_TOLERANCE,
    KNOWN_WRONG,
    SKIP_CASES,
    SKIP_OPS,
    SKIP_TYPES,
    TOLERANCE,
)

SUITES = ("node", "pytorch-converted")
ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs" / "onnx-ops.md"


class Outcome(enum.Enum):
    VERIFIED = "verified"  # lowered, ran, outputs match
    SKIPPED = "skipped"  # no TF.js model could run it (see conformance_data)
    UNSUPPORTED = "unsupported"  # an op without a handler, named by missing_ops before any work
    REJECTED = "rejected"  # a handler refused the node with a LoweringError naming it (exit 3)
    CRASHED = "crashed"  # any other exception, while lowering or running
    WRONG = "wrong"  # lowered and ran, but the outputs differ: the one outcome that must not happen


@dataclass(frozen=True)
class Case:
    name: str
    path: Path
    ops: tuple[str, ...]  # op types, "domain.op" outside the default domain, sorted

    @property
    def suite(self) -> str:
        return self.path.parent.name


@dataclass(frozen=True)
class Result:
    case: Case
    outcome: Outcome
    detail: str = ""
    seconds: float = 0.0


@dataclass
class Summary:
    results: list[Result]
    by_outcome: dict[Outcome, list[Result]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for o in Outcome:
            self.by_outcome[o] = [r for r in self.results if r.outcome is o]

    def count(self, outcome: Outcome) -> int:
        return len(self.by_outcome[outcome])

    @property
    def considered(self) -> int:
        """Cases not skipped: the denominator of the verified share."""
        return len(self.results) - self.count(Outcome.SKIPPED)

    @property
    def verified_share(self) -> float:
        return self.count(Outcome.VERIFIED) / max(self.considered, 1)

    def line(self) -> str:
        counts = ", ".join(f"{o.value} {self.count(o)}" for o in Outcome)
        return f"{len(self.results)} cases: {counts}; verified {self.verified_share:.1%} of {self.considered} not skipped"


def data_root() -> Path:
    import onnx.backend.test

    return Path(onnx.backend.test.__file__).parent / "data"


def cases(names: Iterable[str] = ()) -> list[Case]:
    """Every case of SUITES (those whose names contain one of ``names``, if given), sorted by name."""
    import onnx

    wanted = tuple(names)
    out = []
    for suite in SUITES:
        for d in sorted((data_root() / suite).iterdir()):
            if not (d / "model.onnx").is_file() or (wanted and not any(w in d.name for w in wanted)):
                continue
            model = onnx.load(str(d / "model.onnx"), load_external_data=False)
            ops = sorted({n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}.{n.op_type}"
                          for n in _all_nodes(model.graph)})
            out.append(Case(d.name, d, tuple(ops)))
    return out


def _all_nodes(graph: Any) -> Iterable[Any]:
    for node in graph.node:
        yield node
        for a in node.attribute:
            if a.HasField("g"):
                yield from _all_nodes(a.g)
            for g in a.graphs:
                yield from _all_nodes(g)


def skip_reason(case: Case, model: Any) -> str | None:
    """Why the case is skipped (conformance_data), or None."""
    for prefix, why in SKIP_CASES.items():
        if case.name.startswith(prefix):
            return why
    for op in case.ops:
        if "." in op:
            return f"{op}: {DOMAIN_REASON}"
        if op in SKIP_OPS:
            return f"{op}: {SKIP_OPS[op]}"
    graph = model.graph
    for v in (*graph.input, *graph.output):
        kind = v.type.WhichOneof("value")
        if kind != "tensor_type":
            return f"'{v.name}' is a {kind.replace('_type', '')} value: TF.js graph models take tensors only"
        if v.type.tensor_type.elem_type in SKIP_TYPES:
            return SKIP_TYPES[v.type.tensor_type.elem_type]
    for t in graph.initializer:
        if t.data_type in SKIP_TYPES:
            return SKIP_TYPES[t.data_type]
    for node in _all_nodes(graph):
        for a in node.attribute:
            if a.HasField("t") and a.t.data_type in SKIP_TYPES:
                return SKIP_TYPES[a.t.data_type]
            if node.op_type == "Cast" and a.name == "to" and a.i in SKIP_TYPES:
                return SKIP_TYPES[a.i]
    return None


def run_case(case: Case) -> Result:
    t0 = time.perf_counter()
    outcome, detail = _run(case)
    return Result(case, outcome, detail, time.perf_counter() - t0)


def _run(case: Case) -> tuple[Outcome, str]:
    from converter.formats.tf.lower import LoweringError, missing_ops
    from converter.formats.tf.lower.harness import load_case, lower_model, run

    import onnx

    model = onnx.load(str(case.path / "model.onnx"))
    why = skip_reason(case, model)
    if why:
        return Outcome.SKIPPED, why
    _, inputs, expected = load_case(case.path)
    missing = missing_ops(model)
    if missing:
        return Outcome.UNSUPPORTED, ", ".join(f"{o} (opset {v})" for o, v in missing)
    try:
        lowered = lower_model(model)
    except LoweringError as exc:
        return Outcome.REJECTED, _first(exc)
    except Exception as exc:  # a bug: the lowering must turn failures into LoweringError
        return Outcome.CRASHED, f"lowering: {type(exc).__name__}: {_first(exc)}"
    try:
        got = run(lowered, model, inputs)
    except Exception as exc:  # TensorFlow refused to run the graph it traced
        return Outcome.CRASHED, f"running: {type(exc).__name__}: {_first(exc)}"
    problem = mismatch(expected, got)
    return (Outcome.WRONG, problem) if problem else (Outcome.VERIFIED, "")


def _first(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]


def mismatch(expected: Sequence[Any], got: Sequence[Any]) -> str | None:
    """None when every output matches (shape, dtype, values within TOLERANCE), else what differs."""
    import numpy as np

    if len(got) != len(expected):
        return f"{len(got)} outputs, expected {len(expected)}"
    for i, (want, have) in enumerate(zip(expected, got)):
        want, have = np.asarray(want), np.asarray(have)
        if want.shape != have.shape:
            return f"output {i}: shape {have.shape}, expected {want.shape}"
        if want.dtype != have.dtype:
            return f"output {i}: dtype {have.dtype}, expected {want.dtype}"
        if want.dtype.kind in "fc":
            rtol, atol = FLOAT16_TOLERANCE if want.dtype == np.float16 else TOLERANCE
            err = _float_error(np, want, have, rtol, max(atol, ATOL_FLOOR))
            if err:
                return f"output {i}: {err}"
        elif not np.array_equal(want, have):
            bad = int(np.sum(want != have))
            return f"output {i}: {bad} of {want.size} values differ"
    return None


def _float_error(np: Any, want: Any, have: Any, rtol: float, atol: float) -> str | None:
    if not np.array_equal(np.isnan(want), np.isnan(have)):
        return "NaN where the expected output has none (or the other way round)"
    w, h = want.astype(np.float64), have.astype(np.float64)
    ok = np.isclose(h, w, rtol=rtol, atol=atol, equal_nan=True) | (w == h)
    if ok.all():
        return None
    diff = np.abs(np.where(ok, 0, h - w))
    return f"{int((~ok).sum())} of {w.size} values beyond rtol {rtol:g} / atol {atol:g} (max abs {np.nanmax(diff):.3g})"


def run_all(names: Iterable[str] = ()) -> Summary:
    from converter.deps import require

    require("tensorflow")  # once, through convertkit's environment settings
    return Summary([run_case(c) for c in cases(names)])


def main(argv: Sequence[str]) -> int:
    args = list(argv)
    write = "--write-docs" in args
    names = [a for a in args if not a.startswith("--")]
    t0 = time.perf_counter()
    summary = run_all(names)
    if write:
        from tests.formats.conformance_docs import write_docs

        write_docs(summary, DOCS)
        print(f"wrote {DOCS.relative_to(ROOT)}")
    if names or "--verbose" in args:
        for r in summary.results:
            print(f"{r.outcome.value:11} {r.case.name:55} {r.seconds:5.2f}s {r.detail}")
    else:
        for o in (Outcome.WRONG, Outcome.CRASHED, Outcome.REJECTED):
            for r in summary.by_outcome[o]:
                print(f"{o.value:11} {r.case.name:55} {r.detail}")
    print(summary.line(), f"in {time.perf_counter() - t0:.1f}s")
    wrong = [r.case.name for r in summary.by_outcome[Outcome.WRONG] if r.case.name not in KNOWN_WRONG]
    return 1 if wrong else 0


if __name__ == "__main__":  # run the imported module's main: one Outcome enum for conformance_docs too
    from tests.formats.conformance import main as _main

    sys.exit(_main(sys.argv[1:]))
