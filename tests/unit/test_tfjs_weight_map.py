"""The TF.js weight-map search's pure parts (numpy only): the greedy path by predicted error per
byte and the choice of the steps to screen. The measurement itself runs in TF.js:
tests/e2e/test_tfjs_passes.py."""

from __future__ import annotations

import numpy as np

from converter.passes.tfjs_weight_map import Screened, Sensitivity, Step, coarse_steps, fine_steps, greedy_path


def _sens(deltas: dict[str, dict[str, np.ndarray]], dim: int = 40) -> Sensitivity:
    ref = np.random.default_rng(0).standard_normal(dim)
    ref /= np.linalg.norm(ref)
    full = {n: {"float32": np.zeros(dim), **d} for n, d in deltas.items()}
    return Sensitivity(ref, full, (slice(0, dim),), runs=1, seconds=0.0)


def test_greedy_path_raises_the_most_error_per_byte_first():
    rng = np.random.default_rng(1)
    noise = {n: rng.standard_normal(40) for n in "abc"}
    # a: big tensor, large error; b: small tensor, the same error (cheaper to fix); c: harmless
    sens = _sens({"a": {"uint8": 0.2 * noise["a"], "float16": 0.001 * noise["a"]},
                  "b": {"uint8": 0.2 * noise["b"], "uint16": 0.0005 * noise["b"]},
                  "c": {"uint8": 0.001 * noise["c"], "uint16": 1e-6 * noise["c"]}})
    sizes = {"a": 10_000, "b": 100, "c": 10_000}
    path = greedy_path(sens, sizes, dict.fromkeys("abc", "uint8"), fixed_bytes=7)
    assert path[0].nbytes == 7 + 20_100 and path[0].predicted_cosine < 0.97
    assert [s.raised[:3] for s in path[1:3]] == [("b", "uint8", "uint16"), ("a", "uint8", "float16")]
    cos = [s.predicted_cosine for s in path]
    assert cos[2] > 0.9999 and all(x <= y + 1e-12 for x, y in zip(cos, cos[1:3]))
    assert [s.nbytes for s in path] == sorted(s.nbytes for s in path)
    assert sum(d == "float32" for d in path[-1].dtypes.values()) <= 1  # at most half (of 3) kept float32


def test_greedy_path_skips_overflowing_dtypes_and_respects_max_raised():
    sens = _sens({"a": {"uint8": np.full(40, 0.1), "float16": np.full(40, np.inf)},
                  "b": {"uint8": np.full(40, 0.05), "uint16": np.full(40, 1e-4)}})
    path = greedy_path(sens, {"a": 10, "b": 10}, {"a": "uint8", "b": "uint8"}, 0)
    assert all(s.dtypes["a"] != "float16" for s in path)
    assert path[-1].dtypes["a"] == "float32"
    capped = greedy_path(sens, {"a": 10, "b": 10}, {"a": "uint8", "b": "uint8"}, 0, max_raised=1)
    assert max(sum(d != "uint8" for d in s.dtypes.values()) for s in capped) == 1


def test_screened_steps_bracket_the_predicted_crossing():
    path = [Step({}, 100 + i, 1.0 - 0.01 / (i + 1)) for i in range(40)]  # aim 0.9975: reached at step 3
    steps = coarse_steps(path, aim=0.9975)
    assert steps[0] >= 1 and 3 in steps and steps[-1] == 39 and len(steps) <= 16
    screened = [Screened(i, 100 + i, None, i >= 9) for i in steps]
    fine = fine_steps(screened)
    assert fine and min(fine) > max(i for i in steps if i < 9) and max(fine) < min(i for i in steps if i >= 9)
    assert fine_steps([Screened(5, 105, None, False)]) == []
