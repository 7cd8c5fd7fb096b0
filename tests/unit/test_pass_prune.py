"""Prune on hand-built ONNX graphs: exact sparsity, what is never touched, structured rewrites."""

import numpy as np
import pytest

from tests.conftest import need
from tests.unit import _onnx_models as m


@pytest.fixture(autouse=True)
def _frameworks():
    need("onnx", "onnxruntime")


def _weights(path):
    import onnx
    from onnx import numpy_helper

    return {t.name: numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer}


@pytest.mark.parametrize("sparsity", [0.5, 0.3, 0.9])
def test_global_magnitude_hits_the_request_and_leaves_biases(tmp_path, sparsity):
    from converter.passes.prune import Prune

    src = m.mlp(tmp_path / "mlp.onnx")
    out = Prune(sparsity=sparsity).run(m.artifact(src), tmp_path / "out")
    w = _weights(out.path)
    zeros = sum(int((w[n] == 0).sum()) for n in ("w1", "w2"))
    assert abs(zeros / (w["w1"].size + w["w2"].size) - sparsity) <= 0.01
    assert out.meta["sparsity"]["achieved"] == pytest.approx(sparsity, abs=0.01)
    before = _weights(src)
    assert np.array_equal(w["b1"], before["b1"]) and np.array_equal(w["b2"], before["b2"])
    kept = w["w1"] != 0  # the survivors are the largest magnitudes, unchanged
    assert np.array_equal(w["w1"][kept], before["w1"][kept])
    assert sorted(p.name for p in out.path.parent.iterdir()) == ["model.onnx"]


def test_layer_scope_prunes_each_tensor_exactly(tmp_path):
    from converter.passes.prune import Prune

    out = Prune(sparsity=0.25, scope="layer").run(m.artifact(m.mlp(tmp_path / "mlp.onnx")), tmp_path / "out")
    assert out.meta["sparsity"]["per_tensor"] == {"w1": 0.25, "w2": 0.25}


def test_structured_removes_channels_through_bn_pool_and_flatten(tmp_path):
    from converter.passes.prune import Prune

    src = m.convnet(tmp_path / "cnn.onnx")
    out = Prune(sparsity=0.5, structured=True).run(m.artifact(src), tmp_path / "out")
    removed = {r["layer"]: r for r in out.meta["removed"]}
    assert removed["conv1"]["channels_removed"] == "3/6" and removed["conv2"]["channels_removed"] == "2/4"
    assert "bn" in removed["conv1"]["rewritten"] and "head" in removed["conv2"]["rewritten"]
    assert out.meta["untouched"] == [{"layer": "head", "op": "Gemm", "why": "y is a graph output"}]
    shapes = sorted(v.shape for v in _weights(out.path).values())
    assert (3, 3, 3, 3) in shapes and (2, 3, 1, 1) in shapes and (2, 2) in shapes
    assert out.path.stat().st_size < src.stat().st_size
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)
    assert m.run(out.path, x).shape == (2, 2)


def test_structured_rewrite_is_exact_for_dead_channels(tmp_path):
    """Channels whose weights, bias and BatchNorm shift are zero contribute nothing: removing them
    (and the matching BN parameters and consumer columns) must leave the outputs unchanged."""
    import onnx
    from onnx import numpy_helper

    from converter.passes.prune import Prune

    src = m.convnet(tmp_path / "cnn.onnx")
    model = onnx.load(str(src))
    w = {t.name: numpy_helper.to_array(t).copy() for t in model.graph.initializer}
    for name in ("c1w", "c1b", "bn_b", "bn_m"):
        w[name][[0, 3]] = 0
    for name in ("c2w", "c2b"):
        w[name][[1]] = 0
    for t in model.graph.initializer:
        t.CopyFrom(numpy_helper.from_array(w[t.name], t.name))
    onnx.save(model, str(src))
    out = Prune(sparsity=0.25, structured=True).run(m.artifact(src), tmp_path / "out")
    removed = {r["layer"]: r["indices"] for r in out.meta["removed"]}
    assert removed == {"conv1": [0, 3], "conv2": [1]}
    x = np.random.default_rng(1).standard_normal((2, 3, 8, 8)).astype(np.float32)
    np.testing.assert_allclose(m.run(out.path, x), m.run(src, x), rtol=1e-5, atol=1e-6)


def test_structured_leaves_a_residual_layer_alone_and_says_why(tmp_path):
    from converter.passes.prune import Prune

    src = m.residual(tmp_path / "res.onnx")
    out = Prune(sparsity=0.5, structured=True).run(m.artifact(src), tmp_path / "out")
    (why,) = out.meta["untouched"]
    assert why["layer"] == "mm" and "mixes in x" in why["why"] and out.meta["removed"] == []
    assert np.array_equal(_weights(out.path)["w"], _weights(src)["w"])
