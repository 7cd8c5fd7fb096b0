"""Every TensorFlow / Keras fixture through tf2onnx and onnxruntime, checked against TensorFlow or
Keras itself; and the inputs convertkit refuses, with one line that says why."""

from __future__ import annotations

import hashlib
import json

import pytest

from fixtures.catalog import TF_CATALOG, TF_FORMS, TF_OPTIONS
from tests.conftest import convertkit, need

CASES = [(name, form) for name, forms in TF_FORMS.items() for form in forms]
#: what convertkit should recognise each source form as: (format, kind)
KINDS = {"h5": ("keras", "h5"), "keras": ("keras", "keras_archive"), "pb": ("tf", "frozen_graph")}
SAVED_MODEL_FORMAT = {"keras_cnn": "keras"}  # a tf_keras SavedModel (keras_metadata.pb); others are plain TF


def _error_line(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, stderr  # one line, no traceback, no TensorFlow start-up noise
    assert lines[0].startswith("convertkit: error: ")
    return lines[0]


@pytest.mark.parametrize(("name", "form"), CASES)
def test_fixture_exports_and_passes_parity(tf_fixtures, tmp_path, name, form):
    need("tensorflow", "tf2onnx", "onnxruntime")
    import onnx

    import converter

    fx = TF_CATALOG[name]
    report = converter.export(tf_fixtures[name][form], to="onnx", out_dir=tmp_path / "out", **TF_OPTIONS.get(name, {}))

    assert report.verdict == "PASSED", report.parity.summary()
    fmt, kind = KINDS.get(form) or (SAVED_MODEL_FORMAT.get(name, "tf"), "saved_model")
    assert (report.source["format"], report.source["kind"]) == (fmt, kind)
    assert report.stages[0].stage == f"{fmt}->onnx" and report.stages[0].config == {"opset": 18}
    assert report.parity.samples == 3 and len(report.parity.outputs) == fx.outputs
    assert all(o.max_abs < 1e-4 and o.cosine > 0.99999 for o in report.parity.outputs)
    # outputs keep the source's names (matched by name, not by position)
    assert all(o.candidate_name == o.name for o in report.parity.outputs)
    (note,) = report.parity.notes  # which runtime validated; no note of renamed or reordered outputs
    assert note.startswith("validated in onnxruntime ") and note.endswith(" (Python, CPU execution provider)"), note
    model = onnx.load(tmp_path / "out" / "model.onnx")
    assert [i.name for i in model.graph.input] == [spec.split(":")[0] for spec in fx.inputs]
    assert [o.name for o in model.graph.output] == [o.name for o in report.parity.outputs]
    first = model.graph.input[0].type.tensor_type.shape.dim[0]
    assert first.dim_param == "batch" and not first.HasField("dim_value")
    assert len({tuple(s) for o in report.parity.outputs for s in [o.got_shape]}) >= 1
    assert (tmp_path / "out" / "report.json").is_file()


def test_keras_gelu_erfc_is_rewritten(tf_fixtures, tmp_path):
    """Exact GELU lowers to Erfc, which tf2onnx cannot convert: convertkit rewrites it to 1 - Erf."""
    need("tensorflow", "tf2onnx", "onnxruntime")
    import onnx

    import converter

    report = converter.export(tf_fixtures["keras_gelu"]["keras"], to="onnx", out_dir=tmp_path / "o", opset=17)
    assert report.verdict == "PASSED"
    assert report.stages[0].notes["rewrites"] == {"Erfc -> 1 - Erf": 1}
    model = onnx.load(tmp_path / "o" / "model.onnx")
    ops = {n.op_type for n in model.graph.node}
    assert "Erf" in ops and "Erfc" not in ops
    assert {o.domain: o.version for o in model.opset_import}[""] == 17  # --opset reaches the stage


def test_keras_files_load_with_the_library_that_wrote_them(tmp_path):
    """A .keras archive tf_keras wrote loads in tf_keras; an .h5 Keras 3 wrote loads in Keras 3."""
    need("tensorflow", "tf_keras", "keras", "tf2onnx", "onnxruntime")
    import keras
    import tf_keras

    import converter

    old = tf_keras.Sequential([tf_keras.Input((5,), name="x"), tf_keras.layers.Dense(2, name="y")])
    old.save(tmp_path / "old.keras")
    new = keras.Sequential([keras.Input((5,), name="x"), keras.layers.Dense(2, name="y")])
    new.save(tmp_path / "new.h5")
    for path, library in (("old.keras", "tf_keras"), ("new.h5", "keras")):
        art = converter.load(tmp_path / path)
        assert art.meta["library"].split()[0] == library and [s.name for s in art.inputs] == ["x"]
        report = converter.export(tmp_path / path, to="onnx", out_dir=tmp_path / f"{path}-onnx")
        assert report.verdict == "PASSED" and [o.name for o in report.parity.outputs] == ["y"]


def test_unsupported_ops_are_named_together(tmp_path):
    need("tensorflow", "tf2onnx", "onnxruntime")
    import tensorflow as tf

    import converter

    class Special(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32, name="x")])
        def __call__(self, x):
            a = tf.abs(x) + 1.0
            return {"y": tf.math.lgamma(a) + tf.math.igamma(a, a)}

    module = Special()
    tf.saved_model.save(module, str(tmp_path / "sm"), signatures=module.__call__)
    with pytest.raises(converter.UnsupportedOpError) as err:
        converter.export(tmp_path / "sm", to="onnx", out_dir=tmp_path / "out")
    assert err.value.ops == ("Igamma", "Lgamma") and err.value.exit_code == 3
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("name", "form"), [("keras_lstm", "keras"), ("keras_cnn", "h5")])
def test_export_is_byte_identical_when_repeated(tf_fixtures, tmp_path, name, form):
    """tf2onnx's own node numbering and set ordering vary run to run; convertkit pins them."""
    need("tensorflow", "tf2onnx", "onnxruntime")
    import converter

    for out in ("a", "b"):
        converter.export(tf_fixtures[name][form], to="onnx", out_dir=tmp_path / out, check=False)
    digest = [hashlib.sha256((tmp_path / out / "model.onnx").read_bytes()).hexdigest() for out in ("a", "b")]
    assert digest[0] == digest[1]


