"""Compare two sets of outputs (numpy only) into a ParityReport.

Shape, dtype, missing outputs and NaN/Inf in the candidate always fail. Numeric drift fails when
any element breaks ``|got - ref| <= atol + rtol * |ref|`` or, where the tolerance sets them,
cosine similarity or top-1 agreement fall below their thresholds. Every output also says which
atol (at the given rtol) and which rtol (at the given atol) would have passed.

Top-1 agreement (2-D float outputs: rows of logits or scores) counts only CLEAR decisions: a row
whose reference top-2 margin is within the error the tolerance allows cannot be called a flip,
since any result inside the tolerance may reorder it. The allowed error of a row is the elementwise
band at its top score, ``atol + rtol * |ref_top|``, and, where the tolerance sets ``min_cosine``, the
RMS error that cosine allows, ``sqrt(2 * (1 - min_cosine)) * rms(row)`` (cosine c ~ relative RMS error
sqrt(2(1 - c))): the smaller of the two. Rows within it are left out and counted (``top1_near_ties``);
when every row is a near-tie, top-1 is not judged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from ..core import Tolerance

OK, TOLERANCE, SHAPE, DTYPE, MISSING, NONFINITE, ERROR = "ok", "tolerance", "shape", "dtype", "missing", "nonfinite", "error"
#: dtype changes a runtime is known to make on purpose (TF.js has no int64); reported, not failed
ALLOWED_DTYPE_CHANGES = frozenset({("int64", "int32"), ("float64", "float32")})


#: decade edges of the |got - ref| histogram: [0, 1e-10), [1e-10, 1e-9), ... [10, top]; fixed, so that
#: artifacts compare bin by bin (the report's HTML draws them); the top edge is max(100, largest error)
HIST_EDGES = (0.0, *(10.0 ** k for k in range(-10, 2)))


@dataclass
class ErrorHistogram:
    edges: list[float]  # len(counts) + 1, increasing; the last bin is closed
    counts: list[int]


@dataclass
class OutputParity:
    name: str
    status: str
    candidate_name: str | None = None
    ref_shape: list[int] | None = None
    got_shape: list[int] | None = None
    ref_dtype: str | None = None
    got_dtype: str | None = None
    max_abs: float | None = None
    max_rel: float | None = None
    mean_abs: float | None = None
    p99_abs: float | None = None
    cosine: float | None = None
    top1: float | None = None  # agreement over the clear rows (see the module docstring)
    top1_rows: int | None = None  # rows that were clear decisions
    top1_near_ties: int | None = None  # rows left out: reference top-2 margin within the allowed error
    atol_needed: float | None = None  # smallest atol that passes at the tolerance's rtol
    rtol_needed: float | None = None  # smallest rtol that passes at the tolerance's atol
    message: str = ""
    abs_error_hist: ErrorHistogram | None = None  # |got - ref| over every element of every sample

    @property
    def passed(self) -> bool:
        return self.status == OK

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ParityReport:
    outputs: list[OutputParity]
    tolerance: Tolerance
    samples: int
    notes: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.outputs) and all(o.passed for o in self.outputs)

    @property
    def passed(self) -> bool:
        return bool(self)

    def failures(self) -> list[OutputParity]:
        return [o for o in self.outputs if not o.passed]

    def summary(self) -> str:
        if self:
            worst = max((o.max_abs or 0.0) for o in self.outputs)
            return f"parity PASSED: {len(self.outputs)} output(s), {self.samples} sample(s), max abs error {worst:.3g}"
        return "parity FAILED: " + "; ".join(f"{o.name}: {o.message}" for o in self.failures())

    def to_json(self) -> dict[str, Any]:
        return {"passed": self.passed, "tolerance": self.tolerance.to_json(), "samples": self.samples,
                "outputs": [o.to_json() for o in self.outputs], "notes": list(self.notes)}


def match_names(ref: Sequence[str], got: Sequence[str]) -> tuple[dict[str, str], str | None]:
    """Pair reference names with candidate names: by name when every reference name is there,
    else by position when the counts agree (and say so), else by name as far as it goes."""
    if all(n in got for n in ref):
        return {n: n for n in ref}, None
    if len(ref) == len(got):
        pairs = dict(zip(ref, got))
        return pairs, "names differ, matched by position: " + ", ".join(f"{a}->{b}" for a, b in pairs.items() if a != b)
    return {n: n for n in ref if n in got}, None


def compare(refs: Sequence[Mapping[str, Any]], gots: Sequence[Mapping[str, Any]], tol: Tolerance) -> ParityReport:
    """``refs[i]`` and ``gots[i]`` are the outputs of sample i (name -> array)."""
    import numpy as np

    if not refs:
        return ParityReport([], tol, 0, ["no samples were run"])
    mapping, note = match_names(list(refs[0]), list(gots[0]))
    report = ParityReport([], tol, len(refs), [note] if note else [])
    extra = [n for n in gots[0] if n not in mapping.values()]
    if extra:
        report.notes.append("candidate has outputs the reference does not: " + ", ".join(extra))
    for name in refs[0]:
        cname = mapping.get(name)
        if cname is None:
            report.outputs.append(OutputParity(name, MISSING, message="missing from the candidate's outputs"))
            continue
        report.outputs.append(_compare_one(name, cname, [r[name] for r in refs], [g[cname] for g in gots], tol, np))
    return report


def _compare_one(name: str, cname: str, refs: list, gots: list, tol: Tolerance, np: Any) -> OutputParity:
    ref0, got0 = np.asarray(refs[0]), np.asarray(gots[0])
    res = OutputParity(name, OK, candidate_name=cname, ref_shape=list(ref0.shape), got_shape=list(got0.shape),
                       ref_dtype=str(ref0.dtype), got_dtype=str(got0.dtype))
    allowed = ALLOWED_DTYPE_CHANGES | set(tol.dtype_changes)
    if res.ref_dtype != res.got_dtype and (res.ref_dtype, res.got_dtype) not in allowed:
        res.status, res.message = DTYPE, f"dtype {res.got_dtype}, expected {res.ref_dtype}"
        return res
    diffs, refabs, dots, nref, ngot, top1 = [], [], 0.0, 0.0, 0.0, []
    for i, (r, g) in enumerate(zip(refs, gots)):
        r, g = np.asarray(r), np.asarray(g)
        if r.shape != g.shape:
            res.status, res.got_shape = SHAPE, list(g.shape)
            res.message = f"shape {list(g.shape)}, expected {list(r.shape)} (sample {i})"
            return res
        if g.dtype.kind in "fc" and not np.all(np.isfinite(g)):
            bad = int(np.sum(~np.isfinite(g)))
            res.status, res.message = NONFINITE, f"{bad} NaN/Inf value(s) in the candidate (sample {i})"
            return res
        r64, g64 = r.astype(np.float64).ravel(), g.astype(np.float64).ravel()
        diffs.append(np.abs(g64 - r64))
        refabs.append(np.abs(r64))
        dots += float(r64 @ g64)
        nref += float(r64 @ r64)
        ngot += float(g64 @ g64)
        if r.ndim == 2 and r.shape[1] > 1 and r.dtype.kind == "f":
            top1.append(_top1_rows(r.astype(np.float64), g.astype(np.float64), tol, np))
    d, a = np.concatenate(diffs), np.concatenate(refabs)
    if d.size == 0:
        res.max_abs = res.mean_abs = res.p99_abs = res.max_rel = 0.0
        return res
    res.max_abs, res.mean_abs, res.p99_abs = float(d.max()), float(d.mean()), float(np.percentile(d, 99))
    res.abs_error_hist = _histogram(d, np)
    res.max_rel = float(np.max(d / np.maximum(a, 1e-12)))
    res.cosine = 1.0 if nref == 0 and ngot == 0 else float(dots / (np.sqrt(nref * ngot) or 1.0))
    if top1:
        agree, clear = np.concatenate([a for a, _ in top1]), np.concatenate([c for _, c in top1])
        res.top1_rows, res.top1_near_ties = int(clear.sum()), int((~clear).sum())
        res.top1 = float(agree[clear].mean()) if clear.any() else None
    res.atol_needed = float(max(0.0, np.max(d - tol.rtol * a)))
    over = d > tol.atol
    res.rtol_needed = 0.0 if not over.any() else float(np.max((d[over] - tol.atol) / np.maximum(a[over], 1e-30)))
    problems = []
    if res.atol_needed > tol.atol:
        problems.append(f"max abs error {res.max_abs:.3g} exceeds atol {tol.atol:g} + rtol {tol.rtol:g}*|ref| "
                        f"(would pass with atol {res.atol_needed:.3g})")
    if tol.min_cosine is not None and res.cosine < tol.min_cosine:
        problems.append(f"cosine {res.cosine:.6f} < {tol.min_cosine}")
    if tol.min_top1 is not None and res.top1 is not None and res.top1 < tol.min_top1:
        problems.append(f"top-1 agreement {res.top1:.3f} < {tol.min_top1}")
    if problems:
        res.status, res.message = TOLERANCE, "; ".join(problems)
    return res


def _histogram(d: Any, np: Any) -> ErrorHistogram | None:
    """Counts of |got - ref| per decade (HIST_EDGES); NaN errors (Inf in the reference) are left out."""
    d = d[np.isfinite(d)]
    if d.size == 0:
        return None
    edges = [*HIST_EDGES, max(100.0, float(d.max()))]
    counts, _ = np.histogram(d, bins=np.asarray(edges))
    return ErrorHistogram(edges, [int(c) for c in counts])


def _top1_rows(r: Any, g: Any, tol: Tolerance, np: Any) -> tuple[Any, Any]:
    """(argmax agrees, the row is a clear decision) per row of a 2-D output."""
    agree = np.argmax(r, axis=1) == np.argmax(g, axis=1)
    top2 = np.sort(r, axis=1)[:, -2:]
    margin = top2[:, 1] - top2[:, 0]
    allowed = tol.atol + tol.rtol * np.abs(top2[:, 1])
    if tol.min_cosine is not None:
        rms = np.sqrt(np.mean(r * r, axis=1))
        allowed = np.minimum(allowed, np.sqrt(2.0 * max(0.0, 1.0 - tol.min_cosine)) * rms)
    return agree, margin > allowed
