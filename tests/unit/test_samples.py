"""Samples beside real data keep to its domain (parity.samples)."""

import numpy as np
import pytest

from converter.core import TensorSpec
from converter.errors import UsageError
from converter.parity.samples import channel_axis, check_mode, extra_samples


def _data():
    rng = np.random.default_rng(3)
    img = np.stack([rng.uniform(0, 1, (3, 8, 8)), rng.uniform(-2, -1, (3, 8, 8)), rng.uniform(10, 20, (3, 8, 8))],
                   axis=1).astype(np.float32)  # [3, 3, 8, 8]: one range per channel
    ids = rng.choice([101, 7, 42, 999], size=(3, 6)).astype(np.int64)
    mask = (np.arange(6) < np.array([[6], [3], [1]])).astype(np.int64)
    flag = np.array([[True, False], [False, False], [True, True]])
    den = (rng.choice([-1.0, 1.0], (3, 4)) * rng.uniform(0.5, 2.0, (3, 4))).astype(np.float64)
    wide = rng.integers(-500, 500, size=(3, 100)).astype(np.int32)
    return {"img": img, "ids": ids, "mask": mask, "flag": flag, "den": den, "wide": wide}


def _specs(data):
    return [TensorSpec(k, tuple(v.shape), str(v.dtype)) for k, v in data.items()]


def test_data_samples_keep_dtype_range_per_channel_sign_set_and_masks():
    data = _data()
    samples, note = extra_samples(data, _specs(data), 4, seed=1, mode="data")
    assert len(samples) == 4 and "--samples-from data" in note
    for s in samples:
        assert {k: (v.dtype, v.shape) for k, v in s.items()} == {k: (v.dtype, v.shape) for k, v in data.items()}
        for c in range(3):
            ch, real = s["img"][:, c], data["img"][:, c]
            assert real.min() <= ch.min() and ch.max() <= real.max()
        assert set(np.unique(s["ids"])) <= set(np.unique(data["ids"]))
        assert data["wide"].min() <= s["wide"].min() and s["wide"].max() <= data["wide"].max()
        assert np.abs(s["den"]).min() >= 0.5 * np.exp(-1.0)  # away from zero, as every real denominator
        # rows recombined with one permutation: each row's sign pattern, mask and flags are a real row's
        perm = [int(np.flatnonzero((data["mask"] == row).all(axis=1))[0]) for row in s["mask"]]
        assert sorted(perm) == [0, 1, 2]
        np.testing.assert_array_equal(np.sign(s["den"]), np.sign(data["den"][perm]))
        np.testing.assert_array_equal(s["flag"], data["flag"][perm])
    assert not np.array_equal(samples[0]["img"], samples[1]["img"])  # not copies


def test_random_and_mixed_modes():
    data = _data()
    rnd, note = extra_samples(data, _specs(data), 2, seed=0, mode="random")
    assert "--samples-from random" in note and rnd[0]["img"].min() < -2.5  # standard normal noise
    mixed, _ = extra_samples(data, _specs(data), 2, seed=0, mode="mixed")
    assert mixed[0]["img"].min() >= data["img"].min() and mixed[1]["img"].min() < -2.5


def test_mode_choice():
    assert check_mode(None, True) == "data" and check_mode(None, False) == "random"
    assert check_mode("mixed", True) == "mixed" and check_mode("random", False) == "random"
    with pytest.raises(UsageError, match="needs real data"):
        check_mode("data", False)


def test_channel_axis():
    assert channel_axis((2, 3, 32, 32)) == 1 and channel_axis((2, 32, 32, 3)) == 3
    assert channel_axis((2, 16, 8, 8)) is None and channel_axis((2, 3)) is None
