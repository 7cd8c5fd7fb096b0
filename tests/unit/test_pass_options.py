"""The ONNX passes as the planner and the CLI see them: names, options, coercion, tolerances."""

import pytest

from converter import registry
from converter.core import accumulated_tolerance
from converter.errors import UsageError
from converter.passes import build, parse_pass_spec
from converter.passes.fp16 import Fp16
from converter.passes.prune import Prune
from converter.passes.quantize import Quantize
from converter.plan import plan


def _build(cls, text):
    return build(cls, parse_pass_spec(text))


def test_passes_are_discovered_for_onnx():
    names = {p.name for p in registry.passes() if p.accepts.name == "onnx"}
    assert {"quantize", "fp16", "prune"} <= names


def test_options_are_coerced_to_their_types():
    q = _build(Quantize, "quantize:mode=static,per_channel=true,method=entropy,max_excluded=1,calibration=c.npz")
    assert (q.mode, q.per_channel, q.method, q.max_excluded, q.calibration) == ("static", True, "entropy", 1, "c.npz")
    assert _build(Quantize, "quantize") == Quantize()  # dynamic, per-tensor
    f = _build(Fp16, "fp16:keep_io_types=false,block=LayerNormalization|node_3")
    assert f.keep_io_types is False and f.block == ("LayerNormalization", "node_3")
    p = _build(Prune, "prune:sparsity=0.3,structured=true,scope=layer")
    assert (p.sparsity, p.structured, p.scope) == (0.3, True, "layer")


@pytest.mark.parametrize("cls,text,match", [
    (Quantize, "quantize:mode=fast", "mode must be one of dynamic, static"),
    (Quantize, "quantize:method=entropy", "apply to mode=static"),
    (Quantize, "quantize:mode=static,method=kl", "method must be one of"),
    (Quantize, "quantize:per_channel=maybe", "not a valid bool"),
    (Prune, "prune:sparsity=1.5", r"sparsity must be in \[0, 1\)"),
    (Prune, "prune:scope=net", "scope must be one of global, layer"),
    (Fp16, "fp16:precision=8", "has no option 'precision'"),
])
def test_bad_options_are_usage_errors(cls, text, match):
    with pytest.raises(UsageError, match=match):
        _build(cls, text)


def test_tolerances_fit_the_precision():
    assert Fp16().tolerance.atol == 1e-2 and Fp16().tolerance.min_cosine == 0.999 and not Fp16().tolerance.dtype_changes
    assert Fp16(keep_io_types=False).tolerance.dtype_changes == (("float32", "float16"),)
    assert Quantize.tolerance.min_cosine == 0.99 and Quantize.tolerance.min_top1 == 0.9
    assert Prune.tolerance.min_cosine == 0.9
    # a pipeline's tolerance is the loosest of what its stages may add
    tol = accumulated_tolerance([Fp16(), Quantize()])
    assert tol.atol == Quantize.tolerance.atol and tol.min_cosine == 0.99


def test_passes_land_after_the_onnx_export():
    fmts = registry.formats()
    p = plan(fmts["torch"], fmts["onnx"], {}, [parse_pass_spec("quantize:mode=static"), parse_pass_spec("fp16")])
    assert [s.name for s in p.stages] == ["torch->onnx", "quantize", "fp16"]
