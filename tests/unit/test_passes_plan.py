import pytest

from converter import registry
from converter.errors import UsageError
from converter.passes import PassSpec, build, parse_pass_spec
from converter.plan import plan


def test_parse_pass_specs():
    assert parse_pass_spec("simplify") == PassSpec("simplify")
    assert parse_pass_spec("prune:sparsity=0.3,structured=true") == PassSpec(
        "prune", (("sparsity", "0.3"), ("structured", "true")))
    assert parse_pass_spec("quantize@onnx:mode=static").format == "onnx"
    for bad in ("Quantize!", "prune:sparsity", "prune:=3"):
        with pytest.raises(UsageError):
            parse_pass_spec(bad)


def test_unknown_option_names_the_known_ones():
    (simplify,) = [p for p in registry.passes() if p.name == "simplify"]
    with pytest.raises(UsageError, match="has no option 'level'"):
        build(simplify, parse_pass_spec("simplify:level=3"))


def test_passes_land_after_the_stage_that_produces_their_format():
    fmts = registry.formats()
    p = plan(fmts["torch"], fmts["onnx"], {}, [parse_pass_spec("simplify")])
    assert [s.name for s in p.stages] == ["torch->onnx", "simplify"]
    p = plan(fmts["onnx"], fmts["onnx"], {}, [parse_pass_spec("simplify"), parse_pass_spec("simplify")])
    assert [s.name for s in p.stages] == ["simplify", "simplify"]


def test_pass_off_the_route_and_unknown_pass_are_usage_errors():
    fmts = registry.formats()
    with pytest.raises(UsageError, match="unknown pass 'shrink'"):
        plan(fmts["torch"], fmts["onnx"], {}, [parse_pass_spec("shrink")])
    with pytest.raises(UsageError, match="applies to onnx models"):
        plan(fmts["torch"], fmts["onnx"], {}, [parse_pass_spec("simplify@tfjs")])
