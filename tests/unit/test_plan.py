import pytest

from converter import registry
from converter.core import Pipeline
from converter.errors import UsageError
from converter.plan import plan


def test_torch_to_onnx_route_and_options():
    fmts = registry.formats()
    p = plan(fmts["torch"], fmts["onnx"], {"opset": 17, "unrelated": 1})
    assert [s.name for s in p.stages] == ["torch->onnx"] and p.stages[0].opset == 17


def test_torch_export_knows_whether_onnx_is_the_target_or_an_intermediate():
    """--to onnx: dynamo first (the ONNX model ships); --to tf/tfjs: TorchScript first (onnx2tf reads it)."""
    fmts = registry.formats()
    to_onnx = plan(fmts["torch"], fmts["onnx"]).stages[0]
    to_tfjs = plan(fmts["torch"], fmts["tfjs"]).stages
    assert to_onnx.intermediate is False and to_tfjs[0].intermediate is True
    assert [s.name for s in to_tfjs] == ["torch->onnx", "onnx->tf", "tf->tfjs"]


def test_no_route_names_what_is_reachable():
    fmts = registry.formats()
    with pytest.raises(UsageError, match="no conversion route from onnx to torch"):
        plan(fmts["onnx"], fmts["torch"])


def test_pipeline_checks_chaining():
    (torch_to_onnx,) = [s for s in registry.stages() if s.name == "torch->onnx"]
    with pytest.raises(TypeError, match="does not chain"):
        Pipeline((torch_to_onnx(), torch_to_onnx()))