def test_frozen_graph_outputs_default_to_unread_nodes_and_wrong_names_are_refused(tf_fixtures, tmp_path):
    need("tensorflow", "tf2onnx", "onnxruntime")
    import converter

    pb = tf_fixtures["tf_frozen"]["pb"]
    report = converter.export(pb, to="onnx", out_dir=tmp_path / "o")  # output: the node nothing reads
    assert report.verdict == "PASSED" and [o.name for o in report.parity.outputs] == ["Identity"]
    with pytest.raises(converter.InputError, match=r"no output tensor nope.*Identity"):
        converter.export(pb, to="onnx", out_dir=tmp_path / "p", output_names=("nope",))


def test_signature_only_applies_to_a_saved_model(tf_fixtures, tmp_path):
    need("tensorflow")
    import converter

    with pytest.raises(converter.UsageError, match="--signature applies to a TensorFlow SavedModel"):
        converter.inspect(tf_fixtures["keras_gelu"]["keras"], signature="predict")
    info = converter.inspect(tf_fixtures["tf_module"]["saved_model"], signature="predict")
    assert info["format"] == "tf" and info["signatures"] == ["predict"]
    assert [s["name"] for s in info["outputs"]] == ["logits", "probs"]


# -- through the CLI ------------------------------------------------------------------------------


def test_custom_signature_needs_the_signature_option(tf_fixtures, tmp_path):
    need("tensorflow", "tf2onnx", "onnxruntime")
    import converter

    sm = tf_fixtures["tf_module"]["saved_model"]
    with pytest.raises(converter.InputError, match=r"no signature 'serving_default' \(available signatures: predict"):
        converter.export(sm, to="onnx", out_dir=tmp_path / "bad")
    r = convertkit("export", sm, "--signature", "serve", "-o", tmp_path / "bad")
    assert r.returncode == 2, r.stderr
    line = _error_line(r.stderr)
    assert "has no signature 'serve'" in line and "available signatures: predict" in line and "--signature" in line
    assert not (tmp_path / "bad").exists()
    r = convertkit("export", sm, "--signature", "predict", "-o", tmp_path / "ok", "--json")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["verdict"] == "PASSED" and [i["name"] for i in report["inputs"]] == ["features"]


@pytest.mark.parametrize(("name", "form", "says"), [
    ("keras_cnn", "misnamed", "is a legacy Keras HDF5 model (saved by Keras 2.19.0) but is named '.keras'"),
    ("keras_two_inputs", "misnamed", "is a Keras .keras archive (zip, saved by Keras 3."),
    ("keras_cnn", "weights", "holds only weights (model.save_weights), not a model"),
    ("keras_lambda", "keras", "has Lambda layer(s) affine"),
])
def test_unusable_keras_files_are_refused_in_one_line(tf_fixtures, tmp_path, name, form, says):
    need("h5py")
    r = convertkit("export", tf_fixtures[name][form], "-o", tmp_path / "out")
    assert r.returncode == 2, r.stderr
    line = _error_line(r.stderr)
    assert says in line
    if name == "keras_lambda":
        assert "--trust-code" in line
    assert not (tmp_path / "out").exists()
