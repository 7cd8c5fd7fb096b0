"""Portable int8: the quantize pass's default weights cannot saturate the 16-bit pair sums of
onnxruntime's AVX2 / AVX-512-without-VNNI U8S8 kernels, so the integer products (and so the model's
accuracy) are the same on every CPU. This holds by construction, and is checked here on the weights
the real tool wrote, on any machine: no test depends on which ISA runs it.

The AVX2 kernel is emulated in numpy (``vpmaddubsw``: two u8 x s8 products summed into a saturated
int16, then widened and accumulated in int32) because this project's machines are of either kind
and CI runs on whichever it gets: the emulation shows what an AVX2 CPU computes from the same bytes.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import need
from tests.unit import _onnx_models as m


def _avx2_u8s8(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """What vpmaddubsw-based U8S8 GEMM computes: sum over k-pairs of sat16(a[2j]b[2j] + a[2j+1]b[2j+1])."""
    a32, b32 = a.astype(np.int32), b.astype(np.int32)
    k = a.shape[1] - a.shape[1] % 2
    pairs = a32[:, 0:k:2, None] * b32[None, 0:k:2, :] + a32[:, 1:k:2, None] * b32[None, 1:k:2, :]
    out = np.clip(pairs, -32768, 32767).sum(axis=1)
    if a.shape[1] % 2:
        out += a32[:, -1:] @ b32[-1:, :]
    return out


def _dense(path, rng: np.random.Generator):
    """x[N,64] -> MatMul(W[64,32]) -> y, W uniform in [-1, 1] (many weights near the int8 extremes)."""
    from onnx import TensorProto, helper

    w = rng.uniform(-1, 1, (64, 32)).astype(np.float32)
    node = helper.make_node("MatMul", ["x", "w"], ["y"], name="fc")
    return m._save([node], {"w": w}, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 64])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 32])], path)


def _int8_weights(path) -> np.ndarray:
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    (node,) = [n for n in model.graph.node if n.op_type == "MatMulInteger"]
    return inits[node.input[1]]


def test_portable_weights_compute_on_avx2_exactly_what_vnni_computes(tmp_path):
    need("onnx", "onnxruntime")
    import onnx

    from converter.passes.int8_target import SAFE_INT8_WEIGHT, saturation
    from converter.passes.quantize import Quantize

    rng = np.random.default_rng(0)
    out = Quantize().run(m.artifact(_dense(tmp_path / "fc.onnx", rng)), tmp_path / "q")
    w = _int8_weights(out.path)
    assert w.dtype == np.int8 and int(np.abs(w.astype(np.int32)).max()) <= SAFE_INT8_WEIGHT
    a = rng.integers(0, 256, (16, 64)).astype(np.uint8)  # activations as DynamicQuantizeLinear makes them
    assert np.array_equal(_avx2_u8s8(a, w), a.astype(np.int32) @ w.astype(np.int32))
    sat = out.meta["int8"]
    assert sat["target"] == "portable" and sat["reduce_range"] is True and sat["saturation_free"] is True
    assert "numerics_note" not in sat and set(out.meta["cpu"]) == {"machine", "flags"}
    assert saturation(onnx.load(str(out.path))).free


def test_full_8bit_weights_saturate_on_avx2_and_the_check_says_so(tmp_path):
    """Control: the same layer with 8-bit weights (onnxruntime's default) gives other sums on AVX2."""
    need("onnx", "onnxruntime")
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from converter.passes.int8_target import saturation

    rng = np.random.default_rng(0)
    quantize_dynamic(str(_dense(tmp_path / "fc.onnx", rng)), str(tmp_path / "q8.onnx"), weight_type=QuantType.QInt8)
    w = _int8_weights(tmp_path / "q8.onnx")
    a = rng.integers(0, 256, (16, 64)).astype(np.uint8)
    assert not np.array_equal(_avx2_u8s8(a, w), a.astype(np.int32) @ w.astype(np.int32))
    sat = saturation(onnx.load(str(tmp_path / "q8.onnx")))
    assert not sat.free and sat.max_abs_q > 64 and sat.int8_weights == 1


def test_an_8bit_target_says_where_its_numbers_hold(tmp_path):
    """target=avx512_vnni: where the written weights are 8-bit, the report says on which CPUs the
    numbers hold; the sentence depends on this CPU (both kinds are checked by the same assertion)."""
    need("onnx", "onnxruntime")
    from converter.passes.int8_target import cpu_features, saturates_here
    from converter.passes.quantize import Quantize

    out = Quantize(target="avx512_vnni").run(m.artifact(_dense(tmp_path / "fc.onnx", np.random.default_rng(0))),
                                            tmp_path / "q")
    sat = out.meta["int8"]
    assert sat["target"] == "avx512_vnni"
    if sat["saturation_free"]:  # this CPU saturated the 8-bit weights and the ladder took 7-bit ones
        assert sat["reduce_range"] is True and saturates_here(cpu_features()) and "numerics_note" not in sat
    else:
        assert sat["reduce_range"] is False
        assert ("validated on a CPU without VNNI" in sat["numerics_note"]) == saturates_here(cpu_features())
        assert "VNNI" in sat["numerics_note"]


def test_uint8_weights_never_saturate(tmp_path):
    """The conv fallback (ConvInteger needs uint8 weights on onnxruntime's CPU build) is U8U8."""
    need("onnx", "onnxruntime")
    from converter.passes.quantize import Quantize

    out = Quantize().run(m.artifact(m.convnet(tmp_path / "cnn.onnx")), tmp_path / "q")
    assert out.meta["weight_type"] == "QUInt8"
    assert out.meta["int8"]["saturation_free"] is True and out.meta["int8"]["uint8_weight_tensors"] >= 1


def test_unknown_target_is_a_usage_error():
    from converter.errors import UsageError
    from converter.passes import PassSpec, build
    from converter.passes.quantize import Quantize

    with pytest.raises(UsageError, match="target must be one of portable"):
        build(Quantize, PassSpec("quantize", (("target", "sse2"),)))


def _embedding(path, rng: np.random.Generator):
    """ids[N,S] -> Gather(table[12,16]) -> MatMul(W[16,8]) -> y. Row 11 of the table (never looked up
    by ids in 0..10) is 1e3 times larger: one 8-bit scale for the table rounds every other row to 0."""
    from onnx import TensorProto, helper

    table = rng.standard_normal((12, 16)).astype(np.float32)
    table[11] *= 1e3
    nodes = [helper.make_node("Gather", ["table", "ids"], ["e"], name="embed"),
             helper.make_node("MatMul", ["e", "w"], ["y"], name="proj")]
    return m._save(nodes, {"table": table, "w": rng.standard_normal((16, 8)).astype(np.float32)},
                   [helper.make_tensor_value_info("ids", TensorProto.INT64, ["N", "S"])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", "S", 8])], path)


def test_an_embedding_table_with_an_outlier_row_stays_fp32(tmp_path):
    """Per-node error ranking cannot see the Gather (quantized, its output is rewritten, so the error shows
    at the MatMul after it); the embedding rung keeps the table in float32 and the MatMul stays int8."""
    need("onnx", "onnxruntime")
    import dataclasses

    from converter.passes.quantize import Quantize

    src = m.artifact(_embedding(tmp_path / "emb.onnx", np.random.default_rng(4)))
    src = src.with_(inputs=tuple(dataclasses.replace(s, int_range=(0, 11)) for s in src.inputs))
    out = Quantize().run(src, tmp_path / "q")
    attempts = out.meta["attempts"]
    assert attempts[0]["result"].startswith("parity FAILED") and attempts[-1]["result"] == "passed"
    (kept,) = out.meta["kept_fp32"]
    assert kept["op"] == "Gather" and "embedding table" in kept["why"]
    assert out.meta["int8"]["int8_weight_tensors"] == 1 and out.meta["int8"]["saturation_free"]
