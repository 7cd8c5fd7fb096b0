import pytest

from converter import registry
from converter.core import Pipeline
from converter.errors import UsageError
from converter.plan import plan


def test_torch_to_onnx_route_and_options():
    fmts = registry.formats()
    p = plan(fmts["torch"], fmts["onnx"], {"opset": 17, "unrelated": 1})
    assert [s.name for s in p.stages] == ["torch->onnx"] and p.stages[0].opset == 17


def test_no_route_names_what_is_reachable():
    fmts = registry.formats()
    with pytest.raises(UsageError, match="no conversion route from onnx to torch"):
        plan(fmts["onnx"], fmts["torch"])


def test_pipeline_checks_chaining():
    (torch_to_onnx,) = [s for s in registry.stages() if s.name == "torch->onnx"]
    with pytest.raises(TypeError, match="does not chain"):
        Pipeline((torch_to_onnx(), torch_to_onnx()))
