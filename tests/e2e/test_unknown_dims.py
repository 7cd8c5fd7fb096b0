"""ONNX files that write unknown dims as -1 or 0 (Paddle2ONNX, older exporters) read as dynamic dims:
no --input needed to optimize them or convert them to TensorFlow."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import convertkit, need, need_node


def _unknown_dims_model(path: Path) -> Path:
    """Conv + Relu whose input is written [-1, 3, 0, -1] and output [-1, 4, -1, -1] (seeded weights)."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(13)
    w = numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w")
    b = numpy_helper.from_array(rng.standard_normal((4,)).astype(np.float32), "b")
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [-1, 3, 0, -1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [-1, 4, -1, -1])
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["y"])]
    model = helper.make_model(helper.make_graph(nodes, "unknown_dims", [x], [y], [w, b]),
                              opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_specs_and_feeds_read_minus_one_and_zero_as_dynamic(tmp_path):
    need("onnx")
    from converter.formats import onnx as onnx_fmt
    from converter.parity.inputs import make_feeds

    src = onnx_fmt.open_source(str(_unknown_dims_model(tmp_path / "m.onnx")))
    (x,), (y,) = src.inputs, src.outputs
    assert x.shape == ("unk_0", 3, "unk_2", "unk_3") and x.is_dynamic
    assert y.shape == ("unk_0", 4, "unk_2", "unk_3")
    shapes = {f["x"].shape for f in make_feeds(src.inputs, samples=2)}
    assert len(shapes) == 2 and all(min(s) > 0 for s in shapes)  # two sizes, none negative or empty


@pytest.mark.parametrize("argv", [("optimize", "-p", "simplify"), ("export", "--to", "tf")],
                         ids=["simplify", "to-tf"])
def test_cli_converts_unknown_dims_without_input(tmp_path, argv):
    need("onnx", "onnxruntime", *(("tensorflow",) if "tf" in argv else ()))
    src = _unknown_dims_model(tmp_path / "paddle_like.onnx")
    before = src.read_bytes()
    command, *options = argv
    r = convertkit(command, src, *options, "-o", tmp_path / "out")
    assert r.returncode == 0, r.stderr
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["verdict"] == "PASSED"
    assert [o["status"] for o in report["parity"]["outputs"]] == ["ok"]
    assert src.read_bytes() == before  # the input file is read, never rewritten


def test_to_tfjs_keeps_unknown_dims_dynamic(tmp_path):
    """The issue's example: such a file reaches TF.js, validated there at two sizes of each dim,
    and the TF.js model takes any size on the dims written -1 or 0."""
    need("onnx", "onnxruntime", "tensorflow", "tensorflowjs")
    need_node()
    src = _unknown_dims_model(tmp_path / "paddle_like.onnx")
    r = convertkit("export", src, "--to", "tfjs", "-o", tmp_path / "tfjs")
    assert r.returncode == 0, r.stderr
    report = json.loads((tmp_path / "tfjs" / "report.json").read_text())
    assert report["verdict"] == "PASSED" and [o["status"] for o in report["parity"]["outputs"]] == ["ok"]
    signature = json.loads((tmp_path / "tfjs" / "model.json").read_text())["signature"]
    dims = [int(d["size"]) for d in signature["inputs"]["x"]["tensorShape"]["dim"]]
    assert dims == [-1, 3, -1, -1]
