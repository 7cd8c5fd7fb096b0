import numpy as np
import pytest

from converter.core import TensorSpec
from converter.errors import InputError, UsageError
from converter.parity.inputs import check_feeds, load_feeds, make_feeds, parse_input_spec


def test_parse_static_dynamic_dtype_and_range():
    assert parse_input_spec("x:batch,3,224,224") == TensorSpec("x", ("batch", 3, 224, 224), "float32")
    s = parse_input_spec("ids:1,16:int64:0..30522")
    assert (s.shape, s.dtype, s.int_range) == ((1, 16), "int64", (0, 30522))
    assert parse_input_spec("flag:2:bool").dtype == "bool"


@pytest.mark.parametrize("bad", ["x", "x:1,a-b", "x:1,0", ":1,2", "x:1:complex", "x:1:float32:0..5",
                                 "ids:1:int64:5..5", "ids:1:int64:a..b", "x:1:float32:0..1:extra"])
def test_parse_rejects_with_usage_error(bad):
    with pytest.raises(UsageError) as e:
        parse_input_spec(bad)
    assert bad in str(e.value) or "range" in str(e.value)


def test_feeds_are_seeded_and_vary_dynamic_sizes():
    specs = [parse_input_spec("x:batch,seq,4"), parse_input_spec("ids:batch,seq:int64:5..9")]
    a, b = make_feeds(specs, samples=3, seed=1), make_feeds(specs, samples=3, seed=1)
    for fa, fb in zip(a, b):
        for k in fa:
            np.testing.assert_array_equal(fa[k], fb[k])
    shapes = [f["x"].shape for f in a]
    assert len({s[0] for s in shapes}) == 3 and shapes[0][0] != shapes[0][1]  # batch and seq differ
    assert all(f["ids"].dtype == np.int64 and f["ids"].min() >= 5 and f["ids"].max() < 9 for f in a)
    assert all(f["ids"].shape == f["x"].shape[:2] for f in a)  # one name, one size


def test_load_and_check_feeds(tmp_path):
    p = tmp_path / "f.npz"
    np.savez(p, x=np.zeros((2, 3), np.float32))
    feeds = load_feeds(p)
    check_feeds(feeds, [parse_input_spec("x:batch,3")], "f.npz")
    with pytest.raises(InputError, match="shape"):
        check_feeds(feeds, [parse_input_spec("x:batch,4")], "f.npz")
    with pytest.raises(InputError, match="missing: y"):
        check_feeds(feeds, [parse_input_spec("x:batch,3"), parse_input_spec("y:1")], "f.npz")
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(InputError, match="not a readable .npz"):
        load_feeds(tmp_path / "bad.npz")


def test_attention_masks_are_sampled_as_padding():
    """An int attention_mask in 0..2 gets what tokenizers produce: ones then zeros, at least one token
    per row, some padding in every sample. Not all ones (a mask applied along the wrong axis would
    pass), not random 0/1 (fully masked rows, undefined in fp16)."""
    specs = [parse_input_spec("input_ids:batch,seq:int64:0..100"), parse_input_spec("attention_mask:batch,seq:int64:0..2")]
    for feed in make_feeds(specs, samples=3, seed=0):
        mask = feed["attention_mask"]
        assert mask.dtype == np.int64 and mask.shape == feed["input_ids"].shape
        lengths = mask.sum(axis=-1)
        assert (lengths >= 1).all() and (mask == (np.arange(mask.shape[-1]) < lengths[:, None])).all()
        assert lengths[0] < mask.shape[-1]  # padded
    other = make_feeds([parse_input_spec("mask:2,6:int64:0..2")], samples=1, seed=0)[0]["mask"]
    assert set(np.unique(other)) <= {0, 1}  # other names keep plain uniform sampling
