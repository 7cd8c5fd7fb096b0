"""Every TensorFlow / Keras fixture converted to TF.js (graph, and layers where the source is a Keras
model) with tensorflowjs's Python API, run in real TF.js on Node on both backends (wasm and cpu)
and checked against TensorFlow / Keras itself; layers models trained one step in Node; the ops and
layers TF.js lacks refused, all named at once; a corrupted weight shard caught."""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from fixtures.catalog import TF_CATALOG, TF_FORMS, TF_OPTIONS
from tests.conftest import need_node, ROOT, convertkit, need

TRAIN = Path(__file__).with_name("tfjs_train.mjs")
#: the source forms convertkit reads as Keras models (the others are plain TensorFlow)
KERAS_FORMS = {("keras_cnn", "saved_model")} | {
    (name, form) for name, forms in TF_FORMS.items() for form in forms if form in ("keras", "h5")}
CASES = [(name, form, "graph") for name, forms in TF_FORMS.items() for form in forms]
CASES += [(name, form, "layers") for name, form in sorted(KERAS_FORMS) if name != "keras_lambda"]


def need_tfjs() -> None:
    """The converter (Python) and the runtime (Node + the npm packages): skip locally, fail in CI."""
    os.environ.setdefault("TFDF_DISABLE_WELCOME_MESSAGE", "1")  # tensorflowjs imports TF-DF's banner
    need("tensorflow", "tf_keras", "tensorflowjs")
    need_node()


def _export(src: Path, out: Path, tfjs_format: str, backend: str = "wasm", **options):
    import converter

    return converter.export(src, to="tfjs", out_dir=out, tfjs_format=tfjs_format,
                            runner_options={"backend": backend}, **options)


def _model_json(out: Path) -> dict:
    return json.loads((out / "model.json").read_text())


def _graph_ops(out: Path) -> set[str]:
    return {n["op"] for n in _model_json(out)["modelTopology"]["node"]}


@pytest.mark.parametrize(("name", "form", "tfjs_format"), CASES)
def test_fixture_converts_and_matches_on_both_backends(tf_fixtures, tmp_path, name, form, tfjs_format):
    need_tfjs()

    fx, options = TF_CATALOG[name], TF_OPTIONS.get(name, {})
    src = tf_fixtures[name][form]
    out = tmp_path / "out"
    report = _export(src, out, tfjs_format, "wasm", **options)

    assert report.verdict == "PASSED", report.parity.summary()
    stage = report.stages[0]
    fmt = "keras" if (name, form) in KERAS_FORMS else "tf"
    assert stage.stage == f"{fmt}->tfjs" and stage.config == {"tfjs_format": tfjs_format}
    assert stage.notes["kind"] == f"{tfjs_format}-model" and "renamed" not in stage.notes
    assert report.parity.samples == 3 and len(report.parity.outputs) == fx.outputs
    assert all(o.max_abs < 1e-4 and o.cosine > 0.99999 for o in report.parity.outputs)
    # TF.js addresses inputs and outputs by the source's names
    assert all(o.candidate_name == o.name for o in report.parity.outputs) and not report.parity.notes
    assert [i["name"] for i in report.inputs] == [spec.split(":")[0] for spec in fx.inputs]

    model_json = _model_json(out)
    assert model_json["format"] == f"{tfjs_format}-model"
    shards = [p for group in model_json["weightsManifest"] for p in group["paths"]]
    assert shards and all((out / p).is_file() and (out / p).stat().st_size <= 4 * 1024 * 1024 for p in shards)
    assert sorted(p.name for p in out.iterdir()) == sorted([*shards, "model.d.ts", "model.js", "model.json", "report.json"])
    if tfjs_format == "graph":  # the signature lists inputs and outputs in the source's order
        assert list(model_json["signature"]["inputs"]) == [spec.split(":")[0] for spec in fx.inputs]
        assert list(model_json["signature"]["outputs"]) == [o.name for o in report.parity.outputs]

    # the same conversion, validated on the other backend
    again = _export(src, tmp_path / "cpu", tfjs_format, "cpu", **options)
    assert again.verdict == "PASSED", again.parity.summary()
    assert all(o.max_abs < 1e-4 for o in again.parity.outputs)


def test_keras3_layers_models_are_rebuilt_in_tf_keras_and_checked(tf_fixtures, tmp_path):
    """tensorflowjs writes layers models from tf_keras models only: a Keras 3 model is rebuilt in
    tf_keras, checked against the original in-process, and the report says so."""
    need_tfjs()
    report = _export(tf_fixtures["keras_two_inputs"]["keras"], tmp_path / "k3", "layers")
    notes = report.stages[0].notes
    assert report.verdict == "PASSED"
    assert notes["rebuilt_in"].startswith("tf_keras ") and notes["rebuild_max_abs_diff"] < 1e-5
    assert _model_json(tmp_path / "k3")["modelTopology"]["keras_version"].startswith("2.")

    tf_keras_report = _export(tf_fixtures["keras_cnn"]["h5"], tmp_path / "k2", "layers")
    assert "rebuilt_in" not in tf_keras_report.stages[0].notes  # a tf_keras model is written as it is


