"""A frozen TF1 graph with a PlaceholderWithDefault ``bottleneck`` whose default is another graph
tensor (x -> conv -> mean pool -> bottleneck -> MatMul -> softmax ``probs``, as in a retrained
Inception graph), exported with the real CLI to ONNX (tf2onnx used to refuse it: "non-const default
value for PlaceholderWithDefault") and to TF.js, each run in its runtime against TensorFlow. Unfed,
the bottleneck computes its default and is no input; named by ``--input``, it is the model's input."""

from __future__ import annotations

import json

import pytest

from tests.conftest import convertkit, need
from tests.e2e.test_tf_to_onnx import _error_line
from tests.e2e.test_to_tfjs import need_tfjs

NOT_FED = ("bottleneck, a PlaceholderWithDefault [batch,8] whose default is pool: not fed, so it computes its "
           "default (to feed it, name it with --input)")
FED = "bottleneck, a PlaceholderWithDefault [batch,8] whose default is pool: fed as an input (--input)"


def _need(to: str) -> None:
    need("tensorflow", "tf2onnx", "onnxruntime") if to == "onnx" else need_tfjs()


def _export(pb, out, to: str, *args: str) -> dict:
    r = convertkit("export", pb, "--to", to, "-o", out, "--output-names", "probs:0", "--json", *args)
    assert r.returncode == 0, r.stderr[-3000:]
    report = json.loads(r.stdout)
    assert report["verdict"] == "PASSED" and report["source"]["kind"] == "frozen_graph"
    assert [o["name"] for o in report["parity"]["outputs"]] == ["probs"]
    assert all(o["max_abs"] < 1e-5 and o["cosine"] > 0.99999 for o in report["parity"]["outputs"])
    return report


def _model_inputs(out, to: str) -> tuple[list[str], set[str]]:
    """The converted model's input names and its ops, read from the file."""
    if to == "onnx":
        import onnx

        model = onnx.load(out / "model.onnx")
        return [i.name for i in model.graph.input], {n.op_type for n in model.graph.node}
    model_json = json.loads((out / "model.json").read_text())
    return list(model_json["signature"]["inputs"]), {n["op"] for n in model_json["modelTopology"]["node"]}


@pytest.mark.parametrize("to", ["onnx", "tfjs"])
def test_unfed_bottleneck_computes_its_default(tf_fixtures, tmp_path, to):
    _need(to)
    report = _export(tf_fixtures["tf_placeholder_default"]["pb"], tmp_path / "out", to)
    assert [i["name"] for i in report["inputs"]] == ["x"]
    assert NOT_FED in report["notes"]
    names, ops = _model_inputs(tmp_path / "out", to)
    assert names == ["x"]
    if to == "onnx":  # an Identity of its default: the image path runs
        assert report["stages"][0]["notes"]["defaults_used"] == ["bottleneck"]
        assert "Conv" in ops
    else:  # TF.js runs a PlaceholderWithDefault itself: it stays in the graph, not an input
        assert {"PlaceholderWithDefault", "_FusedConv2D"} <= ops


@pytest.mark.parametrize("to", ["onnx", "tfjs"])
def test_bottleneck_named_by_input_is_fed(tf_fixtures, tmp_path, to):
    _need(to)
    report = _export(tf_fixtures["tf_placeholder_default"]["pb"], tmp_path / "out", to, "-i", "bottleneck:batch,8")
    assert report["inputs"] == [{"name": "bottleneck", "shape": ["batch", 8], "dtype": "float32"}]
    assert FED in report["notes"]
    names, ops = _model_inputs(tmp_path / "out", to)
    assert names == ["bottleneck"]  # the image path is cut off: no x, no convolution
    assert not {"Conv", "Conv2D", "_FusedConv2D", "Mean", "ReduceMean"} & ops
    if to == "onnx":
        assert report["stages"][0]["notes"]["defaults_fed"] == ["bottleneck"]


def test_feeding_the_bottleneck_refuses_outputs_that_still_need_the_image(tf_fixtures, tmp_path):
    need("tensorflow")
    pb = tf_fixtures["tf_placeholder_default"]["pb"]
    r = convertkit("export", pb, "-o", tmp_path / "a", "-i", "bottleneck:batch,8", "--output-names", "probs:0,pool:0")
    assert r.returncode == 2
    assert _error_line(r.stderr) == (
        f"convertkit: error: {pb}: the outputs probs, pool need input(s) x, which --input does not name "
        "(add --input x:DIMS, or ask for outputs that only the fed tensors compute (--output-names))")
    r = convertkit("export", pb, "-o", tmp_path / "b", "-i", "bottle:batch,8", "--output-names", "probs:0")
    assert r.returncode == 2
    assert _error_line(r.stderr) == ("convertkit: error: --input names bottle do not match the model's inputs x "
                                     "(or tensors it can be fed: bottleneck) (use the model's input names)")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
