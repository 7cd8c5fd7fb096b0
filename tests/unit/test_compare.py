import numpy as np

from converter.core import Tolerance
from converter.parity.compare import DTYPE, MISSING, NONFINITE, OK, SHAPE, TOLERANCE, compare

TOL = Tolerance(atol=1e-4, rtol=1e-3)


def _outs(arr, name="y"):
    return [{name: arr}]


def test_identical_passes_with_exact_metrics():
    x = np.random.default_rng(0).standard_normal((4, 10)).astype(np.float32)
    r = compare(_outs(x), _outs(x.copy()), TOL)
    assert r and r.outputs[0].status == OK
    o = r.outputs[0]
    assert (o.max_abs, o.mean_abs, o.atol_needed) == (0.0, 0.0, 0.0)
    assert o.cosine == 1.0 and o.top1 == 1.0


def test_drift_fails_and_says_what_would_pass():
    x = np.ones((2, 3), np.float32)
    y = x.copy()
    y[0, 0] += 0.01
    r = compare(_outs(x), _outs(y), TOL)
    o = r.outputs[0]
    assert not r and o.status == TOLERANCE
    np.testing.assert_allclose(o.max_abs, 0.01, rtol=1e-4)
    np.testing.assert_allclose(o.atol_needed, 0.01 - 1e-3, rtol=1e-3)  # |d| - rtol*|ref|
    assert compare(_outs(x), _outs(y), Tolerance(atol=o.atol_needed * 1.001, rtol=1e-3))


def test_shape_dtype_missing_nonfinite_always_fail():
    x = np.zeros((2, 3), np.float32)
    assert compare(_outs(x), _outs(np.zeros((3, 2), np.float32)), TOL).outputs[0].status == SHAPE
    assert compare(_outs(x), _outs(x.astype(np.float16)), TOL).outputs[0].status == DTYPE
    r = compare([{"a": x, "b": x}], [{"a": x, "c": x, "d": x}], TOL)
    assert [o.status for o in r.outputs] == [OK, MISSING]
    y = x.copy()
    y[1, 2] = np.nan
    assert compare(_outs(x), _outs(y), Tolerance(atol=1e9, rtol=1e9)).outputs[0].status == NONFINITE


def test_positional_match_when_names_differ_and_int64_to_int32_allowed():
    x = np.arange(6, dtype=np.int64).reshape(2, 3)
    r = compare(_outs(x, "logits"), _outs(x.astype(np.int32), "output_0"), TOL)
    assert r and "matched by position" in r.notes[0]


def test_cosine_and_top1_thresholds():
    ref = np.array([[1.0, 2.0], [3.0, 1.0]], np.float32)
    got = np.array([[2.1, 2.0], [3.0, 1.0]], np.float32)  # first row's argmax flips: a clear decision at atol 0.5
    r = compare(_outs(ref), _outs(got), Tolerance(atol=0.5, rtol=0, min_top1=0.99))
    assert not r and "top-1" in r.outputs[0].message and r.outputs[0].top1 == 0.5
    r = compare(_outs(ref), _outs(-ref), Tolerance(atol=10, rtol=0, min_cosine=0.9))
    assert not r and "cosine" in r.outputs[0].message


def test_a_dtype_change_passes_only_when_the_tolerance_declares_it():
    x = np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4)
    assert compare(_outs(x), _outs(x.astype(np.float16)), TOL).outputs[0].status == DTYPE
    fp16_io = Tolerance(atol=1e-2, rtol=1e-2, dtype_changes=(("float32", "float16"),))
    assert compare(_outs(x), _outs(x.astype(np.float16)), fp16_io)
    assert TOL.loosened_by(fp16_io).dtype_changes == (("float32", "float16"),)


def test_rendered_report_keeps_bracketed_text():
    """Notes such as "fixed shapes x[batch,4,32]" reach the terminal whole (rich would read the
    brackets as markup and drop them)."""
    import io

    from rich.console import Console

    from converter.report import RunReport, render

    report = RunReport("export", {"location": "m"}, "tfjs", notes=["the model takes fixed shapes x[batch,4,32]"],
                       artifact="out/[run]/model")
    out = io.StringIO()
    render(report, Console(file=out, width=200))
    assert "x[batch,4,32]" in out.getvalue() and "out/[run]/model" in out.getvalue()


def _logits(margins: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows of 10 logits whose best class leads the second by ``margins`` (rest well below)."""
    rows = rng.standard_normal((len(margins), 10)) - 3.0
    best = rng.integers(0, 10, len(margins))
    second = (best + 1 + rng.integers(0, 9, len(margins))) % 10
    idx = np.arange(len(margins))
    rows[idx, best] = 1.0 + margins
    rows[idx, second] = 1.0
    return rows.astype(np.float32), best, second


def test_top1_leaves_out_near_ties_and_still_catches_clear_flips():
    """int8's tolerance (cosine 0.99 ~ 14% RMS): a flip between two scores closer than that is not
    a disagreement; a flip of a clear decision is, and fails the gate."""
    from converter.passes.quantize import INT8

    rng = np.random.default_rng(0)
    margins = np.r_[np.full(6, 0.01), np.full(14, 2.0)]  # 6 near-ties, 14 clear rows
    ref, best, second = _logits(margins, rng)
    idx = np.arange(len(margins))
    ties = ref.copy()
    ties[idx[:6], second[:6]] += 0.02  # every near-tie flips: error 0.02, far inside the tolerance
    r = compare(_outs(ref), _outs(ties), INT8)
    o = r.outputs[0]
    assert r, r.summary()
    assert (o.top1, o.top1_rows, o.top1_near_ties) == (1.0, 14, 6)
    clear = ref.copy()
    clear[idx[6:9], second[6:9]] += 2.5  # three clear decisions flip (cosine stays high: 40 rows of 10)
    o = compare(_outs(ref), _outs(clear), Tolerance(atol=10, rtol=0, min_cosine=0.9, min_top1=0.9)).outputs[0]
    assert o.top1 == 11 / 14 and o.top1_near_ties == 6 and "top-1 agreement 0.786 < 0.9" in o.message
    # a plain argmax over all rows would have judged the near-ties too: 11/20 agree
    assert float(np.mean(np.argmax(ref, 1) == np.argmax(clear, 1))) < 0.9


def test_top1_is_not_judged_when_every_row_is_a_near_tie():
    rng = np.random.default_rng(1)
    ref, _, second = _logits(np.full(4, 1e-3), rng)
    got = ref.copy()
    got[np.arange(4), second] += 0.01
    o = compare(_outs(ref), _outs(got), Tolerance(atol=0.05, rtol=0, min_top1=0.99)).outputs[0]
    assert o.passed and o.top1 is None and o.top1_near_ties == 4