def test_layers_format_refusals_say_why_and_what_to_do(tf_fixtures, tmp_path):
    need_tfjs()
    import converter

    # a Lambda layer's Python code cannot run in TF.js: named, with the alternative
    with pytest.raises(converter.UnsupportedOpError) as err:
        _export(tf_fixtures["keras_lambda"]["keras"], tmp_path / "lambda", "layers", trust_code=True)
    assert err.value.ops == ("Lambda",) and err.value.exit_code == 3
    assert "--tfjs-format graph" in str(err.value)
    assert not (tmp_path / "lambda").exists()
    # a TensorFlow SavedModel has no layers: refused when planning, before any work
    with pytest.raises(converter.UsageError, match="converts to a TF.js graph model only.*--tfjs-format graph"):
        _export(tf_fixtures["tf_module"]["saved_model"], tmp_path / "sm", "layers", signature="predict")
    with pytest.raises(converter.UsageError, match="unknown TF.js format 'webgl'"):
        _export(tf_fixtures["keras_gelu"]["keras"], tmp_path / "x", "webgl")


@pytest.mark.parametrize(("name", "form"), [("keras_cnn", "h5"), ("keras_two_inputs", "keras"), ("keras_lstm", "keras")])
def test_layers_model_loads_and_trains_in_node(tf_fixtures, tmp_path, name, form):
    """tf.loadLayersModel + compile + one trainOnBatch in Node: finite loss, every trainable weight moved."""
    need_tfjs()
    out = tmp_path / "layers"
    assert _export(tf_fixtures[name][form], out, "layers").verdict == "PASSED"
    r = subprocess.run(["node", str(TRAIN), str(out), "--backend", "cpu"], capture_output=True, text=True, timeout=120,
                       cwd=ROOT)
    result = json.loads(r.stdout.strip().splitlines()[-1])
    assert r.returncode == 0 and "error" not in result, (result, r.stderr[-2000:])
    assert math.isfinite(result["loss"]) and result["loss"] > 0
    assert result["trainable"] > 0 and result["changed"] == result["trainable"]


def test_exact_gelu_erfc_is_rewritten_for_tfjs(tf_fixtures, tmp_path):
    """Keras 3 exact GELU lowers to Erfc, which TF.js lacks: rewritten to 1 - Erf, and it matches."""
    need_tfjs()
    report = _export(tf_fixtures["keras_gelu"]["keras"], tmp_path / "g", "graph")
    assert report.verdict == "PASSED"
    assert report.stages[0].notes["rewrites"] == {"Erfc -> 1 - Erf": 1}
    ops = _graph_ops(tmp_path / "g")
    assert "Erf" in ops and "Erfc" not in ops


def test_unsupported_ops_are_named_together(tmp_path):
    need_tfjs()
    import tensorflow as tf

    import converter

    class Special(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32, name="x")])
        def __call__(self, x):
            a = tf.abs(x) + 1.0
            inv = tf.reduce_sum(tf.linalg.inv(tf.eye(3) + a[:1, :1]))
            return {"y": tf.math.lgamma(a) + tf.math.igamma(a, a) + inv}

    module = Special()
    tf.saved_model.save(module, str(tmp_path / "sm"), signatures=module.__call__)
    with pytest.raises(converter.UnsupportedOpError) as err:
        _export(tmp_path / "sm", tmp_path / "out", "graph")
    assert err.value.ops == ("Igamma", "Lgamma", "MatrixInverse") and err.value.exit_code == 3
    assert "TF.js" in str(err.value)
    assert not (tmp_path / "out").exists()


def test_int64_inputs_become_int32_and_shards_are_4mb(tmp_path):
    """TF.js has no int64: the conversion says so; the layers model's InputLayer is declared int32,
    so tfjs-layers can feed it. Weights above 4 MB are split into 4 MB shards."""
    need_tfjs()
    import tf_keras

    import converter

    tf_keras.utils.set_random_seed(3)
    ids = tf_keras.Input((5,), dtype="int64", name="ids")
    h = tf_keras.layers.GlobalAveragePooling1D()(tf_keras.layers.Embedding(1200, 1000, name="embed")(ids))
    model = tf_keras.Model(ids, tf_keras.layers.Dense(3, name="score")(h))  # 4.8 MB of weights
    model.save(tmp_path / "ids.h5", save_format="h5")

    for fmt in ("graph", "layers"):
        out = tmp_path / fmt
        report = _export(tmp_path / "ids.h5", out, fmt)
        assert report.verdict == "PASSED", report.parity.summary()
        assert report.stages[0].notes["dtype_changes"] == ["ids: int64 -> int32 (TF.js has no int64)"]
        info = converter.inspect(out)
        assert info["kind"] == f"{fmt}-model" and info["weight_shards"] == 2
        assert abs(info["weight_bytes"] - (1200 * 1000 + 1000 * 3 + 3) * 4) < 100  # + a few shape constants
        assert all(p.stat().st_size <= 4 * 1024 * 1024 for p in out.glob("*.bin"))
    layers = _model_json(tmp_path / "layers")["modelTopology"]["model_config"]["config"]["layers"]
    assert layers[0]["class_name"] == "InputLayer" and layers[0]["config"]["dtype"] == "int32"
    graph_info = converter.inspect(tmp_path / "graph")
    assert graph_info["ops"]["Placeholder"] == 1 and graph_info["converted_by"].startswith("TensorFlow.js Converter")


