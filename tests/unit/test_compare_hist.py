"""parity.compare's histogram of |got - ref| per output (abs_error_hist: fixed decade bins, read
by the HTML report)."""

from __future__ import annotations

import json

import numpy as np

from converter.core import Tolerance
from converter.parity.compare import HIST_EDGES, compare


def _one(ref: np.ndarray, got: np.ndarray, samples: int = 1):
    return compare([{"y": ref}] * samples, [{"y": got}] * samples, Tolerance(1e-4, 1e-3)).outputs[0]


def test_every_element_of_every_sample_lands_in_its_decade() -> None:
    ref = np.zeros(6, np.float64)
    got = np.array([0.0, 3e-9, 5e-5, 2e-3, 0.5, 7.0])
    o = _one(ref, got, samples=2)
    h = o.abs_error_hist
    assert h.edges == [*HIST_EDGES, 100.0] and len(h.counts) == len(h.edges) - 1
    expect = [0] * len(h.counts)
    for v in np.abs(got):
        expect[max(i for i, e in enumerate(h.edges[:-1]) if v >= e)] += 2
    assert h.counts == expect and sum(h.counts) == 12
    assert h.counts[0] == 2 and h.counts[-2] == 2 and h.counts[-1] == 0  # zeros first; 7.0 in [1, 10)
    assert json.loads(json.dumps(o.to_json()))["abs_error_hist"] == {"edges": h.edges, "counts": h.counts}


def test_the_top_edge_reaches_the_largest_error() -> None:
    h = _one(np.zeros(3), np.array([0.0, 50.0, 1234.5])).abs_error_hist
    assert h.edges[-2:] == [10.0, 1234.5] and h.counts[-1] == 2  # 50 and 1234.5: the last bin is closed


def test_no_histogram_without_comparable_values() -> None:
    assert _one(np.zeros((2, 3)), np.zeros((3, 2))).abs_error_hist is None  # shape mismatch
    assert _one(np.zeros(0), np.zeros(0)).abs_error_hist is None
    h = _one(np.array([np.inf, 1.0]), np.array([5.0, 1.5])).abs_error_hist  # an Inf error has no decade
    assert sum(h.counts) == 1
