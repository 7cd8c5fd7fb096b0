"""quantize and fp16 on hand-built ONNX graphs, with the real onnxruntime tools (no check: each pass
measures against its own input model)."""

import numpy as np
import pytest

from tests.conftest import need
from tests.unit import _onnx_models as m


def test_probe_reports_a_model_that_does_not_load(tmp_path):
    need("onnx", "onnxruntime")
    from converter.passes.onnx_graph import probe

    good = m.mlp(tmp_path / "mlp.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(good.read_bytes()[:100])
    x = {"x": np.ones((2, 8), np.float32)}
    ok, broken = probe([good, bad], [x])
    assert ok.ok and ok.outputs[0]["y"].shape == (2, 4)
    assert not broken.ok and broken.error


def test_dynamic_quantize_of_a_conv_net_falls_back_to_weights_that_load(tmp_path):
    need("onnx", "onnxruntime")
    from converter.passes.quantize import Quantize

    out = Quantize().run(m.artifact(m.convnet(tmp_path / "cnn.onnx")), tmp_path / "out")
    assert out.meta["weight_type"] == "QUInt8" and "ConvInteger" in out.meta["fallbacks"][0]
    assert out.meta["verdict"].startswith("met the int8 tolerance")
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)
    assert m.run(out.path, x).shape == (2, 2)


def test_static_quantize_writes_qdq(tmp_path):
    need("onnx", "onnxruntime")
    import onnx

    from converter.passes.quantize import Quantize

    out = Quantize(mode="static").run(m.artifact(m.mlp(tmp_path / "mlp.onnx")), tmp_path / "out")
    ops = {n.op_type for n in onnx.load(str(out.path)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert "warning" in out.meta["calibration"]


def test_fp16_blocks_what_overflows(tmp_path):
    need("onnx", "onnxruntime", "onnxconverter_common")
    from converter.passes.fp16 import Fp16

    out = Fp16().run(m.artifact(m.big_activation(tmp_path / "big.onnx")), tmp_path / "out")
    kept = {k["node"]: k["why"] for k in out.meta["kept_fp32"]}
    assert set(kept) == {"up", "norm"}
    x = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)
    y = m.run(out.path, x)
    assert y.dtype == np.float32 and np.all(np.isfinite(y))
    np.testing.assert_allclose(y, m.run(tmp_path / "big.onnx", x), atol=1e-2, rtol=1e-2)


@pytest.mark.parametrize("keep_io", [True, False])
def test_fp16_io_types(tmp_path, keep_io):
    need("onnx", "onnxruntime")
    import onnx

    from converter.passes.fp16 import Fp16

    out = Fp16(keep_io_types=keep_io).run(m.artifact(m.mlp(tmp_path / "mlp.onnx")), tmp_path / "out")
    assert out.meta["verdict"] == "met the fp16 tolerance"
    elem = onnx.load(str(out.path)).graph.input[0].type.tensor_type.elem_type
    assert elem == (onnx.TensorProto.FLOAT if keep_io else onnx.TensorProto.FLOAT16)