def test_export_is_byte_identical_when_repeated(tf_fixtures, tmp_path):
    need_tfjs()
    for fmt, name in (("graph", "keras_lstm"), ("layers", "keras_two_inputs")):
        digests = []
        for out in ("a", "b"):
            d = tmp_path / f"{fmt}-{out}"
            _export(tf_fixtures[name]["keras"], d, fmt, check=False)
            digests.append({p.name: hashlib.sha256(p.read_bytes()).hexdigest()
                            for p in d.iterdir() if p.name != "report.json"})
        assert digests[0] == digests[1], fmt


# -- through the CLI ------------------------------------------------------------------------------


def test_corrupted_weight_shard_fails_validation(tf_fixtures, tmp_path):
    """A TF.js model whose weights were damaged after conversion loads and runs, and is caught."""
    need_tfjs()
    src = tf_fixtures["keras_cnn"]["h5"]
    good = tmp_path / "good"
    assert _export(src, good, "graph").verdict == "PASSED"
    bad = tmp_path / "bad"
    shutil.copytree(good, bad)
    shard = next(bad.glob("*.bin"))
    data = np.frombuffer(shard.read_bytes(), dtype="<f4").copy()
    data[: len(data) // 2] *= -1.5  # flip the sign of (and scale) half the float weights
    shard.write_bytes(data.tobytes())

    r = convertkit("validate", src, bad, "--json")
    assert r.returncode == 1, r.stderr
    report = json.loads(r.stdout)
    assert report["verdict"] == "FAILED" and report["parity"]["outputs"][0]["status"] != "ok"
    r = convertkit("validate", src, good, "--tfjs-backend", "cpu")
    assert r.returncode == 0, r.stdout + r.stderr


def test_tf_control_flow_runs_in_tfjs(tmp_path):
    """A lowered tf.cond whose branches grappler folds into guarded constants, and a while loop:
    TF.js must take the branch TensorFlow takes, on both sides of the condition."""
    need_tfjs()
    import tensorflow as tf

    import converter

    class Flow(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.v = tf.Variable(np.arange(4, dtype=np.float32))

        @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="x")])
        def __call__(self, x):
            s = tf.reduce_sum(x)
            y = tf.cond(s > 0, lambda: x * 2.0 + self.v, lambda: x - 3.0 * self.v)
            _, y = tf.while_loop(lambda i, y: i < 3, lambda i, y: (i + 1, y * 0.5 + self.v), [tf.constant(0), y])
            return {"y": y, "z": tf.cond(s > 1.0, lambda: tf.constant(7.0), lambda: tf.constant(-7.0)) + 0 * s}

    module = Flow()
    tf.saved_model.save(module, str(tmp_path / "sm"), signatures=module.__call__)
    pos = {"x": np.abs(np.random.default_rng(0).standard_normal((2, 4))).astype("float32") + 0.5}
    report = _export(tmp_path / "sm", tmp_path / "out", "graph", feeds=pos)
    assert report.verdict == "PASSED", report.parity.summary()
    assert report.stages[0].notes["rewrites"]["Const with control inputs -> Identity(Const)"] >= 2
    for backend in ("wasm", "cpu"):  # the other branch of both conds
        neg = converter.validate(tmp_path / "sm", tmp_path / "out", feeds={"x": -pos["x"]}, samples=1,
                                 runner_options={"backend": backend})
        assert neg.verdict == "PASSED", neg.parity.summary()


@pytest.mark.parametrize("backend", ["wasm", "cpu"])
def test_a_bool_cast_as_the_graph_output_reads_back_on_both_backends(tmp_path, backend):
    """TF.js 4.22's cpu backend hands back Cast(bool -> float32) as one byte per element when it is a
    graph output; the runner widens it to the declared dtype (was an internal error, exit 4)."""
    need("onnx", "onnxruntime", "tensorflow", "tensorflowjs")
    need_node()
    import onnx
    from onnx import TensorProto, helper

    nodes = [helper.make_node("Constant", [], ["z"], value=helper.make_tensor("z", TensorProto.FLOAT, [], [0.0])),
             helper.make_node("Greater", ["x", "z"], ["g"]), helper.make_node("Cast", ["g"], ["y"], to=TensorProto.FLOAT)]
    graph = helper.make_graph(nodes, "mask", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 5])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 5])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "mask.onnx"))
    r = convertkit("export", tmp_path / "mask.onnx", "--to", "tfjs", "--tfjs-backend", backend, "-o", tmp_path / "js",
                   "--json")
    assert r.returncode == 0, r.stderr
    (out,) = json.loads(r.stdout)["parity"]["outputs"]
    assert out["status"] == "ok" and out["max_abs"] == 0.0
